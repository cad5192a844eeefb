"""GELU, tanh approximation (Hendrycks & Gimpel 2016), the activation GPT-2 was trained with.

    gelu(x) = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))

`gelu_reference` is the NumPy statement of it. `gelu` is the Numba kernel the model runs. It uses
the identity 0.5 * (1 + tanh(u)) = 1 / (1 + exp(-2u)), so each element costs one `exp_f32` (which
vectorises, where the C library's tanh would be one call per element) and one division:

    gelu(x) = x / (1 + exp(-2 sqrt(2 / pi) (x + 0.044715 x^3)))

which is also free of the cancellation in 1 + tanh(u) for negative u. Small arrays (one decode
step: a few thousand elements) run on the calling thread; starting the thread pool would cost more
than the work. Both stay float32.
"""

import math

import numpy as np
from numba import njit, prange

from . import settings
from .exp import exp_f32
from .settings import ELEMENTWISE

SQRT_2_OVER_PI = np.float32(math.sqrt(2.0 / math.pi))
CUBIC_COEFF = np.float32(0.044715)
MINUS_TWO_SQRT_2_OVER_PI = np.float32(-2.0 * math.sqrt(2.0 / math.pi))
ONE = np.float32(1.0)


def gelu_reference(x: np.ndarray) -> np.ndarray:
    """NumPy tanh GELU. x: float32 array of any shape -> float32 array of the same shape."""
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + CUBIC_COEFF * x * x * x)))


@njit(inline="always", fastmath=ELEMENTWISE)
def _gelu_one(v):
    return v / (ONE + exp_f32(MINUS_TWO_SQRT_2_OVER_PI * (v + CUBIC_COEFF * v * v * v)))


@njit(fastmath=ELEMENTWISE, cache=True)
def _gelu_serial(x, out):  # x, out: float32 [N], contiguous
    for i in range(x.shape[0]):
        out[i] = _gelu_one(x[i])


@njit(parallel=True, fastmath=ELEMENTWISE, cache=True)
def _gelu_parallel(x, out):  # x, out: float32 [N], contiguous
    for i in prange(x.shape[0]):
        out[i] = _gelu_one(x[i])


def gelu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Numba tanh GELU. x: contiguous float32 array -> float32 array of its shape.

    Pass `out=x` to overwrite the input and save an allocation on the hot path.
    """
    if x.dtype != np.float32:
        raise TypeError(f"gelu expects float32, got {x.dtype}")
    x = np.ascontiguousarray(x)
    if out is None:
        out = np.empty_like(x)
    # The kernel writes through a flat view: a non-contiguous `out` (an intervention may hand one
    # back) has none, so it gets the result by a copy.
    target = out if out.flags.c_contiguous else np.empty_like(x)
    kernel = _gelu_parallel if x.size >= settings.PARALLEL_MIN_ELEMENTS else _gelu_serial
    kernel(x.reshape(-1), target.reshape(-1))
    if target is not out:
        out[...] = target
    return out
