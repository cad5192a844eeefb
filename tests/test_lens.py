"""The logit lens: its last reading is the model's own output, and every reading matches the same
lens computed on transformers' hidden states (its ln_f and lm_head applied in torch)."""

import numpy as np
import pytest
import torch
from reference import hf_model

from engine import InputError
from engine.analysis.lens import lens_logits

PROMPT = "ROMEO: What light through yonder window breaks? It is the east"


def test_last_reading_is_the_model_output(tiny_model):
    ids = tiny_model.tokenizer.encode(PROMPT)
    logits, cache = tiny_model.run_with_cache(ids, names=[("resid_post", 3)])
    last = lens_logits(tiny_model, cache["resid_post", 3])
    np.testing.assert_allclose(last, tiny_model(ids), rtol=0, atol=1e-4 * np.abs(logits).max())
    lens = tiny_model.logit_lens(ids, top_k=4)
    final = tiny_model(ids)
    np.testing.assert_array_equal(lens.top_ids[-1, :, 0], final.argmax(-1))
    expected_ranks = 1 + (final > final[np.arange(len(ids)), lens.targets][:, None]).sum(-1)
    np.testing.assert_array_equal(lens.target_ranks[-1], expected_ranks)
    # default targets: the next token, then the model's own choice at the last position
    np.testing.assert_array_equal(lens.targets, ids[1:] + [int(final[-1].argmax())])
    assert lens.target_ranks[-1, -1] == 1


def test_last_reading_is_exactly_the_output_of_its_pass(tiny_model):
    """The lens applies the model's own output layer (model.unembed): on the pass that captured the
    reading, the last reading is bit for bit the logits, also for a few rows (the Numba path)."""
    for ids in ([5, 6], tiny_model.tokenizer.encode(PROMPT)):
        logits, cache = tiny_model.run_with_cache(ids, names=[("resid_post", 3)])
        np.testing.assert_array_equal(lens_logits(tiny_model, cache["resid_post", 3]), logits)


def test_lens_matches_transformers_hidden_states(tiny_model_dir, tiny_model):
    ids = tiny_model.tokenizer.encode(PROMPT)
    lens = tiny_model.logit_lens(ids, top_k=5)
    hf = hf_model(tiny_model_dir)
    with torch.no_grad():
        hidden = hf(torch.tensor([ids]), output_hidden_states=True).hidden_states
        L = len(hidden) - 1
        # HF's last hidden state already went through ln_f; the others have not.
        readings = [hf.lm_head(hf.transformer.ln_f(h[0])) for h in hidden[:L]] + [hf.lm_head(hidden[L][0])]
    assert lens.layers == ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(L)]
    assert lens.top_ids.shape == (L + 1, len(ids), 5) and lens.top_probs.dtype == np.float32
    for r, logits in enumerate(readings):
        probs = torch.softmax(logits, -1).numpy()
        np.testing.assert_allclose(np.take_along_axis(probs, lens.top_ids[r], -1), lens.top_probs[r], atol=1e-4)
        np.testing.assert_allclose(probs[np.arange(len(ids)), lens.targets], lens.target_probs[r], atol=1e-4)
        order = np.argsort(-logits.numpy(), axis=-1, kind="stable")
        ranks = 1 + np.argmax(order == lens.targets[:, None], axis=-1)
        top2 = np.sort(logits.numpy(), -1)[:, -6:]
        clear = np.diff(top2, axis=-1).min(-1) > 1e-4  # where the top 5 are not tied within rounding
        np.testing.assert_array_equal(lens.top_ids[r][clear], order[:, :5][clear])
        assert np.abs(ranks - lens.target_ranks[r]).max() <= 1  # ties within float32 rounding may swap
        assert (ranks == lens.target_ranks[r]).mean() > 0.9
    assert (np.diff(lens.top_probs, axis=-1) <= 0).all()  # most likely first


def test_lens_options(tiny_model):
    ids = tiny_model.tokenizer.encode("To be, or not")
    watch = [11] * len(ids)
    lens = tiny_model.logit_lens(ids, top_k=1, targets=watch)
    assert lens.top_ids.shape == (5, len(ids), 1)
    assert (lens.targets == 11).all() and (lens.target_ranks >= 1).all()
    with pytest.raises(InputError, match="top_k must be an integer from 1 to 50257, got 0"):
        tiny_model.logit_lens(ids, top_k=0)
    with pytest.raises(InputError, match=f"targets must be {len(ids)} token ids"):
        tiny_model.logit_lens(ids, targets=[11])
    with pytest.raises(InputError, match="one sequence"):
        tiny_model.logit_lens([ids, ids])
    with pytest.raises(InputError, match="one sequence"):
        tiny_model.logit_lens([ids])  # [1, T]: refused, as saliency and neuron_factors refuse it


def test_lens_checks_its_options_before_the_forward_pass(tiny_model, monkeypatch):
    ids = tiny_model.tokenizer.encode("To be, or not")

    def no_forward_pass(*args, **kwargs):
        raise AssertionError("the forward pass ran before the options were checked")

    monkeypatch.setattr(type(tiny_model), "run_with_cache", no_forward_pass)
    with pytest.raises(InputError, match=f"targets must be {len(ids)} token ids"):
        tiny_model.logit_lens(ids, targets=[11])
    with pytest.raises(InputError, match=f"targets must be {len(ids)} token ids"):
        tiny_model.logit_lens(ids, targets=[ids, ids])  # two rows of targets: not silently row 0
    with pytest.raises(InputError, match="top_k must be an integer"):
        tiny_model.logit_lens(ids, top_k=0)
