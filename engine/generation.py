"""Text generation: continue prompts one token at a time through the KV cache.

    result = model.generate("ROMEO:", max_new_tokens=40, temperature=0.8, top_p=0.95, seed=1)
    result.text, result.token_ids, result.finish_reason, result.logprobs
    for piece in model.stream("ROMEO:", seed=1): print(piece, end="", flush=True)

The prompts are processed in one forward pass that fills the cache (several prompts of different
lengths are left-padded to one batch), then every row costs one step of one token. Each step:

    logits [B, V] -> processors (engine/sampling.py, Hugging Face's order) -> next token per row
    (greedy, a seeded draw, or beam search) -> stopping checks -> the next step on the new tokens.

Rows that finish leave the batch (their cache rows are dropped), so the others do not wait.

Greedy by default (temperature 0), as Hugging Face's generate(); temperature > 0 samples. (The
`gpt2 generate` command samples at temperature 1 by default, as R's gpt2() does.)

Stopping: the end-of-text token (unless stop_at_eos=False), any of `stop_token_ids`, any of the
`stop` strings appearing in the new text (even across tokens, or in the middle of one), or
`max_new_tokens`. `finish_reason` says which: "eos", "stop" (a stop id or string) or "length".

Sampling: row r, sample j of its prompt, draws from its own generator, seeded with
SeedSequence([seed, j]); so a prompt's samples do not depend on the other prompts of the batch,
and the first of n samples is the single sample with the same seed.

Log-probabilities: `logprobs[i]` is log p(token i) under the model itself, the log-softmax of the
raw logits at that step, before any processor (temperature, top-k, top-p, penalties); the same
numbers `model.score` gives for those tokens. This is what OpenAI-style APIs report, and it does
not change with the sampling settings.

Legend: B = rows in the batch, P = prompts, L = longest prompt, V = vocab_size, K = beams per
prompt, C = candidates per prompt in a beam step, M = max_new_tokens.
"""

from __future__ import annotations

import codecs
import math
import numbers
import secrets
from dataclasses import dataclass, field, fields, replace

import numpy as np

from .errors import InputError, check_integer
from .model import log_softmax
from .sampling import greedy_choice, process_scores, row_generator, sample_choice

FINISH_REASONS = ("length", "stop", "eos")
BEAM_PLACEHOLDER = np.float32(-1.0e9)  # Hugging Face's score for "no hypothesis here"


@dataclass
class GenerationResult:
    """One generated continuation.

    text: the new text only (not the prompt), without the end-of-text or stop token and cut
          before a stop string;
    token_ids: every new token id, including the end-of-text / stop token that ended it and the
          tokens that spelled a stop string;
    finish_reason: "length" (max_new_tokens reached), "eos" (end-of-text generated), "stop" (a
          stop string or stop token id), or "interrupted" (only after Ctrl-C in the command);
    logprobs: one per new token, log p(token) under the model's own distribution (log-softmax of
          the raw logits, before any processor);
    score: beam search only, the hypothesis' score as Hugging Face reports it (`sequences_scores`:
          sum of the processed log-probabilities / new tokens ** length_penalty);
    activations: with generate(capture=...) only, an `engine.capture.ActivationCache` of what the
          decode computed, position by position: the prompt and every new token but the last
          (which is never fed back), as `run_with_cache` on those tokens would give.
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: list[float] = field(default_factory=list)
    score: float | None = None
    activations: object = field(default=None, repr=False, compare=False)  # generate(capture=...) only

    def to_dict(self) -> dict:
        """The plain fields (activations are arrays, not JSON: use `self.activations`)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "activations"}
        if self.score is None:
            del d["score"]
        return d


# ----------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class GenerationOptions:
    """Every generation setting, checked by `checked()`. Names follow Hugging Face's generate()."""

    max_new_tokens: int = 50
    temperature: float = 0.0  # 0: greedy (Hugging Face's default, do_sample=False); > 0: sampling
    top_k: int | None = None  # None: no top-k
    top_p: float | None = None  # None: no top-p
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    min_new_tokens: int = 0
    seed: int | None = None  # None: a fresh random seed
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    stop_at_eos: bool = True
    num_return_sequences: int = 1  # samples (or best beams) per prompt
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False  # True, False or "never", as Hugging Face
    bos: bool = False  # put <|endoftext|> before every prompt

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def checked(self, spell=lambda name: name) -> "GenerationOptions":
        """These options with every value checked (InputError naming `spell(argument)` if not)."""

        def fail(name, requirement, value):
            raise InputError(f"{spell(name)} must be {requirement}, got {value!r}")

        def as_tuple(name, value, is_one, requirement):  # one value, or any iterable of them
            if is_one(value):
                return (value,)
            try:
                return tuple(value or ())
            except TypeError:
                fail(name, requirement, value)

        is_int = is_token_id
        def is_number(value):
            return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)

        for name, low in (("max_new_tokens", 1), ("num_return_sequences", 1), ("num_beams", 1),
                          ("no_repeat_ngram_size", 0), ("min_new_tokens", 0)):
            check_integer(spell(name), getattr(self, name), low)
        t = self.temperature
        if not is_number(t) or t < 0:
            fail("temperature", "a number >= 0 (0 is greedy)", t)
        if self.top_k is not None and (not is_int(self.top_k) or self.top_k < 1):
            fail("top_k", "an integer >= 1 (leave it out to keep every token)", self.top_k)
        p = self.top_p
        if p is not None and (not is_number(p) or not 0 < p <= 1):
            fail("top_p", "in (0, 1]", p)
        if not is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            fail("repetition_penalty", "a number > 0 (1 is no penalty)", self.repetition_penalty)
        if self.seed is not None:
            check_integer(spell("seed"), self.seed, 0)
        if not is_number(self.length_penalty):
            fail("length_penalty", "a finite number", self.length_penalty)
        if self.early_stopping not in (True, False, "never"):
            fail("early_stopping", 'True, False or "never"', self.early_stopping)
        stop = as_tuple("stop", self.stop, lambda s: isinstance(s, str), "non-empty strings")
        if not all(isinstance(s, str) and s for s in stop):
            fail("stop", "non-empty strings", self.stop)
        stop_ids = as_tuple("stop_token_ids", self.stop_token_ids, is_int, "token ids (integers >= 0)")
        if not all(is_int(i) and i >= 0 for i in stop_ids):
            fail("stop_token_ids", "token ids (integers >= 0)", self.stop_token_ids)
        if self.num_beams > 1 and self.sampling:
            raise InputError(f"beam search is deterministic: {spell('temperature')} must be 0 with "
                             f"{spell('num_beams')} > 1 (beam sampling is not supported)")
        for name in ("top_k", "top_p"):
            if getattr(self, name) is not None and not self.sampling:
                if self.num_beams > 1:
                    raise InputError(f"{spell(name)} applies to sampling, not to beam search ({spell('num_beams')} > 1)")
                raise InputError(f"{spell(name)} applies to sampling: give {spell('temperature')} > 0 "
                                 "(0 is greedy decoding)")
        if self.num_beams > 1:
            if self.num_return_sequences > self.num_beams:
                raise InputError(f"{spell('num_return_sequences')}={self.num_return_sequences} is more than "
                                 f"{spell('num_beams')}={self.num_beams}: beam search returns at most one sequence per beam")
        elif self.num_return_sequences > 1 and not self.sampling:
            raise InputError(f"{spell('num_return_sequences')} > 1 needs sampling ({spell('temperature')} > 0): "
                             "greedy decoding gives the same text every time")
        seed = self.seed if self.seed is not None else secrets.randbits(64)
        return replace(self, stop=stop, stop_token_ids=tuple(int(i) for i in stop_ids), seed=int(seed))


def options_from(options: dict) -> GenerationOptions:
    known = {f.name for f in fields(GenerationOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown generation option {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return GenerationOptions(**options)


# ----------------------------------------------------------------------------------------------
# Prompts


def is_token_id(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def prompt_token_ids(model, prompt, bos: bool) -> tuple[list[list[int]], bool]:
    """The token ids of each prompt, and whether a single prompt was given.

    prompt: a string, a list of strings, token ids (a list of ints or an int array [T]), or a
    batch of token ids (a list of lists of ints, or an int array [P, T]).
    """
    if isinstance(prompt, np.ndarray):
        if prompt.ndim not in (1, 2) or (prompt.size and not np.issubdtype(prompt.dtype, np.integer)):
            raise InputError(f"a prompt array must hold integer token ids [T] or [P, T], got {prompt.dtype} {prompt.shape}")
        prompt = prompt.tolist()
    if isinstance(prompt, str):
        prompts, single = [prompt], True
    elif isinstance(prompt, (list, tuple)) and prompt and all(is_token_id(x) for x in prompt):
        prompts, single = [list(prompt)], True
    elif isinstance(prompt, (list, tuple)) and prompt and all(
        isinstance(p, str) or (isinstance(p, (list, tuple, np.ndarray)) and all(is_token_id(x) for x in p)) for p in prompt
    ):
        prompts, single = list(prompt), False
    else:
        raise InputError("the prompt must be a string, a list of strings, token ids, or a list of token id lists")

    eos, n_vocab = model.config.eos_token_id, model.config.vocab_size
    batch = []
    for i, p in enumerate(prompts):
        if isinstance(p, str) and model.tokenizer is None:
            raise InputError("this model has no tokenizer: pass the prompt as token ids")
        ids = model.tokenizer.encode(p) if isinstance(p, str) else [int(x) for x in p]
        if bos:
            ids = [eos] + ids
        which = "the prompt" if single else f"prompt {i}"
        if not ids:
            raise InputError(f"{which} is empty: give some text, or start from <|endoftext|> with bos=True (--bos)")
        bad = [x for x in ids if not 0 <= x < n_vocab]
        if bad:
            raise InputError(f"{which}: token id {bad[0]} is out of range for vocab_size {n_vocab}")
        batch.append(ids)
    return batch, single


def check_room(model, prompts: list[list[int]], max_new_tokens: int, spell=lambda name: name) -> None:
    """The longest prompt and max_new_tokens new tokens must fit in the context (n_positions)."""
    n_ctx = model.config.n_positions
    longest = max(len(p) for p in prompts)
    if longest > n_ctx:
        raise InputError(f"the prompt has {longest} tokens, more than the model's context of {n_ctx} tokens")
    if longest + max_new_tokens > n_ctx:
        fits = n_ctx - longest
        room = {0: "no new token fits", 1: "at most 1 new token fits"}.get(fits, f"at most {fits} new tokens fit")
        raise InputError(
            f"{spell('max_new_tokens')}={max_new_tokens} would pass the context of {n_ctx} tokens: the prompt has "
            f"{longest} token{'s' if longest > 1 else ''}, so {room}"
        )


# ----------------------------------------------------------------------------------------------
# Text as it grows


def first_stop(text: str, stops, start: int = 0) -> int | None:
    """Where the earliest of the stop strings begins in text[start:] (an index of text), or None."""
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else None


class IncrementalText:
    """The text of a growing sequence of tokens, decoded one token at a time.

    GPT-2 tokens are bytes and can end in the middle of a UTF-8 character: the bytes of an
    unfinished character wait in the decoder until the character is complete (or, at the end, become
    U+FFFD, as `tokenizer.decode` would make them). The text is searched for the stop strings as it
    grows and cut before the first one. `take()` hands out the text in pieces that never split a
    character and never include what could still turn out to be the start of a stop string, so the
    pieces, joined, are the final `text`.
    """

    def __init__(self, tokenizer, stops: tuple[str, ...] = ()):
        self.tokenizer = tokenizer
        self.stops = stops
        self.longest_stop = max(map(len, stops), default=0)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.decoded = ""  # every complete character so far
        self.stop_index = None  # where the first stop string begins in `decoded`
        self.closed = False
        self.shown = 0  # characters already handed out by take()

    def add(self, token_id: int) -> bool:
        """Decode one more token. True if that completed a stop string."""
        before = len(self.decoded)
        self.decoded += self.decoder.decode(self.tokenizer.token_bytes([token_id])[0])
        return self._search(before)

    def close(self) -> None:
        """No more tokens: the bytes of an unfinished character become U+FFFD."""
        if not self.closed:
            before = len(self.decoded)
            self.decoded += self.decoder.decode(b"", final=True)
            self._search(before)
            self.closed = True

    def _search(self, new_from: int) -> bool:
        if self.stop_index is not None or not self.stops:
            return False
        # A stop string that appears now ends in the new characters, so it starts at most
        # (longest stop - 1) characters before them.
        self.stop_index = first_stop(self.decoded, self.stops, max(0, new_from - self.longest_stop + 1))
        return self.stop_index is not None

    @property
    def text(self) -> str:
        return self.decoded if self.stop_index is None else self.decoded[: self.stop_index]

    def _held_back(self) -> int:
        """Characters at the end that could be the start of a stop string (0 once the text is final)."""
        if self.closed or self.stop_index is not None:
            return 0
        unshown = self.decoded[self.shown :]
        held = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(unshown)), held, -1):
                if unshown.endswith(stop[:n]):
                    held = n
                    break
        return held

    def take(self) -> str:
        """The text that is certain now and was not handed out yet."""
        end = len(self.text) - self._held_back()
        piece = self.decoded[self.shown : end] if end > self.shown else ""
        self.shown = max(self.shown, end)
        return piece


# ----------------------------------------------------------------------------------------------
# One generated row


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
        self.eos = model.config.eos_token_id if options.stop_at_eos else None
        self.stop_ids = set(options.stop_token_ids)

    def seen(self) -> np.ndarray:  # int64 [prompt + new tokens]
        return self.history[: len(self.prompt) + len(self.token_ids)]

    def append(self, token: int, logprob: float) -> None:
        self.history[len(self.prompt) + len(self.token_ids)] = token
        self.token_ids.append(token)
        self.logprobs.append(logprob)
        if token == self.eos:
            self.finish_reason = "eos"
        elif token in self.stop_ids:
            self.finish_reason = "stop"
        elif self.text.add(token):
            self.finish_reason = "stop"
        elif len(self.token_ids) == self.max_new_tokens:
            self.finish_reason = "length"
        if self.finish_reason is not None:
            self.text.close()

    def result(self) -> GenerationResult:
        self.text.close()
        return GenerationResult(self.text.text, list(self.token_ids), self.finish_reason or "interrupted",
                                list(self.logprobs))


def end_token_ids(model, options: GenerationOptions) -> list[int]:
    """The tokens that end a sequence: end-of-text (unless stop_at_eos=False), then the stop ids."""
    ends = [model.config.eos_token_id] if options.stop_at_eos else []
    return ends + [i for i in options.stop_token_ids if i not in ends]


def prefill(model, prompts: list[list[int]], max_new_tokens: int, copies: int, hooks=None):
    """Run the prompts through the model in one left-padded batch and make `copies` rows of each.

    Returns the cache ([P * copies] rows, row i * copies + j is copy j of prompt i) and the
    float32 logits [P * copies, V] of the token after each prompt. With `hooks` (a capture), the
    output layer runs at every position, so that `ln_final.hook_normalized` covers them all.
    """
    lengths = np.array([len(p) for p in prompts])  # [P]
    L = int(lengths.max())
    padding = L - lengths  # [P]
    ids = np.full((len(prompts), L), model.config.eos_token_id, dtype=np.int64)  # [P, L]; padding is never seen
    for i, p in enumerate(prompts):
        ids[i, padding[i] :] = p
    cache = model.new_cache(len(prompts), max_length=L + max_new_tokens, left_padding=padding)
    logits = model(ids, cache=cache, logits_to_keep=None if hooks else 1, hooks=hooks)[:, -1]  # [P, V]
    rows = np.repeat(np.arange(len(prompts)), copies)  # [P * copies]
    cache.select_rows(rows)
    return cache, logits[rows]


# ----------------------------------------------------------------------------------------------
# Greedy decoding and sampling


class SamplingSearch:
    """Greedy decoding (temperature 0) or sampling, for every row of a batch at once."""

    def __init__(self, model, prompts: list[list[int]], options: GenerationOptions):
        self.model, self.options, self.prompts = model, options, prompts
        n = options.num_return_sequences
        self.sequences = [
            Sequence(p, model, options, row_generator(options.seed, j) if options.sampling else None)
            for p in prompts for j in range(n)
        ]  # prompt-major: row i * n + j is sample j of prompt i
        self.end_ids = end_token_ids(model, options)
        self.hooks = None  # passed to every model call (generate(capture=...))

    def steps(self):
        """Generate; yields once after every step (each unfinished row has one more token)."""
        o = self.options
        cache, logits = prefill(self.model, self.prompts, o.max_new_tokens, o.num_return_sequences, self.hooks)  # [B, V]
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
            logits = self.model(tokens[:, None], cache=cache, hooks=self.hooks)[:, -1]  # [B, V], one step through the cache

    def choose(self, active, logits):  # logits [B, V] -> tokens int64 [B], logprobs float32 [B]
        o = self.options
        scores = process_scores(
            logits, [seq.seen() for seq in active], n_new=len(active[0].token_ids),
            repetition_penalty=o.repetition_penalty, no_repeat_ngram_size=o.no_repeat_ngram_size,
            min_new_tokens=o.min_new_tokens, end_ids=self.end_ids,
            temperature=o.temperature, top_k=o.top_k, top_p=o.top_p,
        )  # [B, V]
        if o.sampling:
            tokens = sample_choice(scores, [seq.generator for seq in active])
        else:
            tokens = greedy_choice(scores)
        logprobs = log_softmax(logits)[np.arange(len(active)), tokens]  # [B], the model's own
        return tokens, logprobs

    def results(self) -> list[GenerationResult]:
        return [seq.result() for seq in self.sequences]


# ----------------------------------------------------------------------------------------------
# Beam search


def top_sorted(scores, k: int):  # [G, N] -> indices int64 [G, k], values [G, k]
    """The k highest scores of each row, highest first (equal scores: lower index first)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # [G, k], unordered
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)  # by value descending, then index
    indices = np.take_along_axis(part, order, axis=1)
    return indices, np.take_along_axis(values, order, axis=1)


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
        self.end_ids = end_token_ids(model, options)
        self.finished: list[list[GenerationResult] | None] = [None] * len(prompts)  # per prompt, when done
        self.running = (np.arange(0), None, None, 0)  # (prompts in the batch, their beams' tokens, logprobs, length)

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
            logprobs_all = log_softmax(logits)  # [g_n * K, V], the model's own
            histories = [np.concatenate([self.prompts[g], run_tokens[i, k, :cur]]) for i, g in enumerate(groups)
                         for k in range(K)] if (o.repetition_penalty != 1.0 or o.no_repeat_ngram_size) else None
            scores = process_scores(
                logprobs_all, histories, n_new=cur, repetition_penalty=o.repetition_penalty,
                no_repeat_ngram_size=o.no_repeat_ngram_size, min_new_tokens=o.min_new_tokens, end_ids=self.end_ids,
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
            new_scores = cand_scores / np.float32((cur + 1) ** lp)
            full = fin_done.all(axis=1, keepdims=True) & (o.early_stopping is True)
            new_scores = new_scores + full.astype(np.float32) * BEAM_PLACEHOLDER
            new_scores = new_scores + (~improvable[:, None]).astype(np.float32) * BEAM_PLACEHOLDER
            new_scores = new_scores + (~just_finished).astype(np.float32) * BEAM_PLACEHOLDER
            keep, fin_scores = top_sorted(np.concatenate([fin_scores, new_scores], axis=1), K)  # [g_n, K]

            def merge(old, new):
                both = np.concatenate([old, new], axis=1)
                return np.take_along_axis(both, keep.reshape(keep.shape + (1,) * (both.ndim - 2)), axis=1)

            fin_tokens = merge(fin_tokens, cand_tokens)
            fin_logprobs = merge(fin_logprobs, cand_logprobs)
            fin_length = merge(fin_length, np.full((g_n, C), cur + 1))
            fin_reason = merge(fin_reason, cand_reason)
            fin_done = merge(fin_done, just_finished)

            # Can a running beam still beat the worst finished hypothesis?
            best_length = M if (o.early_stopping == "never" and lp > 0) else cur + 1
            best_running = run_scores[:, :1] / np.float32(best_length**lp)  # [g_n, 1]
            worst = np.where(fin_done, fin_scores.min(axis=1, keepdims=True), BEAM_PLACEHOLDER)  # [g_n, K]
            improvable = improvable & (best_running > worst).any(axis=1)
            self.running = (groups, run_tokens, run_logprobs, cur + 1)  # for results after an interruption

            done = ~improvable | (fin_done.all(axis=1) & (o.early_stopping is True)) | hits.all()
            for i in np.flatnonzero(done):
                self.finished[groups[i]] = self.hypotheses(fin_tokens[i], fin_logprobs[i], fin_scores[i],
                                                           fin_length[i], fin_reason[i])
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
                reason[token == self.model.config.eos_token_id] = FINISH_REASONS.index("eos")
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
        i = list(groups).index(g)
        return [GenerationResult(self.model.tokenizer.decode(tokens[i, k, :n]), tokens[i, k, :n].tolist(),
                                 "interrupted", logprobs[i, k, :n].tolist())
                for k in range(self.options.num_return_sequences)]


# ----------------------------------------------------------------------------------------------
# The entry points


def make_search(model, prompt, options: dict, spell=lambda name: name):
    """Check everything, then build the search (SamplingSearch or BeamSearch) and say whether a
    single prompt was given."""
    o = options_from(options).checked(spell)
    prompts, single = prompt_token_ids(model, prompt, o.bos)
    check_room(model, prompts, o.max_new_tokens, spell)
    bad = [i for i in o.stop_token_ids if i >= model.config.vocab_size]
    if bad:
        raise InputError(f"{spell('stop_token_ids')}: token id {bad[0]} is out of range for vocab_size {model.config.vocab_size}")
    search = (BeamSearch if o.num_beams > 1 else SamplingSearch)(model, prompts, o)
    return search, single


def single_sequence(search, single: bool, what: str) -> None:
    """Refuse a search that makes more than one sequence (for stream() and capture=)."""
    if not single or not isinstance(search, SamplingSearch) or len(search.sequences) != 1:
        raise InputError(f"{what} takes one prompt and makes one sequence (no num_return_sequences > 1, no beams)")


def run(search) -> list[GenerationResult]:
    """Generate to the end: the results of every row (see `results()` of the search)."""
    for _ in search.steps():
        pass
    return search.results()


def generate(model, prompt, *, capture=None, **options):
    """Continue `prompt` by up to `max_new_tokens` tokens.

    prompt: a string, token ids (list of ints), or a batch: a list of strings or of token-id lists.
    Options (Hugging Face's names; see GenerationOptions and README.md, "Generating text"):
      max_new_tokens=50, temperature=0.0 (greedy; > 0 samples), top_k=None,
      top_p=None, repetition_penalty=1.0, no_repeat_ngram_size=0, min_new_tokens=0, seed=None,
      stop=() (strings), stop_token_ids=(), stop_at_eos=True, num_return_sequences=1,
      num_beams=1, length_penalty=1.0, early_stopping=False, bos=False.
    Returns a GenerationResult for a single prompt with num_return_sequences=1, otherwise a list
    of them, prompt-major (the num_return_sequences results of prompt 0 first).
    capture: True (every intermediate) or names as `run_with_cache` takes them: the result's
      `activations` hold what the decode computed (one prompt, one sequence; attention then takes
      the NumPy reference path, which materialises the probabilities).
    """
    search, single = make_search(model, prompt, options)
    recorder = None
    if capture is not None and capture is not False:
        from .capture import StepwiseCapture

        single_sequence(search, single, "capture=")
        recorder = StepwiseCapture(model.config, names=None if capture is True else capture)
        search.hooks = recorder.hooks
    results = run(search)
    if recorder is not None:
        results[0].activations = recorder.cache()
    return results[0] if single and len(results) == 1 else results


class GenerationStream:
    """The new text of one prompt, piece by piece as it is generated: iterate over it for str
    pieces; afterwards `result` holds the GenerationResult. Joined, the pieces are `result.text`:
    no piece splits a UTF-8 character, and text that could be the start of a stop string is held
    back until it is known not to be one."""

    def __init__(self, search: SamplingSearch):
        self.search = search
        self.sequence = search.sequences[0]
        self.result: GenerationResult | None = None

    def __iter__(self):
        for _ in self.search.steps():
            piece = self.sequence.text.take()
            if piece:
                yield piece
        rest = self.rest()
        if rest:
            yield rest
        self.result = self.sequence.result()

    def rest(self) -> str:
        """After an interruption: the text generated but not yet handed out (held-back text included)."""
        self.sequence.text.close()
        return self.sequence.text.take()


def stream(model, prompt, **options) -> GenerationStream:
    """Like `generate`, for one prompt and one sample without beams, as an iterator of text pieces."""
    search, single = make_search(model, prompt, options)
    single_sequence(search, single, "stream()")
    return GenerationStream(search)
