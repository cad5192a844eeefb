"""Inside the kernels: one weight of any format, widened to float32 in a register.

The kernels are written once, generic in the weight array they read; `weight_at(w, s, j)` gives
element j of a row `w` as float32, compiled for the row's element type:

    float32   w[j]
    uint16    a bfloat16's bits: float32 bits = w[j] << 16 (exact)
    int16     a float16's bits (Numba has no float16 type, so the dispatcher hands a float16
              matrix over as its bits, viewed as int16 to tell it from bfloat16): exact widening
    int8      a Q8 quant: float32(w[j]) * s[j], s the row of scales of its block (one rounding,
              as `formats.dequantize` does it); with s = None, the quant alone, float32(w[j]),
              for a kernel that applies a block's scales to its sums instead

All of it is plain integer and float arithmetic on one element, which LLVM vectorises across j
like the float32 loop. No CPU feature is assumed (no F16C instruction: the float16 widening is
written out in integers and a select).
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from .exp import _float32_from_bits

TWO_TO_MINUS_24 = np.float32(2.0**-24)  # a float16 subnormal's unit


@njit(inline="always")
def bfloat16_bits_to_float32(bits):
    return _float32_from_bits(np.int32(bits) << np.int32(16))


@njit  # (not inlined by Numba, whose inliner mishandles its branches; LLVM inlines it)
def float16_bits_to_float32(bits):
    """A float16 given as its 16 bits (int16) -> the same value as float32, exactly.

    In integers (LLVM 14 scalarises a vector of fpext from half, F16C or not: slower, measured).

    Normal numbers move their exponent from bias 15 to bias 127 (add 112 << 23 to the shifted
    bits); infinity and NaN (exponent all ones) take another 112, making the float32 exponent
    all ones too; subnormals (and zero) are their 10-bit mantissa times 2^-24, computed in float32
    (exact: the mantissa is an integer below 2^10). The sign is put back by multiplying by +1 or -1.
    """
    return float16_bits_to_float32_by_integers(bits)


@njit
def float16_bits_to_float32_by_integers(bits):
    """The integer widening (tests/test_kernels_formats.py checks every bit pattern)."""
    h = np.int32(bits) & np.int32(0xFFFF)
    magnitude_bits = h & np.int32(0x7FFF)
    shifted = (magnitude_bits << np.int32(13)) + np.int32(112 << 23)
    if magnitude_bits >= np.int32(0x7C00):
        shifted += np.int32(112 << 23)
    normal = _float32_from_bits(shifted)
    subnormal = np.float32(magnitude_bits) * TWO_TO_MINUS_24
    magnitude = normal if magnitude_bits >= np.int32(0x0400) else subnormal
    sign = _float32_from_bits(np.int32(0x3F800000) | ((h & np.int32(0x8000)) << np.int32(16)))  # +1.0 or -1.0
    return magnitude * sign


def weight_at(w, s, j):
    """Element j of the weight row `w` as float32 (s: the row's block scales, read for int8 only;
    None for the bare quant)."""
    raise NotImplementedError("weight_at runs inside Numba kernels only")


@overload(weight_at, inline="always")
def _weight_at(w, s, j):
    dtype = w.dtype
    if dtype == types.float32:
        return lambda w, s, j: w[j]
    if dtype == types.uint16:
        return lambda w, s, j: bfloat16_bits_to_float32(w[j])
    if dtype == types.int16:
        return lambda w, s, j: float16_bits_to_float32(w[j])
    if dtype == types.int8 and isinstance(s, types.NoneType):
        return lambda w, s, j: np.float32(w[j])
    if dtype == types.int8:
        return lambda w, s, j: np.float32(w[j]) * s[j]
    return None


def _dtype_test(name: str, element_type):
    """A function `name(w)`: whether array w's elements are `element_type`, a compile-time
    constant inside the kernels (it selects code, it costs nothing at run time)."""

    def test(w):
        raise NotImplementedError(f"{name} runs inside Numba kernels only")

    @overload(test, inline="always")
    def _test(w):
        answer = w.dtype == element_type
        return lambda w: answer

    test.__name__ = test.__qualname__ = name
    return test


is_float32 = _dtype_test("is_float32", types.float32)
is_q8 = _dtype_test("is_q8", types.int8)  # Q8 quants
