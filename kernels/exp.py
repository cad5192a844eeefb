"""exp(x) in float32, written so that a loop of them compiles to SIMD instructions.

Without Intel's SVML, Numba turns `np.exp` on a float32 into a call to the C library's `expf`
per element: a loop of exponentials cannot use vector registers. Softmax (attention) and GELU
take one exponential per element, so they were bound by those calls. `exp_f32` is plain
arithmetic instead, which LLVM vectorises like any other loop body:

    exp(x) = 2^k * exp(r),   k = round(x / ln 2),   r = x - k ln 2,   |r| <= ln(2) / 2

exp(r) is its Taylor polynomial to degree 7 (truncation error below 1e-8 on that interval, under
float32 rounding), and 2^k is built directly as the bits of a float32: exponent field k + 127,
mantissa 0. `ln 2` is split in two (Cody and Waite) so that `x - k ln 2` loses no bits.
Inputs are clamped to [-87.3, 88.3], where 2^k stays a normal float: below, the result is the
smallest normal float (~1.2e-38) instead of a denormal or 0; above, ~2.2e38 instead of inf.
Within the clamp the relative error is a few float32 ulps (tests/test_kernels.py checks it).

`exp_reference` is NumPy's exp, the statement of what `exp_f32` computes.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .settings import ELEMENTWISE

LOG2_E = np.float32(1.0 / math.log(2.0))
LN2_HI = np.float32(355.0 / 512.0)  # ln 2 to 9 bits, so k * LN2_HI is exact for |k| < 2^15
LN2_LO = np.float32(math.log(2.0) - 355.0 / 512.0)  # the rest of ln 2
EXP_INPUT_MIN = np.float32(-87.3)  # exp(-87.3) ~ 1.2e-38, the smallest normal float32
EXP_INPUT_MAX = np.float32(88.3)  # exp(88.3) ~ 2.2e38: k stays <= 127, a finite power of two
# 1/n! for n = 7 down to 2: Horner's scheme from the highest power
TAYLOR = tuple(np.float32(1.0 / math.factorial(n)) for n in range(7, 1, -1))


def exp_reference(x: np.ndarray) -> np.ndarray:
    """NumPy's exp on float32 (what `exp_f32` approximates to a few ulps)."""
    return np.exp(x)


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (a no-op for the CPU; LLVM's bitcast)."""
    signature = types.float32(types.int32)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return signature, codegen


C7, C6, C5, C4, C3, C2 = TAYLOR
ONE = np.float32(1.0)
HALF = np.float32(0.5)


@njit(inline="always", fastmath=ELEMENTWISE)
def exp_f32(x):
    """exp of one float32, branch-free, for use inside Numba loops (which it lets vectorise)."""
    x = min(max(x, EXP_INPUT_MIN), EXP_INPUT_MAX)
    k = np.floor(x * LOG2_E + HALF)  # float32, an integer in [-126, 128)
    r = (x - k * LN2_HI) - k * LN2_LO  # |r| <= ln(2) / 2
    p = C7
    p = p * r + C6
    p = p * r + C5
    p = p * r + C4
    p = p * r + C3
    p = p * r + C2
    p = p * r + ONE
    p = p * r + ONE  # exp(r)
    two_to_k = _float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))
    return p * two_to_k


@njit(cache=True)
def _exp_array_kernel(x, out):  # x, out: float32 [N]
    for i in range(x.shape[0]):
        out[i] = exp_f32(x[i])


def exp(x: np.ndarray) -> np.ndarray:
    """`exp_f32` over a float32 array (for tests and for reading; kernels call exp_f32 inline)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    _exp_array_kernel(x.reshape(-1), out.reshape(-1))
    return out
