"""Logits processors and the choice of the next token.

Each processor is a small function from scores to scores: float32 [B, V] in (one row per sequence
being generated), float32 [B, V] out, a new array. A token a processor rules out gets -inf. They
have the semantics of Hugging Face's processors of the same purpose, so that results can be
compared token for token, with one deliberate difference (top-k, see `top_k_filter`):

    suppress_from               (none: Hugging Face would generate an embedding's padding ids)
    logit_bias_filter           SequenceBiasLogitsProcessor for one-token sequences (OpenAI's logit_bias)
    presence_frequency_filter   OpenAI's presence_penalty and frequency_penalty (Hugging Face has none)
    repetition_penalty_filter   RepetitionPenaltyLogitsProcessor
    no_repeat_ngram_filter      NoRepeatNGramLogitsProcessor
    min_new_tokens_filter       MinNewTokensLengthLogitsProcessor
    apply_temperature           TemperatureLogitsWarper
    top_k_filter                TopKLogitsWarper (exactly k survive here; ties broken by token id)
    top_p_filter                TopPLogitsWarper

`process_scores` applies them in the order Hugging Face's `generate()` does
(`GenerationMixin._get_logits_processor`): the bias and the penalties that shape any search first,
then, only when sampling, temperature, top-k and top-p. OpenAI's two (logit_bias, then presence and
frequency penalties) come before Hugging Face's, on the model's logits, as OpenAI describes them
and as vLLM applies them.

Choosing: `greedy_choice` takes the highest score (the lowest token id among equal scores, as
np.argmax and torch.argmax do); `sample_choice` draws from softmax(scores) with one random
generator per row, by inverse CDF over the float32 probabilities in token-id order, so a row's
draw depends only on its own scores and its own generator.

Legend: B = rows, V = vocab_size.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..base.checks import FLOAT32_MAX, FLOAT32_TINY
from ..base.errors import InputError
from ..base.numeric import NEG_INF, softmax, top_k_mask

# ----------------------------------------------------------------------------------------------
# Processors that shape every search (greedy, sampling, beams)


def logit_bias_filter(scores, bias: dict[int, float]):  # [B, V] -> [B, V]
    """Add bias[token] to that token's score in every row (OpenAI's `logit_bias`: -100 all but rules
    a token out, +100 all but forces it)."""
    out = scores.copy()
    ids = np.fromiter(bias.keys(), dtype=np.int64, count=len(bias))  # [n]
    out[:, ids] += np.fromiter(bias.values(), dtype=np.float32, count=len(bias))  # [B, n]
    return out


def presence_frequency_filter(scores, histories, n_new: int, presence: float, frequency: float):  # [B, V] -> [B, V]
    """OpenAI's penalties on the tokens a row has generated so far (not its prompt):

        score[j] -= count[j] * frequency + (count[j] > 0) * presence

    count[j]: how often token j is among the row's n_new generated tokens, the last n_new of
    histories[b]. Positive values make repeats less likely, negative ones more likely.
    """
    out = scores.copy()
    if n_new == 0:
        return out
    for b, history in enumerate(histories):
        generated = np.asarray(history, dtype=np.int64)[len(history) - n_new :]  # [n_new]
        ids, counts = np.unique(generated, return_counts=True)  # [n] distinct ids, [n]
        out[b, ids] -= counts.astype(np.float32) * np.float32(frequency) + np.float32(presence)
    return out


def repetition_penalty_filter(scores, histories, penalty: float):  # [B, V] -> [B, V]
    """Make the tokens already in each row's sequence less likely (CTRL, Keskar et al. 2019).

    histories[b]: the token ids row b has seen (its prompt without padding, then what it has
    generated). Each distinct one is penalised once: a negative score is multiplied by `penalty`,
    a positive one divided by it, so penalty > 1 always lowers it (< 1 raises it).
    """
    out = scores.copy()
    # A penalty beyond float32's range acts as the nearest float32 (never 0 or infinity), and a
    # score it pushes past float32's range stops at the largest float32: never NaN, never +inf.
    factor = np.float32(min(max(penalty, FLOAT32_TINY), FLOAT32_MAX))
    for b, history in enumerate(histories):
        seen = np.unique(np.asarray(history, dtype=np.int64))  # [n] distinct ids
        values = out[b, seen]
        with np.errstate(over="ignore", under="ignore"):
            penalised = np.where(values < 0, values * factor, values / factor)
        out[b, seen] = np.where(values == NEG_INF, NEG_INF, np.clip(penalised, -FLOAT32_MAX, FLOAT32_MAX))
    return out


def no_repeat_ngram_filter(scores, histories, ngram_size: int):  # [B, V] -> [B, V]
    """Forbid every token that would complete an n-gram already in the row's sequence.

    The last n-1 tokens of histories[b] are matched against every n-gram of histories[b]; where
    an n-gram starts with them, its last token is ruled out. (n = 1 rules out every seen token.)
    """
    out = scores.copy()
    for b, history in enumerate(histories):
        history = np.asarray(history, dtype=np.int64)  # [n_b]
        if history.size < ngram_size:
            continue
        ngrams = sliding_window_view(history, ngram_size)  # [n_b - ngram_size + 1, ngram_size]
        suffix = history[history.size - ngram_size + 1 :]  # [ngram_size - 1]
        completes = (ngrams[:, :-1] == suffix).all(axis=1)  # [n_b - ngram_size + 1]
        out[b, ngrams[completes, -1]] = NEG_INF
    return out


def min_new_tokens_filter(scores, n_new: int, min_new_tokens: int, end_ids):  # [B, V] -> [B, V]
    """Forbid the end tokens (end-of-text, stop ids) while fewer than `min_new_tokens` are generated."""
    out = scores.copy()
    if n_new < min_new_tokens and len(end_ids):
        out[:, np.asarray(end_ids, dtype=np.int64)] = NEG_INF
    return out


# ----------------------------------------------------------------------------------------------
# Processors for sampling only


def apply_temperature(scores, temperature: float):  # [B, V] -> [B, V]
    """Divide by the temperature (> 0): below 1 sharpens the distribution, above 1 flattens it.

    At the edges of float32 the distribution is kept, not the numbers: a temperature so small that
    scores / temperature would overflow (or that is 0 in float32) divides each row's scores less
    their maximum, so the most likely tokens keep score 0 and the others go to -inf (sampling
    becomes a draw among the tied best: greedy in the limit); a temperature beyond float32's range
    acts as its largest value (a uniform draw in the limit). Ruled-out tokens stay -inf.
    """
    t = np.float32(min(temperature, FLOAT32_MAX))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scaled = scores / t
        if np.isfinite(scaled[scores != NEG_INF]).all():
            return scaled  # every temperature in practice: exactly Hugging Face's division
        top = scores.max(axis=-1, keepdims=True)  # [B, 1]
        shifted = scores - np.where(np.isfinite(top), top, np.float32(0))  # [B, V], <= 0
        return np.where(shifted == 0, np.float32(0), shifted / t).astype(np.float32)


def top_k_filter(scores, k: int):  # [B, V] -> [B, V]
    """Keep the k highest scores of each row, rule out the rest.

    Exactly k tokens survive: among tokens tied with the k-th highest score, those with the lowest
    ids are kept. (Hugging Face's TopKLogitsWarper keeps every token tied with the k-th score, so
    it can keep more than k; without ties at the k-th score the two agree.)
    """
    return np.where(top_k_mask(scores, k), scores, NEG_INF)


def suppress_from(scores, first: int):  # [B, V] -> [B, V]
    """Rule out every id from `first` on: the padding rows of an embedding larger than the
    tokenizer (nanoGPT pads GPT-2's 50257 to 50304), which no text decodes to."""
    out = scores.copy()
    out[:, first:] = NEG_INF
    return out


def nucleus_size(probs, top_p: float) -> int:
    """How many of the most probable tokens it takes for their probability to reach `top_p`.

    probs: float32 [V]. The smallest n with p_(1) + ... + p_(n) >= top_p, where p_(1) >= p_(2) >= ...
    are the probabilities in decreasing order; at least 1; every token with nonzero probability if
    the sum never reaches top_p. The most probable tokens are found with np.partition over the 64,
    512, 4096, ... largest, so a peaked distribution is never fully sorted.

    The running sum is accumulated in float64, as torch's CPU cumsum accumulates float32 in double:
    a float32 running sum over the tens of thousands of tokens of a flat distribution drifts by
    1e-4 and would move the boundary by dozens of tokens. It is the only float64 in generation:
    one vector of at most V partial sums, not model arithmetic.
    """
    V = probs.shape[0]
    m = 64
    while True:
        m = min(m, V)
        largest = np.sort(np.partition(probs, V - m)[V - m :])[::-1]  # [m], decreasing
        reached = np.flatnonzero(np.cumsum(largest, dtype=np.float64) >= top_p)
        if reached.size:
            return int(reached[0]) + 1
        if m == V:
            return max(1, int(np.count_nonzero(probs)))
        m *= 8


def top_p_filter(scores, top_p: float):  # [B, V] -> [B, V]
    """Nucleus filtering (Holtzman et al. 2019): keep the smallest set of most probable tokens
    whose probability reaches top_p (softmax of this row's scores), at least one token.

    The boundary is Hugging Face's: a token is kept when the tokens more probable than it hold
    less than top_p, so the token that crosses top_p is kept, and a set that reaches top_p exactly
    stops there. Which tokens the n kept are is decided by `top_k_mask` (ties at the boundary go
    to the lowest ids). Hugging Face compares float32 roundings of its cumulative sums (taken
    from the least probable token up) with 1 - top_p; the two can differ only when a cumulative
    probability lands within float32 rounding (about 1e-7) of top_p.
    """
    if top_p >= 1.0:
        return scores.copy()
    probs = softmax(scores)  # [B, V] float32
    sizes = [nucleus_size(row[row > 0], top_p) for row in probs]  # B ints; ruled-out tokens have 0
    return np.where(top_k_mask(scores, np.array(sizes)), scores, NEG_INF)


# ----------------------------------------------------------------------------------------------
# All of them, in Hugging Face's order


def process_scores(
    scores,
    histories,
    *,
    n_new: int,
    logit_bias: dict[int, float] | None = None,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
    repetition_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    min_new_tokens: int = 0,
    end_ids=(),
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    n_tokens: int | None = None,
):
    """Apply the processors that are switched on, in the order of Hugging Face's `generate()`,
    after ruling out the ids from `n_tokens` on (the tokenizer's size, when the embedding is larger).

    scores: float32 [B, V] (logits, or log-probabilities in beam search, as Hugging Face does);
    histories[b]: the ids of row b's sequence so far (prompt without padding, then new tokens;
    needed only with the penalties or no_repeat_ngram_size);
    n_new: tokens generated so far. temperature 0 means greedy: the sampling processors
    (temperature, top-k, top-p) are skipped, as Hugging Face skips them without do_sample.
    Returns float32 [B, V].
    """
    if n_tokens is not None and n_tokens < scores.shape[-1]:
        scores = suppress_from(scores, n_tokens)
    if logit_bias:
        scores = logit_bias_filter(scores, logit_bias)
    if presence_penalty != 0.0 or frequency_penalty != 0.0:
        scores = presence_frequency_filter(scores, histories, n_new, presence_penalty, frequency_penalty)
    if repetition_penalty != 1.0:
        scores = repetition_penalty_filter(scores, histories, repetition_penalty)
    if no_repeat_ngram_size > 0:
        scores = no_repeat_ngram_filter(scores, histories, no_repeat_ngram_size)
    if min_new_tokens > 0:
        scores = min_new_tokens_filter(scores, n_new, min_new_tokens, end_ids)
    if temperature > 0:
        check_choice_left(scores, n_new)  # the sampling processors would make NaN of an empty row
        if temperature != 1.0:
            scores = apply_temperature(scores, temperature)
        if top_k is not None:
            scores = top_k_filter(scores, top_k)
        if top_p is not None and top_p < 1.0:
            scores = top_p_filter(scores, top_p)
    return scores


# ----------------------------------------------------------------------------------------------
# Choosing the next token


def check_choice_left(scores, n_new: int) -> None:
    """Every row must keep a token to choose: options that rule out the whole vocabulary (a
    no_repeat_ngram_size of 1 after a history holding every token of a small vocabulary) cannot
    go on, and sampling from nothing would draw from NaN."""
    empty = np.flatnonzero((scores == NEG_INF).all(axis=-1))
    if empty.size:
        raise InputError(
            f"the options rule out every token for new token {n_new + 1} of row {int(empty[0])} "
            "(no_repeat_ngram_size, min_new_tokens and the stop ids leave nothing to choose)"
        )


def greedy_choice(scores) -> np.ndarray:  # [B, V] -> int64 [B]
    """The highest-scoring token of each row (the lowest id among equal scores)."""
    return np.argmax(scores, axis=-1).astype(np.int64)


def sample_row(scores_row, generator: np.random.Generator) -> int:
    """Draw one token id from softmax(scores_row), float32 [V], with one uniform from `generator`.

    Inverse CDF: the cumulative float32 probabilities in token-id order, and the first token whose
    cumulative probability exceeds u * total, u uniform in [0, 1). A ruled-out token (score -inf,
    probability 0) never adds to the sum, so it is never drawn.
    """
    probs = softmax(scores_row)  # [V]
    cumulative = np.cumsum(probs)  # [V], float32, summed in order
    u = generator.random(dtype=np.float32)
    token = int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))
    if token >= probs.shape[0]:  # u * total rounded up to the total: take the last possible token
        token = int(np.flatnonzero(probs)[-1])
    return token


def sample_choice(scores, generators) -> np.ndarray:  # [B, V] -> int64 [B]
    """One draw per row, row b from generators[b] (see `sample_row`)."""
    return np.array([sample_row(row, g) for row, g in zip(scores, generators)], dtype=np.int64)


def row_generator(seed: int, sample_index: int) -> np.random.Generator:
    """The random stream of sample `sample_index` of a prompt: PCG64 seeded from
    SeedSequence([seed, sample_index]). It does not depend on the other rows of the batch, so a
    prompt's samples are the same alone or in a batch, and sample 0 of n is the single sample."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, sample_index])))
