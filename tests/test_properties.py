"""Properties that hold for every input (Hypothesis): the tokenizer's round trip, the sampling
processors' invariants, and the arithmetic behind the size checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hardening_helpers import examples
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine import GPT2Config, InputError
from engine.base.numeric import NEG_INF, softmax
from engine.generation.processors import (
    apply_temperature,
    no_repeat_ngram_filter,
    process_scores,
    repetition_penalty_filter,
    sample_choice,
    top_k_filter,
    top_p_filter,
)
from engine.state.tokenizer import _byte_alphabet, gpt2_tokenizer, load_tokenizer
from engine.state.weights import parameter_shapes

# Any str: every Unicode category but lone surrogates (not text: the tokenizer refuses them).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@examples(300)
@given(text=TEXT, allow_special=st.booleans())
def test_the_shipped_tokenizer_round_trips(text, allow_special):
    tokenizer = gpt2_tokenizer()
    assert tokenizer.decode(tokenizer.encode(text, allow_special=allow_special)) == text


@pytest.fixture(scope="module")
def own_tokenizer(tmp_path_factory):
    """A model directory's own vocabulary: the 256 bytes, a few merges, <|endoftext|>."""
    directory = tmp_path_factory.mktemp("vocab")
    alphabet = _byte_alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet, key=alphabet.get))}
    vocab |= {"th": 256, "the": 257, "Ġthe": 258, "<|endoftext|>": 259}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\nt h\nth e\nĠ the\n")
    return load_tokenizer(directory, vocab_size=260)


@examples(150)
@given(text=TEXT)
def test_an_own_vocabulary_round_trips(own_tokenizer, text):
    assert own_tokenizer.decode(own_tokenizer.encode(text)) == text


def score_rows(min_v=2, max_v=64):
    """float32 scores [B, V]: finite values of a logit's range, some ruled out (-inf), ties likely."""
    values = st.one_of(st.floats(-50, 50, width=32), st.sampled_from([0.0, 1.0, -1.0, 3.0]), st.just(float("-inf")))
    shape = st.tuples(st.integers(1, 3), st.integers(min_v, max_v))
    return shape.flatmap(lambda s: hnp.arrays(np.float32, s, elements=values)).filter(
        lambda a: np.isfinite(a).any(axis=1).all()  # every row keeps at least one token
    )


@examples(200)
@given(scores=score_rows(), k=st.one_of(st.integers(1, 80), st.sampled_from([10**30, 2**63])))
def test_top_k_keeps_exactly_k_of_the_highest(scores, k):
    out = top_k_filter(scores, k)
    for row, kept in zip(scores, out):
        candidates = np.isfinite(row)
        assert np.isfinite(kept).sum() == min(k, candidates.sum())
        assert np.array_equal(kept[np.isfinite(kept)], row[np.isfinite(kept)])  # kept scores unchanged
        if np.isfinite(kept).sum() < candidates.sum():
            assert row[np.isfinite(kept)].min() >= row[candidates & ~np.isfinite(kept)].max()  # the highest


@examples(200)
@given(scores=score_rows(), top_p=st.floats(1e-6, 1.0, exclude_max=True))
def test_top_p_keeps_the_smallest_set_reaching_p(scores, top_p):
    out = top_p_filter(scores, top_p)
    probs = softmax(scores.astype(np.float64))
    for row, kept in zip(probs, np.isfinite(out)):
        mass = row[kept].sum()
        assert kept.any()
        assert mass >= top_p - 1e-5 or kept.sum() == np.count_nonzero(row)  # it reaches p (float32 sums)
        # and no kept token could go: without the least likely one the rest stays below p
        assert mass - row[kept].min() < top_p + 1e-5
        assert row[kept].min() >= row[~kept].max(initial=0) - 1e-7  # the most probable ones


@examples(300)
@given(
    scores=score_rows(),
    temperature=st.one_of(st.floats(1e-45, 1e300), st.sampled_from([1e-320, 1e-45, 1e-30, 3.5e38, 1e308])),
    penalty=st.one_of(st.just(1.0), st.floats(1e-300, 1e300), st.sampled_from([1e-45, 1e-320, 3.5e38])),
    top_k=st.one_of(st.none(), st.integers(1, 100)),
    top_p=st.one_of(st.none(), st.floats(1e-6, 1.0)),
    ngram=st.integers(0, 3),
    seed=st.integers(0, 2**64),
)
def test_processors_never_make_nan_and_sampling_picks_an_allowed_token(
    scores, temperature, penalty, top_k, top_p, ngram, seed
):
    histories = [np.arange(0, scores.shape[1], 3) for _ in scores]
    options = dict(
        repetition_penalty=penalty, no_repeat_ngram_size=ngram, temperature=temperature, top_k=top_k, top_p=top_p
    )
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # and no floating-point warning
            out = process_scores(scores, histories, n_new=1, **options)
    except InputError as error:  # the n-gram rule left a row nothing: refused, never sampled from
        assert "rule out every token" in str(error)
        assert (no_repeat_ngram_filter(scores, histories, ngram) == NEG_INF).all(axis=1).any()
        return
    assert not np.isnan(out).any() and not np.isposinf(out).any() and out.dtype == np.float32
    assert np.isfinite(out).any(axis=1).all()
    tokens = sample_choice(out, [np.random.default_rng(seed) for _ in out])
    assert np.isfinite(out[np.arange(len(out)), tokens]).all()


@examples(200)
@given(scores=score_rows(), temperature=st.floats(1e-320, 1e300))
def test_temperature_keeps_the_best_tokens_best(scores, temperature):
    assume(temperature > 0)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = apply_temperature(scores, temperature)
    assert not np.isnan(out).any()
    best = scores == scores.max(axis=1, keepdims=True)
    assert (out[best] == out.max(axis=1, keepdims=True).repeat(scores.shape[1], axis=1)[best]).all()
    assert (out[scores == NEG_INF] == NEG_INF).all()


@examples(200)
@given(scores=score_rows(), penalty=st.floats(1e-320, 1e300))
def test_a_repetition_penalty_never_raises_a_score_above_float32(scores, penalty):
    assume(penalty > 0)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = repetition_penalty_filter(scores, [[0, 1]] * len(scores), penalty)
    assert np.isfinite(out[np.isfinite(scores)]).all()


@examples(100)
@given(
    layers=st.integers(1, 4),
    heads=st.integers(1, 4),
    head_dim=st.integers(1, 8),
    inner=st.one_of(st.none(), st.integers(1, 64)),
    vocab=st.integers(1, 300),
    positions=st.integers(1, 64),
    tied=st.booleans(),
)
def test_parameter_count_is_the_sum_of_the_shapes(layers, heads, head_dim, inner, vocab, positions, tied):
    config = GPT2Config(
        n_layer=layers,
        n_head=heads,
        n_embd=heads * head_dim,
        n_inner=inner,
        vocab_size=vocab,
        n_positions=positions,
        tie_word_embeddings=tied,
        bos_token_id=0,
        eos_token_id=0,
    )
    assert config.parameter_count == sum(math.prod(shape) for shape in parameter_shapes(config).values())
