"""Continuous batching: one running batch of rows that generations join and leave between steps.

    batch = ContinuousBatch(model, max_rows=8)
    job = batch.add(prompt_ids, options, rows=2)   # prefilled now (alone); its rows join at the next step
    while batch.rows or batch.joining:
        for job in batch.step():                   # one model call: one new token for every row
            job.sequences[j].token_ids, ...        # finished rows have left; job.finished when all have
    batch.cancel(job)                              # its rows leave at the next step

A server (engine/server/) or a batch runner drives it from one thread; `step` is synchronous and
the only place the model runs on the batch. Each job's rows are sequences of `token_search.py`
(`Sequence`: tokens, log-probabilities, stop strings and text), chosen by `choose_tokens` under the
job's own options, row j of a job drawing from `row_generator(seed, j)`: the rows of a job are what
`model.generate(prompt, num_return_sequences=rows, ...)` makes, whatever else runs beside them.

The KV cache (engine/state/kv_cache.py) keeps one length for every row, and per-row left padding
that attention skips and position numbering ignores. So a row that joins is copied in right-aligned:
its prompt's keys and values end at the batch's current length, the slots before them are its
padding. Rows occupy the cache's first B row slots, and each step calls the model on a view of those
B rows (`KVCache.first_rows`): no copy of the cache per step. The layout changes only when the
membership does:

    a row leaves    the last row moves into its slot (its written slots are copied; the slot is reused);
    a longer prompt joins
                    every row moves right by the difference (more padding), so its prompt fits;
    out of room     every row moves left by the padding they all share (the longest row then
                    starts at slot 0); the cache has 2 x n_positions slots, so this always makes room
                    for any row that fits the context.

Moving a row's slots changes neither its positions (slot minus padding) nor the keys it attends to,
so a row's logits are those it would get alone, as far as the kernels compute a row independently of
the rows beside it.

Legend: B = rows in the batch, L = layers, H = heads, S = cache slots, D = head size, V = vocab_size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..base.errors import GPT2Error, InputError
from ..base.numeric import top_sorted
from .options import GenerationOptions, end_token_ids
from .processors import row_generator
from .prompts import check_room, prefill
from .token_search import Sequence, choose_tokens


@dataclass(eq=False)
class Job:
    """One prompt's rows in the batch: `sequences[j]` is sample j (its token_ids, logprobs,
    finish_reason, text). With top_logprobs = k > 0, `alternatives[j][i]` is (ids int64 [k], float32
    log-probabilities [k]): the k most likely tokens where token i of row j was chosen."""

    prompt: list[int]
    options: GenerationOptions
    sequences: list[Sequence]
    top_logprobs: int = 0
    alternatives: list[list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=list)
    cancelled: bool = False
    end_ids: list[int] = field(default_factory=list)
    error: GPT2Error | None = None  # why its rows could not go on (they left the batch)

    @property
    def finished(self) -> bool:
        return self.cancelled or self.error is not None or all(seq.finish_reason is not None for seq in self.sequences)


@dataclass(eq=False)
class _Row:
    job: Job
    sequence: Sequence
    alternatives: list
    logits: np.ndarray | None = None  # float32 [V]: where its next token is chosen from


class ContinuousBatch:
    """A running batch of at most `max_rows` rows (see the module docstring)."""

    def __init__(self, model, max_rows: int):
        if not isinstance(max_rows, int) or max_rows < 1:
            raise InputError(f"max_rows must be an integer >= 1, got {max_rows!r}")
        self.model = model
        self.max_rows = max_rows
        # Any row that fits the context fits after the common padding is taken out (see _make_room).
        self.cache = model.new_cache(max_rows, max_length=2 * model.config.n_positions)
        self.slots: list[_Row] = []  # slots[i]: the row in cache row i, for i < B
        self.joining: list[tuple[Job, list[_Row], object]] = []  # prefilled, not in the batch yet

    @property
    def rows(self) -> int:
        """Rows in the running batch (not counting those waiting to join)."""
        return len(self.slots)

    @property
    def room(self) -> int:
        """Rows that can still be added."""
        return self.max_rows - len(self.slots) - sum(len(rows) for _, rows, _ in self.joining)

    def add(self, prompt: list[int], options: GenerationOptions, rows: int = 1, top_logprobs: int = 0) -> Job:
        """Prefill `prompt` (checked token ids) now, alone, and return its job, whose `rows` rows
        join the batch at the next step. options: checked GenerationOptions without beams (their
        num_return_sequences is not used: `rows` is)."""
        if options.num_beams != 1:
            raise InputError("the continuous batch does not run beam search (num_beams > 1)")
        if not 1 <= rows <= self.room:
            raise InputError(f"rows must be from 1 to the room left in the batch ({self.room}), got {rows}")
        check_room(self.model, [prompt], options.max_new_tokens)
        cache, logits = prefill(self.model, [prompt], options.max_new_tokens, 1)  # 1 row, [1, V]
        seed = options.seed or 0
        job = Job(
            list(prompt), options, [], top_logprobs, end_ids=end_token_ids(self.model.config.eos_token_ids, options)
        )
        members = []
        for j in range(rows):
            sequence = Sequence(job.prompt, self.model, options, row_generator(seed, j) if options.sampling else None)
            job.sequences.append(sequence)
            job.alternatives.append([])
            members.append(_Row(job, sequence, job.alternatives[-1], logits[0]))
        self.joining.append((job, members, cache))
        return job

    def cancel(self, job: Job) -> None:
        """The job's rows leave at the next step (its sequences stay as they are)."""
        job.cancelled = True

    def step(self) -> list[Job]:
        """One step: the model on the last token of every row in the batch, the waiting rows join,
        and every row chooses its next token. Finished rows leave. Returns the jobs that got tokens
        (those that finished included, cancelled ones not) and those whose options left no token to
        choose (their `error` says why; their rows have left)."""
        self._leave([i for i, row in enumerate(self.slots) if row.job.cancelled])
        self.joining = [entry for entry in self.joining if not entry[0].cancelled]
        if self.slots:
            tokens = np.array([row.sequence.token_ids[-1] for row in self.slots], dtype=np.int64)  # [B]
            view = self.cache.first_rows(len(self.slots))
            logits = self.model(tokens[:, None], cache=view)[:, -1]  # [B, V], one step through the cache
            self.cache.length = view.length
            for row, row_logits in zip(self.slots, logits):
                row.logits = row_logits
        for job, members, cache in self.joining:
            self._join(members, cache, len(job.prompt))
        self.joining = []

        jobs: dict[Job, list[int]] = {}  # each job's slots, in the order the jobs first appear
        for i, row in enumerate(self.slots):
            jobs.setdefault(row.job, []).append(i)
        for job, slots in jobs.items():
            members = [self.slots[i] for i in slots]
            logits = np.stack([row.logits for row in members if row.logits is not None])  # [n, V]
            try:
                tokens, logprobs = choose_tokens(
                    job.options, job.end_ids, [row.sequence for row in members], logits, self.model.tokenizer.n_vocab
                )
            except GPT2Error as error:  # this job's options leave nothing to choose: it alone stops
                job.error = error
                continue
            if job.top_logprobs:
                top_ids, top_values = top_sorted(logprobs, job.top_logprobs)  # [n, k]
            for r, (row, token) in enumerate(zip(members, tokens.tolist())):
                row.sequence.append(token, float(logprobs[r, token]))
                if job.top_logprobs:
                    row.alternatives.append((top_ids[r], top_values[r]))
                row.logits = None
        self._leave([i for i, row in enumerate(self.slots) if row.sequence.finish_reason is not None or row.job.error])
        return list(jobs)

    # ------------------------------------------------------------------------------------------
    # The cache's layout

    def _join(self, members: list[_Row], prompt_cache, p: int) -> None:
        """Copy a prefilled prompt (p slots of `prompt_cache`'s row 0) into the next free rows,
        right-aligned with the batch."""
        self._make_room(p, members[0].sequence.max_new_tokens - 1)
        c = self.cache
        start = c.length - p
        for row in members:
            i = len(self.slots)
            c.keys[:, i, :, start : c.length] = prompt_cache.keys[:, 0, :, :p]
            c.values[:, i, :, start : c.length] = prompt_cache.values[:, 0, :, :p]
            c.left_padding[i] = start
            self.slots.append(row)

    def _make_room(self, p: int, feeds: int) -> None:
        """Lay the batch out so that a prompt of p tokens can end at the current length and every
        row, the new one included, has room for the tokens it may still feed (`feeds` for the new
        one)."""
        c = self.cache
        B = len(self.slots)
        if B == 0:
            c.length = p
            return
        if p > c.length:  # a longer prompt: every row gets more padding
            self._shift(p - c.length)
        need = max([feeds] + [row.sequence.max_new_tokens - 1 - len(row.sequence.token_ids) for row in self.slots])
        if c.length + need > c.max_length:  # out of room: take out the padding every row has
            self._shift(-min(int(c.left_padding[:B].min()), c.length - p))
        assert c.length + need <= c.max_length  # each row fits n_positions; the cache has twice that

    def _shift(self, d: int) -> None:
        """Move the written slots of every row by d (right if d > 0); the padding follows."""
        c = self.cache
        B, n = len(self.slots), c.length
        if d > 0:
            c.keys[:, :B, :, d : d + n] = c.keys[:, :B, :, :n].copy()
            c.values[:, :B, :, d : d + n] = c.values[:, :B, :, :n].copy()
        elif d < 0:
            c.keys[:, :B, :, : n + d] = c.keys[:, :B, :, -d:n].copy()
            c.values[:, :B, :, : n + d] = c.values[:, :B, :, -d:n].copy()
        c.left_padding[:B] += d
        c.length = n + d

    def _leave(self, leaving: list[int]) -> None:
        """The rows in these slots leave; the last rows move into the freed slots."""
        c = self.cache
        n = c.length
        for i in sorted(leaving, reverse=True):  # from the end, so the indices still to do stay valid
            last = len(self.slots) - 1
            if i != last:
                c.keys[:, i, :, :n] = c.keys[:, last, :, :n]
                c.values[:, i, :, :n] = c.values[:, last, :, :n]
                c.left_padding[i] = c.left_padding[last]
                self.slots[i] = self.slots[last]
            self.slots.pop()
        if not self.slots:
            c.length = 0
