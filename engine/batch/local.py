"""Running rows on this machine: in `workers` processes (one or more) that each load the model once
and compute with `threads` threads. Never in the calling process, whose kernels may have been
compiled there rather than loaded from the cache (tasks.warm_kernel_cache says why that matters).

The processes are started with "spawn" (a fresh interpreter: forking a process that has started
Numba's threads is unsafe) and ignore Ctrl-C: the driver takes it, writes what is finished and
ends them. Each takes lists of rows from one queue and puts their output on another; the driver
keeps two lists per worker waiting, so a worker never idles and little is lost to an interruption.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections.abc import Iterator

from ..base.errors import GPT2Error
from ..base.threads import ENV_VAR
from .rows import Row
from .tasks import Done, Job, load_model, run_rows

# A job that stops early (a worker failed, Ctrl-C) gives its workers this long to leave on their own
# before they are terminated: a worker killed while it runs its exit handlers can leave a
# semaphore half cleaned up, and Python's resource tracker then prints warnings after our error line.
STOP_GRACE_SECONDS = 2.0


def chunks(rows: list[Row], size: int) -> list[list[Row]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def worker_main(source: str, threads: int, job: Job, tasks, results, driver: int) -> None:
    """A worker process: load the model, then run lists of rows until told to stop (None), or until
    the driver (process id `driver`) is gone: killed, it cannot say so."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C
    os.environ[ENV_VAR] = str(threads)
    try:
        model = load_model(source, threads)
    except GPT2Error as error:
        results.put(("failed", str(error)))
        return
    while os.getppid() == driver:
        try:
            rows = tasks.get(timeout=1.0)
        except queue.Empty:
            continue
        if rows is None:
            return
        try:
            results.put(("done", run_rows(model, job, rows)))
        except Exception:  # a bug: its traceback goes to the driver, which stops the job with it
            results.put(("crashed", traceback.format_exc()))
            return


class ProcessPool:
    """`workers` processes running `job` on the model at `source`, with `threads` threads each."""

    def __init__(self, workers: int, source: str, threads: int, job: Job):
        context = multiprocessing.get_context("spawn")
        self.tasks = context.Queue()
        self.results = context.Queue()
        self.processes = [
            context.Process(
                target=worker_main,
                args=(source, threads, job, self.tasks, self.results, os.getpid()),
                name=f"gpt2-batch-{i}",
            )
            for i in range(workers)
        ]
        for process in self.processes:
            process.start()

    def run(self, rows: list[Row], size: int) -> Iterator[list[Done]]:
        """The outputs of every list of `size` rows, as they finish (in any order)."""
        waiting: Iterator[list[Row] | None] = iter(chunks(rows, size))
        outstanding = 0
        for rows_of_task in waiting:
            self.tasks.put(rows_of_task)
            outstanding += 1
            if outstanding == 2 * len(self.processes):
                break
        while outstanding:
            done = self._next_result()
            outstanding -= 1
            rows_of_task = next(waiting, None)
            if rows_of_task is not None:
                self.tasks.put(rows_of_task)
                outstanding += 1
            yield done

    def _next_result(self) -> list[Done]:
        while True:
            try:
                kind, payload = self.results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in self.processes if p.exitcode is not None]
                if dead:  # killed (out of memory?) or crashed before it could say so
                    raise RuntimeError(
                        f"worker process {dead[0].name} ended with exit status {dead[0].exitcode}"
                    ) from None
                continue
            if kind == "failed":
                raise GPT2Error(payload)
            if kind == "crashed":
                raise RuntimeError(f"a worker process failed:\n{payload}")
            return payload

    def close(self, finished: bool) -> None:
        """Stop the workers: politely once the work is done; after a short grace otherwise."""
        if not finished:  # what is still queued will never be read: do not wait to flush it at exit
            self.tasks.cancel_join_thread()
            self.results.cancel_join_thread()
        for _ in self.processes:
            self.tasks.put(None)  # an idle worker leaves at once
        deadline = time.monotonic() + (30.0 if finished else STOP_GRACE_SECONDS)
        for process in self.processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        for process in self.processes:
            if process.exitcode is None:
                process.terminate()
                process.join()
        self.tasks.close()
        self.results.close()
