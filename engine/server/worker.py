"""The decode loop: one thread owns the model and runs every request through one continuous batch.

    HTTP handlers (event loop)                       the decode thread (this module)
    ----------------------------                     ------------------------------------------
    submit(Work)  -> waiting queue   --------->      admit: prefill each prompt alone (and score
                                                        it for echo); its rows join the batch
    cancel(Work)  (client gone)      --------->      step: one model call, one token per row;
                                                        finished and cancelled rows leave
    events, per step  <------------------------      deliver(events): call_soon_threadsafe

A request waits in the queue (at most `max_queue` of them; more get 429) until the batch has room for
its rows (n per prompt; num_beams for a beam search, which runs beside the batch, one step per turn
of the loop). Prompts of one request are admitted in order; requests in arrival order.

Events (plain objects; engine/server/app.py turns them into OpenAI's JSON):
    PromptTokens   a prompt's own tokens, for echo: log-probabilities as `model.score` gives them;
    Tokens         a choice's new tokens of one step: ids, log-probabilities, alternatives, the
                   text that is certain now (never half a character, never a possible stop string),
                   and finish_reason once it is done;
    Failed         the request could not start (timed out waiting, or the server shut down);
    Done           every choice of the request has finished.

A request is cut (its unfinished choices end with finish_reason "length") when it runs past its
deadline (--timeout) or when a shutdown's grace period ends. A streaming response that stops taking
events (the client stopped reading: `max_backlog` steps' chunks wait unsent and none has gone
for `stall_timeout` seconds) is cut the same way, so its rows are free for others.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base.errors import GPT2Error
from ..base.threads import set_threads
from ..generation.beam_search import BeamSearch
from ..generation.continuous import ContinuousBatch, Job
from ..scoring import token_logprobs
from .errors import APIError
from .schema import CompletionRequest

log = logging.getLogger("uvicorn.error")  # the server's log, as uvicorn configures it

INTERNAL_ERROR = APIError(500, "internal error in the decode loop: the server's log has the details")

# The engine's finish reasons as OpenAI reports them: end-of-text is a stop too.
FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length", "interrupted": "length"}


@dataclass
class PromptTokens:
    prompt: int  # index of the prompt in the request
    token_ids: list[int]
    logprobs: np.ndarray  # float32 [T], NaN for the first token
    top_ids: np.ndarray | None  # int64 [T, k] with logprobs=k (row 0 unused)
    top_values: np.ndarray | None


@dataclass
class Tokens:
    choice: int  # prompt index * n + sample index
    token_ids: list[int]
    logprobs: list[float]
    alternatives: list[tuple[np.ndarray, np.ndarray]] | None  # per token: top ids [k], values [k]
    text_offset: list[int]  # per token: characters before it in prompt text + generated text
    text: str
    finish_reason: str | None


@dataclass
class Failed:
    error: APIError


@dataclass
class Done:
    pass


@dataclass(eq=False)
class _RowState:
    sent: int = 0  # tokens already delivered
    decoded: int = 0  # characters decoded so far (for text_offset)


@dataclass(eq=False)
class Work:
    """One completion request on its way through the decode loop. The event loop's side sets
    `cancelled` and counts `consumed`; everything else belongs to the decode thread."""

    request: CompletionRequest
    deliver: Callable[[list], None]  # called on the decode thread with a list of events
    deadline: float  # time.monotonic() after which the request is cut
    cancelled: bool = False
    delivered: int = 0  # deliveries made
    consumed: int = 0  # deliveries the response has passed on (streaming)
    consumed_at: float = field(default_factory=time.monotonic)  # when it last passed one on
    admitted: int = 0  # prompts admitted so far
    jobs: dict[Job, int] = field(default_factory=dict)  # running job -> prompt index
    beams: list = field(default_factory=list)  # [prompt index, BeamSearch, its steps]
    rows: dict[tuple[int, int], _RowState] = field(default_factory=dict)
    prompt_chars: dict[int, int] = field(default_factory=dict)
    finished: bool = False  # Done or Failed has been delivered, or the client is gone

    def took(self) -> None:
        """The response has passed on one delivery (called on the event loop)."""
        self.consumed += 1
        self.consumed_at = time.monotonic()

    @property
    def running(self) -> bool:
        return bool(self.beams) or any(not job.finished for job in self.jobs)


class Worker:
    """The decode thread (see the module docstring). `load()` makes the model on that thread;
    `ready` is set once it has; `load_error` holds what went wrong if it could not."""

    def __init__(
        self,
        load: Callable[[], object],
        *,
        max_batch_size: int,
        max_queue: int,
        metrics,
        threads: int | str | None = None,
        max_backlog: int = 64,
        stall_timeout: float = 10.0,
        on_load_error: Callable[[BaseException], None] = lambda error: None,
    ):
        self.load = load
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.metrics = metrics
        self.threads = threads
        self.max_backlog = max_backlog
        self.stall_timeout = stall_timeout
        self.on_load_error = on_load_error
        self.model: Any = None  # the facade's GPT2, once loaded
        self.batch: ContinuousBatch | None = None
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self.cond = threading.Condition()
        self.waiting: collections.deque[Work] = collections.deque()  # not fully admitted
        self.works: list[Work] = []  # admitted (at least one prompt), not done
        self.beam_rows = 0
        # Set without the lock (a signal handler sets them); the loop polls them.
        self.draining = False
        self.drain_deadline = float("inf")
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="gpt2-decode", daemon=True)

    # ------------------------------------------------------------------------------------------
    # The event loop's side

    def start(self) -> None:
        self.thread.start()

    def submit(self, work: Work) -> None:
        """Queue a request, or raise the APIError that refuses it (loading, shutting down, full)."""
        if self.draining or self.stopping:
            raise APIError(503, "the server is shutting down", code="shutting_down", retry_after=5)
        if not self.ready.is_set():
            raise APIError(503, "the model is still loading", code="loading", retry_after=1)
        with self.cond:
            if len(self.waiting) >= self.max_queue:
                raise APIError(
                    429,
                    f"too many requests are waiting ({self.max_queue}, the server's --max-queue): retry later",
                    code="queue_full",
                    retry_after=1,
                )
            self.waiting.append(work)
            self.metrics.queue_length.set(len(self.waiting))
            self.cond.notify()

    def cancel(self, work: Work) -> None:
        """The client is gone: the request's rows leave the batch at the next step."""
        work.cancelled = True
        with self.cond:
            self.cond.notify()

    def drain(self, grace: float) -> None:
        """Refuse new requests; cut those still running after `grace` seconds. Safe in a signal
        handler (no lock)."""
        if not self.draining:
            self.drain_deadline = time.monotonic() + grace
            self.draining = True

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping = True
        with self.cond:
            self.cond.notify()
        if self.thread.is_alive():
            self.thread.join(timeout)

    # ------------------------------------------------------------------------------------------
    # The decode thread

    def _run(self) -> None:
        if self.threads is not None:
            set_threads(self.threads)  # Numba's thread count belongs to each thread
        try:
            self.model = self.load()
        except BaseException as error:  # reported by the server, which then exits
            self.load_error = error
            self.on_load_error(error)
            return
        self.batch = ContinuousBatch(self.model, self.max_batch_size)
        self.ready.set()
        while True:
            with self.cond:
                while not (self.waiting or self.works or self.stopping):
                    self.cond.wait(timeout=0.5)
            if self.stopping and not (self.waiting or self.works):
                return
            try:
                self._expire()
                self._admit()
                self._step()
            except Exception:  # a bug, not a request's fault: fail what is running, go on
                log.exception("the decode loop failed; the requests it was running get a 500")
                self._reset()

    def _reset(self) -> None:
        """Fail every admitted request and start again with an empty batch."""
        for work in list(self.works):
            self._fail(work, INTERNAL_ERROR)
        self.works.clear()
        self.beam_rows = 0
        self.batch = ContinuousBatch(self.model, self.max_batch_size)
        self.metrics.batch_size.set(0)

    def _deliver(self, work: Work, events: list) -> None:
        if events:
            work.delivered += 1
            work.deliver(events)

    def _expire(self) -> None:
        """Cancelled requests leave; requests past their deadline, or every request once a
        shutdown's grace has passed, are cut."""
        now = time.monotonic()
        cut_all = self.stopping or (self.draining and now >= self.drain_deadline)
        for work in list(self.waiting):
            if work.cancelled or (work.admitted == 0 and (cut_all or now >= work.deadline)):
                self.waiting.remove(work)
                if not work.cancelled:
                    reason = "the server is shutting down" if cut_all else "the request timed out waiting in the queue"
                    self._deliver(work, [Failed(APIError(503, reason, code="timeout", retry_after=1))])
        for work in list(self.works):
            # A backlog alone is no stall: the event loop may lag the decode thread for a moment.
            stalled = work.delivered - work.consumed > self.max_backlog and now - work.consumed_at > self.stall_timeout
            if work.cancelled:
                self._drop(work)
            elif stalled or cut_all or now >= work.deadline:
                self._cut(work)
        self.metrics.queue_length.set(len(self.waiting))

    def _drop(self, work: Work) -> None:
        assert self.batch is not None
        for job in work.jobs:
            self.batch.cancel(job)
        self.beam_rows -= sum(search.options.num_beams for _, search, _ in work.beams)
        work.beams.clear()
        work.finished = True
        if work in self.works:
            self.works.remove(work)
        if work in self.waiting:
            self.waiting.remove(work)

    def _fail(self, work: Work, error: APIError) -> None:
        """End the request with an error (its rows leave; a stream gets the error as its last event)."""
        if not work.finished:
            self._drop(work)
            self._deliver(work, [Failed(error)])

    def _cut(self, work: Work) -> None:
        """End every unfinished choice now, with finish_reason "length"."""
        r = work.request
        events: list = []
        for job, i in work.jobs.items():
            for j, seq in enumerate(job.sequences):
                if seq.finish_reason is None:
                    seq.text.close()
                    events.append(Tokens(i * r.n + j, [], [], None, [], seq.text.take(), "length"))
        for i, _, _ in work.beams:
            events += [Tokens(i * r.n + j, [], [], None, [], "", "length") for j in range(r.n)]
        for i in range(work.admitted, len(r.prompts)):  # never started
            events += [Tokens(i * r.n + j, [], [], None, [], "", "length") for j in range(r.n)]
        self._drop(work)
        self._deliver(work, [*events, Done()])

    def _admit(self) -> None:
        """Admit waiting prompts, in order, while the batch has room for their rows."""
        model, batch = self.model, self.batch
        assert batch is not None
        while self.waiting:
            work = self.waiting[0]
            r = work.request
            while work.admitted < len(r.prompts):
                rows = r.options.num_beams if r.beams else r.n
                if r.max_tokens > 0 and rows > batch.room - self.beam_rows:
                    return
                i = work.admitted
                prompt = r.prompts[i]
                events: list = []
                try:
                    if r.echo:
                        logprobs, top_ids, top_values = token_logprobs(model, prompt, r.logprobs or 0)
                        with_top = r.logprobs is not None
                        events.append(PromptTokens(i, prompt, logprobs, top_ids if with_top else None, top_values))
                    if r.logprobs is not None:
                        work.prompt_chars[i] = len(model.tokenizer.decode(prompt))
                    if r.max_tokens == 0:
                        events += [Tokens(i * r.n + j, [], [], None, [], "", "length") for j in range(r.n)]
                    elif r.beams:
                        search = BeamSearch(model, [prompt], r.options)
                        work.beams.append([i, search, search.steps()])
                        self.beam_rows += r.options.num_beams
                    else:
                        job = batch.add(prompt, r.options, r.n, r.logprobs or 0)
                        work.jobs[job] = i
                        for j in range(r.n):
                            work.rows[i, j] = _RowState()
                except Exception as error:  # this request alone fails (the batch is untouched)
                    if not isinstance(error, GPT2Error):
                        log.exception("prefilling a prompt failed")
                    self._fail(work, APIError(400, str(error)) if isinstance(error, GPT2Error) else INTERNAL_ERROR)
                    break
                self.metrics.prompt_tokens.inc(len(prompt))
                work.admitted += 1
                if work not in self.works:
                    self.works.append(work)
                self._deliver(work, events)
            if self.waiting and self.waiting[0] is work:  # (a failed one has left already)
                self.waiting.popleft()
            self.metrics.queue_length.set(len(self.waiting))
            self._finish_if_done(work)

    def _finish_if_done(self, work: Work) -> None:
        if not work.finished and work.admitted == len(work.request.prompts) and not work.running:
            work.finished = True
            if work in self.works:
                self.works.remove(work)
            self._deliver(work, [Done()])

    def _step(self) -> None:
        batch = self.batch
        assert batch is not None
        owner = {job: work for work in self.works for job in work.jobs}
        events: dict[Work, list] = {}
        if batch.rows or batch.joining:
            start = time.monotonic()
            jobs = batch.step()
            if jobs:
                self.metrics.time_per_output_token.observe(time.monotonic() - start)
            generated = 0
            for job in jobs:
                work = owner.get(job)
                if work is None or work.finished:
                    continue
                if job.error is not None:  # its options left no token to choose
                    events.pop(work, None)
                    self._fail(work, APIError(400, str(job.error), code="no_token_left"))
                    continue
                generated += self._job_events(work, job, events.setdefault(work, []))
            self.metrics.generated_tokens.inc(generated)
            self.metrics.batch_size.set(batch.rows)
        for work in list(self.works):
            for entry in list(work.beams):
                i, search, steps = entry
                try:
                    next(steps)
                except GPT2Error as error:  # its options left no token to choose
                    events.pop(work, None)
                    self._fail(work, APIError(400, str(error), code="no_token_left"))
                    break
                except StopIteration:
                    work.beams.remove(entry)
                    self.beam_rows -= search.options.num_beams
                    results = search.results()
                    self.metrics.generated_tokens.inc(sum(len(res.token_ids) for res in results))
                    n = work.request.n
                    events.setdefault(work, []).extend(
                        Tokens(
                            i * n + j,
                            res.token_ids,
                            res.logprobs,
                            None,
                            [],
                            res.text,
                            FINISH_REASONS[res.finish_reason],
                        )
                        for j, res in enumerate(results)
                    )
        for work, work_events in events.items():
            if not work.finished:  # (a request that failed in this step gets no more events)
                self._deliver(work, work_events)
        for work in list(self.works):
            self._finish_if_done(work)

    def _job_events(self, work: Work, job: Job, events: list) -> int:
        """The Tokens events of a job's rows after a step; returns how many tokens they carry."""
        r = work.request
        i = work.jobs[job]
        count = 0
        for j, seq in enumerate(job.sequences):
            state = work.rows[i, j]
            new = len(seq.token_ids) - state.sent
            if new == 0:
                continue
            offsets = [work.prompt_chars.get(i, 0) + state.decoded] if r.logprobs is not None else []
            alternatives = job.alternatives[j][state.sent :] if r.logprobs is not None else None
            events.append(
                Tokens(
                    i * r.n + j,
                    seq.token_ids[state.sent :],
                    seq.logprobs[state.sent :],
                    alternatives,
                    offsets,
                    seq.text.take(),
                    FINISH_REASONS[seq.finish_reason] if seq.finish_reason else None,
                )
            )
            state.sent = len(seq.token_ids)
            state.decoded = len(seq.text.decoded)
            count += new
        return count
