"""The KV cache: keys and values of every layer, kept so each new token costs one step.

Preallocated once per generation as one float32 block per kind,
    keys, values: [L, B, H, max_length, D]
(L layers, B batch rows, H heads, D head size) and filled left to right. `length` is the number of
slots already written. Rows of a batch may start with left padding: `left_padding[b]` slots that
hold no real token, which attention skips and position numbering ignores, so a prompt gives the
same result in a batch as alone.

The blocks are mapped lazily on ordinary 4 KiB pages (`lazy_zeros`): a cache sized for the whole
context costs memory only for the pages actually written.
"""

from __future__ import annotations

import math
import mmap

import numpy as np

from ..base.checks import check_counts, check_integer, check_memory


def lazy_zeros(shape) -> np.ndarray:
    """float32 zeros [shape] on 4 KiB pages that the operating system maps when first written.

    Not np.zeros: NumPy asks for 2 MiB transparent huge pages on large blocks, and a head's slots
    are max_length x D floats apart, so writing one token would map and clear a whole 2 MiB page per
    head, and a cache sized for the whole context would cost its full size (docs/speed.md).
    """
    count = math.prod(shape)
    if not hasattr(mmap, "MAP_ANONYMOUS"):  # not a POSIX system: whatever np.zeros does there
        return np.zeros(shape, dtype=np.float32)
    block = mmap.mmap(-1, max(4 * count, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # zero-filled
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        block.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(block, dtype=np.float32, count=count).reshape(shape)  # keeps `block` alive


class KVCache:
    def __init__(self, n_layer, batch_size, n_head, head_dim, max_length, left_padding=None):
        batch_size = check_integer("batch_size", batch_size, 1)
        max_length = check_integer("max_length", max_length, 1)
        shape = (n_layer, batch_size, n_head, max_length, head_dim)
        # Mapped lazily, but mapped: the address space must be there (and pages fill as tokens come).
        check_memory(2 * 4 * math.prod(shape), f"a KV cache of batch_size={batch_size}, max_length={max_length}")
        if left_padding is None:
            left_padding = np.zeros(batch_size, dtype=np.int64)
        self.left_padding = check_counts(left_padding, "left_padding", batch_size)  # [B]
        self.keys = lazy_zeros(shape)  # [L, B, H, max_length, D]
        self.values = lazy_zeros(shape)  # [L, B, H, max_length, D]
        self.length = 0  # slots written so far, the same for every layer and row

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    @property
    def max_length(self) -> int:
        return self.keys.shape[3]

    def write(self, layer: int, k: np.ndarray, v: np.ndarray):
        """Store this call's keys and values of one layer after what the cache holds.

        k, v: float32 [B, H, T, D]. Returns views of every slot so far, keys and values [B, H, length + T, D].
        The length only moves on in `advance`, once all layers have written.
        """
        end = self.length + k.shape[2]
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, n_tokens: int) -> None:
        self.length += n_tokens

    def room(self) -> int:
        return self.max_length - self.length

    def first_rows(self, n: int) -> KVCache:
        """A cache over this one's first n rows, sharing its blocks (views: what a model call writes
        through it lands here) and starting at its length; its own `length` moves on alone. A
        continuous batch (engine/generation/continuous.py) calls the model on its B live rows this
        way without copying the cache."""
        n = check_integer("n", n, 1, self.batch_size)
        view = object.__new__(KVCache)
        view.keys, view.values = self.keys[:, :n], self.values[:, :n]  # [L, n, H, max_length, D]
        view.length, view.left_padding = self.length, self.left_padding[:n]
        return view

    def select_rows(self, rows) -> None:
        """Make row i of the cache a copy of the current row rows[i], for every i.

        rows: ints [B'] in [0, B): rows may repeat (several samples or beams of one prompt), be
        left out (finished sequences) or change places (beam search). Only the slots written so
        far are copied. The identity leaves everything as it is.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.shape == (self.batch_size,) and (rows == np.arange(self.batch_size)).all():
            return
        written = self.length
        kept_keys = self.keys[:, rows, :, :written]  # [L, B', H, length, D], a copy
        kept_values = self.values[:, rows, :, :written]
        if rows.shape != (self.batch_size,):  # a new batch size: new blocks
            shape = (self.keys.shape[0], rows.size, *self.keys.shape[2:])
            self.keys = lazy_zeros(shape)
            self.values = lazy_zeros(shape)
        self.keys[:, :, :, :written] = kept_keys
        self.values[:, :, :, :written] = kept_values
        self.left_padding = self.left_padding[rows]
