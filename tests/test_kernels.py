"""Each Numba kernel against its NumPy reference, and the references against PyTorch."""

import importlib

import numba
import numpy as np
import pytest
import torch

from kernels import (
    causal_attention,
    causal_attention_reference,
    exp,
    exp_reference,
    gelu,
    gelu_reference,
    layer_norm,
    layer_norm_reference,
    linear,
    linear_reference,
    matmul_transposed,
    matmul_transposed_reference,
)

RNG = np.random.default_rng(7)


def randn(*shape):
    return RNG.standard_normal(shape, dtype=np.float32)


# Below these sizes a kernel runs on the calling thread; "all parallel" sets them to 0 so that the
# parallel twin of each kernel is held to the reference on the same (small) shapes.
PARALLEL_THRESHOLDS = [
    ("kernels.settings", "PARALLEL_MIN_MULTIPLY_ADDS"),
    ("kernels.settings", "PARALLEL_MIN_WEIGHTS"),
    ("kernels.settings", "PARALLEL_MIN_ELEMENTS"),
    ("kernels.settings", "PARALLEL_MIN_ROWS"),
]


@pytest.fixture(params=["by size", "all parallel"])
def parallel_threshold(request, monkeypatch):
    """Run a test at the kernels' own choice of threads, and with every kernel on its parallel path."""
    if request.param == "all parallel":
        for module, name in PARALLEL_THRESHOLDS:
            monkeypatch.setattr(importlib.import_module(module), name, 0)
    return request.param


@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 7, 3072), (1, 1, 1), (4097,)])
def test_gelu_kernel_matches_reference(shape, parallel_threshold):
    x = 3 * randn(*shape)
    expected = gelu_reference(x)
    got = gelu(x)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # in place gives the same
    y = x.copy()
    gelu(y, out=y)
    np.testing.assert_array_equal(y, got)


def test_gelu_in_place_on_a_non_contiguous_array(parallel_threshold):
    """An intervention can hand the MLP a transposed or strided array: `out=x` must still hold the result."""
    x = 3 * randn(6, 40)
    for y in (np.asfortranarray(x), x.copy()[:, ::2]):
        expected = gelu_reference(y)
        assert not y.flags.c_contiguous
        gelu(y, out=y)
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


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
def test_attention_kernel_matches_reference(B, H, T, S, D, parallel_threshold):
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


def test_attention_kernel_on_strided_views_and_padding(parallel_threshold):
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


def test_attention_padding_query_outputs_zero(parallel_threshold):
    """A query in a padding slot has nothing to attend to: both paths output zeros, not NaN."""
    B, H, T, D = 1, 2, 5, 4
    q, k, v = randn(B, H, T, D), randn(B, H, T, D), randn(B, H, T, D)
    key_start = np.array([3])
    expected, _ = causal_attention_reference(q, k, v, key_start, 0.5)
    got = causal_attention(q, k, v, key_start, 0.5)
    assert np.isfinite(expected).all() and (expected[:, :, :3] == 0).all()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# exp_f32, LayerNorm, and the few-rows matrix products


def test_exp_kernel_within_a_few_ulps_of_numpy():
    x = np.concatenate([np.linspace(-87.3, 88.3, 200_001, dtype=np.float32), np.float32([0.0, -0.0, 1e-30, -1e-30])])
    got = exp(x)
    assert got.dtype == np.float32
    exact = np.exp(x.astype(np.float64))
    assert (np.abs(got - exact) / exact).max() < 4 * 2.0**-24  # a few float32 ulps
    np.testing.assert_allclose(got, exp_reference(x), rtol=4e-7)


def test_exp_kernel_clamps_instead_of_overflowing():
    got = exp(np.float32([-1000.0, 1000.0, np.nan]))
    assert 0 < got[0] < 1.3e-38 and np.isfinite(got[1]) and np.isnan(got[2])


@pytest.mark.parametrize("shape", [(1, 1, 768), (2, 7, 96), (1024, 24), (3, 1, 1), (65, 13)])
def test_layer_norm_kernel_matches_reference(shape, parallel_threshold):
    x = 3 * randn(*shape) + 1
    weight, bias = randn(shape[-1]), randn(shape[-1])
    got = layer_norm(x, weight, bias, 1e-5)
    expected = layer_norm_reference(x, weight, bias, 1e-5)
    assert got.dtype == expected.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-5)


def test_layer_norm_kernel_on_a_strided_view(parallel_threshold):
    """The model normalises x[:, -k:] (logits_to_keep): rows of a larger array."""
    x = randn(3, 10, 40)[:, -2:]
    weight, bias = randn(40), randn(40)
    np.testing.assert_allclose(
        layer_norm(x, weight, bias, 1e-5), layer_norm_reference(x, weight, bias, 1e-5), rtol=1e-5, atol=2e-5
    )


# (N rows, K in, M out): one decode row, a batch of decode rows, a row past FEW_ROWS (BLAS in row
# blocks), a prompt, odd sizes, matrices big enough for the parallel kernels
LINEAR_SHAPES = [(1, 1, 1), (1, 768, 2304), (3, 17, 29), (8, 300, 1000), (9, 64, 70), (40, 96, 384), (1, 3072, 768)]


@pytest.mark.parametrize("N,K,M", LINEAR_SHAPES)
def test_linear_kernel_matches_reference(N, K, M, parallel_threshold):
    x, weight, bias = randn(N, K), randn(K, M), randn(M)
    got = linear(x, weight, bias)
    expected = linear_reference(x, weight, bias)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.sqrt(K))


@pytest.mark.parametrize("N,C,V", [(1, 1, 1), (1, 96, 50257), (2, 13, 7), (8, 64, 1000), (9, 32, 100), (33, 24, 500)])
def test_matmul_transposed_kernel_matches_reference(N, C, V, parallel_threshold):
    x, table = randn(N, C), randn(V, C)
    got = matmul_transposed(x, table)
    expected = matmul_transposed_reference(x, table)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.sqrt(C))


@pytest.fixture(params=["sgemm on Numba's threads", "matmul on Python threads"])
def row_block_path(request, monkeypatch):
    """Both ways a prompt's product runs: NumPy's sgemm called from a Numba kernel, and the fallback."""
    from kernels.blas import SGEMM_AVAILABLE

    if request.param == "sgemm on Numba's threads" and not SGEMM_AVAILABLE:
        pytest.skip("NumPy's BLAS has no 64-bit-integer cblas_sgemm here")
    if request.param == "matmul on Python threads":
        monkeypatch.setattr(importlib.import_module("kernels.linear"), "SGEMM_AVAILABLE", False)
    return request.param


# (N rows, K in, M out): one row, one short block, odd sizes split unevenly, many rows
ROW_BLOCK_SHAPES = [(1, 5, 3), (8, 64, 70), (17, 33, 129), (41, 768, 50), (300, 96, 2304)]


@pytest.mark.parametrize("N,K,M", ROW_BLOCK_SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_blas_row_blocks_match_reference(N, K, M, with_bias, row_block_path):
    from kernels.linear import _blas_in_row_blocks

    x, weight, table, bias = randn(N, K), randn(K, M), randn(M, K), randn(M)
    for b, transposed, expected in [
        (weight, False, linear_reference(x, weight, bias)),
        (table, True, matmul_transposed_reference(x, table) + bias),
    ]:
        out = np.full((N, M), np.nan, dtype=np.float32)  # every entry must be written
        _blas_in_row_blocks(x, b, transposed, bias if with_bias else None, out)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected if with_bias else expected - bias, rtol=1e-4, atol=1e-4 * np.sqrt(K))


def test_blas_row_blocks_read_a_strided_view_of_the_rows(row_block_path):
    """The model hands over x[:, -k:] and other views: the result is the view's, not its parent's."""
    from kernels.linear import _blas_in_row_blocks

    parent, weight, bias = randn(3, 20, 48), randn(40, 24), randn(24)
    x = parent[1, 2:19, 4:44]  # [17, 40], rows 48 floats apart in memory
    assert not x.flags.c_contiguous
    out = np.empty((17, 24), dtype=np.float32)
    _blas_in_row_blocks(x, weight, False, bias, out)
    np.testing.assert_allclose(out, linear_reference(x, weight, bias), rtol=1e-4, atol=1e-3)


def test_blas_row_blocks_read_weights_that_are_views(row_block_path):
    """Weights given as a transposed or strided view (not the loader's contiguous arrays) still give x @ b."""
    from kernels.linear import _blas_in_row_blocks

    x, bias = randn(20, 32), randn(24)
    weight = np.asfortranarray(randn(32, 24))  # [K, M], columns contiguous
    table = randn(24, 64)[:, ::2]  # [M, K], every other column
    for b, transposed, expected in [
        (weight, False, linear_reference(x, weight, bias)),
        (table, True, matmul_transposed_reference(x, table) + bias),
    ]:
        assert not b.flags.c_contiguous
        out = np.empty((20, 24), dtype=np.float32)
        _blas_in_row_blocks(x, b, transposed, bias, out)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)


def test_linear_reference_is_pytorch_linear():
    x, weight, bias = randn(5, 33), randn(33, 21), randn(21)
    # Conv1D stores weight as [in, out]; torch.nn.functional.linear wants [out, in]
    expected = torch.nn.functional.linear(
        torch.from_numpy(x), torch.from_numpy(weight.T), torch.from_numpy(bias)
    ).numpy()
    np.testing.assert_allclose(linear_reference(x, weight, bias), expected, rtol=1e-5, atol=1e-5)


def test_attention_kernel_reads_cache_views_in_place(parallel_threshold):
    """A view of the first S of M cache slots goes to the kernel as the whole C-contiguous block
    (so its loops vectorise), not as a copy, and gives the reference's result."""
    from kernels.attention import _c_contiguous_parent

    B, H, T, S, M, D = 2, 3, 4, 9, 16, 24
    keys = randn(B, H, M, D)
    k = keys[:, :, :S]
    parent = _c_contiguous_parent(k)
    assert parent.flags.c_contiguous and parent.shape == (B, H, M, D)
    assert parent.ctypes.data == keys.ctypes.data  # the same memory, no copy
    v = 2 * keys[:, :, :S]
    q = randn(B, H, T, D)
    key_start = np.array([0, 2])
    expected, _ = causal_attention_reference(q, k, v, key_start, 0.3)
    np.testing.assert_allclose(causal_attention(q, k, v, key_start, 0.3), expected, rtol=1e-5, atol=2e-6)


# ----------------------------------------------------------------------------------------------
# Batch invariance: a row's result is bit for bit the same whatever rows share its batch and
# whatever the threads (continuous batching and the batch runner rely on it)


@pytest.fixture
def threads():
    """set(n) runs the kernels on n threads; the count in force before the test is put back."""
    before = numba.get_num_threads()
    yield numba.set_num_threads
    numba.set_num_threads(before)


INVARIANCE_LINEAR_SHAPES = [(1, 1), (5, 3), (17, 29), (96, 288), (768, 2304), (3072, 100), (64, 1000)]


@pytest.mark.parametrize("K,M", INVARIANCE_LINEAR_SHAPES)
def test_linear_rows_do_not_depend_on_the_batch(K, M, parallel_threshold):
    from kernels.settings import FEW_ROWS

    x, weight, bias = randn(FEW_ROWS, K), randn(K, M), randn(M)
    alone = [linear(x[i : i + 1], weight, bias)[0] for i in range(FEW_ROWS)]
    for N in range(1, FEW_ROWS + 1):
        together = linear(x[:N], weight, bias)
        for i in range(N):
            np.testing.assert_array_equal(together[i], alone[i], err_msg=f"row {i} of {N}")


@pytest.mark.parametrize("C,V", [(1, 1), (13, 7), (96, 1001), (768, 4099), (64, 50257)])
def test_matmul_transposed_rows_do_not_depend_on_the_batch(C, V, parallel_threshold):
    from kernels.settings import FEW_ROWS

    x, table = randn(FEW_ROWS, C), randn(V, C)
    alone = [matmul_transposed(x[i : i + 1], table)[0] for i in range(FEW_ROWS)]
    for N in range(1, FEW_ROWS + 1):
        together = matmul_transposed(x[:N], table)
        for i in range(N):
            np.testing.assert_array_equal(together[i], alone[i], err_msg=f"row {i} of {N}")


@pytest.mark.parametrize("N", [1, 3, 8])
def test_few_rows_products_are_the_same_serial_and_on_any_split(N, threads):
    """The serial kernels and the parallel ones split into any number of bands (more bands than
    threads included), on one thread or all: bit for bit the same."""
    from kernels.linear import (
        _linear_few_rows,
        _linear_few_rows_serial,
        _matmul_transposed_few_rows,
        _matmul_transposed_few_rows_serial,
    )

    K, M, V = 300, 1000, 2051
    x, weight, bias, table = randn(N, K), randn(K, M), randn(M), randn(V, K)
    expected_linear = np.empty((N, M), np.float32)
    no_scales = np.empty((-(-K // 32), 0), np.float32)  # float32 weights: no Q8 block scales
    _linear_few_rows_serial(x, weight, no_scales, bias, expected_linear)
    expected_table = np.empty((N, V), np.float32)
    _matmul_transposed_few_rows_serial(x, table, expected_table)
    for n_threads in range(1, numba.config.NUMBA_NUM_THREADS + 1):
        threads(n_threads)
        for parts in (1, 2, 3, 5, 7, 64):
            got = np.full((N, M), np.nan, np.float32)
            _linear_few_rows(x, weight, no_scales, bias, got, parts)
            np.testing.assert_array_equal(got, expected_linear, err_msg=f"linear, {parts} bands")
            got = np.full((N, V), np.nan, np.float32)
            _matmul_transposed_few_rows(x, table, got, parts)
            np.testing.assert_array_equal(got, expected_table, err_msg=f"output layer, {parts} bands")
        np.testing.assert_array_equal(linear(x, weight, bias), expected_linear)
        np.testing.assert_array_equal(matmul_transposed(x, table), expected_table)


@pytest.mark.parametrize("S,D", [(1, 24), (7, 24), (37, 64), (130, 17)])
def test_attention_rows_do_not_depend_on_the_batch(S, D, parallel_threshold, threads):
    """One decode query per row, rows left-padded by different amounts: each row's output equals the
    row alone (its padding cut off), serial or parallel, on one thread or all."""
    from kernels.attention import _attention_parallel, _attention_serial

    B, H = 4, 3
    q, k, v = randn(B, H, 1, D), randn(B, H, S + 3, D), randn(B, H, S + 3, D)
    padding = np.array([3, 0, 2, 1])
    alone = []
    for b in range(B):
        first = padding[b]
        out = np.empty((1, H, 1, D), np.float32)
        _attention_serial(
            q[b : b + 1],
            k[b : b + 1, :, first:].copy(),
            v[b : b + 1, :, first:].copy(),
            S + 3 - first,
            np.zeros(1, np.int64),
            float(D**-0.5),
            out,
        )
        alone.append(out[0])
    for n_threads in range(1, numba.config.NUMBA_NUM_THREADS + 1):
        threads(n_threads)
        for kernel in (_attention_serial, _attention_parallel):
            out = np.empty((B, H, 1, D), np.float32)
            kernel(q, k, v, S + 3, padding, float(D**-0.5), out)
            for b in range(B):
                np.testing.assert_array_equal(out[b], alone[b], err_msg=f"{kernel.__name__}, row {b}")


def test_layer_norm_and_gelu_rows_do_not_depend_on_the_batch(parallel_threshold):
    """Each row of LayerNorm, and each element of GELU wherever it falls (the vectorised body of
    the loop or its remainder), is computed the same way in any batch."""
    x = 3 * randn(8, 771)
    weight, bias = randn(771), randn(771)
    together = layer_norm(x, weight, bias, 1e-5)
    activated = gelu(x)
    for i in range(8):
        np.testing.assert_array_equal(layer_norm(x[i : i + 1], weight, bias, 1e-5)[0], together[i])
        np.testing.assert_array_equal(gelu(x[i : i + 1])[0], activated[i])
    flat = x.reshape(-1)
    for start in (0, 1, 5, 17, 100):  # every element at another place relative to the vector width
        np.testing.assert_array_equal(gelu(flat[start : start + 300]), activated.reshape(-1)[start : start + 300])
