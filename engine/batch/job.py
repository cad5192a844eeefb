"""A batch job from start to end: check the paths and options, read and check every row, see what an
earlier run already wrote, hand the rest to a backend, and append its lines in the input's order.

    check_paths -> the model (or only its config and tokenizer) -> job.check_defaults
    -> read_rows + job.check per row (bad rows get their error now) -> lock the output,
    read_existing, check it continues this input -> backend: local worker processes (after one
    that warms the kernel cache) or Ray actors -> OutputFile.add / flush as lists of rows finish -> BatchSummary
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from types import SimpleNamespace

from ..base.checks import check_integer
from ..base.config import GPT2Config
from ..base.errors import GPT2Error, InputError
from ..base.progress import progress_bar
from ..base.threads import available_threads
from ..gpt2 import GPT2
from ..state.hub import resolve_model_dir
from ..state.tokenizer import load_tokenizer
from .local import ProcessPool
from .output import Existing, OutputFile, check_paths, read_existing
from .ray_backend import ray_results
from .rows import Row, error_record, read_rows
from .tasks import Done, Job, failed, warm_kernel_cache

ROWS_PER_TASK = 4  # rows a worker is given at a time (a Ray batch): few enough that little is in flight


@dataclass
class BatchSummary:
    """What a job did. rows: rows of the input (up to the limit); done_before: lines an earlier run
    had written (skipped); written: lines this run wrote; failed: lines of the output with an error,
    earlier runs' included; tokens: tokens this run generated or scored; seconds: this run's time,
    start-up included. A dry run writes nothing: `errors` then lists the rows that would fail."""

    input: str
    output: str
    kind: str
    rows: int = 0
    done_before: int = 0
    written: int = 0
    failed: int = 0
    tokens: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    interrupted: bool = False
    first_error: str | None = None
    errors: list[dict] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.rows - self.done_before - self.written

    def to_dict(self) -> dict:
        return asdict(self) | {"remaining": self.remaining}


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a job, after the finished rows were written: `summary` says how far it got."""

    def __init__(self, summary: BatchSummary):
        super().__init__()
        self.summary = summary


def model_source(model) -> str:
    """What a worker loads: an existing path made absolute (workers start elsewhere), else a name."""
    if isinstance(model, GPT2):
        if model.source is None:
            raise InputError("the model has no directory (model.source) for other workers to load it from")
        return str(Path(model.source).resolve())
    path = Path(os.fspath(model)).expanduser()
    return str(path.resolve()) if path.exists() else os.fspath(model)


def model_face(source: str) -> SimpleNamespace:
    """What checking rows needs of a model, without its weights: its config and tokenizer."""
    model_dir = resolve_model_dir(source)
    config = GPT2Config.from_json(model_dir / "config.json")
    return SimpleNamespace(config=config, tokenizer=load_tokenizer(model_dir, config.vocab_size))


def check_continues(existing: Existing, rows: list[Row], limit: int | None, input_path, output_path) -> None:
    """The output's lines must be the outputs of the input's first rows, one for one."""
    for k in range(min(existing.lines, len(rows))):
        if existing.keys[k] != rows[k].key:
            raise GPT2Error(
                f"{output_path}: line {k + 1} is the output of id {existing.keys[k]}, but row {k + 1} of "
                f"{input_path} (line {rows[k].line}) has id {rows[k].key}: the output belongs to another input "
                "(give another output path, or delete it to start again)"
            )
    if existing.lines > len(rows) and (limit is None or len(rows) < limit):
        raise GPT2Error(
            f"{output_path}: has {existing.lines} lines but {input_path} has {len(rows)} rows: the output "
            "belongs to another input (give another output path, or delete it to start again)"
        )


def run_job(
    input_path,
    output_path,
    job: Job,
    *,
    model="gpt2",
    workers: int = 1,
    threads: int = 1,
    ray=None,
    limit: int | None = None,
    dry_run: bool = False,
    progress: bool | None = None,
    spell=lambda name: name,
) -> BatchSummary:
    """Run `job` over the rows of `input_path` into `output_path` (see engine/batch/__init__.py).
    spell: how an option is named in errors (the command line names its flags)."""
    start = time.perf_counter()
    check_paths(input_path, output_path)
    use_ray = ray is not None and ray is not False
    check_integer(spell("workers"), workers, 1)
    if use_ray:  # the cluster's nodes may have more cores than this machine: each actor checks
        check_integer(spell("threads"), threads, 1)
    else:
        cores = available_threads()
        check_integer(spell("threads"), threads, 1, cores, f"{cores} (the cores available)")
    if limit is not None:
        check_integer(spell("limit"), limit, 1)
    address = ray if isinstance(ray, str) and ray else None
    summary = BatchSummary(str(input_path), str(output_path), job.kind, dry_run=dry_run)

    source = model_source(model)
    face: GPT2 | SimpleNamespace
    face = model if isinstance(model, GPT2) else model_face(source)
    job.check_defaults(face, spell)

    rows = list(read_rows(input_path, limit))
    for row in rows:
        if row.error is None:
            try:
                job.check(face, row)
            except GPT2Error as error:
                row.error = str(error)
    summary.rows = len(rows)

    out = None if dry_run else OutputFile(output_path)  # locked before the earlier lines are read
    pool: ProcessPool | None = None
    results: Iterator[list[Done]] = iter(())
    try:
        existing = read_existing(output_path)
        check_continues(existing, rows, limit, input_path, output_path)
        summary.done_before = min(existing.lines, len(rows))
        summary.failed, summary.first_error = existing.failed, existing.first_error
        todo = rows[existing.lines :]
        if out is None:
            summary.errors = [error_record(row) for row in todo if row.error]
            summary.failed += len(summary.errors)
            if summary.errors and summary.first_error is None:
                summary.first_error = f"line {summary.errors[0]['line']}: {summary.errors[0]['error']}"
            return summary
        out.start(existing)
        good = [row for row in todo if row.error is None]
        if not good:
            pass
        elif use_ray:
            results = ray_results(
                good, job, source=source, workers=workers, threads=threads, size=ROWS_PER_TASK, address=address
            )
        else:  # worker processes, even for one: see warm_kernel_cache
            warm_kernel_cache(source, threads, job, good[0])
            pool = ProcessPool(min(workers, -(-len(good) // ROWS_PER_TASK)), source, threads, job)
            results = pool.run(good, ROWS_PER_TASK)
        with progress_bar(len(todo), progress, unit="row", desc=f"batch {job.kind}", show_above=0) as bar:
            for done in chain([[failed(row) for row in todo if row.error]], results):
                out.add(done)
                summary.written += out.flush()
                summary.tokens += sum(d.tokens for d in done)
                errors = [d.error for d in done if d.error]
                summary.failed += len(errors)
                summary.first_error = summary.first_error or (errors[0] if errors else None)
                elapsed = bar.format_dict["elapsed"] or 1e-9
                bar.set_postfix_str(f"{summary.tokens / elapsed:,.0f} tok/s", refresh=False)
                bar.update(len(done))
    except KeyboardInterrupt:
        summary.interrupted = True
        raise BatchInterrupted(summary) from None
    finally:
        if isinstance(results, Generator):
            results.close()  # a Ray started for the job is shut down
        if pool is not None:
            pool.close(finished=not summary.interrupted and summary.remaining == 0)
        if out is not None:
            out.close()
        summary.seconds = time.perf_counter() - start
    return summary
