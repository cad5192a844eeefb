"""One setting for the engine's threads: Numba's parallel kernels and the BLAS under NumPy's matmul.

`set_threads(n)` sets both; `gpt2 ... --threads N` on the command line. The environment variable
GPT2_ENGINE_THREADS does the same when the first model is loaded. By default both use every core.
"""

from __future__ import annotations

import os

import numba
from threadpoolctl import threadpool_limits

from .errors import InputError

ENV_VAR = "GPT2_ENGINE_THREADS"
_blas_limit = None  # keeps threadpoolctl's limit alive
_environment_applied = False


def set_threads(n: int) -> None:
    """Use `n` threads in Numba kernels and in BLAS (1 <= n <= the cores Numba sees)."""
    global _blas_limit
    available = numba.config.NUMBA_NUM_THREADS
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= available:
        raise InputError(f"threads must be an integer from 1 to {available} (the cores available), got {n!r}")
    numba.set_num_threads(n)
    _blas_limit = threadpool_limits(limits=n, user_api="blas")


def get_threads() -> int:
    return numba.get_num_threads()


def threads_from_environment() -> None:
    """Apply GPT2_ENGINE_THREADS, once per process."""
    global _environment_applied
    if _environment_applied:
        return
    _environment_applied = True
    value = os.environ.get(ENV_VAR)
    if value:
        try:
            set_threads(int(value))
        except ValueError:
            raise InputError(f"{ENV_VAR} must be an integer, got {value!r}") from None
