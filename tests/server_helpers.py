"""Shared by the server tests: a real `gpt2 serve` process on a free loopback port, and small clients.

Every request goes to 127.0.0.1 only; every loop that waits is bounded in time.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
from conftest import REPO

START_TIMEOUT = 120  # seconds for a server to load the model (kernels may compile on a cold cache)


class ServerProcess:
    """`python -m engine serve --port 0 ...` with one thread; `url` once /health answers 200."""

    def __init__(self, model_dir, *args, tmp_path, env=None):
        self.log_path = tmp_path / f"server-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        environment = os.environ | {"PYTHONPATH": str(REPO), "GPT2_ENGINE_THREADS": "1"} | (env or {})
        command = [sys.executable, "-m", "engine", "serve", "--model", str(model_dir), "--port", "0"]
        self.process = subprocess.Popen(
            command + [str(a) for a in args], cwd=REPO, env=environment, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.url = self._address()
        self.returncode = None

    def _address(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        url = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.output()}")
            if url is None:
                found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.output())
                url = found.group(1) if found else None
            if url is not None:
                try:
                    if httpx.get(url + "/health", timeout=5).status_code == 200:
                        return url
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        self.process.kill()
        raise AssertionError(f"the server did not start in {START_TIMEOUT} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=60) -> int:
        """Send `sig` (None: send nothing, the process is on its way out) and wait for the exit
        status."""
        if self.process.poll() is None:
            if sig is not None:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the server did not stop in {timeout} s:\n{self.output()}") from None
        self.log.close()
        self.returncode = self.process.returncode
        return self.returncode


def start_server(model_dir, tmp_path_factory, *args, env=None):
    """A server for a module: yields it, then stops it with SIGTERM and checks it exited with 0."""
    server = ServerProcess(model_dir, *args, tmp_path=tmp_path_factory.mktemp("server"), env=env)
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.output()


def post(url: str, body, headers=None, timeout=60) -> httpx.Response:
    """POST a JSON value (or raw bytes) and return the response."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        url, content=content, headers={"Content-Type": "application/json"} | (headers or {}), timeout=timeout
    )


def metric(url: str, name: str, headers=None) -> float:
    """One sample of /metrics (a series without labels)."""
    text = httpx.get(url + "/metrics", headers=headers, timeout=10).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} is not in /metrics:\n{text}"
    return float(found.group(1))


def server_sent_events(response: httpx.Response) -> list:
    """The data of each event of a streamed response: dicts, then the string "[DONE]"."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
        else:
            assert line == "", f"not an SSE data line: {line!r}"
    return events


def wait_until(condition, timeout=30.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} did not hold within {timeout} s")
