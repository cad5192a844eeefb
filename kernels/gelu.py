"""GELU, tanh approximation (Hendrycks & Gimpel 2016), the activation GPT-2 was trained with.

    gelu(x) = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))

`gelu_reference` is the NumPy statement of it; `gelu` is the Numba kernel the model runs, one
parallel pass over the elements that writes its result in place when asked. Both stay float32.
"""

import math

import numpy as np
from numba import njit, prange

SQRT_2_OVER_PI = np.float32(math.sqrt(2.0 / math.pi))
CUBIC_COEFF = np.float32(0.044715)


def gelu_reference(x: np.ndarray) -> np.ndarray:
    """NumPy tanh GELU. x: float32 array of any shape -> float32 array of the same shape."""
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + CUBIC_COEFF * x * x * x)))


@njit(parallel=True, fastmath={"contract", "nsz"}, cache=True)
def _gelu_kernel(x, out):  # x, out: float32 [N], contiguous
    half = np.float32(0.5)
    one = np.float32(1.0)
    for i in prange(x.shape[0]):
        v = x[i]
        out[i] = half * v * (one + np.tanh(SQRT_2_OVER_PI * (v + CUBIC_COEFF * v * v * v)))


def gelu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Numba tanh GELU. x: contiguous float32 array -> float32 array of its shape.

    Pass `out=x` to overwrite the input and save an allocation on the hot path.
    """
    if x.dtype != np.float32:
        raise TypeError(f"gelu expects float32, got {x.dtype}")
    x = np.ascontiguousarray(x)
    if out is None:
        out = np.empty_like(x)
    _gelu_kernel(x.reshape(-1), out.reshape(-1))
    return out
