"""Beam search, with Hugging Face's semantics, for a batch of prompts.

Legend: G = prompts still in the batch, K = beams per prompt, C = candidates per prompt in a step,
V = vocab_size, M = max_new_tokens.
"""

from __future__ import annotations

import numpy as np

from ..base.checks import FLOAT32_MAX, FLOAT32_TINY, check_finite
from ..base.numeric import log_softmax, top_sorted
from .options import FINISH_REASONS, GenerationOptions, GenerationResult, end_token_ids
from .processors import process_scores
from .prompts import prefill
from .text import first_stop

BEAM_PLACEHOLDER = np.float32(-1.0e9)  # Hugging Face's score for "no hypothesis here"


def length_divisor(length: int, length_penalty: float) -> np.float32:
    """length ** length_penalty as a float32 that is neither 0 nor infinite (options.py bounds the
    penalty so that this never has to clip for contexts of GPT-2's size)."""
    return np.float32(min(max(float(length) ** length_penalty, FLOAT32_TINY), FLOAT32_MAX))


def merge_kept(old, new, keep):  # [g, K, ...] and [g, C, ...] -> [g, k, ...]
    """The entries `keep` ([g, k] indices into old then new, side by side) of each prompt."""
    both = np.concatenate([old, new], axis=1)
    return np.take_along_axis(both, keep.reshape(keep.shape + (1,) * (both.ndim - 2)), axis=1)


class BeamSearch:
    """Beam search with the semantics of Hugging Face's `generate(num_beams=K, do_sample=False)`
    (transformers 5, `GenerationMixin._beam_search`), for a batch of prompts.

    Per prompt, K running beams and a list of at most K finished hypotheses. Each step:
      1. scores = log_softmax(logits), then the processors (on log-probabilities, as Hugging Face),
         plus each beam's running score: [K, V] candidates per prompt;
      2. the best C = K * max(2, 1 + number of end tokens) candidates, highest first;
      3. a candidate "hits" if its token ends a sequence, it completes a stop string, or it is the
         max_new_tokens-th token; those among the first K of the C join the finished hypotheses
         with score sum / (new tokens) ** length_penalty (new tokens counts the end token), and the
         best K finished stay;
      4. the K best candidates that do not hit are the next running beams (the cache rows follow);
      5. a prompt is done when its best running beam cannot beat its worst finished hypothesis
         (with early_stopping=False it is scored at the current length; with "never" and
         length_penalty > 0 at max_new_tokens), or, with early_stopping=True, as soon as it has K
         finished hypotheses.
    A prompt that is done leaves the batch. The results are the best `num_return_sequences`
    finished hypotheses, best first; `score` is Hugging Face's `sequences_scores`.
    """

    def __init__(self, model, prompts: list[list[int]], options: GenerationOptions):
        self.model, self.options, self.prompts = model, options, prompts
        self.end_ids = end_token_ids(model.config.eos_token_ids, options)
        self.finished: list[list[GenerationResult] | None] = [None] * len(prompts)  # per prompt, when done
        # (prompts in the batch, their beams' tokens [g, K, M], logprobs [g, K, M], length): for the
        # results after an interruption
        self.running = (np.arange(0), np.zeros((0, 0, 0), np.int64), np.zeros((0, 0, 0), np.float32), 0)

    def steps(self):
        model, o = self.model, self.options
        G, K, M = len(self.prompts), o.num_beams, o.max_new_tokens
        C = K * max(2, 1 + len(self.end_ids))
        lp = o.length_penalty
        cache, logits = prefill(model, self.prompts, M, K)  # [G * K, V]
        V = logits.shape[-1]
        groups = np.arange(G)  # the prompts still in the batch
        run_tokens = np.zeros((G, K, M), dtype=np.int64)  # running beams' new tokens
        run_logprobs = np.zeros((G, K, M), dtype=np.float32)  # and their raw log-probabilities
        run_scores = np.zeros((G, K), dtype=np.float32)
        run_scores[:, 1:] = BEAM_PLACEHOLDER  # only beam 0 counts at first: the K copies are the same
        fin_tokens = np.zeros((G, K, M), dtype=np.int64)
        fin_logprobs = np.zeros((G, K, M), dtype=np.float32)
        fin_scores = np.full((G, K), BEAM_PLACEHOLDER, dtype=np.float32)
        fin_length = np.zeros((G, K), dtype=np.int64)
        fin_reason = np.zeros((G, K), dtype=np.int64)  # index into FINISH_REASONS
        fin_done = np.zeros((G, K), dtype=bool)  # Hugging Face's is_sent_finished
        improvable = np.ones(G, dtype=bool)  # Hugging Face's is_early_stop_heuristic_unsatisfied
        for cur in range(M):  # cur: tokens each running beam has so far
            g_n = len(groups)
            check_finite(logits, f"the logits for new token {cur + 1}")
            logprobs_all = log_softmax(logits)  # [g_n * K, V], the model's own
            histories = (
                [
                    np.concatenate([self.prompts[g], run_tokens[i, k, :cur]])
                    for i, g in enumerate(groups)
                    for k in range(K)
                ]
                if o.uses_history
                else None
            )
            scores = process_scores(
                logprobs_all,
                histories,
                n_new=cur,
                end_ids=self.end_ids,
                n_tokens=model.tokenizer.n_vocab,
                **o.processor_options(),
            )  # [g_n * K, V]
            totals = (scores.reshape(g_n, K, V) + run_scores[:, :, None]).reshape(g_n, K * V)  # [g_n, K * V]
            cand_index, cand_scores = top_sorted(totals, C)  # [g_n, C]
            parent, token = cand_index // V, cand_index % V  # [g_n, C]
            rows = np.arange(g_n)[:, None]
            cand_tokens = run_tokens[rows, parent]  # [g_n, C, M]
            cand_tokens[:, :, cur] = token
            cand_logprobs = run_logprobs[rows, parent]  # [g_n, C, M]
            cand_logprobs[:, :, cur] = logprobs_all[rows * K + parent, token]
            cand_reason = self.end_reasons(cand_tokens, token, cur)  # [g_n, C], -1: goes on
            hits = cand_reason >= 0

            # The next running beams: the K best candidates that go on.
            going_on = cand_scores + hits.astype(np.float32) * BEAM_PLACEHOLDER  # [g_n, C]
            chosen, run_scores = top_sorted(going_on, K)  # [g_n, K]
            run_tokens = np.take_along_axis(cand_tokens, chosen[:, :, None], axis=1)
            run_logprobs = np.take_along_axis(cand_logprobs, chosen[:, :, None], axis=1)
            next_rows = (rows * K + np.take_along_axis(parent, chosen, axis=1)).reshape(-1)  # [g_n * K]
            next_tokens = np.take_along_axis(token, chosen, axis=1).reshape(-1)

            # The finished hypotheses: the best K of those so far and the candidates that just ended
            # among the first K (Hugging Face's order of float32 operations, for equal scores).
            just_finished = hits & (np.arange(C) < K)[None, :]  # [g_n, C]
            new_scores = cand_scores / length_divisor(cur + 1, lp)
            full = fin_done.all(axis=1, keepdims=True) & (o.early_stopping is True)
            new_scores = new_scores + full.astype(np.float32) * BEAM_PLACEHOLDER
            new_scores = new_scores + (~improvable[:, None]).astype(np.float32) * BEAM_PLACEHOLDER
            new_scores = new_scores + (~just_finished).astype(np.float32) * BEAM_PLACEHOLDER
            keep, fin_scores = top_sorted(np.concatenate([fin_scores, new_scores], axis=1), K)  # [g_n, K]

            fin_tokens = merge_kept(fin_tokens, cand_tokens, keep)
            fin_logprobs = merge_kept(fin_logprobs, cand_logprobs, keep)
            fin_length = merge_kept(fin_length, np.full((g_n, C), cur + 1), keep)
            fin_reason = merge_kept(fin_reason, cand_reason, keep)
            fin_done = merge_kept(fin_done, just_finished, keep)

            # Can a running beam still beat the worst finished hypothesis?
            best_length = M if (o.early_stopping == "never" and lp > 0) else cur + 1
            best_running = run_scores[:, :1] / length_divisor(best_length, lp)  # [g_n, 1]
            worst = np.where(fin_done, fin_scores.min(axis=1, keepdims=True), BEAM_PLACEHOLDER)  # [g_n, K]
            improvable = improvable & (best_running > worst).any(axis=1)
            self.running = (groups, run_tokens, run_logprobs, cur + 1)  # for results after an interruption

            done = ~improvable | (fin_done.all(axis=1) & (o.early_stopping is True)) | hits.all()
            for i in np.flatnonzero(done):
                self.finished[groups[i]] = self.hypotheses(
                    fin_tokens[i], fin_logprobs[i], fin_scores[i], fin_length[i], fin_reason[i]
                )
            yield
            if done.all():
                return
            if done.any():  # prompts that are done leave the batch
                stay = np.flatnonzero(~done)
                groups, improvable = groups[stay], improvable[stay]
                run_tokens, run_logprobs, run_scores = run_tokens[stay], run_logprobs[stay], run_scores[stay]
                fin_tokens, fin_logprobs, fin_scores = fin_tokens[stay], fin_logprobs[stay], fin_scores[stay]
                fin_length, fin_reason, fin_done = fin_length[stay], fin_reason[stay], fin_done[stay]
                next_rows = next_rows.reshape(-1, K)[stay].reshape(-1)  # still numbered as the cache's rows
                next_tokens = next_tokens.reshape(-1, K)[stay].reshape(-1)
            cache.select_rows(next_rows)
            logits = model(next_tokens[:, None], cache=cache)[:, -1]  # [g_n * K, V]

    def end_reasons(self, cand_tokens, token, cur: int):  # -> int64 [g_n, C]: FINISH_REASONS index or -1
        o = self.options
        reason = np.full(token.shape, -1, dtype=np.int64)
        if self.end_ids:
            reason[np.isin(token, self.end_ids)] = FINISH_REASONS.index("stop")
            if o.stop_at_eos:
                reason[np.isin(token, self.model.config.eos_token_ids)] = FINISH_REASONS.index("eos")
        if o.stop:
            for i, c in zip(*np.nonzero(reason < 0)):
                text = self.model.tokenizer.decode(cand_tokens[i, c, : cur + 1])
                if first_stop(text, o.stop) is not None:
                    reason[i, c] = FINISH_REASONS.index("stop")
        if cur + 1 == o.max_new_tokens:
            reason[reason < 0] = FINISH_REASONS.index("length")
        return reason

    def hypotheses(self, tokens, logprobs, scores, lengths, reasons) -> list[GenerationResult]:
        """The best num_return_sequences finished hypotheses of one prompt as results, best first."""
        results = []
        for k in range(self.options.num_return_sequences):
            n = int(lengths[k])
            ids = tokens[k, :n].tolist()
            reason = FINISH_REASONS[reasons[k]]
            text_ids = ids[:-1] if ids and ids[-1] in self.end_ids and reason != "length" else ids
            text = self.model.tokenizer.decode(text_ids)
            cut = first_stop(text, self.options.stop)
            if cut is not None:
                text = text[:cut]
            results.append(GenerationResult(text, ids, reason, logprobs[k, :n].tolist(), float(scores[k])))
        return results

    def results(self) -> list[GenerationResult]:
        out = []
        for g, done in enumerate(self.finished):
            if done is None:  # interrupted: the best running beams so far
                done = self.interrupted_hypotheses(g)
            out.extend(done)
        return out

    def interrupted_hypotheses(self, g: int) -> list[GenerationResult]:
        """The best running beams of a prompt that was not done when generation stopped."""
        groups, tokens, logprobs, n = self.running
        if g not in groups:  # interrupted before this prompt's first step
            return [GenerationResult("", [], "interrupted", []) for _ in range(self.options.num_return_sequences)]
        i = int(np.flatnonzero(groups == g)[0])
        return [
            GenerationResult(
                self.model.tokenizer.decode(tokens[i, k, :n]),
                tokens[i, k, :n].tolist(),
                "interrupted",
                logprobs[i, k, :n].tolist(),
            )
            for k in range(self.options.num_return_sequences)
        ]
