"""Causal multi-head attention over a KV cache.

Legend (as in llm.c): B = batch rows, H = heads, T = queries in this call, S = key slots
(everything the cache holds after this call's keys were written, so S >= T), D = head size.

The queries of a call are the last T of the S slots: query t sits at slot S - T + t and may attend
to the slots `key_start[b] <= s <= S - T + t`. `key_start[b]` is the number of left-padding slots
of batch row b (0 without padding); a query with nothing to attend to (a padding slot) outputs 0.

    probs = softmax(q @ k^T * scale, masked as above)      # [B, H, T, S]
    out   = probs @ v                                      # [B, H, T, D]

`causal_attention_reference` computes that in NumPy and also returns the probabilities (for
inspection); `causal_attention` is the Numba kernel the model runs, which never materialises the
[T, S] matrix. Both are float32 throughout.
"""

import numpy as np
from numba import njit, prange

from . import settings
from .exp import exp_f32
from .settings import DOT_PRODUCTS


def causal_attention_reference(q, k, v, key_start, scale):
    """NumPy causal attention.

    q: float32 [B, H, T, D]; k, v: float32 [B, H, S, D]; key_start: int [B]; scale: float.
    Returns (out float32 [B, H, T, D], probs float32 [B, H, T, S]).
    """
    T, S = q.shape[2], k.shape[2]
    scores = (q @ k.swapaxes(-1, -2)) * np.float32(scale)  # [B, H, T, S]
    query_slot = np.arange(S - T, S)[:, None]  # [T, 1]
    key_slot = np.arange(S)[None, :]  # [1, S]
    allowed = (key_slot <= query_slot) & (key_slot >= np.asarray(key_start)[:, None, None])  # [B, T, S]
    allowed = allowed[:, None]  # [B, 1, T, S]
    scores = np.where(allowed, scores, np.float32(-np.inf))
    row_max = scores.max(axis=-1, keepdims=True)  # [B, H, T, 1]
    row_max = np.where(np.isfinite(row_max), row_max, np.float32(0))  # fully masked rows
    weights = np.where(allowed, np.exp(scores - row_max), np.float32(0))  # [B, H, T, S]
    total = weights.sum(axis=-1, keepdims=True)
    probs = weights / np.where(total > 0, total, np.float32(1))  # masked rows stay all zero
    return probs @ v, probs  # [B, H, T, D], [B, H, T, S]


# not inlined: one machine code for both twins (batch invariance, kernels/settings.py)
@njit(fastmath=DOT_PRODUCTS, cache=True)
def _attend_one_head(q, k, v, first, scale, out):
    """One (batch row, head): q [T, D], k and v [S, D] -> out [T, D]; keys before `first` are padding.

    Per query: its scores over the visible keys, softmax (exponentials by `exp_f32`, which
    vectorises), then the probability-weighted sum of the values. Each is a plain loop that LLVM
    turns into SIMD instructions; scores and values are taken four keys at a time so each load of
    q, or of the accumulator, serves four keys. The scratch arrays are allocated here, so the
    compiler knows they alias nothing else (which it must know to vectorise), and the keys are
    renumbered from the first visible one so every loop starts at 0 (a loop starting at a
    run-time offset vectorises worse; docs/speed.md).
    """
    T, D = q.shape
    k = k[first:]  # [S - first, D]: the keys a query may see, renumbered from 0
    v = v[first:]
    S = k.shape[0]
    scores = np.empty(S, dtype=np.float32)  # this query's scores, then its probabilities
    q_scaled = np.empty(D, dtype=np.float32)
    acc = np.empty(D, dtype=np.float32)
    for t in range(T):
        n = S - T + t + 1  # keys this query sees: up to its own slot
        if n <= 0:  # a padding query: nothing to attend to
            out[t, :] = np.float32(0.0)
            continue
        for d in range(D):
            q_scaled[d] = q[t, d] * scale
        row_max = np.float32(-3.0e38)  # (kept as the scores are made: a separate pass would not vectorise)
        s = 0  # scores of the visible keys
        while s + 4 <= n:
            dot0 = dot1 = dot2 = dot3 = np.float32(0.0)
            for d in range(D):
                qd = q_scaled[d]
                dot0 += qd * k[s, d]
                dot1 += qd * k[s + 1, d]
                dot2 += qd * k[s + 2, d]
                dot3 += qd * k[s + 3, d]
            scores[s], scores[s + 1], scores[s + 2], scores[s + 3] = dot0, dot1, dot2, dot3
            row_max = max(row_max, max(max(dot0, dot1), max(dot2, dot3)))
            s += 4
        while s < n:
            dot = np.float32(0.0)
            for d in range(D):
                dot += q_scaled[d] * k[s, d]
            scores[s] = dot
            row_max = max(row_max, dot)
            s += 1
        total = np.float32(0.0)
        for s in range(n):  # softmax numerators (stable: minus the row maximum)
            e = exp_f32(scores[s] - row_max)
            scores[s] = e
            total += e
        acc[:] = np.float32(0.0)
        s = 0  # the weighted sum of the values
        while s + 4 <= n:
            w0, w1, w2, w3 = scores[s], scores[s + 1], scores[s + 2], scores[s + 3]
            for d in range(D):
                acc[d] += w0 * v[s, d] + w1 * v[s + 1, d] + w2 * v[s + 2, d] + w3 * v[s + 3, d]
            s += 4
        while s < n:
            w = scores[s]
            for d in range(D):
                acc[d] += w * v[s, d]
            s += 1
        inv_total = np.float32(1.0) / total
        for d in range(D):
            out[t, d] = acc[d] * inv_total


@njit(parallel=True, fastmath=DOT_PRODUCTS, cache=True)
def _attention_parallel(q, k, v, n_keys, key_start, scale, out):
    B, H, T, D = q.shape
    scale = np.float32(scale)
    for bh in prange(B * H):  # heads are independent: one task each
        b = bh // H
        h = bh % H
        _attend_one_head(q[b, h], k[b, h, :n_keys], v[b, h, :n_keys], key_start[b], scale, out[b, h])


@njit(fastmath=DOT_PRODUCTS, cache=True)
def _attention_serial(q, k, v, n_keys, key_start, scale, out):
    B, H, T, D = q.shape
    scale = np.float32(scale)
    for b in range(B):
        for h in range(H):
            _attend_one_head(q[b, h], k[b, h, :n_keys], v[b, h, :n_keys], key_start[b], scale, out[b, h])


def _c_contiguous_parent(a: np.ndarray) -> np.ndarray:
    """A C-contiguous [B, H, M, D] array whose first S slots are `a` [B, H, S, D] (M >= S).

    The cache hands attention views of its first S slots out of M allocated ones. Numba compiles
    such a view as an array of any layout, and then cannot prove that a row of D values is
    contiguous, so the loops over D stay scalar (docs/speed.md). The whole allocated block is
    C-contiguous, so the kernel is given that (and S): same memory, no copy. Other layouts are
    copied.
    """
    B, H, S, D = a.shape
    item = a.itemsize
    row, head, batch = a.strides[2], a.strides[1], a.strides[0]
    if a.flags.c_contiguous:
        return a
    if (
        a.strides[3] == item
        and row == D * item
        and head % row == 0
        and head // row >= S
        and (B == 1 or batch == H * head)
    ):
        M = head // row
        return np.lib.stride_tricks.as_strided(a, shape=(B, H, M, D), strides=(H * head, head, row, item))
    return np.ascontiguousarray(a)


def causal_attention(q, k, v, key_start, scale, out=None):
    """Numba causal attention: same arguments as the reference; returns out float32 [B, H, T, D]."""
    if out is None:
        out = np.empty(q.shape, dtype=np.float32)
    B, H, T, D = q.shape
    S = k.shape[2]
    kernel = _attention_parallel if B * H * T * S * D >= settings.PARALLEL_MIN_MULTIPLY_ADDS else _attention_serial
    q = np.ascontiguousarray(q)  # one compiled layout (decode steps give C, prompts strided views)
    kernel(
        q, _c_contiguous_parent(k), _c_contiguous_parent(v), S, np.asarray(key_start, dtype=np.int64), float(scale), out
    )
    return out
