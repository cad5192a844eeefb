"""LayerNorm over the last axis (Ba, Kiros & Hinton 2016), as GPT-2 applies it before each sublayer.

    y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias      per row of C values

`layer_norm_reference` states it in NumPy: five array passes, each a temporary the size of x.
`layer_norm` is the Numba kernel: one row at a time while it sits in the L1 cache (its mean, then
its variance from the centred values, then the output), no temporaries. Rows run in parallel only
when there are many (a prompt); one decode step's few rows stay on the calling thread.
"""

import numpy as np
from numba import njit, prange

from . import settings
from .settings import ROW_SUMS


def layer_norm_reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """x: float32 [..., C]; weight, bias: float32 [C] -> float32 [..., C]."""
    mean = x.mean(axis=-1, keepdims=True)  # [..., 1]
    centered = x - mean  # [..., C]
    variance = (centered * centered).mean(axis=-1, keepdims=True)  # [..., 1]
    return centered / np.sqrt(variance + np.float32(eps)) * weight + bias  # [..., C]


# not inlined: one machine code for both twins (batch invariance, kernels/settings.py)
@njit(fastmath=ROW_SUMS, cache=True)
def _normalize_row(x, weight, bias, eps, out):  # x, out: float32 [C]
    C = x.shape[0]
    total = np.float32(0.0)
    for c in range(C):
        total += x[c]
    mean = total / np.float32(C)
    squares = np.float32(0.0)
    for c in range(C):
        centered = x[c] - mean
        squares += centered * centered
    inv_std = np.float32(1.0) / np.sqrt(squares / np.float32(C) + eps)
    for c in range(C):
        out[c] = (x[c] - mean) * inv_std * weight[c] + bias[c]


@njit(fastmath=ROW_SUMS, cache=True)
def _layer_norm_serial(x, weight, bias, eps, out):  # x, out: float32 [N, C]
    for n in range(x.shape[0]):
        _normalize_row(x[n], weight, bias, eps, out[n])


@njit(parallel=True, fastmath=ROW_SUMS, cache=True)
def _layer_norm_parallel(x, weight, bias, eps, out):  # x, out: float32 [N, C]
    for n in prange(x.shape[0]):
        _normalize_row(x[n], weight, bias, eps, out[n])


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """Numba LayerNorm, same arguments and result as `layer_norm_reference` (float32 throughout)."""
    # [N, C]; copied only if x's rows are not one contiguous block (x[:, -k:] of a batch): one
    # compiled layout, and those are a few rows
    rows = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
    out = np.empty(rows.shape, dtype=np.float32)
    kernel = _layer_norm_parallel if rows.shape[0] >= settings.PARALLEL_MIN_ROWS else _layer_norm_serial
    kernel(rows, weight, bias, np.float32(eps), out)
    return out.reshape(x.shape)
