"""The weight formats (kernels/formats.py) and the products that read them.

Each format's meaning is `dequantize`; the kernels must give what the float32 kernels give on the
dequantized matrix (bit for bit for the decode kernels of `linear`, which sum in a fixed order),
and the NumPy references must agree with both.
"""

import numpy as np
import pytest

from kernels import (
    Q8_BLOCK,
    BFloat16Matrix,
    Q8Matrix,
    dequantize,
    format_name,
    linear,
    linear_reference,
    matmul_transposed,
    matmul_transposed_reference,
    quantize_q8,
    rows,
)

rng = np.random.default_rng(12)


def randn(*shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


FORMATS = ["float32", "float16", "bfloat16", "int8"]


def as_format(w: np.ndarray, name: str, input_axis: int = 0):
    if name == "float32":
        return w
    if name == "float16":
        return w.astype(np.float16)
    if name == "bfloat16":
        return BFloat16Matrix.from_float32(w)
    return quantize_q8(w, input_axis=input_axis)


# ----------------------------------------------------------------------------------------------
# The formats themselves


def test_float16_and_bfloat16_widen_exactly_for_every_bit_pattern():
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    halves = every.view(np.float16)
    widened = dequantize(halves)
    expected = halves.astype(np.float64)  # float16 -> float64 is exact; float32 holds it exactly too
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(widened[finite].astype(np.float64), expected[finite])
    assert np.array_equal(np.isnan(widened), np.isnan(halves))
    brains = dequantize(BFloat16Matrix(every))
    np.testing.assert_array_equal(brains.view(np.uint32), every.astype(np.uint32) << 16)


def test_bfloat16_rounds_to_nearest_even_and_keeps_nan():
    values = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-9, -2.5, np.inf, -np.inf, 3e38], np.float32)
    got = dequantize(BFloat16Matrix.from_float32(values))
    # 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even one (1); 1 + 3*2^-8 goes up
    np.testing.assert_array_equal(got[:5], np.array([1.0, 1.0, 1.0 + 2**-6, 1.0, -2.5], np.float32))
    assert got[5] == np.inf and got[6] == -np.inf and np.isfinite(got[7])
    nan = np.array([np.nan, np.float32(np.uint32(0x7F80FFFF).view(np.float32))], np.float32)
    assert np.isnan(dequantize(BFloat16Matrix.from_float32(nan))).all()
    w = randn(37, 11)
    relative = np.abs(dequantize(BFloat16Matrix.from_float32(w)) - w) / np.abs(w)
    assert relative.max() <= 2**-8  # half a unit in the last place of an 8-bit significand (1 + 7 bits)


@pytest.mark.parametrize("K,M", [(1, 1), (31, 3), (32, 5), (33, 7), (96, 16), (100, 9), (768, 50)])
@pytest.mark.parametrize("input_axis", [0, 1])
def test_q8_blocks_along_the_input_dimension(K, M, input_axis):
    w = randn(K, M)
    w[: min(K, Q8_BLOCK), 0] = 0.0  # a block of zeros: scale 0, quants 0
    logical = w if input_axis == 0 else np.ascontiguousarray(w.T)
    q = quantize_q8(logical, input_axis=input_axis)
    blocks = -(-K // Q8_BLOCK)
    assert q.quants.shape == (K, M) and q.scales.shape == (blocks, M) and q.shape == logical.shape
    assert q.quants.dtype == np.int8 and q.scales.dtype == np.float32
    assert q.nbytes == K * M + 4 * blocks * M
    assert np.abs(q.quants.astype(int)).max() <= 127
    back = dequantize(q)
    assert back.shape == logical.shape and back.dtype == np.float32
    by_input = back if input_axis == 0 else back.T
    for b in range(blocks):  # each block: error within half a step of its own scale, its max exact
        block, got = w[b * Q8_BLOCK : (b + 1) * Q8_BLOCK], by_input[b * Q8_BLOCK : (b + 1) * Q8_BLOCK]
        scale = np.abs(block).max(axis=0) / 127
        np.testing.assert_allclose(q.scales[b], scale, rtol=1e-6)
        assert (np.abs(got - block) <= scale * 0.5 * (1 + 1e-5) + 1e-30).all()
        peak = np.abs(block).argmax(axis=0)
        np.testing.assert_allclose(got[peak, np.arange(M)], block[peak, np.arange(M)], rtol=1e-6)
    if K >= Q8_BLOCK:
        assert (q.scales[0, 0] == 0) and (q.quants[:Q8_BLOCK, 0] == 0).all()


def test_q8_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize_q8(np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(TypeError, match="2-D float32"):
        quantize_q8(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="scales have shape"):
        Q8Matrix(np.zeros((33, 2), np.int8), np.zeros((1, 2), np.float32))
    with pytest.raises(TypeError, match="uint16"):
        BFloat16Matrix(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="not a weight format"):
        dequantize(np.zeros((2, 2), np.float64))


@pytest.mark.parametrize("name", FORMATS)
def test_rows_gather_the_table_in_any_format(name):
    table = randn(300, 45)
    stored = as_format(table, name, input_axis=1)
    assert format_name(stored) == name
    ids = np.array([[0, 299, 7], [7, 150, 1]])
    got = rows(stored, ids)
    assert got.shape == (2, 3, 45) and got.dtype == np.float32
    np.testing.assert_array_equal(got, dequantize(stored)[ids])


# ----------------------------------------------------------------------------------------------
# The products in every format


LINEAR_SHAPES = [(1, 1), (5, 3), (17, 29), (33, 31), (64, 100), (100, 257), (768, 2304), (3072, 768)]


def q8_by_blocks(x, q8, bias):
    """The Q8 decode kernel's arithmetic, in float64: each block's product with the bare quants,
    times the block's scales, added block by block to the bias."""
    out = np.broadcast_to(bias.astype(np.float64), (x.shape[0], bias.shape[0])).copy()
    quants = q8.quants.astype(np.float64)
    for b in range(q8.scales.shape[0]):
        block = slice(b * Q8_BLOCK, (b + 1) * Q8_BLOCK)
        out += (x[:, block].astype(np.float64) @ quants[block]) * q8.scales[b]
    return out


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("K,M", LINEAR_SHAPES)
@pytest.mark.parametrize("N", [1, 2, 3, 8, 9, 40])
def test_linear_in_every_format_is_the_float32_product_of_its_dequantized_weights(name, K, M, N):
    x, w, bias = randn(N, K), randn(K, M, scale=0.05), randn(M)
    stored = as_format(w, name)
    widened = dequantize(stored)
    got = linear(x, stored, bias)
    assert got.dtype == np.float32 and got.shape == (N, M)
    if N <= 8 and name != "int8":  # the decode kernels: the sums of float32 on the widened matrix
        np.testing.assert_array_equal(got, linear(x, widened, bias))
    if N <= 8 and name == "int8":  # block sums of the bare quants, each scaled once
        np.testing.assert_allclose(got, q8_by_blocks(x, stored, bias), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, linear_reference(x, stored, bias), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("C,V", [(1, 1), (13, 7), (33, 65), (96, 1001), (768, 4099)])
@pytest.mark.parametrize("N", [1, 3, 8, 9])
def test_matmul_transposed_in_every_format(name, C, V, N):
    x, table = randn(N, C), randn(V, C, scale=0.05)
    stored = as_format(table, name, input_axis=1)
    got = matmul_transposed(x, stored)
    assert got.dtype == np.float32 and got.shape == (N, V)
    expected = matmul_transposed_reference(x, stored)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(got, matmul_transposed(x, dequantize(stored)), rtol=2e-5, atol=2e-5)


# ----------------------------------------------------------------------------------------------
# Batch invariance in every format (as tests/test_kernels.py holds float32 to it)


@pytest.fixture(params=["by size", "all parallel"])
def parallel_products(request, monkeypatch):
    if request.param == "all parallel":
        import kernels.settings

        monkeypatch.setattr(kernels.settings, "PARALLEL_MIN_WEIGHTS", 0)
    return request.param


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("K,M,V", [(33, 70, 101), (768, 2304, 4099)])
def test_rows_do_not_depend_on_the_batch_in_any_format(name, K, M, V, parallel_products):
    x, w, bias, table = randn(8, K), randn(K, M, scale=0.05), randn(M), randn(V, K, scale=0.05)
    w, table = as_format(w, name), as_format(table, name, input_axis=1)
    alone = [(linear(x[i : i + 1], w, bias)[0], matmul_transposed(x[i : i + 1], table)[0]) for i in range(8)]
    for N in (2, 3, 5, 8):
        together = linear(x[:N], w, bias), matmul_transposed(x[:N], table)
        for i in range(N):
            np.testing.assert_array_equal(together[0][i], alone[i][0], err_msg=f"linear, row {i} of {N}")
            np.testing.assert_array_equal(together[1][i], alone[i][1], err_msg=f"output layer, row {i} of {N}")


@pytest.mark.parametrize("name", ["float16", "bfloat16", "int8"])
def test_products_are_the_same_serial_and_on_any_split_in_any_format(name):
    from kernels.linear import _kernel_operands, _linear_few_rows, _linear_few_rows_serial

    x, w, bias = randn(3, 100), randn(100, 1000, scale=0.05), randn(1000)
    stored, scales = _kernel_operands(as_format(w, name))
    expected = np.empty((3, 1000), np.float32)
    _linear_few_rows_serial(x, stored, scales, bias, expected)
    for parts in (1, 2, 3, 7, 64):
        got = np.full((3, 1000), np.nan, np.float32)
        _linear_few_rows(x, stored, scales, bias, got, parts)
        np.testing.assert_array_equal(got, expected, err_msg=f"{parts} bands")


def test_widening_of_every_float16_inside_the_kernel_is_exact():
    """All 65,536 float16 bit patterns through the decode kernel (x = 1, one weight per output):
    the same values NumPy widens them to, infinities and NaN included."""
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(1, -1)
    got = linear(np.ones((1, 1), np.float32), every, np.zeros(every.shape[1], np.float32))[0]
    expected = every[0].astype(np.float32)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[finite], expected[finite])
    np.testing.assert_array_equal(got[~finite & ~np.isnan(expected)], expected[~finite & ~np.isnan(expected)])
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    brains = BFloat16Matrix(np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).reshape(1, -1))
    got = linear(np.ones((1, 1), np.float32), brains, np.zeros(1 << 16, np.float32))[0]
    assert np.array_equal(np.isnan(got), np.isnan(dequantize(brains)[0]))
    np.testing.assert_array_equal(got[~np.isnan(got)], dequantize(brains)[0][~np.isnan(got)])


def test_a_weight_of_the_wrong_shape_or_kind_is_refused():
    x = randn(2, 64)
    with pytest.raises(ValueError, match="cannot multiply"):
        linear(x, randn(63, 5), randn(5))
    with pytest.raises(ValueError, match="input_axis=0"):
        linear(x, quantize_q8(randn(5, 64), input_axis=1), randn(5))
    with pytest.raises(ValueError, match="input_axis=1"):
        matmul_transposed(x, quantize_q8(randn(64, 5)))
    with pytest.raises(TypeError, match="not a weight format"):
        linear(x, randn(64, 5).astype(np.float64), randn(5))


def test_float16_widening_without_f16c_is_exact_too():
    """The integer widening the kernels use on a CPU without F16C, on this host whatever it has."""
    from numba import njit

    from kernels.widen import float16_bits_to_float32_by_integers

    @njit
    def widen_all(bits, out):
        for i in range(bits.shape[0]):
            out[i] = float16_bits_to_float32_by_integers(bits[i])

    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    got = np.empty(1 << 16, np.float32)
    widen_all(halves.view(np.int16), got)
    expected = halves.astype(np.float32)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(got[~np.isnan(got)], expected[~np.isnan(got)])
