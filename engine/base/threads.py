"""One setting for the engine's threads: Numba's parallel kernels and the matrix products.

`set_threads(n)` sets it; `gpt2 ... --threads N` on the command line; the environment variable
GPT2_ENGINE_THREADS when the first model is loaded (unless `set_threads` was called first). By
default ("auto") every core, with decode steps free to drop to one thread while that is faster
(`DecodeThreads`, below): on a busy machine a parallel kernel's closing barrier waits for a thread
that has lost its core, and one thread then beats two several times over. A number fixes the count.

The engine runs BLAS single-threaded and splits its large products into bands of columns itself,
one sgemm call per band on Numba's worker threads (kernels/linear.py, kernels/blas.py), so that
only one kind of worker thread is ever spinning for work: OpenBLAS's own threads busy-wait for
~0.1 s after each call and would take the cores from Numba's. Loading a model therefore limits
BLAS to one thread in this process (through threadpoolctl), for the engine's sake.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
_adaptive = False  # "auto": decode steps may run on one thread (DecodeThreads)
AUTO = "auto"


def available_threads() -> int:
    """The most threads `set_threads` takes: the cores Numba sees (NUMBA_NUM_THREADS)."""
    return numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]  # set when numba loads


def set_threads(n: int | str) -> None:
    """Use `n` threads (1 <= n <= the cores Numba sees) for kernels and matrix products; or "auto":
    every core, with each decode step on all of them or on one, whichever is faster now."""
    global _blas_limit, _adaptive
    available = available_threads()
    if n == AUTO:
        n, adaptive = available, True
    elif not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= available:
        raise InputError(
            f"threads must be an integer from 1 to {available} (the cores available) or 'auto', got {shown(n)}"
        )
    else:
        adaptive = False
    numba.set_num_threads(n)
    _adaptive = adaptive
    _blas_limit = threadpool_limits(limits=1, user_api="blas")  # every BLAS loaded by now


def get_threads() -> int:
    return numba.get_num_threads()


def threads_setting() -> int | str:
    """What set_threads was given: a number, or "auto"."""
    return AUTO if _adaptive else get_threads()


def threads_from_environment() -> None:
    """Apply GPT2_ENGINE_THREADS (default: every core), once per process, unless already set."""
    if _blas_limit is not None:
        return
    value = os.environ.get(ENV_VAR)
    if not value or value.strip().lower() == AUTO:
        set_threads(AUTO)
        return
    try:
        threads = int(value)
    except ValueError:
        raise InputError(f"{ENV_VAR} must be an integer or 'auto', got {shown(value)}") from None
    set_threads(threads)


class DecodeThreads:
    """Runs each decode step on every thread or on one, whichever has been faster lately.

    A decode step is ~50 short parallel kernels, each ending in a barrier that waits for every
    thread. On a quiet machine all cores stream the weights fastest; when other processes hold the
    cores, a thread that has lost its core holds up every barrier for a time slice, and one
    thread is several times faster (docs/speed.md). So, under the "auto" setting: each step is
    timed; the count with the lower recent time runs, and every PROBE_EVERY steps the other count
    runs once, to notice the load changing. Times are kept per batch size (a step's cost depends
    on it). A step's result is the same on any number of threads (tests/test_batch_invariance.py),
    so this changes the speed only. With a fixed count (set_threads(n)) it does nothing.
    """

    PROBE_EVERY = 32  # the other count's share of steps: 1/32 (its cost on a quiet machine: ~1%)
    KEEP = 2  # the last times kept per (batch size, thread count); the lower one counts

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.times: dict[tuple[int, int], deque[float]] = {}
        self.steps: dict[int, int] = {}  # steps taken per batch size

    def choose(self, batch_size: int, full: int) -> int:
        """The thread count for the next step of `batch_size` rows, out of `full` and 1."""
        counts = (full, 1)
        for n in counts:  # each count is timed once first
            if (batch_size, n) not in self.times:
                return n
        best, other = sorted(counts, key=lambda n: min(self.times[(batch_size, n)]))
        return other if self.steps[batch_size] % self.PROBE_EVERY == 0 else best

    def record(self, batch_size: int, threads: int, seconds: float) -> None:
        self.times.setdefault((batch_size, threads), deque(maxlen=self.KEEP)).append(seconds)
        self.steps[batch_size] = self.steps.get(batch_size, 0) + 1

    @contextmanager
    def step(self, batch_size: int) -> Iterator[None]:
        """Run the body (one decode step of `batch_size` rows) on the thread count chosen for it."""
        full = numba.get_num_threads()
        if not _adaptive or full == 1:
            yield
            return
        threads = self.choose(batch_size, full)
        numba.set_num_threads(threads)
        began = self.clock()
        try:
            yield
        finally:
            self.record(batch_size, threads, self.clock() - began)
            numba.set_num_threads(full)
