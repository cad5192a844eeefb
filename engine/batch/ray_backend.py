"""Running rows on a Ray cluster through Ray Data (the `ray` extra: pip install -e ".[ray]").

    rows (one JSON text each) -> ray.data.from_items -> map_batches(RowsWorker, an actor pool of
    `workers` actors, `threads` CPUs each) -> iter_batches on the driver, in the input's order

`RowsWorker` is the callable class of Ray Data's batch inference pattern: each actor loads the model
once, in its constructor, then runs the batches it is given through `run_rows`, the step the local
workers run. Ray is imported here only, and only when a job asks for it: the engine itself never
imports Ray.

Where Ray runs: `address` None connects to RAY_ADDRESS if it is set, else starts a new Ray instance
on this machine for the job (stopped at its end; never one that happens to be running); an address
("HOST:PORT", "ray://HOST:10001") joins that cluster. A Ray already initialised in this process
(ray.init by the caller) is used as it is.
"""

from __future__ import annotations

import logging
import os
import site
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..base.errors import GPT2Error
from ..base.threads import get_threads, set_threads
from .rows import Row
from .tasks import Done, Job, decode_row, encode_row, load_model, run_rows, warm_kernel_cache

ENGINE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds the `engine` package


class RowsWorker:
    """A Ray Data actor: the model loaded once per actor, then batches of rows in, lines out."""

    def __init__(self, source: str, threads: int, job: Job, first_row: str):
        self.job, self.threads = job, threads
        self.failure = ""
        try:
            warm_kernel_cache(source, threads, job, decode_row(first_row))  # this node's cache
            self.model = load_model(source, threads)
        except GPT2Error as error:  # told to the driver by the first call, in its `failure` column: Ray
            self.failure = str(error)  # passes a failed constructor or call on as a traceback's text

    def __call__(self, batch: dict) -> dict:
        # Ray Data calls this on another thread than the constructor's, and Numba's thread count
        # belongs to the calling thread: unset there, the kernels would take every core (and give
        # other last bits than the job's `threads`).
        if get_threads() != self.threads:
            set_threads(self.threads)
        if self.failure:
            # Ray Data wants columns of equal lengths; a failed actor answers with one placeholder row
            # instead of the batch's rows: index -1, no line, and the reason in its `failure` column.
            done, failure = [Done(-1, "")], [self.failure]
        else:
            done = run_rows(self.model, self.job, [decode_row(text) for text in batch["row"].tolist()])
            failure = [""] * len(done)
        return {
            "index": np.array([d.index for d in done], dtype=np.int64),
            "line": np.array([d.line for d in done], dtype=object),
            "tokens": np.array([d.tokens for d in done], dtype=np.int64),
            "error": np.array([d.error or "" for d in done], dtype=object),
            "failure": np.array(failure, dtype=object),
        }


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise GPT2Error('Ray is not installed: pip install "gpt2-engine[ray]" (or pip install "ray[data]")') from None
    return ray


def connect(ray, address: str | None, cpus: int) -> bool:
    """Initialise Ray for the job; whether this call started it (and so must shut it down). A Ray
    started here has this machine's cores as CPUs, or `cpus` if more (the actors then share the
    cores, as that many local workers would, rather than wait for CPUs that never come)."""
    if ray.is_initialized():
        return False
    options: dict = {"logging_level": logging.WARNING, "log_to_driver": False}
    if not address and not os.environ.get("RAY_ADDRESS"):
        # "local": a new Ray for this job, never one found running on the machine (Ray's default for
        # no address). Its workers import this same engine, wherever it was imported from.
        address = "local"
        options |= {"include_dashboard": False, "num_cpus": max(os.cpu_count() or 1, cpus)}
        if ENGINE_ROOT not in (*site.getsitepackages(), site.getusersitepackages()):  # a source checkout
            path = os.pathsep.join(p for p in (ENGINE_ROOT, os.environ.get("PYTHONPATH")) if p)
            options["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
    try:
        ray.init(address=address or None, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = address or os.environ.get("RAY_ADDRESS") or "a local Ray"
        raise GPT2Error(f"cannot start or reach Ray at {where}: {str(error).strip().splitlines()[0]}") from None
    return True


def cluster_cpus(ray) -> float:
    return float(ray.cluster_resources().get("CPU", 0))


def ray_results(
    rows: list[Row], job: Job, *, source: str, workers: int, threads: int, size: int, address: str | None
) -> Iterator[list[Done]]:
    """The outputs of the rows, `size` rows per batch, in the rows' order."""
    ray = import_ray()
    blocks = max(1, -(-len(rows) // size))  # one block per batch of `size` rows
    actors = min(workers, blocks)  # no actor without a batch
    context = ray.data.DataContext.get_current()  # this process's: put back as it was at the end
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    started = connect(ray, address, actors * threads)
    try:
        cpus = cluster_cpus(ray)
        if cpus < actors * threads:
            print(
                f"gpt2: warning: the Ray cluster has {cpus:g} CPUs; {actors} actors x {threads} threads need "
                f"{actors * threads} (the job waits for them)",
                file=sys.stderr,
            )
        context.execution_options.preserve_order = True  # rows come back in the order they went in
        context.enable_progress_bars = False  # the job has its own
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
        items = [{"index": row.index, "row": encode_row(row)} for row in rows]
        dataset = ray.data.from_items(items, override_num_blocks=blocks)
        dataset = dataset.map_batches(
            RowsWorker,
            fn_constructor_kwargs={"source": source, "threads": threads, "job": job, "first_row": items[0]["row"]},
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=size,
            batch_format="numpy",
            num_cpus=threads,
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            failures = [str(reason) for reason in batch["failure"] if reason]  # (a batch may join blocks)
            if failures:  # an actor could not load the model
                raise GPT2Error(f"a Ray worker failed: {failures[0]}")
            columns = zip(batch["index"], batch["line"], batch["tokens"], batch["error"])
            yield [Done(int(i), str(line), int(tokens), str(error) or None) for i, line, tokens, error in columns]
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        if started:
            ray.shutdown()
