"""One setting for the engine's threads: Numba's parallel kernels and the matrix products.

`set_threads(n)` sets it; `gpt2 ... --threads N` on the command line; the environment variable
GPT2_ENGINE_THREADS when the first model is loaded (unless `set_threads` was called first). By
default every core.

The engine runs BLAS single-threaded and splits its large products into `n` row blocks itself,
one sgemm call per block on Numba's worker threads (kernels/linear.py, kernels/blas.py), so that
only one kind of worker thread is ever spinning for work: OpenBLAS's own threads busy-wait for
~0.1 s after each call and would take the cores from Numba's. Loading a model therefore limits
BLAS to one thread in this process (through threadpoolctl), for the engine's sake.
"""

from __future__ import annotations

import os

import numba
from threadpoolctl import threadpool_limits

from .checks import shown
from .errors import InputError

ENV_VAR = "GPT2_ENGINE_THREADS"

# Numba's OpenMP threads busy-wait after each parallel kernel before they sleep (GNU OpenMP's
# default: 300,000 spins, milliseconds), which takes other processes' time on a shared machine.
# 10,000 spins (tens of microseconds) keep back-to-back kernels quick and then let the thread sleep
# (docs/speed.md has the measurements). libgomp reads it when Numba first loads it, so it is set
# here, at import; an explicit setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
_blas_limit = None  # keeps threadpoolctl's limit alive; set once threads are configured


def set_threads(n: int) -> None:
    """Use `n` threads (1 <= n <= the cores Numba sees) for kernels and matrix products."""
    global _blas_limit
    available = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]  # set when numba loads
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= available:
        raise InputError(f"threads must be an integer from 1 to {available} (the cores available), got {shown(n)}")
    numba.set_num_threads(n)
    _blas_limit = threadpool_limits(limits=1, user_api="blas")  # every BLAS loaded by now


def get_threads() -> int:
    return numba.get_num_threads()


def threads_from_environment() -> None:
    """Apply GPT2_ENGINE_THREADS (default: every core), once per process, unless already set."""
    if _blas_limit is not None:
        return
    value = os.environ.get(ENV_VAR)
    if not value:
        set_threads(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        return
    try:
        threads = int(value)
    except ValueError:
        raise InputError(f"{ENV_VAR} must be an integer, got {shown(value)}") from None
    set_threads(threads)
