"""Scoring a text: per-token log-probabilities, and perplexity with a sliding window.

GPT-2 predicts each token from the tokens before it, but it sees at most `n_positions` of them. A
text longer than that is cut into windows of `context` tokens that start every `stride` tokens, the
protocol of Hugging Face's guide "Perplexity of fixed-length models":

    window k covers tokens [begin, end) with begin = k * stride, end = min(begin + context, N);
    the windows stop at the first one that reaches the end of the text;
    window k scores the tokens [max(previous end, begin + 1), end), each predicted from the tokens
    before it inside window k only.

So the first window scores all its tokens but its first (which nothing precedes), each later window
scores only the tokens it adds (the overlap with earlier windows is context, not scored again), and
every token is scored at most once. With stride < context only token 0 goes unscored; with
stride == context the windows do not overlap and the first token of every window is unscored.
With `bos=True` an `<|endoftext|>` is put before the text as token 0: every text token then has a
prediction (for stride < context).

The log-probabilities are float32, as the model computes them. Their sum (the total negative
log-likelihood) is accumulated in float64: a reporting choice, so that a sum of many thousands of
terms loses nothing, not a change to the arithmetic of the model.

Legend: N = tokens in the text (with BOS), B = windows in a batch, L = tokens in a window,
K = positions whose logits are kept, V = vocab_size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from .base.checks import check_finite, check_integer, check_memory, check_token_ids, integer_array
from .base.errors import InputError
from .base.numeric import log_softmax, top_sorted
from .base.progress import progress_bar

DEFAULT_BATCH_SIZE = 4


@dataclass(frozen=True)
class Window:
    """Tokens [begin, end) go through the model together; those in [first_scored, end) are scored."""

    begin: int
    end: int
    first_scored: int

    @property
    def n_scored(self) -> int:
        return self.end - self.first_scored


def sliding_windows(n_tokens: int, context: int, stride: int) -> list[Window]:
    """The windows of Hugging Face's perplexity guide over `n_tokens` tokens (see the module docstring).

    A window can score nothing: with stride == context, a last window of a single token.
    """
    windows, previous_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + context, n_tokens)
        windows.append(Window(begin, end, first_scored=max(previous_end, begin + 1)))
        previous_end = end
        if end == n_tokens:
            break
    return windows


@dataclass
class Scores:
    """Per-token log-probabilities of a text, and its perplexity.

    token_ids[i] is token i of the scored sequence (`<|endoftext|>` first when bos=True);
    logprobs[i] = log p(token i | the tokens before it in the window that scored it), NaN where
    token i is not scored; window[i] is the index in `windows` of that window, -1 if none.
    """

    token_ids: np.ndarray  # int64 [N]
    logprobs: np.ndarray  # float32 [N], NaN where not scored
    window: np.ndarray  # int64 [N], -1 where not scored
    windows: list[Window]
    context: int
    stride: int
    bos: bool

    @property
    def scored(self) -> np.ndarray:  # bool [N]
        return self.window >= 0

    @property
    def count(self) -> int:
        """Number of scored tokens: the N in the mean."""
        return int(self.scored.sum())

    @property
    def total_nll(self) -> float:
        """-sum of the scored tokens' float32 log-probabilities, accumulated in float64."""
        return -float(np.sum(self.logprobs[self.scored], dtype=np.float64))

    @property
    def mean_nll(self) -> float:
        """Token-level mean negative log-likelihood, in nats per scored token."""
        return self.total_nll / self.count

    @property
    def perplexity(self) -> float:
        return perplexity_of(self.mean_nll)


def perplexity_of(mean_nll: float) -> float:
    """exp(mean NLL); infinity when that is beyond float64 (a mean NLL above 709 nats)."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf


def score(
    model,
    text_or_ids,
    *,
    bos: bool = False,
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | None = None,
) -> Scores:
    """Score a text (str) or token ids ([N] ints) under `model` with the sliding-window protocol.

    context: tokens per window, 2..n_positions (default n_positions).
    stride: tokens between window starts, 1..context (default context // 2).
    bos: put `<|endoftext|>` before the text, so that its first token is scored too.
    batch_size: windows per forward pass. Memory: one batch's logits, batch_size x (tokens scored
        per window + 1) x vocab_size float32, plus one window's log-softmax.
    progress: a progress bar on stderr; None shows it when stderr is a terminal and there is more
        than one batch.
    """
    context, stride = window_options(model.config.n_positions, context, stride, batch_size)
    tokens = scored_sequence(model, text_or_ids, bos)  # int64 [N]

    windows = sliding_windows(len(tokens), context, stride)
    rows = min(batch_size, len(windows))  # the batch_size that matters: the windows there are
    check_memory(
        rows * (context + 1) * model.config.vocab_size * 4, f"batch_size={batch_size} ({rows} windows at once)"
    )
    logprobs = np.full(len(tokens), np.nan, dtype=np.float32)  # [N]
    window_of = np.full(len(tokens), -1, dtype=np.int64)  # [N]
    batches = window_batches(windows, batch_size)
    total_windows = sum(len(b) for b in batches)
    with progress_bar(total_windows, progress, unit="window", desc="scoring", show_above=batch_size) as bar:
        for batch in batches:
            for index, row_logprobs in zip(batch, window_logprobs(model, tokens, [windows[i] for i in batch])):
                w = windows[index]
                logprobs[w.first_scored : w.end] = row_logprobs
                window_of[w.first_scored : w.end] = index
            bar.update(len(batch))
    return Scores(tokens, logprobs, window_of, windows, context, stride, bos)


def window_batches(windows: list[Window], batch_size: int) -> list[list[int]]:
    """Indices of the windows that score something, in batches of up to `batch_size` windows of one
    shape: the same length and the same number of scored tokens (the first window, the windows in
    the middle and the last one differ)."""
    useful = [i for i, w in enumerate(windows) if w.n_scored > 0]
    shape = lambda i: (windows[i].end - windows[i].begin, windows[i].n_scored)  # noqa: E731
    batches = []
    for _, same_shape in groupby(useful, key=shape):
        group = list(same_shape)
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return batches


def window_logprobs(model, tokens: np.ndarray, batch: list[Window]) -> list[np.ndarray]:
    """One forward pass over windows of one shape -> float32 [n_scored] log-probabilities per window."""
    return [logp[np.arange(len(targets)), targets] for logp, targets in window_log_softmax(model, tokens, batch)]


def window_log_softmax(model, tokens: np.ndarray, batch: list[Window]):
    """One forward pass over windows of one shape; yields, window by window, the log-softmax at the
    positions that predict its scored tokens, float32 [n_scored, V], and those tokens, int64 [n_scored]."""
    n = batch[0].n_scored
    ids = np.stack([tokens[w.begin : w.end] for w in batch])  # [B, L]
    # The prediction of token p is made at position p - 1: the n scored tokens, the last n of the
    # window, are predicted at the n positions before the last. Only n + 1 positions are kept.
    logits = model(ids, logits_to_keep=n + 1)  # [B, n + 1, V]
    for r, w in enumerate(batch):
        # One window at a time: the log-softmax is as large as the logits, and it is not kept.
        check_finite(logits[r, :n], f"the logits of window {w.begin}..{w.end}")
        yield log_softmax(logits[r, :n]), tokens[w.first_scored : w.end]  # [n, V], [n]


def token_logprobs(model, ids, top: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each token's log-probability given the tokens before it, for one sequence that fits the
    context, and the `top` most likely tokens at each position: what an OpenAI-style `echo` of a
    prompt reports.

    ids: token ids [N], N <= n_positions, checked. Returns float32 logprobs [N] (NaN for token 0,
    which nothing predicts), top ids int64 [N, top] and their float32 log-probabilities [N, top]
    (most likely first; row 0 unused). The numbers are those of `score(model, ids)`: its one
    window, computed by the same function.
    """
    tokens = np.asarray(ids, dtype=np.int64)
    N = len(tokens)
    logprobs = np.full(N, np.nan, dtype=np.float32)
    top_ids = np.zeros((N, top), dtype=np.int64)
    top_values = np.full((N, top), np.nan, dtype=np.float32)
    if N >= 2:
        [(logp, targets)] = window_log_softmax(model, tokens, [Window(0, N, 1)])  # [N - 1, V], [N - 1]
        logprobs[1:] = logp[np.arange(N - 1), targets]
        if top:
            top_ids[1:], top_values[1:] = top_sorted(logp, top)
    return logprobs, top_ids, top_values


def scored_sequence(model, text_or_ids, bos: bool) -> np.ndarray:
    """The text's token ids, `<|endoftext|>` first when bos: int64 [N], N >= 2, checked against the vocab."""
    if isinstance(text_or_ids, str):
        if model.tokenizer is None:
            raise InputError("this model has no tokenizer: pass token ids instead of text")
        ids = model.tokenizer.encode(text_or_ids)  # refuses text that is not valid Unicode
    else:
        ids = text_or_ids
    ids = integer_array(ids, "token ids")
    if ids.ndim != 1:
        raise InputError(f"token ids must be a [N] array, got shape {ids.shape}")
    if ids.size:
        ids = check_token_ids(ids, model.config.vocab_size)[0][0]  # int64 [N], each one in the vocabulary
    ids = ids.astype(np.int64)
    if bos:
        ids = np.concatenate([[model.config.bos_token_id], ids]).astype(np.int64)
    if len(ids) < 2:
        text = "the text" + (" with <|endoftext|> before it" if bos else "")
        hint = "" if bos else ", or put <|endoftext|> before it (bos=True, --bos)"
        raise InputError(
            f"{text} is {len(ids)} token{'s' if len(ids) != 1 else ''} long: scoring needs at least 2 "
            f"(the first token has no prediction){hint}"
        )
    return ids


def window_options(n_positions: int, context, stride, batch_size, spell=lambda name: name) -> tuple[int, int]:
    """Check the options and fill in the defaults: -> (context, stride). `spell` gives an option's
    name as the caller knows it (the command line says --batch-size)."""
    context = n_positions if context is None else context
    check_integer(spell("context"), context, 2, n_positions, f"n_positions={n_positions}")
    stride = max(1, context // 2) if stride is None else stride
    check_integer(spell("stride"), stride, 1, context, f"the context ({context})")
    check_integer(spell("batch_size"), batch_size, 1, None, None)
    return context, stride
