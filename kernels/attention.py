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


@njit(parallel=True, fastmath={"reassoc", "contract", "nsz", "arcp"}, cache=True)
def _attention_kernel(q, k, v, key_start, scale, out):
    B, H, T, D = q.shape
    S = k.shape[2]
    scale = np.float32(scale)
    for bh in prange(B * H):
        b = bh // H
        h = bh % H
        scores = np.empty(S, dtype=np.float32)
        acc = np.empty(D, dtype=np.float32)
        first = key_start[b]
        for t in range(T):
            last = S - T + t  # this query's own slot: the last key it may see
            if last < first:  # a padding query: nothing to attend to
                out[b, h, t, :] = np.float32(0.0)
                continue
            # scores over the visible keys, and their maximum (for a stable softmax)
            row_max = np.float32(-3.0e38)
            for s in range(first, last + 1):
                dot = np.float32(0.0)
                for d in range(D):
                    dot += q[b, h, t, d] * k[b, h, s, d]
                dot *= scale
                scores[s] = dot
                if dot > row_max:
                    row_max = dot
            total = np.float32(0.0)
            for s in range(first, last + 1):
                e = np.exp(scores[s] - row_max)
                scores[s] = e
                total += e
            # weighted sum of the values
            acc[:] = np.float32(0.0)
            for s in range(first, last + 1):
                w = scores[s]
                for d in range(D):
                    acc[d] += w * v[b, h, s, d]
            inv_total = np.float32(1.0) / total
            for d in range(D):
                out[b, h, t, d] = acc[d] * inv_total


def causal_attention(q, k, v, key_start, scale, out=None):
    """Numba causal attention: same arguments as the reference; returns out float32 [B, H, T, D]."""
    if out is None:
        out = np.empty(q.shape, dtype=np.float32)
    _attention_kernel(q, k, v, np.asarray(key_start, dtype=np.int64), float(scale), out)
    return out
