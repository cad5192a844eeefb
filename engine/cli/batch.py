"""gpt2 batch generate IN.jsonl OUT.jsonl, gpt2 batch score IN.jsonl OUT.jsonl (engine/batch/, docs/batch.md).

Exit status: 0 every row done; 1 some rows failed (their output lines have an "error" field; the
count is printed); 2 the job could not start (a bad flag, an unreadable input, an output that
belongs to another input, ...; nothing is written); 130 interrupted (rerun to resume).
"""

from __future__ import annotations

import json
import sys

from ..batch import BatchInterrupted, BatchSummary, GenerateJob, ScoreJob, run_job
from ..generation import options_from
from ..scoring import DEFAULT_BATCH_SIZE
from .common import add_model_argument
from .generate import add_generation_arguments, generation_options, spell_flag
from .scoring import add_window_arguments


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "batch",
        help="generate or score every row of a JSON Lines file, here or on Ray",
        description="Run a job over every row of a JSON Lines file, in this process, in local worker processes "
        "or on a Ray cluster, with the same output file either way; rerun the same command to resume.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    g = kinds.add_parser(
        "generate",
        help="continue each row's prompt",
        description='Each input row: {"id": ..., "prompt": ..., options}. Each output line: the id, text, '
        "token_ids, finish_reason, logprobs (and seed when sampling). Samples (temperature 1) unless -t 0.",
    )
    add_files_arguments(g)
    add_generation_arguments(
        g, seed_help="job seed (default: 0): each row's seed is derived from it and the row's id, unless the row "
        "gives its own"
    )  # fmt: skip
    g.set_defaults(seed=0)
    add_job_arguments(g)
    s = kinds.add_parser(
        "score",
        help="score each row's text (log-likelihood, perplexity)",
        description='Each input row: {"id": ..., "text": ..., options}. Each output line: the id, tokens, '
        "total_nll, mean_nll, perplexity (and token_ids, logprobs with --logprobs).",
    )
    add_files_arguments(s)
    add_window_arguments(s)
    s.add_argument("--logprobs", action="store_true", help="also write each token's id and log-probability")
    add_job_arguments(s)


def add_files_arguments(p) -> None:
    p.add_argument("input", metavar="IN", help="the rows: JSON Lines, one object per line")
    p.add_argument("output", metavar="OUT", help="the output, JSON Lines; an existing one is resumed, never rewritten")
    add_model_argument(p, dtype=False)  # workers load the directory as it is: float32, or int8 from `gpt2 quantize`


def add_job_arguments(p) -> None:
    p.add_argument(
        "--workers", "-w", type=int, default=1, help="worker processes (Ray: actors), each loading the model"
    )
    p.add_argument(
        "--threads",
        dest="worker_threads",
        type=int,
        default=1,
        help="threads per worker (default: 1; the same in every run of a job: it can change a result's last bits)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run on Ray: the cluster at ADDRESS, else $RAY_ADDRESS, else a Ray started here for the job",
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N rows of IN")
    p.add_argument("--dry-run", action="store_true", help="check every row and report; write nothing")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar (it is shown only on a terminal anyway)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (and no progress bar)")
    p.set_defaults(run=run)


def spell(name: str) -> str:
    return "--threads" if name == "threads" else spell_flag(name)


def make_job(args) -> GenerateJob | ScoreJob:
    if args.kind == "generate":
        options = generation_options(args)
        del options["seed"], options["num_return_sequences"]
        options_from(options).checked(spell)  # bad flags are refused before anything is loaded
        return GenerateJob(options, args.seed)
    batch_size = DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size
    return ScoreJob(args.context, args.stride, args.bos, args.logprobs, batch_size)


def run(args) -> int:
    job = make_job(args)
    try:
        summary = run_job(
            args.input,
            args.output,
            job,
            model=args.model,
            workers=args.workers,
            threads=args.worker_threads,
            ray=args.ray,
            limit=args.limit,
            dry_run=args.dry_run,
            progress=False if args.quiet or args.json else None,
            spell=spell,
        )
    except BatchInterrupted as interrupted:
        s = interrupted.summary
        print(
            f"gpt2: interrupted: {s.written} rows written now, {s.done_before + s.written} of {s.rows} in "
            f"{s.output}; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    report(summary, args.json)
    return 1 if summary.failed else 0


def report(s: BatchSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(s.to_dict()))
    elif s.dry_run:
        print(
            f"{s.input}: {s.rows} rows, {len(s.errors)} of them with an error; {s.output} holds {s.done_before}, "
            f"{s.remaining} to run"
        )
        for error in s.errors:
            print(f"line {error['line']}: {error['error']}")
    else:
        rate = f" ({s.tokens / s.seconds:,.0f} tokens/s)" if s.seconds > 0 and s.tokens else ""
        print(
            f"{s.output}: {s.done_before + s.written} of {s.rows} rows ({s.written} now, {s.done_before} before); "
            f"{s.tokens:,} tokens in {s.seconds:.1f} s{rate}"
        )
    if s.failed:
        where = "have an error" if s.dry_run else f'failed (their lines in {s.output} have an "error" field)'
        print(f"gpt2: {s.failed} of {s.rows} rows {where}; first: {s.first_error}", file=sys.stderr)
