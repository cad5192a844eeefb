"""Have every kernel ready before it is first needed, on a background thread.

Numba compiles a kernel on its first call, or loads it from its on-disk cache (`cache=True`);
either way the first call of the first kernel also builds Numba's type registries, most of a
second. `GPT2.from_pretrained` starts `KernelWarmUp` before it reads the weights (file reads
release the GIL) and waits for it after, so the first token waits for none of it. Each kernel is
called on tiny arrays of exactly the types the model passes (tests/test_speed_guards.py checks that
every kernel ends up compiled for one signature only: a different one here would be a second compile).
"""

import threading

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
    _sgemm_row_blocks,
)


def warm_up() -> None:
    """Call every kernel once on tiny inputs (compiling it, or loading it from Numba's cache)."""
    f32 = np.float32
    rows, weights, bias = np.ones((2, 8), f32), np.ones((8, 8), f32), np.ones(8, f32)
    out = np.empty((2, 8), f32)
    _layer_norm_serial(rows, bias, bias, f32(1e-5), out)
    _layer_norm_parallel(rows, bias, bias, f32(1e-5), out)
    no_scales = np.empty((1, 0), f32)
    _linear_few_rows_serial(rows, weights, no_scales, bias, out)
    _linear_few_rows(rows, weights, no_scales, bias, out, 2)
    _matmul_transposed_few_rows_serial(rows, weights, out)
    _matmul_transposed_few_rows(rows, weights, out, 2)
    if SGEMM_AVAILABLE:
        _sgemm_row_blocks(rows, weights, False, bias, out, 2)
    flat = np.ones(16, f32)
    _gelu_serial(flat, flat)
    _gelu_parallel(flat, flat)
    q, k = np.ones((1, 2, 1, 8), f32), np.ones((1, 2, 3, 8), f32)
    for kernel in (_attention_serial, _attention_parallel):
        kernel(q, k, k, 3, np.zeros(1, dtype=np.int64), 0.5, np.empty_like(q))


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
