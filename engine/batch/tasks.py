"""The two kinds of job, and the step every worker runs: a list of rows in, their output lines out.

A job holds the options every row starts from (the command line's, or the Python function's), and
knows what a row of its kind may say. Checking a row uses the library's own checks, on the model's
config and tokenizer only (no forward pass), so the driver can check the whole file before any
worker starts, and `--dry-run` can check it without the weights:

    GenerateJob   `prompt`, and any generation option but num_return_sequences (GenerationOptions,
                  checked by `engine.generation.make_search`, which also checks the prompt fits the
                  context with max_new_tokens); the seed, unless the row gives one, is derived from
                  the job seed and the row's id (`rows.row_seed`).
    ScoreJob      `text`, and context, stride, bos, logprobs (`engine.scoring.window_options` and
                  `scored_sequence`).

`run_rows(model, job, rows)` is the whole of a worker's work, for local processes and Ray actors
alike. Today it runs the rows one at a time (model.generate on one prompt, model.score on one text):
batching several rows' decode steps would change the last bits of their numbers with today's kernels,
and a row's output must not depend on which rows share its batch. It takes a list so that a batched
decode with batch-invariant kernels can replace the loop without changing any caller.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import signal
from dataclasses import dataclass, field, fields

from ..base.checks import check_integer
from ..base.errors import GPT2Error, InputError
from ..base.threads import set_threads
from ..generation import GenerationOptions, make_search, options_from
from ..gpt2 import GPT2
from ..scoring import DEFAULT_BATCH_SIZE, scored_sequence, window_options
from .rows import Row, check_fields, error_record, json_line, row_seed

# Options a row may not set: one row is one sequence (give several rows, each with its own id, for
# several samples of a prompt).
NOT_PER_ROW = ("num_return_sequences",)
GENERATION_FIELDS = tuple(f.name for f in fields(GenerationOptions) if f.name not in NOT_PER_ROW)
GENERATION_BOOLEANS = ("stop_at_eos", "bos")


@dataclass(frozen=True)
class GenerateJob:
    """options: generation options for every row (GenerationOptions' names), without a seed;
    seed: the job seed, from which each row's seed is derived."""

    options: dict = field(default_factory=dict)
    seed: int = 0
    kind = "generate"
    text_field = "prompt"

    def check_defaults(self, model, spell=lambda name: name) -> None:
        """Every default checked once, before any row (InputError naming `spell(option)`)."""
        bad = [name for name in ("seed", *NOT_PER_ROW) if name in self.options]
        if bad:
            raise InputError(f"{bad[0]} is not an option of a batch job (the job seed is its own argument)")
        check_integer(spell("seed"), self.seed, 0)
        options_from(self.options).checked(spell)

    def row_options(self, row: Row) -> tuple[object, dict]:
        """(prompt, the options of model.generate) for a row; InputError if the row is malformed."""
        check_fields(row, self.text_field, GENERATION_FIELDS, GENERATION_BOOLEANS)
        options = self.options | {k: v for k, v in row.fields.items() if k != self.text_field}
        if options.get("seed") is None:  # absent or null: the row's own stream, from the job seed and its id
            options["seed"] = row_seed(self.seed, row.id)
        return row.fields[self.text_field], options

    def check(self, model, row: Row) -> None:
        prompt, options = self.row_options(row)
        make_search(model, prompt, options)  # every check of generate(), no forward pass

    def run(self, model, row: Row) -> tuple[dict, int]:
        prompt, options = self.row_options(row)
        result = model.generate(prompt, **options)
        record = {"id": row.id} | result.to_dict()
        if options.get("temperature", 0) > 0:
            record["seed"] = options["seed"]  # model.generate(prompt, seed=...) repeats the row alone
        return record, len(result.token_ids)


SCORE_FIELDS = ("context", "stride", "bos", "logprobs")


@dataclass(frozen=True)
class ScoreJob:
    """Defaults of every row: context, stride (None: the model's), bos, and logprobs (also write each
    token's id and log-probability); batch_size: windows per forward pass (a job setting)."""

    context: int | None = None
    stride: int | None = None
    bos: bool = False
    logprobs: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    kind = "score"
    text_field = "text"

    def check_defaults(self, model, spell=lambda name: name) -> None:
        window_options(model.config.n_positions, self.context, self.stride, self.batch_size, spell)
        for name in ("bos", "logprobs"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{spell(name)} must be True or False, got {getattr(self, name)!r}")

    def row_options(self, row: Row) -> tuple[object, dict, bool]:
        check_fields(row, self.text_field, SCORE_FIELDS, ("bos", "logprobs"))
        f = row.fields
        options = {
            "context": f.get("context", self.context),
            "stride": f.get("stride", self.stride),
            "bos": f.get("bos", self.bos),
            "batch_size": self.batch_size,
        }
        return f[self.text_field], options, f.get("logprobs", self.logprobs)

    def check(self, model, row: Row) -> None:
        text, options, _ = self.row_options(row)
        window_options(model.config.n_positions, options["context"], options["stride"], options["batch_size"])
        scored_sequence(model, text, options["bos"])

    def run(self, model, row: Row) -> tuple[dict, int]:
        text, options, with_logprobs = self.row_options(row)
        s = model.score(text, progress=False, **options)
        record = {"id": row.id, "tokens": s.count, "total_nll": s.total_nll, "mean_nll": s.mean_nll}
        record["perplexity"] = s.perplexity
        if with_logprobs:  # null where a token is not scored (the first, without bos)
            record["token_ids"] = s.token_ids.tolist()
            record["logprobs"] = [float(lp) if ok else None for lp, ok in zip(s.logprobs, s.scored)]
        return record, s.count


Job = GenerateJob | ScoreJob


@dataclass(frozen=True)
class Done:
    """A row's output: its index among the rows, its line of JSON, the tokens it generated or scored,
    and its error ("line N: ...") if it failed."""

    index: int
    line: str
    tokens: int = 0
    error: str | None = None


def failed(row: Row) -> Done:
    """The output of a row that cannot run: its id, its line number and the error."""
    return Done(row.index, json_line(error_record(row)), 0, f"line {row.line}: {row.error}")


def run_rows(model, job: Job, rows: list[Row]) -> list[Done]:
    """A worker's step: each row's output line, in the order given. A row the model refuses (a
    GPT2Error) gets an error line; anything else is a bug and stops the job."""
    done = []
    for row in rows:
        try:
            record, tokens = job.run(model, row)
        except GPT2Error as error:
            done.append(failed(Row(row.index, row.line, row.id, {}, str(error))))
            continue
        done.append(Done(row.index, json_line(record), tokens))
    return done


def warm_kernel_cache(source: str, threads: int, job: Job, row: Row) -> None:
    """Run `row` once in a fresh process and wait for it: Numba compiles there every kernel the job
    uses and saves it in its on-disk cache, and the workers started after it load that machine code.

    Why: a kernel compiled in a process runs there as compiled, but the copy Numba writes to its
    cache is linked again with the functions it calls, and LLVM optimises the whole again; where a
    sum may be reordered (kernels/settings.py) the two can differ in the last bits. A worker that
    compiled a kernel would then write other bytes than a worker that loaded it. With every worker
    loading from the cache, every worker runs the same code: on this machine, on a resumed job, and
    (each Ray actor warming its own node's cache first) on a cluster. A failure here is not reported:
    the row's real run reports it."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_run_quietly, args=(source, threads, job, row), name="gpt2-batch-warm-up")
    process.start()
    try:
        process.join()
    finally:
        if process.exitcode is None:  # interrupted while it ran
            process.terminate()
            process.join()


def _run_quietly(source: str, threads: int, job: Job, row: Row) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C
    with contextlib.suppress(GPT2Error):
        run_rows(load_model(source, threads), job, [row])


def load_model(source: str, threads: int) -> GPT2:
    """A worker's model, loaded once, computing with `threads` threads (set before the weights are
    read, as GPT2_ENGINE_THREADS would be)."""
    set_threads(threads)
    return GPT2.from_pretrained(source)


def encode_row(row: Row) -> str:
    """A row as one JSON text, to cross to a worker (a Ray dataset holds text, not dicts of any shape)."""
    return json.dumps([row.index, row.line, row.id, row.fields], ensure_ascii=False)


def decode_row(text: str) -> Row:
    index, line, row_id, row_fields = json.loads(text)
    return Row(index, line, row_id, row_fields)
