"""Have every kernel ready before it is first needed, on a background thread.

Numba compiles a kernel on its first call, or loads it from its on-disk cache (`cache=True`);
either way the first call of the first kernel also builds Numba's type registries, most of a
second. `GPT2.from_pretrained` starts `KernelWarmUp` before it reads the weights (file reads
release the GIL) and waits for it after, so the first token waits for none of it. Each kernel is
called on tiny arrays of exactly the types the model passes (tests/test_speed_guards.py checks that
every kernel ends up compiled for one signature only: a different one here would be a second compile).

`compile_in_a_child_if_cold`, run when `kernels` is imported, makes every process run kernels loaded
from the cache, never kernels compiled in that process: a kernel runs in the process that compiled it
as compiled, but the copy Numba saves is linked again with the functions it calls and optimised
again, and where LLVM may reorder a sum (kernels/settings.py) the two differ in the last bits. A
process that compiled its attention kernel then scored a text with other last digits than every
process after it. So when the cache is cold, a child process compiles and saves the kernels first,
and this process loads them. (A kernel first called with other types than these, such as a 16-bit
output layer, is still compiled in the process that needs it.)
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from .attention import _attention_parallel, _attention_serial
from .blas import SGEMM_AVAILABLE
from .gelu import _gelu_parallel, _gelu_serial
from .layer_norm import _layer_norm_parallel, _layer_norm_serial
from .linear import (
    _linear_few_rows,
    _linear_few_rows_serial,
    _matmul_transposed_few_rows,
    _matmul_transposed_few_rows_serial,
    _sgemm_column_bands,
)


def _warm_up_calls() -> list[tuple]:
    """(kernel, arguments) for every kernel the model calls: tiny inputs of exactly its types."""
    f32 = np.float32
    rows, weights, bias = np.ones((2, 8), f32), np.ones((8, 8), f32), np.ones(8, f32)
    out = np.empty((2, 8), f32)
    no_scales = np.empty((1, 0), f32)
    flat = np.ones(16, f32)
    q, k = np.ones((1, 2, 1, 8), f32), np.ones((1, 2, 3, 8), f32)
    key_start = np.zeros(1, dtype=np.int64)
    calls = [
        (_layer_norm_serial, (rows, bias, bias, f32(1e-5), out)),
        (_layer_norm_parallel, (rows, bias, bias, f32(1e-5), out)),
        (_linear_few_rows_serial, (rows, weights, no_scales, bias, out)),
        (_linear_few_rows, (rows, weights, no_scales, bias, out, 2)),
        (_matmul_transposed_few_rows_serial, (rows, weights, out)),
        (_matmul_transposed_few_rows, (rows, weights, out, 2)),
        (_gelu_serial, (flat, flat)),
        (_gelu_parallel, (flat, flat)),
        (_attention_serial, (q, k, k, 3, key_start, 0.5, np.empty_like(q))),
        (_attention_parallel, (q, k, k, 3, key_start, 0.5, np.empty_like(q))),
    ]
    if SGEMM_AVAILABLE:
        calls.append((_sgemm_column_bands, (rows, weights, False, bias, out, 2)))
    return calls


def warm_up() -> None:
    """Call every kernel once on tiny inputs (compiling it, or loading it from Numba's cache)."""
    for kernel, arguments in _warm_up_calls():
        kernel(*arguments)


_CHILD = "GPT2_ENGINE_COMPILING_KERNELS"  # set in the child, which must not start one of its own


def _in_cache(kernel) -> bool:
    """Whether Numba's cache holds machine code of `kernel` for its current source (Numba's own index
    file, read the way Numba reads it; if that ever fails, the answer is yes: compile here as before)."""
    try:
        return bool(kernel._cache._cache_file._load_index())
    except Exception:
        return True


def compile_in_a_child_if_cold() -> None:
    """If any kernel is missing from Numba's cache, compile them all in a child process (which saves
    them there) and wait for it, so that this process loads them rather than compiling them."""
    if os.environ.get(_CHILD) or all(_in_cache(kernel) for kernel, _ in _warm_up_calls()):
        return
    root = str(Path(__file__).resolve().parents[1])  # the folder holding `kernels`
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    code = "from kernels.warm_up import warm_up; warm_up()"
    subprocess.run([sys.executable, "-c", code], env=os.environ | {_CHILD: "1", "PYTHONPATH": path}, check=False)


class KernelWarmUp:
    """`warm_up()` on a daemon thread; `wait()` joins it and re-raises anything it raised."""

    def __init__(self):
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="gpt2-engine-warm-up", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            warm_up()
        except BaseException as error:  # handed to the thread that waits
            self.error = error

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error
