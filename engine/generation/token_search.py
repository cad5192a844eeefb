"""Greedy decoding and sampling: every row of the batch gets one new token per step.

    logits [B, V] -> processors (engine/generation/processors.py, Hugging Face's order) -> next token
    per row (greedy, or a seeded draw) -> stopping checks -> the next step on the new tokens.

Rows that finish leave the batch (their cache rows are dropped), so the others do not wait.

Legend: B = rows in the batch, V = vocab_size.
"""

from __future__ import annotations

import numpy as np

from ..base.checks import check_finite
from ..base.numeric import log_softmax
from .options import GenerationOptions, GenerationResult, end_token_ids
from .processors import check_choice_left, greedy_choice, process_scores, row_generator, sample_choice
from .prompts import prefill
from .text import IncrementalText


class Sequence:
    """A row being generated: its prompt, its new tokens and their log-probabilities, its text."""

    def __init__(self, prompt: list[int], model, options: GenerationOptions, generator=None):
        self.prompt = prompt
        self.history = np.zeros(len(prompt) + options.max_new_tokens, dtype=np.int64)  # prompt, then new ids
        self.history[: len(prompt)] = prompt
        self.token_ids: list[int] = []
        self.logprobs: list[float] = []
        self.finish_reason: str | None = None
        self.text = IncrementalText(model.tokenizer, options.stop)
        self.generator = generator
        self.max_new_tokens = options.max_new_tokens
        self.eos = set(model.config.eos_token_ids) if options.stop_at_eos else set()
        self.stop_ids = set(options.stop_token_ids)

    def seen(self) -> np.ndarray:  # int64 [prompt + new tokens]
        return self.history[: len(self.prompt) + len(self.token_ids)]

    def append(self, token: int, logprob: float) -> None:
        self.history[len(self.prompt) + len(self.token_ids)] = token
        self.token_ids.append(token)
        self.logprobs.append(logprob)
        if token in self.eos:
            self.finish_reason = "eos"
        elif token in self.stop_ids or self.text.add(token):
            self.finish_reason = "stop"
        elif len(self.token_ids) == self.max_new_tokens:
            self.finish_reason = "length"
        if self.finish_reason is not None:
            self.text.close()

    def result(self) -> GenerationResult:
        self.text.close()
        return GenerationResult(
            self.text.text, list(self.token_ids), self.finish_reason or "interrupted", list(self.logprobs)
        )


def choose_tokens(options: GenerationOptions, end_ids, rows: list[Sequence], logits, n_tokens: int | None = None):
    """The next token of each row, all under the same options, each with the same number of new
    tokens: logits [B, V] -> (tokens int64 [B], the model's own log-probabilities [B, V]: the
    log-softmax of the raw logits, before any processor). n_tokens: the tokenizer's size (ids from
    it on, an embedding's padding, are never chosen). TokenSearch and the continuous batch
    (continuous.py) both choose this way."""
    o = options
    n_new = len(rows[0].token_ids)
    check_finite(logits, f"the logits for new token {n_new + 1}")
    scores = process_scores(
        logits,
        [seq.seen() for seq in rows] if o.uses_history else None,
        n_new=n_new,
        end_ids=end_ids,
        temperature=o.temperature,
        top_k=o.top_k,
        top_p=o.top_p,
        n_tokens=n_tokens,
        **o.processor_options(),
    )  # [B, V]
    check_choice_left(scores, n_new)
    tokens = sample_choice(scores, [seq.generator for seq in rows]) if o.sampling else greedy_choice(scores)
    return tokens, log_softmax(logits)


class TokenSearch:
    """One token per row per step, chosen greedily (temperature 0) or by a seeded draw, for every
    row of a batch at once. Rows do not interact: each row's tokens depend on its own prompt, options
    and random stream only."""

    def __init__(self, model, prompts: list[list[int]], options: GenerationOptions):
        self.model, self.options, self.prompts = model, options, prompts
        n = options.num_return_sequences
        self.sequences = [
            Sequence(p, model, options, row_generator(options.seed or 0, j) if options.sampling else None)
            for p in prompts
            for j in range(n)
        ]  # prompt-major: row i * n + j is sample j of prompt i
        self.end_ids = end_token_ids(model.config.eos_token_ids, options)
        self.hooks = None  # passed to every model call (generate(capture=...))

    def steps(self):
        """Generate; yields once after every step (each unfinished row has one more token)."""
        o = self.options
        cache, logits = prefill(
            self.model, self.prompts, o.max_new_tokens, o.num_return_sequences, self.hooks
        )  # [B, V]
        active = list(self.sequences)  # the rows of the cache, in order
        while True:
            tokens, logprobs = self.choose(active, logits)  # [B], [B]
            for seq, token, logprob in zip(active, tokens.tolist(), logprobs.tolist()):
                seq.append(token, logprob)
            yield
            unfinished = [i for i, seq in enumerate(active) if seq.finish_reason is None]
            if not unfinished:
                return
            if len(unfinished) < len(active):  # finished rows leave the batch
                cache.select_rows(unfinished)
                active = [active[i] for i in unfinished]
                tokens = tokens[unfinished]
            logits = self.model(tokens[:, None], cache=cache, hooks=self.hooks)[
                :, -1
            ]  # [B, V], one step through the cache

    def choose(self, active, logits):  # logits [B, V] -> tokens int64 [B], logprobs float32 [B]
        tokens, logprobs_all = choose_tokens(self.options, self.end_ids, active, logits, self.model.tokenizer.n_vocab)
        return tokens, logprobs_all[np.arange(len(active)), tokens]  # [B], the model's own

    def results(self) -> list[GenerationResult]:
        return [seq.result() for seq in self.sequences]
