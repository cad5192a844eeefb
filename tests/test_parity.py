"""Logits against Hugging Face transformers on the same files: the core correctness claim.

Bound (core issue): max|ours - reference| <= 1e-4 * max(1, max|reference|), for one pass and for
token-by-token decoding through the KV cache; greedy choices identical wherever the reference's top
two logits are further apart than that bound.
"""

import numpy as np
import pytest
from conftest import tolerance
from reference import hf_logits

from engine import GPT2
from engine.base.config import GPT2Config
from engine.state.synthetic import preset_config

RNG = np.random.default_rng(1234)


def random_ids(batch, length, vocab=50257):
    return RNG.integers(0, vocab, size=(batch, length))


def assert_matches_reference(ours, reference, label=""):
    assert ours.dtype == np.float32, f"{label}: logits are {ours.dtype}, not float32"
    assert ours.shape == reference.shape
    bound = tolerance(reference)
    worst = float(np.abs(ours - reference).max())
    print(f"{label}: max|diff| = {worst:.3g} (bound {bound:.3g}, max|ref| = {np.abs(reference).max():.3g})")
    assert worst <= bound, f"{label}: max|diff| {worst} exceeds {bound}"
    # Greedy agreement wherever the reference's choice is clear.
    top2 = np.sort(reference, axis=-1)[..., -2:]
    clear = (top2[..., 1] - top2[..., 0]) > bound
    assert clear.mean() > 0.5, "the test should exercise clear choices"
    assert (ours.argmax(-1) == reference.argmax(-1))[clear].all(), f"{label}: a greedy choice differs"


def decode_through_cache(model, ids, prompt_length):
    """Logits for every position of ids [B, T]: the prompt in one pass, then one token per step."""
    cache = model.new_cache(batch_size=ids.shape[0])
    steps = [model(ids[:, :prompt_length], cache=cache)]
    steps += [model(ids[:, t : t + 1], cache=cache) for t in range(prompt_length, ids.shape[1])]
    return np.concatenate(steps, axis=1)


SHAPES = {
    # name: (preset, layers); the large published shapes at reduced depth, full widths and vocab
    "gpt2-124M-full": ("gpt2", None),
    "gpt2-medium-2L": ("gpt2-medium", 2),
    "gpt2-large-2L": ("gpt2-large", 2),
    "gpt2-xl-2L": ("gpt2-xl", 2),
    "distilgpt2": ("distilgpt2", None),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_published_shapes_match_reference(synthetic, name):
    preset, layers = SHAPES[name]
    model_dir = synthetic(name, preset_config(preset, layers))
    model = GPT2.from_pretrained(model_dir)
    ids = random_ids(2, 48)
    reference = hf_logits(model_dir, ids)
    assert_matches_reference(model(ids), reference, f"{name} full pass")
    assert_matches_reference(decode_through_cache(model, ids, 20), reference, f"{name} through cache")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_files_match_reference(synthetic, dtype):
    model_dir = synthetic(f"gpt2-2L-{dtype}", preset_config("gpt2", 2), dtype=dtype)
    model = GPT2.from_pretrained(model_dir)
    assert model.weights.wte.dtype == np.float32
    ids = random_ids(2, 32)
    assert_matches_reference(model(ids), hf_logits(model_dir, ids), f"{dtype} file")


def test_tiny_shakespeare_model_matches_reference(tiny_model, tiny_model_dir):
    text = "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun."
    ids = np.array([tiny_model.tokenizer.encode(text)])
    reference = hf_logits(tiny_model_dir, ids)
    assert_matches_reference(tiny_model(ids), reference, "tiny shakespeare")
    assert_matches_reference(decode_through_cache(tiny_model, ids, 5), reference, "tiny shakespeare cache")


def test_full_context_matches_reference(small_dir):
    model = GPT2.from_pretrained(small_dir)
    ids = random_ids(1, model.config.n_ctx)
    assert_matches_reference(model(ids), hf_logits(small_dir, ids), "n_ctx tokens")


def test_unbatched_ids_give_unbatched_logits(small_dir):
    model = GPT2.from_pretrained(small_dir)
    ids = random_ids(1, 12)
    assert model(ids[0]).shape == (12, model.config.vocab_size)
    np.testing.assert_array_equal(model(ids[0]), model(ids)[0])


def test_logits_to_keep_gives_the_last_positions(small_dir):
    model = GPT2.from_pretrained(small_dir)
    ids = random_ids(2, 10)
    full = model(ids)
    np.testing.assert_allclose(model(ids, logits_to_keep=3), full[:, -3:], rtol=0, atol=tolerance(full))


def test_left_padded_rows_equal_their_unpadded_selves(small_dir):
    """A padded row in a batch gives the logits it gives alone (positions count from its first token)."""
    model = GPT2.from_pretrained(small_dir)
    short, long = random_ids(1, 7)[0], random_ids(1, 12)[0]
    pad = 12 - 7
    batch = np.stack([np.concatenate([np.full(pad, 50256), short]), long])
    alone_short, alone_long = model(short), model(long)
    both = model(batch, left_padding=[pad, 0])
    np.testing.assert_allclose(both[0, pad:], alone_short, rtol=0, atol=tolerance(alone_short))
    np.testing.assert_allclose(both[1], alone_long, rtol=0, atol=tolerance(alone_long))
    # and through the cache, with more tokens after the prompt
    cache = model.new_cache(batch_size=2, left_padding=[pad, 0])
    model(batch, cache=cache)
    step = model(np.array([[5], [6]]), cache=cache)
    np.testing.assert_allclose(step[0, 0], model(np.append(short, 5))[-1], rtol=0, atol=tolerance(alone_short))
    np.testing.assert_allclose(step[1, 0], model(np.append(long, 6))[-1], rtol=0, atol=tolerance(alone_long))


def test_left_padding_matches_reference_with_mask(small_dir):
    """Against transformers given the attention mask and the matching position ids."""
    model = GPT2.from_pretrained(small_dir)
    ids = random_ids(2, 16)
    pads = np.array([4, 0])
    mask = (np.arange(16)[None, :] >= pads[:, None]).astype(np.int64)
    positions = np.maximum(np.arange(16)[None, :] - pads[:, None], 0)
    reference = hf_logits(small_dir, ids, attention_mask=mask, position_ids=positions)
    ours = model(ids, left_padding=pads)
    real = mask.astype(bool)
    bound = tolerance(reference[real])
    assert np.abs(ours[real] - reference[real]).max() <= bound


@pytest.mark.parametrize(
    "overrides",
    [
        {"scale_attn_by_inverse_layer_idx": True},
        {"scale_attn_weights": False},
        {"n_inner": 200},
        {"layer_norm_epsilon": 1e-3},
    ],
)
def test_config_variants_match_reference(synthetic, overrides):
    config = GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=64, **overrides)
    name = "variant-" + "-".join(f"{k}{v}" for k, v in overrides.items())
    model_dir = synthetic(name, config)
    ids = random_ids(2, 24)
    assert_matches_reference(GPT2.from_pretrained(model_dir)(ids), hf_logits(model_dir, ids), name)


def test_untied_lm_head_is_used(synthetic):
    config = GPT2Config(n_layer=1, n_head=2, n_embd=32, n_positions=32, tie_word_embeddings=False)
    model_dir = synthetic("untied", config)
    model = GPT2.from_pretrained(model_dir)
    assert model.weights.lm_head is not model.weights.wte
    ids = random_ids(1, 8)
    assert_matches_reference(model(ids), hf_logits(model_dir, ids), "untied lm_head")
