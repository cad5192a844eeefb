"""Each logits processor against Hugging Face's processor of the same purpose, on the same scores,
plus the rules where we differ on purpose (top-k ties) and the token choice (greedy, seeded draws)."""

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engine.base.numeric import top_k_mask
from engine.generation.processors import (
    apply_temperature,
    greedy_choice,
    min_new_tokens_filter,
    no_repeat_ngram_filter,
    nucleus_size,
    process_scores,
    repetition_penalty_filter,
    row_generator,
    sample_choice,
    sample_row,
    top_k_filter,
    top_p_filter,
)

V = 50257


def distinct_scores(seed, rows=3, vocab=V, scale=1.0) -> np.ndarray:
    """float32 [rows, vocab] of normal scores, all distinct within a row (so no ties anywhere)."""
    rng = np.random.default_rng(seed)
    out = np.empty((rows, vocab), dtype=np.float32)
    for b in range(rows):
        row = (rng.standard_normal(vocab) * scale).astype(np.float32)
        while np.unique(row).size < vocab:
            _, first = np.unique(row, return_index=True)
            repeated = np.setdiff1d(np.arange(vocab), first)
            row[repeated] = (rng.standard_normal(repeated.size) * scale).astype(np.float32)
        out[b] = row
    return out


def hf(processor, scores, input_ids=None) -> np.ndarray:
    ids = torch.zeros((scores.shape[0], 1), dtype=torch.long) if input_ids is None else torch.as_tensor(input_ids)
    return processor(ids, torch.from_numpy(scores.copy())).numpy()


def assert_same_scores(ours, reference):
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(reference))
    np.testing.assert_array_equal(ours, reference)  # bit for bit, -inf included


@pytest.mark.parametrize("temperature", [0.3, 0.7, 1.0, 1.5, 2.0])
def test_temperature_matches_hf(temperature):
    scores = distinct_scores(1)
    assert_same_scores(apply_temperature(scores, temperature), hf(TemperatureLogitsWarper(temperature), scores))


@pytest.mark.parametrize("k", [1, 2, 7, 50, 1000, V - 1, V, V + 5])
def test_top_k_matches_hf_without_ties(k):
    scores = distinct_scores(2)
    ours = top_k_filter(scores, k)
    assert_same_scores(ours, hf(TopKLogitsWarper(k), scores))
    assert (np.isfinite(ours).sum(axis=1) == min(k, V)).all()


def test_top_k_keeps_exactly_k_and_breaks_ties_by_lowest_id():
    scores = np.array([[1.0, 3.0, 2.0, 3.0, 2.0, 2.0, 0.5, 2.0]], dtype=np.float32)
    # The 2nd highest is 3.0 (ids 1 and 3): k=2 keeps both; k=3 adds one of the 2.0s, the lowest id (2).
    assert np.flatnonzero(top_k_mask(scores, 2)[0]).tolist() == [1, 3]
    assert np.flatnonzero(top_k_mask(scores, 3)[0]).tolist() == [1, 2, 3]
    assert np.flatnonzero(top_k_mask(scores, 4)[0]).tolist() == [1, 2, 3, 4]
    assert np.flatnonzero(top_k_mask(scores, 1)[0]).tolist() == [1]
    # Hugging Face keeps every token tied with the k-th score: 6 tokens for k=3, where we keep 3.
    assert np.isfinite(hf(TopKLogitsWarper(3), scores)).sum() == 6
    assert np.isfinite(top_k_filter(scores, 3)).sum() == 3


def test_top_k_per_row_counts():
    scores = distinct_scores(3, rows=3, vocab=100)
    keep = top_k_mask(scores, np.array([1, 10, 100]))
    assert keep.sum(axis=1).tolist() == [1, 10, 100]


@pytest.mark.parametrize("scale", [0.5, 2.0, 6.0])
@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.5, 0.8, 0.9, 0.95, 0.999])
def test_top_p_matches_hf(top_p, scale):
    scores = distinct_scores(4, scale=scale)
    assert_same_scores(top_p_filter(scores, top_p), hf(TopPLogitsWarper(top_p), scores))


def test_top_p_after_top_k_matches_hf():
    scores = distinct_scores(5, scale=2.0)
    processors = LogitsProcessorList([TopKLogitsWarper(40), TopPLogitsWarper(0.7)])
    assert_same_scores(top_p_filter(top_k_filter(scores, 40), 0.7), hf(processors, scores))


def test_top_p_boundary_keeps_the_token_that_crosses_p_and_at_least_one():
    probs = np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32)
    scores = np.log(probs)[None, :]
    for top_p, kept in [(0.1, 1), (0.5, 1), (0.6, 2), (0.8, 2), (0.85, 3), (0.99, 4), (1.0, 4)]:
        ours = np.isfinite(top_p_filter(scores, top_p)).sum()
        assert ours == kept, (top_p, ours)
        if top_p < 1:
            assert np.isfinite(hf(TopPLogitsWarper(top_p), scores)).sum() == kept
    # The count is decided on the sorted probabilities; the nucleus of a flat distribution is found
    # through the fallback to a full sort.
    flat = np.full(V, 1.0 / V, dtype=np.float32)
    assert nucleus_size(flat, 0.5) in (V // 2, V // 2 + 1)


@pytest.mark.parametrize("penalty", [0.7, 1.3, 2.0])
def test_repetition_penalty_matches_hf(penalty):
    scores = distinct_scores(6, scale=3.0)
    rng = np.random.default_rng(6)
    histories = rng.integers(0, 300, size=(3, 40))  # repeats within a row: each is penalised once
    histories[:, :5] = np.argsort(-scores, axis=1)[:, :5]  # and some of the highest-scoring tokens
    assert_same_scores(
        repetition_penalty_filter(scores, list(histories), penalty),
        hf(RepetitionPenaltyLogitsProcessor(penalty), scores, histories),
    )


@pytest.mark.parametrize("ngram_size", [1, 2, 3, 4])
def test_no_repeat_ngram_matches_hf(ngram_size):
    scores = distinct_scores(7, rows=4, vocab=64)
    rng = np.random.default_rng(ngram_size)
    histories = rng.integers(0, 6, size=(4, 30))  # a small alphabet, so n-grams repeat
    ours = no_repeat_ngram_filter(scores, list(histories), ngram_size)
    assert_same_scores(ours, hf(NoRepeatNGramLogitsProcessor(ngram_size), scores, histories))
    assert np.isneginf(ours).any()


def test_no_repeat_ngram_with_a_short_history_bans_nothing():
    scores = distinct_scores(8, rows=1, vocab=10)
    assert_same_scores(no_repeat_ngram_filter(scores, [np.array([1, 2])], 3), scores)


@pytest.mark.parametrize("n_new", [0, 3, 4, 9])
def test_min_new_tokens_matches_hf(n_new):
    scores = distinct_scores(9)
    prompt_length, end_ids = 5, [50256, 13]
    input_ids = np.zeros((3, prompt_length + n_new), dtype=np.int64)
    reference = hf(MinNewTokensLengthLogitsProcessor(prompt_length, 4, end_ids), scores, input_ids)
    ours = min_new_tokens_filter(scores, n_new, 4, end_ids)
    assert_same_scores(ours, reference)
    assert np.isneginf(ours[:, end_ids]).all() == (n_new < 4)


def test_all_processors_in_hf_order():
    """process_scores applies them in the order of transformers' _get_logits_processor."""
    scores = distinct_scores(10, scale=3.0)
    rng = np.random.default_rng(10)
    histories = rng.integers(0, 2000, size=(3, 25))
    histories[:, 10:14] = histories[:, 0:4]  # a repeated 4-gram
    processors = LogitsProcessorList(
        [
            RepetitionPenaltyLogitsProcessor(1.2),
            NoRepeatNGramLogitsProcessor(3),
            MinNewTokensLengthLogitsProcessor(20, 8, [50256]),
            TemperatureLogitsWarper(0.8),
            TopKLogitsWarper(200),
            TopPLogitsWarper(0.9),
        ]
    )
    ours = process_scores(
        scores,
        list(histories),
        n_new=5,
        repetition_penalty=1.2,
        no_repeat_ngram_size=3,
        min_new_tokens=8,
        end_ids=[50256],
        temperature=0.8,
        top_k=200,
        top_p=0.9,
    )
    assert_same_scores(ours, hf(processors, scores, histories))


def test_greedy_skips_the_sampling_processors():
    scores = distinct_scores(11)
    ours = process_scores(scores, [[]] * 3, n_new=0, temperature=0.0, top_k=1, top_p=0.1)
    assert ours is scores  # nothing switched on for greedy: the logits themselves


def test_greedy_choice_takes_the_lowest_id_among_equal_scores():
    scores = np.array([[0.0, 2.0, 1.0, 2.0], [5.0, 5.0, 5.0, 5.0]], dtype=np.float32)
    assert greedy_choice(scores).tolist() == [1, 0]
    assert greedy_choice(scores).dtype == np.int64


def test_sampling_follows_the_distribution_and_never_draws_a_ruled_out_token():
    probs = np.array([0.5, 0.0, 0.25, 0.125, 0.125], dtype=np.float32)
    with np.errstate(divide="ignore"):
        scores = np.log(probs)
    generator = row_generator(0, 0)
    draws = np.array([sample_row(scores, generator) for _ in range(20000)])
    counts = np.bincount(draws, minlength=5) / draws.size
    assert counts[1] == 0
    assert np.abs(counts - probs).max() < 0.015  # ~5 standard deviations of a binomial at n=20000


def test_seeded_draws_are_reproducible_and_rows_are_independent():
    scores = distinct_scores(12, rows=3, scale=0.5)
    first = sample_choice(scores, [row_generator(7, j) for j in range(3)])
    again = sample_choice(scores, [row_generator(7, j) for j in range(3)])
    assert first.tolist() == again.tolist()
    # Row 2 alone, with its own stream, draws what it drew beside the other rows.
    alone = sample_choice(scores[2:], [row_generator(7, 2)])
    assert alone.tolist() == first[2:].tolist()
    # A different sample index is a different stream.
    assert row_generator(7, 0).random() != row_generator(7, 1).random()
