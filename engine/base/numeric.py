"""Small numeric operations on the last axis, shared by generation, scoring and the analyses.

All keep float32 in, float32 out. The top-k selection has one rule everywhere (sampling's top-k and
top-p, beam search, the logit lens): the k highest scores, and among scores tied with the k-th
highest, the lowest indices, so that exactly k are chosen and the choice never depends on how a
sort happened to break a tie.
"""

from __future__ import annotations

import numpy as np

NEG_INF = np.float32(-np.inf)


# A score more than float32's range below the row's maximum is -inf once shifted: its exp is 0,
# as it would be anyway, so that overflow is not worth a warning.


def softmax(x, axis=-1):  # [..., V] -> [..., V], rows summing to 1
    with np.errstate(over="ignore"):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):  # [..., V] -> [..., V], log-probabilities
    with np.errstate(over="ignore"):
        shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def highest_k(values, k: int):  # [G, N] -> bool [G, N], exactly k True per row (k <= N)
    """The k highest values of each row; among values tied with the k-th highest, the lowest indices."""
    N = values.shape[1]
    kth = np.partition(values, N - k, axis=1)[:, N - k : N - k + 1]  # [G, 1], the k-th highest, in O(N)
    above = values > kth
    tied = values == kth
    room = k - above.sum(axis=1, keepdims=True)  # how many of the tied values fit
    return above | (tied & (np.cumsum(tied, axis=1) <= room))


def top_sorted(scores, k: int):  # [G, N] -> indices int64 [G, k], values [G, k]
    """The k highest scores of each row (see `highest_k`), highest first, equal scores by index."""
    G, N = scores.shape
    k = min(k, N)
    indices = np.nonzero(highest_k(scores, k))[1].reshape(G, k)  # [G, k], increasing
    values = np.take_along_axis(scores, indices, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")  # stable: equal values keep index order
    return np.take_along_axis(indices, order, axis=1), np.take_along_axis(values, order, axis=1)


def top_k_mask(scores, k):  # [B, V] -> bool [B, V]
    """True for exactly k tokens per row (`highest_k`); `k` is an int or one int per row. Tokens
    already ruled out (-inf) are never kept, so a row with fewer than k others keeps just those
    (and a k above V, however large, keeps every token, as Hugging Face's top-k does)."""
    B, V = scores.shape
    if np.ndim(k) == 0:
        k = min(int(k), V)  # before NumPy sees it: a Python int may not fit in int64
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), (B,))
    keep = np.zeros((B, V), dtype=bool)
    for b in range(B):
        # Only tokens not ruled out yet compete (np.partition is slow on long runs of -inf).
        candidates = np.flatnonzero(scores[b] > NEG_INF)  # [n] ids, increasing
        if ks[b] >= candidates.size:
            keep[b, candidates] = True
        else:
            keep[b, candidates[highest_k(scores[b, candidates][None], int(ks[b]))[0]]] = True
    return keep
