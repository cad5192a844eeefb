"""Batch jobs over JSON Lines: generate a continuation, or score a text, for every row of a file; in
local worker processes or on a Ray cluster, with the same output file either way.

    from engine import batch
    summary = batch.generate("prompts.jsonl", "out.jsonl", model="gpt2", workers=2, temperature=0.8)
    summary = batch.score("texts.jsonl", "scores.jsonl", model="gpt2", ray=True, workers=8)

Rows in: one JSON object per line, with an `id` (a string or a number, unique in the file) and a
`prompt` (generate) or `text` (score), each a string or a list of token ids, plus options that
override the job's for that row. Rows out: one line per row, in the input's order, repeating the id:
generate's text, token_ids, finish_reason and logprobs (and seed when sampling; score with beams);
score's tokens, total_nll, mean_nll, perplexity (and token_ids, logprobs with logprobs=True). A row
that cannot run gets a line with `error` (and `line`, its line number) instead, and the job goes on.

The same output whatever runs it: a row's result depends only on the row, the job's options and the
model, never on the rows around it or the worker it lands on. Rows run one at a time; a row's random
stream starts from `rows.row_seed(job seed, id)`; every worker computes with the same number of
threads (`threads`, 1 by default), and loads its kernels from Numba's cache after one process has
compiled them there (`tasks.warm_kernel_cache`: a kernel compiled in a process can differ in the last
bits from its cached copy); and the lines are written in the input's order.

Resuming: rerun the same job with the same output and it appends the rows that are not there yet
(see engine/batch/output.py). The modules:

    rows.py         reading the input: rows, ids, seeds, always-valid JSON lines
    tasks.py        the jobs (GenerateJob, ScoreJob) and `run_rows`, the step every worker runs
    output.py       what an earlier run wrote; appending in order, whole lines, synced
    local.py        worker processes on this machine
    ray_backend.py  Ray Data: an actor pool that loads the model once per actor (Ray imported there only)
    job.py          one job from start to end, and its BatchSummary
"""

from __future__ import annotations

from ..scoring import DEFAULT_BATCH_SIZE
from .job import BatchInterrupted, BatchSummary, run_job
from .rows import row_seed
from .tasks import GenerateJob, ScoreJob

__all__ = ["BatchInterrupted", "BatchSummary", "GenerateJob", "ScoreJob", "generate", "row_seed", "run_job", "score"]


def generate(
    input,
    output,
    *,
    model="gpt2",
    workers: int = 1,
    threads: int = 1,
    ray=None,
    seed: int = 0,
    limit: int | None = None,
    dry_run: bool = False,
    progress: bool | None = None,
    **options,
) -> BatchSummary:
    """Continue the `prompt` of every row of the JSON Lines file `input` into `output`.

    model: a directory, a published name, or a loaded GPT2 (used as it is by a single local worker).
    workers: worker processes (or Ray actors), each loading the model once; threads: threads per
    worker. ray: None for this machine; True for Ray (RAY_ADDRESS, or a Ray started for the job);
    an address ("HOST:PORT") for that cluster. seed: the job seed, from which each row's seed is
    derived with its id. limit: only the first `limit` rows. dry_run: check every row, write nothing.
    progress: a progress bar on stderr (None: when stderr is a terminal).
    options: model.generate's options (GenerationOptions: max_new_tokens, temperature, top_p, stop,
    ...) for every row; a row's own fields override them. Greedy unless temperature > 0.

    Returns a BatchSummary (`failed` counts the rows with an error line). Raises a GPT2Error for a
    job that cannot start (bad option, unreadable input, output of another input, ...), and
    BatchInterrupted (a KeyboardInterrupt) on Ctrl-C, once the finished rows are written.
    """
    job = GenerateJob(options, seed)
    return run_job(
        input, output, job, model=model, workers=workers, threads=threads, ray=ray, limit=limit, dry_run=dry_run,
        progress=progress,
    )  # fmt: skip


def score(
    input,
    output,
    *,
    model="gpt2",
    workers: int = 1,
    threads: int = 1,
    ray=None,
    context: int | None = None,
    stride: int | None = None,
    bos: bool = False,
    logprobs: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    dry_run: bool = False,
    progress: bool | None = None,
) -> BatchSummary:
    """Score the `text` of every row of the JSON Lines file `input` into `output`: model.score with
    the sliding-window protocol (context, stride, bos: see engine/scoring.py; a row may set its own),
    logprobs=True adds each token's id and log-probability. batch_size: windows per forward pass.
    The other arguments are those of `generate`."""
    job = ScoreJob(context, stride, bos, logprobs, batch_size)
    return run_job(
        input, output, job, model=model, workers=workers, threads=threads, ray=ray, limit=limit, dry_run=dry_run,
        progress=progress,
    )  # fmt: skip
