"""The machine's limits, and what a decode step must read.

Decoding one token per row reads every weight once: its speed limit is the memory's read
bandwidth divided by those bytes. `read_bandwidth` measures that bandwidth with two plain Numba
reductions over a float32 array far larger than the caches, using the engine's thread count: a
flat parallel sum, and a sum of rows where each thread adds a contiguous band of rows into its
own vector (the access pattern of the decode kernels, without the multiplies). Each runs on memory
advised as huge pages (as the engine's weights are) and on ordinary pages, best of several passes;
the highest figure is the machine's bandwidth. `decode_bytes` counts the bytes a step reads.
"""

from __future__ import annotations

import math
import mmap
import time

import numba
import numpy as np
from numba import njit, prange

from engine.state.precision import BYTES_PER_WEIGHT as ENGINE_BYTES_PER_WEIGHT
from engine.state.weights import parameter_shapes


@njit(parallel=True, fastmath=True, cache=True)
def _parallel_sum(a):  # a: float32 [N]
    total = np.float32(0.0)
    for i in prange(a.shape[0]):
        total += a[i]
    return total


@njit(parallel=True, fastmath=True, cache=True)
def _row_band_sum(a, parts):  # a: float32 [R, W]; each of `parts` threads sums a band of rows
    R, W = a.shape
    acc = np.zeros((parts, W), dtype=np.float32)
    for p in prange(parts):
        for r in range(p * R // parts, (p + 1) * R // parts):
            for j in range(W):
                acc[p, j] += a[r, j]
    return acc.sum()


def _array(n_bytes: int, huge_pages: bool) -> np.ndarray:
    buffer = mmap.mmap(-1, n_bytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge_pages and hasattr(mmap, "MADV_HUGEPAGE"):
        buffer.madvise(mmap.MADV_HUGEPAGE)
    a = np.frombuffer(buffer, dtype=np.float32)
    a[:] = 1.0  # touch every page, so the timed passes read memory, not fault it in
    return a


def read_bandwidth(gib: float = 1.0, repeats: int = 10) -> dict:
    """Bytes per second read by `numba.get_num_threads()` threads: the median and the best of
    `repeats` passes of each reduction, on huge and on ordinary pages. `bytes_per_s` is the highest
    median. Why medians: on this VM single passes now and then read at 47-63 GB/s where every other
    pass of every variant reads ~33-37 (seen in 1 of 3 trial runs of this function, in flat sums
    only); a best-of-passes limit then moves with those bursts, while the decode figures it is
    compared with are medians."""
    n_bytes = int(gib * (1 << 30))
    threads = numba.get_num_threads()
    result = {"threads": threads, "array_bytes": n_bytes}
    for pages in ("huge_pages", "small_pages"):
        a = _array(n_bytes, pages == "huge_pages")
        rows = a.reshape(-1, 4096)
        for name, reduce in (
            ("flat_sum", lambda a=a: _parallel_sum(a)),
            ("row_band_sum", lambda rows=rows: _row_band_sum(rows, threads)),
        ):
            reduce()  # compile (or load from the cache) and warm outside the timing
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                reduce()
                seconds.append(time.perf_counter() - start)
            result[f"{name}_{pages}"] = n_bytes / float(np.median(seconds))
            result[f"{name}_{pages}_best"] = n_bytes / min(seconds)
        del a, rows
    result["bytes_per_s"] = max(v for k, v in result.items() if k.endswith("pages"))  # medians only
    return result


# Bytes per weight of the matrices (the four of each block and wte, which is also the output layer)
# at each precision, as each side spells it. Vectors (biases, LayerNorm) and wpe stay float32 on
# every side. Q8_0 (llama.cpp): blocks of 32 int8 weights with one float16 scale, 34 bytes per 32.
# ONNX Runtime's dynamic int8: int8 weights with one scale per matrix (~1 byte).
# The engine's precisions take theirs from engine/state/precision.py (int8: q8_0's int8 weights and
# the scale of each block of 32).
BYTES_PER_WEIGHT = {
    **ENGINE_BYTES_PER_WEIGHT,  # float32, bfloat16, float16, int8 (also PyTorch's and ONNX Runtime's float32)
    "F32": 4.0,
    "F16": 2.0,
    "Q8_0": 34 / 32,  # llama.cpp GGUF types
    "dynamic int8": 1.0,  # ONNX Runtime quantize_dynamic
}


def weight_bytes(config) -> int:
    """Bytes of all distinct float32 parameters (the output layer is wte itself)."""
    return 4 * sum(math.prod(shape) for shape in parameter_shapes(config).values())


def matrix_parameters(config) -> int:
    """Parameters of the matrices a precision shrinks: the four of each block, and wte."""
    return sum(
        math.prod(shape) for name, shape in parameter_shapes(config).items() if len(shape) == 2 and name != "wpe.weight"
    )


def decode_bytes(config, batch: int, kv_slots: float, bytes_per_weight: float = 4.0) -> dict:
    """Bytes one decode step (one new token per row) reads, with the matrices at `bytes_per_weight`.

    weights: every block's matrices, biases and LayerNorm parameters, ln_f, the whole wte once for
    the output layer, and one wte row and one wpe row per batch row for the embedding (the rest of
    wte and wpe is not touched by the embedding). The matrices (block matrices and wte) count
    `bytes_per_weight` each, everything else 4. kv: keys and values of `kv_slots` cached slots
    per row, every layer (what attention reads; grows by one slot per step), float32.
    """
    C, L = config.n_embd, config.n_layer
    wpe_bytes = 4 * config.n_positions * C
    float32_weights = (
        weight_bytes(config) - wpe_bytes + 4 * batch * 2 * C
    )  # all but wpe; one wte and one wpe row per row
    weights = float32_weights - (4.0 - bytes_per_weight) * matrix_parameters(config)
    kv = 4 * 2 * L * batch * kv_slots * C
    return {"weights": weights, "kv": kv}
