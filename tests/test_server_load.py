"""`gpt2 serve` under several clients at once: the continuous batch gives each request what it gets
alone, a client that goes away frees its rows, a full queue answers 429, a bounded load gets no
5xx, and SIGTERM drains (running requests finish, or are cut at once with --drain-timeout 0) and
exits with status 0. Every server is a real process on a free loopback port; every wait is bounded.
"""

import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from server_helpers import ServerProcess, metric, post, start_server, wait_until

from engine.base.config import GPT2Config

PROMPTS = [
    "ROMEO:",
    "KING",
    "JULIET: O Romeo, Romeo, wherefore art thou",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "MENENIUS:\nWhy, masters, my good friends, mine honest neighbours,",
    "O",
    "To be, or not to be: that is the question",
    "CORIOLANUS:\nThey said they were an-hungry; sigh'd forth proverbs,",
]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    yield from start_server(tiny_model_dir, tmp_path_factory, "--max-batch-size", 8, "--model-name", "tiny")


@pytest.fixture(scope="module")
def model(tiny_model, one_thread):
    return tiny_model


def completions_client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120)


class BatchWatch:
    """Reads gpt2_batch_size from /metrics until stopped; `largest` is the most rows seen at once."""

    def __init__(self, url):
        self.url, self.largest, self.stopped = url, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        while not self.stopped.wait(0.01):
            self.largest = max(self.largest, metric(self.url, "gpt2_batch_size"))

    def stop(self):
        self.stopped.set()
        self.thread.join(10)


def test_8_concurrent_clients_get_exactly_what_each_gets_alone(server, model):
    """Greedy prompts of different lengths and seeded samples (n=2), all at once: every token,
    log-probability and finish reason as `model.generate` gives that request alone."""
    jobs = [dict(prompt=p, max_tokens=30 + 3 * i, temperature=0) for i, p in enumerate(PROMPTS)]
    jobs[3] |= dict(temperature=0.9, seed=5, n=2, top_p=0.95)
    jobs[6] |= dict(temperature=1.2, seed=6, n=2, presence_penalty=0.5)
    barrier = threading.Barrier(len(jobs))

    def ask(job):
        with completions_client(server) as client:
            barrier.wait(30)
            return client.completions.create(model="tiny", logprobs=1, **job)

    watch = BatchWatch(server.url)
    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            responses = list(pool.map(ask, jobs))
    finally:
        watch.stop()
    for job, response in zip(jobs, responses):
        options = dict(max_new_tokens=job["max_tokens"], temperature=job["temperature"])
        for name in ("seed", "top_p", "presence_penalty"):
            if name in job:
                options[name] = job[name]
        expected = model.generate(job["prompt"], num_return_sequences=job.get("n", 1), **options)
        expected = expected if isinstance(expected, list) else [expected]
        assert [c.text for c in response.choices] == [r.text for r in expected], job
        assert [c.logprobs.token_logprobs for c in response.choices] == [r.logprobs for r in expected], job
        reasons = [{"length": "length", "eos": "stop", "stop": "stop"}[r.finish_reason] for r in expected]
        assert [c.finish_reason for c in response.choices] == reasons
    assert watch.largest > 1  # they ran side by side in the batch, not one after another


def test_a_client_that_disconnects_frees_its_rows(server, model):
    body = {"prompt": "ROMEO:", "max_tokens": 200, "temperature": 1.0, "n": 2, "stream": True, "ignore_eos": True}
    other = {}

    def ask_other():  # a request running beside the one that goes away
        other["result"] = post(server.url + "/v1/completions", {"prompt": "KING", "max_tokens": 60, "temperature": 0})

    with httpx.Client(timeout=60) as client:
        with client.stream("POST", server.url + "/v1/completions", json=body) as response:
            lines = response.iter_lines()
            for _ in range(6):  # a few events of each row
                next(lines)
            assert metric(server.url, "gpt2_batch_size") == 2
            thread = threading.Thread(target=ask_other)
            thread.start()
            wait_until(lambda: metric(server.url, "gpt2_batch_size") == 3, what="the other request joining")
        # The stream is closed without reading it to its end: its two rows leave the batch.
        wait_until(lambda: metric(server.url, "gpt2_batch_size") <= 1, what="the batch dropping the rows")
    thread.join(60)
    expected = model.generate("KING", max_new_tokens=60)
    assert other["result"].status_code == 200
    assert other["result"].json()["choices"][0]["text"] == expected.text
    wait_until(lambda: metric(server.url, "gpt2_batch_size") == 0, what="an empty batch")

    # A client that gives up waiting for a whole (not streamed) response frees its rows too.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/v1/completions",
            json={"prompt": "KING", "max_tokens": 240, "ignore_eos": True, "temperature": 0.8},
            timeout=httpx.Timeout(60, read=0.5),
        )
    wait_until(lambda: metric(server.url, "gpt2_batch_size") == 0, what="the abandoned request's row leaving")


def test_a_bounded_load_gets_no_server_error_and_every_response_whole(server):
    """6 clients, 5 requests each, of every kind: each gets a 200 and a complete response."""
    kinds = [
        {"prompt": "ROMEO:", "max_tokens": 20},
        {"prompt": ["KING", "QUEEN"], "max_tokens": 12, "n": 2, "temperature": 0.7},
        {"prompt": "JULIET:", "max_tokens": 15, "stream": True},
        {"prompt": "O Romeo", "max_tokens": 1, "echo": True, "logprobs": 2, "temperature": 0},
        {"prompt": [[464, 3290], [40, 716, 257]], "max_tokens": 8, "stop": ["\n"]},
    ]

    def client_run(c):
        outcomes = []
        with httpx.Client(timeout=120) as client:
            for k in range(len(kinds)):
                body = kinds[(c + k) % len(kinds)]
                response = client.post(server.url + "/v1/completions", json=body)
                outcomes.append((body, response.status_code, response.text))
        return outcomes

    with ThreadPoolExecutor(6) as pool:
        outcomes = [o for run in pool.map(client_run, range(6)) for o in run]
    assert len(outcomes) == 30
    for body, status, text in outcomes:
        assert status == 200, text
        n_choices = (len(body["prompt"]) if isinstance(body["prompt"], list) else 1) * body.get("n", 1)
        if body.get("stream"):
            events = [line[len("data: ") :] for line in text.split("\n\n") if line]
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            assert chunks[-1]["choices"][0]["finish_reason"] is not None
        else:
            choices = json.loads(text)["choices"]
            assert sorted(c["index"] for c in choices) == list(range(n_choices))
            assert all(c["finish_reason"] in ("length", "stop") for c in choices)
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert 'endpoint="/v1/completions",status="5' not in metrics  # (/health said 503 while loading)


def test_a_full_queue_answers_429_with_retry_after(synthetic, tmp_path):
    # A synthetic model wide and long enough that 1000 tokens hold the batch's one row for many
    # seconds (the tiny model could finish 240 tokens before the test has queued another request).
    slow = synthetic("serve-slow", GPT2Config(n_layer=2, n_head=12, n_embd=768, n_positions=1024))
    server = ServerProcess(slow, "--max-batch-size", 1, "--max-queue", 1, tmp_path=tmp_path)
    try:
        long = {"prompt": "ROMEO:", "max_tokens": 1000, "ignore_eos": True, "temperature": 1.0, "stream": True}
        with httpx.stream("POST", server.url + "/v1/completions", json=long, timeout=60) as running:
            lines = running.iter_lines()  # (kept: a dropped iterator would close the stream)
            next(lines)  # it holds the batch's one row
            queued = {}
            thread = threading.Thread(
                target=lambda: queued.setdefault("response", post(server.url + "/v1/completions", {"max_tokens": 3}))
            )
            thread.start()
            wait_until(lambda: metric(server.url, "gpt2_queue_length") == 1, what="a request waiting")
            refused = post(server.url + "/v1/completions", {"prompt": "KING", "max_tokens": 3})
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "1"
            error = refused.json()["error"]
            assert error["type"] == "rate_limit_error" and "--max-queue" in error["message"]
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
            with client, pytest.raises(openai.RateLimitError):
                client.completions.create(prompt="KING", max_tokens=3, model=slow.name)
        # The long stream was dropped unread: the waiting request gets its turn.
        thread.join(60)
        assert queued["response"].status_code == 200
    finally:
        assert server.stop() == 0, server.output()


def test_sigterm_lets_running_requests_finish_then_exits_0(tiny_model_dir, tmp_path, model):
    server = ServerProcess(tiny_model_dir, tmp_path=tmp_path)
    body = {"prompt": "ROMEO:", "max_tokens": 120, "temperature": 0, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        first = next(lines)
        server.process.send_signal(signal.SIGTERM)
        events = server_sent_events_from([first, *lines])
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    expected = model.generate("ROMEO:", max_new_tokens=120, stop_at_eos=False).text
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected  # every token, to the last
    assert server.stop(sig=None, timeout=60) == 0, server.output()
    with pytest.raises(httpx.TransportError):  # and nothing listens any more
        httpx.get(server.url + "/health", timeout=5)


def test_sigint_with_no_grace_cuts_running_requests_then_exits_0(tiny_model_dir, tmp_path):
    server = ServerProcess(tiny_model_dir, "--drain-timeout", 0, tmp_path=tmp_path)
    body = {"prompt": "ROMEO:", "max_tokens": 240, "temperature": 0.8, "ignore_eos": True, "n": 2, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        next(lines)
        server.process.send_signal(signal.SIGINT)
        events = server_sent_events_from(lines)
    assert events[-1] == "[DONE]"
    last = {}
    for chunk in events[:-1]:
        for choice in chunk["choices"]:
            last[choice["index"]] = choice["finish_reason"]
    assert last == {0: "length", 1: "length"}  # both rows cut, with a finish reason
    tokens = sum(1 for chunk in events[:-1] for choice in chunk["choices"] if choice["text"])
    assert tokens < 2 * 240
    assert server.stop(sig=None, timeout=60) == 0, server.output()


def server_sent_events_from(lines) -> list:
    """The rest of an event stream's lines -> the data of each event (dicts, then "[DONE]")."""
    events = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events
