"""Captured intermediates against Hugging Face (output_hidden_states, output_attentions and forward
hooks on its modules), the names filter, the plain path's zero cost, capture through the KV cache
(what generation computes), and interventions against the same change made in the weights."""

import copy

import numpy as np
import pytest
import torch
from reference import hf_model

import engine.model
from engine import GPT2, InputError
from engine.capture import StepwiseCapture, act_name, hook_names, set_heads, set_neurons, zero_heads, zero_neurons

RNG = np.random.default_rng(77)


def hf_captures(model_dir, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The same intermediates from transformers: [B, ...] arrays under our names."""
    hf = hf_model(model_dir)
    seen, handles = {}, []

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = (output[0] if isinstance(output, tuple) else output).detach().numpy().copy()

        return hook

    for i, block in enumerate(hf.transformer.h):
        handles += [
            block.register_forward_hook(keep(f"blocks.{i}.hook_resid_post")),
            block.ln_1.register_forward_hook(keep(f"blocks.{i}.ln1.hook_normalized")),
            block.ln_2.register_forward_hook(keep(f"blocks.{i}.ln2.hook_normalized")),
            block.mlp.act.register_forward_hook(keep(f"blocks.{i}.mlp.hook_post")),
            block.attn.register_forward_hook(keep(f"blocks.{i}.hook_attn_out")),
            block.mlp.register_forward_hook(keep(f"blocks.{i}.hook_mlp_out")),
        ]
    try:
        with torch.no_grad():
            out = hf(torch.as_tensor(ids), output_hidden_states=True, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    L = len(hf.transformer.h)
    seen["hook_embed"] = hf.transformer.wte.weight.detach().numpy()[ids]
    seen["hook_pos_embed"] = np.broadcast_to(
        hf.transformer.wpe.weight.detach().numpy()[: ids.shape[1]], seen["hook_embed"].shape
    )
    seen["ln_final.hook_normalized"] = out.hidden_states[L].numpy()  # HF's last hidden state is after ln_f
    for i in range(L):
        seen[f"blocks.{i}.hook_resid_pre"] = out.hidden_states[i].numpy()
        seen[f"blocks.{i}.attn.hook_pattern"] = out.attentions[i].numpy()
    return seen


def check_captures(model_dir, model, ids):
    logits, cache = model.run_with_cache(ids)
    reference = hf_captures(model_dir, np.atleast_2d(ids))
    batched = np.ndim(ids) == 2
    assert len(reference) == 3 + 8 * model.config.n_layer
    for name, expected in reference.items():
        expected = expected if batched else expected[0]
        ours = cache[name]
        assert ours.dtype == np.float32 and ours.shape == expected.shape, name
        bound = 1e-4 * max(1.0, float(np.abs(expected).max()))
        assert np.abs(ours - expected).max() <= bound, f"{name}: {np.abs(ours - expected).max():.2e} > {bound:.2e}"
    plain = model(ids)  # capturing does not change the result (beyond the two attention paths' rounding)
    np.testing.assert_allclose(logits, plain, rtol=0, atol=1e-4 * max(1.0, float(np.abs(plain).max())))


def test_captures_match_transformers_tiny_shakespeare(tiny_model_dir, tiny_model):
    check_captures(
        tiny_model_dir, tiny_model, np.array(tiny_model.tokenizer.encode("ROMEO: What light through yonder"))
    )


def test_captures_match_transformers_batched_odd_heads(synthetic):
    from engine.base.config import GPT2Config

    model_dir = synthetic("odd-heads", GPT2Config(n_layer=3, n_head=5, n_embd=65, n_positions=64))
    model = GPT2.from_pretrained(model_dir)
    check_captures(model_dir, model, RNG.integers(0, 50257, size=(2, 9)))


def test_shapes_keep_the_batch_dims_of_the_input(tiny_model):
    c = tiny_model.config
    _, single = tiny_model.run_with_cache([5, 6, 7])
    _, batch = tiny_model.run_with_cache([[5, 6, 7], [8, 9, 10]])
    assert list(single) == hook_names(c)  # every name, in the order the forward pass reaches them
    assert single["blocks.1.attn.hook_pattern"].shape == (c.n_head, 3, 3)
    assert batch["blocks.1.attn.hook_pattern"].shape == (2, c.n_head, 3, 3)
    assert single["blocks.3.mlp.hook_post"].shape == (3, c.mlp_width)
    assert batch["blocks.0.attn.hook_z"].shape == (2, 3, c.n_head, c.head_dim)
    np.testing.assert_array_equal(batch["blocks.2.hook_resid_post"][0], single["blocks.2.hook_resid_post"])
    assert single.stack("resid_post").shape == (c.n_layer, 3, c.n_embd)
    # the MLP overwrites its pre-activation in place with the GELU: the capture must be a copy
    assert not np.array_equal(single["blocks.0.mlp.hook_pre"], single["blocks.0.mlp.hook_post"])


def test_hook_names_are_the_ones_the_model_calls(tiny_model):
    called = []
    tiny_model([1, 2], hooks=lambda name, array: called.append(name) or array)
    assert called == hook_names(tiny_model.config)


def test_names_filter(tiny_model):
    _, cache = tiny_model.run_with_cache([1, 2, 3], names=["blocks.1.mlp.hook_post", ("pattern", 2), "embed"])
    assert list(cache) == ["hook_embed", "blocks.1.mlp.hook_post", "blocks.2.attn.hook_pattern"]
    np.testing.assert_array_equal(cache["post", 1], cache["blocks.1.mlp.hook_post"])
    _, cache = tiny_model.run_with_cache([1, 2, 3], names=lambda name: name.endswith("hook_resid_post"))
    assert list(cache) == [f"blocks.{i}.hook_resid_post" for i in range(4)]
    with pytest.raises(KeyError, match="was not captured"):
        cache["blocks.0.hook_resid_pre"]
    with pytest.raises(InputError, match="no hook named 'blocks.9.hook_resid_post'"):
        tiny_model.run_with_cache([1, 2], names=["blocks.9.hook_resid_post"])
    with pytest.raises(InputError, match="unknown activation name 'resid'"):
        tiny_model.run_with_cache([1, 2], names=[("resid", 0)])
    assert act_name("ln_final") == "ln_final.hook_normalized"
    assert act_name(("pattern", 3)) == act_name("pattern", 3) == "blocks.3.attn.hook_pattern"


def test_keys_that_are_not_hook_names_are_user_errors(tiny_model):
    """Tuples, and keys that are not strings, go through one check: an InputError, or False for `in`."""
    post = tiny_model.run_with_hooks([1, 2], fwd_hooks=[(("post", 1), lambda a: a * 0)])
    np.testing.assert_array_equal(post, tiny_model.run_with_hooks([1, 2], fwd_hooks=[zero_neurons(1, range(512))]))
    for bad in (5, None, ("post",), ("post", 1, 2), ("post", "1"), ("post", True)):
        with pytest.raises(InputError, match="must be a hook name or \\(short name, layer\\)"):
            tiny_model.run_with_hooks([1, 2], fwd_hooks=[(bad, lambda a: a)])
        with pytest.raises(InputError, match="must be a hook name or \\(short name, layer\\)"):
            tiny_model.run_with_cache([1, 2], names=[bad])
    _, cache = tiny_model.run_with_cache([1, 2], names=[("post", 1)])
    with pytest.raises(InputError, match="must be a hook name or \\(short name, layer\\)"):
        cache[5]
    assert ("post", 1) in cache and "blocks.1.mlp.hook_post" in cache
    assert "nonsense" not in cache and ("post", 0) not in cache and 5 not in cache and ("resid", 0) not in cache


def test_the_plain_path_pays_nothing(tiny_model, monkeypatch):
    """Without hooks the Numba kernel runs and the NumPy reference (with its [T, S] matrix) never does."""

    def refuse(*args, **kwargs):
        raise AssertionError("the reference attention ran on the plain path")

    expected = tiny_model([1, 2, 3])
    monkeypatch.setattr(engine.model, "causal_attention_reference", refuse)
    np.testing.assert_array_equal(tiny_model([1, 2, 3]), expected)
    logits, cache = tiny_model.run_with_cache([1, 2, 3], names=[])  # nothing asked: no hooks at all
    assert len(cache) == 0
    np.testing.assert_array_equal(logits, expected)
    np.testing.assert_array_equal(tiny_model.run_with_hooks([1, 2, 3], fwd_hooks=[]), expected)


def test_capture_through_the_cache_is_what_generation_computes(tiny_model):
    """Generation runs the prompt, then one token at a time through the KV cache. Capturing there,
    step by step, gives what one run over prompt + generated tokens captures (causality)."""
    prompt = tiny_model.tokenizer.encode("ROMEO: What")
    new_ids = tiny_model.generate(prompt, max_new_tokens=6).token_ids
    ids = np.array(prompt + new_ids)
    N = len(ids) - 1  # generation never feeds back its last token
    names = [
        "blocks.3.hook_resid_post",
        "blocks.1.mlp.hook_post",
        "blocks.2.attn.hook_pattern",
        "ln_final.hook_normalized",
    ]
    _, whole = tiny_model.run_with_cache(ids, names=names)

    capture = StepwiseCapture(tiny_model.config, names=names)
    kv = tiny_model.new_cache(batch_size=1, max_length=len(ids))
    steps = [tiny_model(ids[: len(prompt)], cache=kv, hooks=capture.hooks)]
    steps += [tiny_model(ids[t : t + 1], cache=kv, hooks=capture.hooks) for t in range(len(prompt), N)]
    stepwise = capture.cache()
    assert list(stepwise) == sorted(names, key=hook_names(tiny_model.config).index)
    for name in names:
        expected = whole[name][:, :N, :N] if name.endswith("pattern") else whole[name][:N]
        assert stepwise[name].shape == expected.shape, name
        np.testing.assert_allclose(stepwise[name], expected, rtol=0, atol=1e-4)
    # the logits generation chose from are the whole run's, and choose the same tokens
    step_logits = np.concatenate(steps)
    np.testing.assert_allclose(step_logits, tiny_model(ids)[:N], atol=1e-4)
    assert [int(i) for i in step_logits[len(prompt) - 1 :].argmax(-1)] == new_ids


def test_generate_captures_what_its_decode_computed(tiny_model):
    """generate(capture=...) records every call of its own decode: the same activations as one
    run over the prompt and every new token but the last, and the same tokens as without capture."""
    prompt = tiny_model.tokenizer.encode("KING: Now")
    plain = tiny_model.generate(prompt, max_new_tokens=5)
    names = [
        "blocks.0.hook_resid_pre",
        "blocks.3.attn.hook_pattern",
        "blocks.2.mlp.hook_post",
        "ln_final.hook_normalized",
    ]
    captured = tiny_model.generate(prompt, max_new_tokens=5, capture=names)
    assert captured.token_ids == plain.token_ids and captured.text == plain.text
    assert "activations" not in captured.to_dict()
    ids = prompt + captured.token_ids[:-1]  # the last new token is never fed back
    _, whole = tiny_model.run_with_cache(ids, names=names)
    assert list(captured.activations) == list(whole)
    for name in names:
        assert captured.activations[name].shape == whole[name].shape, name
        assert captured.activations[name].dtype == np.float32
        np.testing.assert_allclose(captured.activations[name], whole[name], rtol=0, atol=1e-4)
    everything = tiny_model.generate(prompt, max_new_tokens=2, capture=True).activations
    assert set(everything) == set(hook_names(tiny_model.config))
    with pytest.raises(InputError, match="capture= takes one prompt"):
        tiny_model.generate(prompt, max_new_tokens=2, num_beams=2, capture=True)
    with pytest.raises(InputError, match="capture= takes one prompt"):
        tiny_model.generate(["A", "B"], max_new_tokens=2, capture=True)


def test_stepwise_capture_of_a_batch_with_left_padding(tiny_model):
    rows = [[5, 9, 300, 12], [0, 0, 40, 41]]  # row 1: two padding slots, then two tokens
    capture = StepwiseCapture(tiny_model.config, names=[("pattern", 0), ("resid_post", 1)], batched=True)
    kv = tiny_model.new_cache(batch_size=2, left_padding=[0, 2])
    tiny_model(np.array(rows), cache=kv, hooks=capture.hooks)
    tiny_model(np.array([[7], [8]]), cache=kv, hooks=capture.hooks)
    got = capture.cache()
    assert got["pattern", 0].shape == (2, 4, 5, 5) and got["resid_post", 1].shape == (2, 5, 128)
    _, alone = tiny_model.run_with_cache([40, 41, 8], names=[("pattern", 0), ("resid_post", 1)])
    np.testing.assert_allclose(got["pattern", 0][1, :, 2:, 2:], alone["pattern", 0], atol=1e-5)
    assert not got["pattern", 0][1, :, 2:, :2].any()  # no real token attends to padding
    np.testing.assert_allclose(got["resid_post", 1][1, 2:], alone["resid_post", 1], atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Interventions, checked against the same change made in the weights (the plain path)


def with_weights(model, change) -> GPT2:
    weights = copy.deepcopy(model.weights)
    change(weights)
    return GPT2(model.config, weights, model.tokenizer)


def test_zero_neurons_is_zeroing_their_output_weights(tiny_model):
    ids = [5, 9, 300, 12, 7]

    def cut(w):
        w.h[2].mlp.c_proj.weight[[3, 100, 511]] = 0

    expected = with_weights(tiny_model, cut)(ids)
    ours = tiny_model.run_with_hooks(ids, fwd_hooks=[zero_neurons(2, [3, 100, 511])])
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert np.abs(ours - tiny_model(ids)).max() > 1e-3  # the intervention did something


def test_set_neurons_is_moving_their_output_into_the_bias(tiny_model):
    ids = [5, 9, 300, 12, 7]

    def fold(w):
        p = w.h[1].mlp.c_proj
        p.bias += 2.5 * p.weight[40] - 1.0 * p.weight[41]
        p.weight[[40, 41]] = 0

    expected = with_weights(tiny_model, fold)(ids)
    ours, cache = tiny_model.run_with_cache(ids, names=[("post", 1)], fwd_hooks=[set_neurons(1, [40, 41], [2.5, -1.0])])
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert (cache["post", 1][:, 40] == 2.5).all() and (cache["post", 1][:, 41] == -1.0).all()  # capture sees it


def test_zero_heads_is_zeroing_their_rows_of_the_output_projection(tiny_model):
    ids = [5, 9, 300, 12, 7]
    D = tiny_model.config.head_dim

    def cut(w):
        w.h[0].attn.c_proj.weight[1 * D : 2 * D] = 0
        w.h[3].attn.c_proj.weight[3 * D : 4 * D] = 0

    expected = with_weights(tiny_model, cut)(ids)
    ours = tiny_model.run_with_hooks(ids, fwd_hooks=[zero_heads(0, [1]), zero_heads(3, 3)])
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert np.abs(ours - tiny_model(ids)).max() > 1e-3


def test_interventions_at_some_positions_leave_the_earlier_ones_alone(tiny_model):
    ids = [5, 9, 300, 12, 7, 8]
    plain = tiny_model(ids)
    ours = tiny_model.run_with_hooks(ids, fwd_hooks=[zero_neurons(0, range(512), positions=[3, 5])])
    np.testing.assert_allclose(ours[:3], plain[:3], atol=1e-4)  # causality: positions 0..2 see no change
    assert np.abs(ours[3] - plain[3]).max() > 1e-3


def test_set_heads_patches_z_from_another_run(tiny_model):
    clean, corrupt = [5, 9, 300, 12], [5, 9, 301, 12]
    _, clean_cache = tiny_model.run_with_cache(clean, names=[("z", 1)])
    patched_z = clean_cache["z", 1][:, [0, 2]]  # [T, 2, D]
    _, cache = tiny_model.run_with_cache(corrupt, names=[("z", 1)], fwd_hooks=[set_heads(1, [0, 2], patched_z)])
    np.testing.assert_array_equal(cache["z", 1][:, [0, 2]], patched_z)
    _, before = tiny_model.run_with_cache(corrupt, names=[("z", 1)])
    np.testing.assert_array_equal(cache["z", 1][:, [1, 3]], before["z", 1][:, [1, 3]])


def test_intervention_errors(tiny_model):
    with pytest.raises(InputError, match="neuron 512 is out of range: layer 1's MLP has 512"):
        tiny_model.run_with_hooks([1, 2], fwd_hooks=[zero_neurons(1, [512])])
    with pytest.raises(InputError, match="head 4 is out of range: layer 0 has 4"):
        tiny_model.run_with_hooks([1, 2], fwd_hooks=[zero_heads(0, [4])])
    with pytest.raises(InputError, match="cannot intervene at 'blocks.4.mlp.hook_post'"):
        tiny_model.run_with_hooks([1, 2], fwd_hooks=[zero_neurons(4, [0])])
    with pytest.raises(InputError, match="position 2 is out of range"):
        tiny_model.run_with_hooks([1, 2], fwd_hooks=[zero_neurons(0, [0], positions=[2])])
    with pytest.raises(InputError, match="returned shape"):
        tiny_model.run_with_hooks([1, 2], fwd_hooks=[("blocks.0.hook_resid_post", lambda a: a[:, :1])])
    with pytest.raises(InputError, match="cannot set neurons of layer 0"):
        tiny_model.run_with_hooks([1, 2], fwd_hooks=[set_neurons(0, [1, 2], [1.0, 2.0, 3.0])])
    with pytest.raises(InputError, match="a pair"):
        tiny_model.run_with_hooks([1, 2], fwd_hooks=[zero_neurons])
