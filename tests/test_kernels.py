"""Each Numba kernel against its NumPy reference, and the references against PyTorch."""

import numpy as np
import pytest
import torch

from kernels import causal_attention, causal_attention_reference, gelu, gelu_reference

RNG = np.random.default_rng(7)


def randn(*shape):
    return RNG.standard_normal(shape, dtype=np.float32)


@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 7, 3072), (1, 1, 1), (4097,)])
def test_gelu_kernel_matches_reference(shape):
    x = 3 * randn(*shape)
    expected = gelu_reference(x)
    got = gelu(x)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # in place gives the same
    y = x.copy()
    gelu(y, out=y)
    np.testing.assert_array_equal(y, got)


def test_gelu_reference_is_pytorch_tanh_gelu():
    x = np.linspace(-8, 8, 10001, dtype=np.float32)
    torch_gelu = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    np.testing.assert_allclose(gelu_reference(x), torch_gelu, rtol=1e-6, atol=1e-6)


def test_gelu_refuses_float64():
    with pytest.raises(TypeError):
        gelu(np.zeros(3))


ATTENTION_SHAPES = [
    # (B, H, T, S, D)
    (1, 1, 1, 1, 1),  # one token
    (1, 12, 1, 37, 64),  # one decode step over a cache
    (2, 4, 16, 16, 24),  # a prompt without cache, head size not a power of two
    (3, 2, 5, 20, 30),  # a chunk after a cache
    (1, 2, 128, 128, 17),  # a full small context
    (2, 3, 1024, 1024, 8),  # n_ctx queries of GPT-2
]


@pytest.mark.parametrize("B,H,T,S,D", ATTENTION_SHAPES)
def test_attention_kernel_matches_reference(B, H, T, S, D):
    q, k, v = randn(B, H, T, D), randn(B, H, S, D), randn(B, H, S, D)
    key_start = np.zeros(B, dtype=np.int64)
    scale = D**-0.5
    expected, probs = causal_attention_reference(q, k, v, key_start, scale)
    got = causal_attention(q, k, v, key_start, scale)
    assert got.dtype == expected.dtype == probs.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_attention_reference_matches_pytorch_sdpa():
    B, H, T, D = 2, 3, 9, 13
    q, k, v = randn(B, H, T, D), randn(B, H, T, D), randn(B, H, T, D)
    expected = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), is_causal=True
    ).numpy()
    out, _ = causal_attention_reference(q, k, v, np.zeros(B, np.int64), D**-0.5)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_attention_kernel_on_strided_views_and_padding():
    """The model passes views (heads split out of one qkv matrix, cache slices) and left padding."""
    B, H, T, S, D = 2, 3, 6, 10, 20
    qkv = randn(B, T, 3 * H * D)
    q = qkv[..., : H * D].reshape(B, T, H, D).transpose(0, 2, 1, 3)
    cache = randn(B, H, 32, D)
    k, v = cache[:, :, :S], 2 * cache[:, :, :S]
    key_start = np.array([3, 0])
    expected, probs = causal_attention_reference(q, k, v, key_start, 0.25)
    got = causal_attention(q, k, v, key_start, 0.25)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)
    assert (probs[0, :, :, :3] == 0).all(), "padding slots get no attention"


def test_attention_padding_query_outputs_zero():
    """A query in a padding slot has nothing to attend to: both paths output zeros, not NaN."""
    B, H, T, D = 1, 2, 5, 4
    q, k, v = randn(B, H, T, D), randn(B, H, T, D), randn(B, H, T, D)
    key_start = np.array([3])
    expected, _ = causal_attention_reference(q, k, v, key_start, 0.5)
    got = causal_attention(q, k, v, key_start, 0.5)
    assert np.isfinite(expected).all() and (expected[:, :, :3] == 0).all()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
