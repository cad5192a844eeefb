"""Generation against Hugging Face generate() on the same weights: greedy (with the processors that
shape greedy search) and beam search, token for token, on the tiny Shakespeare model and on
synthetic checkpoints; batches against single prompts; seeded sampling; log-probabilities."""

import numpy as np
import pytest
import torch
from conftest import tolerance
from reference import hf_model

from engine import GPT2, InputError
from engine.base.config import GPT2Config
from engine.base.numeric import log_softmax
from engine.generation.prompts import prefill

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread while the module runs (conftest.py)


PROMPTS = ["ROMEO:", "KING:\nWhat say you", "First Citizen:\nBefore we proceed any further, hear me speak.", "O"]
NEWLINE = 198  # "\n": frequent in Shakespeare, so as a stop id it ends hypotheses early


@pytest.fixture(scope="module")
def synthetic_dir(synthetic):
    return synthetic("generation-synthetic", GPT2Config(n_layer=3, n_head=3, n_embd=48, n_positions=96), seed=11)


def hf_generate(model_dir, prompts, *, end_ids=(50256,), **options):
    """New token ids of each returned sequence from transformers' generate(), on a left-padded
    batch, each cut after its first end token (what follows it is padding)."""
    lengths = [len(p) for p in prompts]
    longest = max(lengths)
    ids = torch.full((len(prompts), longest), 50256, dtype=torch.long)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, longest - len(p) :] = torch.tensor(p)
        mask[i, longest - len(p) :] = 1
    with torch.no_grad():
        out = hf_model(model_dir).generate(
            ids,
            attention_mask=mask,
            eos_token_id=list(end_ids),
            pad_token_id=50256,
            return_dict_in_generate=True,
            output_scores=True,
            **options,
        )
    new = []
    for row in out.sequences[:, longest:].tolist():
        ends = [i for i, t in enumerate(row) if t in end_ids]
        new.append(row[: ends[0] + 1] if ends else row)
    scores = out.sequences_scores.numpy() if getattr(out, "sequences_scores", None) is not None else None
    return new, scores


def ids_of(model, prompts):
    return [model.tokenizer.encode(p) for p in prompts]


# ----------------------------------------------------------------------------------------------
# Greedy


GREEDY_SETTINGS = [
    {},
    {"repetition_penalty": 1.3},
    {"no_repeat_ngram_size": 2},
    {"min_new_tokens": 6, "stop_token_ids": [NEWLINE]},
    {"repetition_penalty": 0.8, "no_repeat_ngram_size": 3, "min_new_tokens": 3, "stop_token_ids": [NEWLINE]},
]


def hf_options(settings):
    options = {k: v for k, v in settings.items() if k != "stop_token_ids"}
    return options, (50256, *settings.get("stop_token_ids", ()))


@pytest.mark.parametrize("settings", GREEDY_SETTINGS, ids=lambda s: ",".join(s) or "plain")
def test_greedy_matches_hf_on_the_tiny_model(tiny_model, tiny_model_dir, settings):
    options, end_ids = hf_options(settings)
    for ids in ids_of(tiny_model, PROMPTS):
        ours = tiny_model.generate(ids, max_new_tokens=40, temperature=0, **settings)
        (reference,), _ = hf_generate(
            tiny_model_dir, [ids], end_ids=end_ids, max_new_tokens=40, do_sample=False, **options
        )
        assert ours.token_ids == reference


@pytest.mark.parametrize(
    "settings",
    [
        {"no_repeat_ngram_size": 1},
        {"repetition_penalty": 1.5, "no_repeat_ngram_size": 2},
        {"repetition_penalty": 3.0, "min_new_tokens": 4, "stop_token_ids": [13]},
    ],
    ids=lambda s: ",".join(s),
)
def test_greedy_matches_hf_on_synthetic_checkpoints(synthetic_dir, small_dir, settings):
    options, end_ids = hf_options(settings)
    for model_dir in (synthetic_dir, small_dir):
        model = GPT2.from_pretrained(model_dir)
        for ids in ids_of(model, ["Hello there, friend", "A"]):
            ours = model.generate(ids, max_new_tokens=30, temperature=0, **settings)
            (reference,), _ = hf_generate(
                model_dir, [ids], end_ids=end_ids, max_new_tokens=30, do_sample=False, **options
            )
            assert ours.token_ids == reference


def test_greedy_batch_matches_hf_batch(tiny_model, tiny_model_dir):
    """Left-padded batches, rows ending at different steps; the penalty ignores padding in both."""
    prompts = ids_of(tiny_model, PROMPTS)
    for options in ({}, {"repetition_penalty": 1.2}):
        ours = tiny_model.generate(prompts, max_new_tokens=24, temperature=0, stop_token_ids=[NEWLINE], **options)
        reference, _ = hf_generate(
            tiny_model_dir, prompts, end_ids=(50256, NEWLINE), max_new_tokens=24, do_sample=False, **options
        )
        assert [r.token_ids for r in ours] == reference
        assert len({len(r.token_ids) for r in ours}) > 1  # some rows stopped early


# ----------------------------------------------------------------------------------------------
# Batches: a prompt's result in a batch is its result alone


def step_logits(model, prompts, continuations):
    """Teacher-forced logits of every step: prefill the left-padded prompts, then feed each row's
    continuation one token per step. Returns float32 [B, steps, V]."""
    cache, logits = prefill(model, prompts, len(continuations[0]), 1)
    out = [logits]
    for step in range(len(continuations[0]) - 1):
        tokens = np.array([[c[step]] for c in continuations])
        out.append(model(tokens, cache=cache)[:, -1])
    return np.stack(out, axis=1)


def test_greedy_in_a_padded_batch_equals_alone(tiny_model):
    prompts = ids_of(tiny_model, PROMPTS)
    alone = [tiny_model.generate(p, max_new_tokens=32, temperature=0, stop_at_eos=False) for p in prompts]
    batch = tiny_model.generate(prompts, max_new_tokens=32, temperature=0, stop_at_eos=False)
    assert [r.token_ids for r in batch] == [r.token_ids for r in alone]
    continuations = [r.token_ids for r in alone]
    batched_logits = step_logits(tiny_model, prompts, continuations)  # [4, 32, V]
    worst = 0.0
    for b, (p, c) in enumerate(zip(prompts, continuations)):
        single = step_logits(tiny_model, [p], [c])[0]  # [32, V]
        diff = float(np.abs(batched_logits[b] - single).max())
        assert diff <= tolerance(single), (b, diff)
        worst = max(worst, diff)
        np.testing.assert_allclose(batch[b].logprobs, alone[b].logprobs, atol=2 * tolerance(single), rtol=0)
    print(f"max |logits in batch - alone| over 4 prompts x 32 steps: {worst:.2e}")


def test_several_samples_per_prompt_and_prompts_per_batch(tiny_model):
    sample = {"temperature": 1.0, "seed": 3, "max_new_tokens": 8}
    results = tiny_model.generate(["ROMEO:", "KING:\nWhat say you"], num_return_sequences=3, **sample)
    assert len(results) == 6 and all(len(r.token_ids) <= 8 for r in results)
    # prompt-major: results 0..2 are samples 0..2 of "ROMEO:"; sample 0 is the single sample
    assert results[0].token_ids == tiny_model.generate("ROMEO:", **sample).token_ids
    assert results[3].token_ids == tiny_model.generate("KING:\nWhat say you", **sample).token_ids
    assert (
        results[4].token_ids
        == tiny_model.generate(["KING:\nWhat say you"], num_return_sequences=2, **sample)[1].token_ids
    )
    assert len({tuple(r.token_ids) for r in results[:3]}) > 1  # different streams, different samples


# ----------------------------------------------------------------------------------------------
# Seeded sampling


SAMPLING = {"temperature": 0.9, "top_k": 200, "top_p": 0.95, "repetition_penalty": 1.1}


def test_sampling_is_reproducible(tiny_model):
    a = tiny_model.generate("ROMEO:", max_new_tokens=30, seed=1234, **SAMPLING)
    b = tiny_model.generate("ROMEO:", max_new_tokens=30, seed=1234, **SAMPLING)
    c = tiny_model.generate("ROMEO:", max_new_tokens=30, seed=1235, **SAMPLING)
    assert a.token_ids == b.token_ids and a.text == b.text
    assert a.token_ids != c.token_ids


def test_a_prompt_samples_the_same_alone_and_in_a_batch(tiny_model):
    prompts = ["First Citizen:\nBefore we proceed any further, hear me speak.", "JULIET:", "O"]
    for options in (SAMPLING, {"temperature": 1.0}, {"temperature": 0.7, "top_k": 5}):
        batch = tiny_model.generate(prompts, max_new_tokens=30, seed=99, stop_at_eos=False, **options)
        for prompt, in_batch in zip(prompts, batch):
            alone = tiny_model.generate(prompt, max_new_tokens=30, seed=99, stop_at_eos=False, **options)
            assert in_batch.token_ids == alone.token_ids


def test_top_k_1_is_greedy(tiny_model):
    greedy = tiny_model.generate("ROMEO:", max_new_tokens=20, temperature=0)
    assert (
        tiny_model.generate("ROMEO:", max_new_tokens=20, temperature=1.0, top_k=1, seed=5).token_ids == greedy.token_ids
    )


# ----------------------------------------------------------------------------------------------
# Log-probabilities are the model's own


def test_logprobs_are_the_model_log_softmax_of_each_new_token(tiny_model):
    ids = tiny_model.tokenizer.encode("ROMEO:")
    for options in ({"temperature": 0}, {"temperature": 0.5, "top_k": 3, "seed": 2}, {"num_beams": 3}):
        r = tiny_model.generate(ids, max_new_tokens=12, **options)
        full = log_softmax(tiny_model(ids + r.token_ids))  # [T, V], one forward pass
        expected = full[np.arange(len(ids) - 1, len(ids) + len(r.token_ids) - 1), r.token_ids]
        assert len(r.logprobs) == len(r.token_ids)
        np.testing.assert_allclose(r.logprobs, expected, atol=2e-4, rtol=0)


# ----------------------------------------------------------------------------------------------
# Beam search


BEAM_GRID = [
    # (num_beams, length_penalty, early_stopping, num_return_sequences, stop ids)
    (2, 1.0, False, 1, ()),
    (3, 1.0, True, 2, (NEWLINE,)),
    (4, 0.0, "never", 4, (NEWLINE,)),
    (4, 2.0, False, 2, (NEWLINE,)),
    (3, -1.0, "never", 1, ()),
    (4, 1.0, True, 3, ()),
    (2, 2.0, "never", 2, (NEWLINE,)),
    (5, 0.5, False, 5, (NEWLINE,)),
]


def assert_same_beams(ours, reference, scores):
    assert [r.token_ids for r in ours] == reference
    ours_scores = np.array([r.score for r in ours], dtype=np.float32)
    np.testing.assert_allclose(ours_scores, scores, atol=tolerance(scores), rtol=0)


@pytest.mark.parametrize("num_beams,length_penalty,early_stopping,n_return,stop_ids", BEAM_GRID)
def test_beam_search_matches_hf_on_the_tiny_model(
    tiny_model, tiny_model_dir, num_beams, length_penalty, early_stopping, n_return, stop_ids
):
    options = dict(
        num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping, num_return_sequences=n_return
    )
    for ids in ids_of(tiny_model, PROMPTS[:3]):
        ours = tiny_model.generate(ids, max_new_tokens=16, stop_token_ids=list(stop_ids), **options)
        ours = ours if isinstance(ours, list) else [ours]
        reference, scores = hf_generate(
            tiny_model_dir, [ids], end_ids=(50256, *stop_ids), max_new_tokens=16, do_sample=False, **options
        )
        assert_same_beams(ours, reference, scores)


def test_beam_search_with_processors_matches_hf(tiny_model, tiny_model_dir):
    settings = {"repetition_penalty": 1.4, "no_repeat_ngram_size": 2, "min_new_tokens": 5}
    for ids in ids_of(tiny_model, PROMPTS[:2]):
        ours = tiny_model.generate(
            ids, max_new_tokens=14, num_beams=3, num_return_sequences=3, stop_token_ids=[NEWLINE], **settings
        )
        reference, scores = hf_generate(
            tiny_model_dir,
            [ids],
            end_ids=(50256, NEWLINE),
            max_new_tokens=14,
            num_beams=3,
            num_return_sequences=3,
            do_sample=False,
            **settings,
        )
        assert_same_beams(ours, reference, scores)


def test_beam_search_on_a_batch_of_prompts_matches_hf(tiny_model, tiny_model_dir):
    prompts = ids_of(tiny_model, PROMPTS)
    options = dict(num_beams=3, num_return_sequences=2, early_stopping=True)
    ours = tiny_model.generate(prompts, max_new_tokens=12, stop_token_ids=[NEWLINE], **options)
    reference, scores = hf_generate(
        tiny_model_dir, prompts, end_ids=(50256, NEWLINE), max_new_tokens=12, do_sample=False, **options
    )
    assert_same_beams(ours, reference, scores)
    # ... and each prompt's beams are those it gets alone
    for i, ids in enumerate(prompts):
        alone = tiny_model.generate(ids, max_new_tokens=12, stop_token_ids=[NEWLINE], **options)
        assert [r.token_ids for r in alone] == [r.token_ids for r in ours[2 * i : 2 * i + 2]]


@pytest.mark.parametrize(
    "num_beams,length_penalty,early_stopping", [(2, 1.0, False), (4, 2.0, "never"), (3, 0.0, True)]
)
def test_beam_search_matches_hf_on_synthetic_checkpoints(
    synthetic_dir, small_dir, num_beams, length_penalty, early_stopping
):
    options = dict(
        num_beams=num_beams,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        num_return_sequences=2,
        no_repeat_ngram_size=1,
    )
    for model_dir in (synthetic_dir, small_dir):
        model = GPT2.from_pretrained(model_dir)
        ids = model.tokenizer.encode("Hello there, friend")
        ours = model.generate(ids, max_new_tokens=12, stop_token_ids=[13, 11], **options)
        reference, scores = hf_generate(
            model_dir, [ids], end_ids=(50256, 13, 11), max_new_tokens=12, do_sample=False, **options
        )
        assert_same_beams(ours, reference, scores)


def test_beam_results_report_how_they_ended(tiny_model):
    results = tiny_model.generate(
        "ROMEO:", max_new_tokens=16, num_beams=4, num_return_sequences=4, stop_token_ids=[NEWLINE]
    )
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    for r in results:
        if r.finish_reason == "stop":
            assert r.token_ids[-1] == NEWLINE and r.text == tiny_model.tokenizer.decode(r.token_ids[:-1])
        else:
            assert r.finish_reason == "length" and len(r.token_ids) == 16
            assert r.text == tiny_model.tokenizer.decode(r.token_ids)


# ----------------------------------------------------------------------------------------------
# Options that are refused


@pytest.mark.parametrize(
    "options,message",
    [
        ({"temperature": -0.5}, "temperature must be a number >= 0"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"repetition_penalty": 0}, "repetition_penalty must be a number > 0"),
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"stop": [""]}, "stop must be non-empty strings"),
        ({"stop": 5}, "stop must be non-empty strings, got 5"),
        ({"stop_token_ids": 2.5}, r"stop_token_ids must be token ids \(integers >= 0\), got 2.5"),
        ({"early_stopping": "sometimes"}, "early_stopping must be"),
        ({"num_beams": 2, "temperature": 0.7}, "beam search is deterministic"),
        ({"top_k": 5}, "top_k applies to sampling: give temperature > 0"),
        ({"temperature": None}, "temperature must be a number >= 0"),
        ({"num_beams": 2, "top_p": 0.9}, "top_p applies to sampling"),
        ({"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences=3 is more than num_beams=2"),
        ({"temperature": 0, "num_return_sequences": 2}, "needs sampling"),
        ({"max_new_tokens": 300}, "max_new_tokens=300 would pass the context of 256 tokens"),
        ({"stop_token_ids": [50257]}, "token id 50257 is out of range"),
        ({"top_n": 3}, "unknown generation option 'top_n'"),
    ],
)
def test_bad_options_are_refused(tiny_model, options, message):
    with pytest.raises(InputError, match=message):
        tiny_model.generate("ROMEO:", **options)


@pytest.mark.parametrize(
    "prompt,message",
    [
        ("", "the prompt is empty"),
        (["ROMEO:", ""], "prompt 1 is empty"),
        ([], "the prompt must be"),
        ([1, "a"], "the prompt must be"),
        ([3.5], "the prompt must be"),
        ([50257], "token id 50257 is out of range"),
        (" word" * 300, "the prompt has 300 tokens, more than the model's context of 256 tokens"),
    ],
    ids=["empty", "empty-in-batch", "no-prompts", "mixed", "floats", "out-of-range", "too-long"],
)
def test_bad_prompts_are_refused(tiny_model, prompt, message):
    with pytest.raises(InputError, match=message):
        tiny_model.generate(prompt, max_new_tokens=2)


def test_prompt_forms(tiny_model):
    ids = tiny_model.tokenizer.encode("ROMEO:")
    expected = tiny_model.generate("ROMEO:", max_new_tokens=5, temperature=0).token_ids
    assert tiny_model.generate(ids, max_new_tokens=5, temperature=0).token_ids == expected
    assert tiny_model.generate(np.array(ids), max_new_tokens=5, temperature=0).token_ids == expected
    batch = tiny_model.generate([ids, ids], max_new_tokens=5, temperature=0)
    assert [r.token_ids for r in batch] == [expected, expected]
    assert [r.token_ids for r in tiny_model.generate(np.array([ids]), max_new_tokens=5, temperature=0)] == [expected]
    # An empty prompt with bos=True starts from <|endoftext|> alone
    from_bos = tiny_model.generate("", bos=True, max_new_tokens=5, temperature=0)
    assert from_bos.token_ids == tiny_model.generate([50256], max_new_tokens=5, temperature=0).token_ids


def test_prompt_and_max_new_tokens_may_fill_the_context_exactly(tiny_model):
    ids = [tiny_model.tokenizer.encode(" the")[0]] * 250
    assert len(tiny_model.generate(ids, max_new_tokens=6, temperature=0, stop_at_eos=False).token_ids) == 6
    with pytest.raises(InputError, match="at most 6 new tokens fit"):
        tiny_model.generate(ids, max_new_tokens=7)


def test_default_is_greedy_as_in_hf(tiny_model):
    greedy = tiny_model.generate("ROMEO:", max_new_tokens=10, temperature=0)
    assert tiny_model.generate("ROMEO:", max_new_tokens=10).token_ids == greedy.token_ids
    assert tiny_model.generate("ROMEO:", max_new_tokens=10, seed=8).token_ids == greedy.token_ids  # no draw to seed
