"""OpenAI's sampling controls as engine processors (logit_bias, presence_penalty, frequency_penalty),
and the log-probabilities of a prompt's own tokens (what an OpenAI `echo` reports), which must be
the numbers `model.score` gives."""

import numpy as np
import pytest

from engine import InputError
from engine.base.numeric import log_softmax
from engine.generation.processors import logit_bias_filter, presence_frequency_filter, process_scores
from engine.scoring import token_logprobs

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread while the module runs (conftest.py)


rng = np.random.default_rng(0)


def test_logit_bias_adds_to_each_row():
    scores = rng.standard_normal((3, 50)).astype(np.float32)
    out = logit_bias_filter(scores, {4: -100.0, 7: 2.5})
    expected = scores.copy()
    expected[:, 4] += np.float32(-100.0)
    expected[:, 7] += np.float32(2.5)
    assert out.dtype == np.float32 and np.array_equal(out, expected)
    assert np.array_equal(scores, scores.copy())  # the input is left alone


def test_presence_and_frequency_follow_openais_formula():
    """mu[j] - c[j] * frequency - (c[j] > 0) * presence, c[j] counting the generated tokens only."""
    scores = rng.standard_normal((2, 20)).astype(np.float32)
    prompt = [3, 3, 5]  # not counted
    generated = [[7, 7, 7, 2], [5, 9]]
    histories = [prompt + g for g in generated]
    presence, frequency = 0.6, 0.35
    out = presence_frequency_filter(scores, [np.array(h) for h in histories], 4, presence, frequency)
    out2 = presence_frequency_filter(scores[1:], [np.array(histories[1])], 2, presence, frequency)
    for b, new, got in ((0, generated[0], out[0]), (1, generated[1], out2[0])):
        expected = [
            scores[b, j] - new.count(j) * frequency - (new.count(j) > 0) * presence for j in range(scores.shape[1])
        ]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert out[0, 3] == scores[0, 3]  # a prompt token is not penalised
    assert np.array_equal(presence_frequency_filter(scores, histories, 0, presence, frequency), scores)


def test_process_scores_applies_them_before_the_rest():
    scores = rng.standard_normal((1, 30)).astype(np.float32)
    history = [np.array([1, 2, 2])]
    got = process_scores(
        scores, history, n_new=2, logit_bias={0: 1.0}, presence_penalty=0.5, frequency_penalty=0.25, temperature=0.5
    )
    expected = presence_frequency_filter(logit_bias_filter(scores, {0: 1.0}), history, 2, 0.5, 0.25) / np.float32(0.5)
    assert np.array_equal(got, expected)


def test_generation_takes_the_openai_options(tiny_model):
    prompt = "ROMEO:"
    plain = tiny_model.generate(prompt, max_new_tokens=30, stop_at_eos=False)
    forced = tiny_model.generate(prompt, max_new_tokens=5, logit_bias={262: 100.0})
    assert forced.token_ids == [262] * 5
    banned = tiny_model.generate(prompt, max_new_tokens=30, stop_at_eos=False, logit_bias={plain.token_ids[0]: -100})
    assert banned.token_ids[0] != plain.token_ids[0]
    penalised = tiny_model.generate(prompt, max_new_tokens=30, stop_at_eos=False, frequency_penalty=2.0)
    assert len(set(penalised.token_ids)) > len(set(plain.token_ids))  # greedy text repeats itself less
    beams = tiny_model.generate(prompt, max_new_tokens=5, num_beams=3, logit_bias={262: -100.0}, presence_penalty=1.0)
    assert 262 not in beams.token_ids


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(presence_penalty="a lot"), "presence_penalty must be a finite number"),
        (dict(frequency_penalty=float("nan")), "frequency_penalty must be a finite number"),
        (dict(logit_bias={-1: 1.0}), "logit_bias must be a mapping of token ids"),
        (dict(logit_bias={5: "up"}), "logit_bias must be a mapping of token ids"),
        (dict(logit_bias=[1, 2]), "logit_bias must be a mapping of token ids"),
        (dict(logit_bias={50257: 1.0}), "logit_bias: token id 50257 is out of range for vocab_size 50257"),
    ],
)
def test_bad_openai_options_are_refused(tiny_model, options, message):
    with pytest.raises(InputError, match=message):
        tiny_model.generate("ROMEO:", max_new_tokens=2, **options)


def test_token_logprobs_are_the_scores_of_model_score(tiny_model):
    ids = tiny_model.tokenizer.encode("First Citizen:\nBefore we proceed any further, hear me speak.")
    logprobs, top_ids, top_values = token_logprobs(tiny_model, ids, top=4)
    scores = tiny_model.score(ids)
    assert np.isnan(logprobs[0]) and np.isnan(scores.logprobs[0])
    assert np.array_equal(logprobs[1:], scores.logprobs[1:])  # the same numbers, bit for bit
    reference = log_softmax(tiny_model(ids)[:-1])  # [T - 1, V]
    for t in range(1, len(ids)):
        assert top_ids[t].tolist() == np.argsort(-reference[t - 1], kind="stable")[:4].tolist()
        assert list(top_values[t]) == sorted(top_values[t], reverse=True)
        if ids[t] in top_ids[t]:
            assert top_values[t][top_ids[t].tolist().index(ids[t])] == logprobs[t]
    one, ids1, values1 = token_logprobs(tiny_model, ids[:1], top=2)
    assert np.isnan(one).all() and one.shape == (1,) and ids1.shape == values1.shape == (1, 2)
