"""`gpt2 serve` under load: aggregate tokens/s, time per output token and time to first token
with 1, 4 and 8 concurrent clients.

    python -m benchmarks.serve                      # the 124M synthetic checkpoint; writes SERVE_RESULTS.md/.json
    python -m benchmarks.serve --model ../shared/models/shakespeare-gpt2-tiny --out /tmp/tiny.md
    python -m benchmarks.serve --requests 16 --max-tokens 32 --rounds 5 --threads 2

The default model is the 124M (`gpt2`) synthetic float32 checkpoint of benchmarks/run.py, seed 0,
written once into its data directory (`DATA_DIR`) if missing and reused by both benchmarks.
One real server process (`python -m engine serve --port 0`, loopback only) serves every request.
The workload of each concurrency level is the same `--requests` requests, the `PROMPTS` prompts
of different lengths cut from the held-out Tempest taken in turn (8 requests: each prompt once);
greedy (`temperature: 0`), `--max-tokens` new tokens, `ignore_eos` so that every request generates
exactly that many, streamed (`stream: true` with `include_usage`) so that each token's arrival
is seen. With C clients, C threads (each with its own keep-alive `httpx.Client`) share the list:
client k sends requests k, k + C, k + 2C, ... one after the other.

Measured per level: throughput, all completion tokens over the wall time from the first request
sent to the last response read; per request: time to first token (send to the first chunk),
time per output token (TPOT: from the first chunk to the last chunk with text, over the tokens
after the first) and latency (send to `[DONE]`). Before the rounds, one untimed pass at the
largest level and one request from a single client warm the server up (Numba compiles on first
use).

The levels run in rounds, alternating their order (1, 4, 8, then 8, 4, 1, ...) so drift in the
machine's load falls on every level alike; the report gives medians over rounds for tokens/s and
medians over every request of the level for TPOT, TTFT and latency. Every response (its streamed
text pieces joined) is checked against the single-client response of the same prompt in the first
round: continuous batching must not change greedy text. The target of issue 13 is 8 clients >= 3x
the tokens/s of one client.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.run import DATA_DIR, cpu_model_name, ensure_checkpoint

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpora" / "heldout_tempest.txt"
PRESET = "gpt2"  # the 124M shape
OUT = Path(__file__).resolve().parent / "SERVE_RESULTS.md"

LEVELS = (1, 4, 8)  # concurrent clients
PROMPT_CHARS = (40, 400, 120, 280, 70, 200, 520, 160)  # prompt lengths in characters, mixed on purpose
PROMPTS = len(PROMPT_CHARS)
REQUESTS = PROMPTS  # per level and round by default: every prompt once
MAX_TOKENS = 64  # new tokens per request by default
TARGET_RATIO = 3.0  # issue 13: 8 clients >= 3x one client
START_TIMEOUT = 180  # seconds for the server to load the model (kernels may compile on a cold cache)
REQUEST_TIMEOUT = 300


def prompts(corpus: Path) -> list[str]:
    """`PROMPTS` fixed pieces of the play, each starting at a speech and ending at a word's end."""
    text = corpus.read_text(encoding="utf-8")
    # Speeches start at a line of a speaker's name in capitals ("PROSPERO.") after the cast list.
    starts = [m.start() for m in re.finditer(r"^[A-Z][A-Z ]+\.\n", text, re.MULTILINE)]
    if len(starts) < 10 * PROMPTS:
        raise SystemExit(f"serve benchmark: error: {corpus} has too few speeches for {PROMPTS} prompts")
    chosen = []
    for i, chars in enumerate(PROMPT_CHARS):
        begin = starts[(i + 1) * len(starts) // (PROMPTS + 1)]
        piece = text[begin : begin + chars]
        chosen.append(piece[: piece.rfind(" ")] if " " in piece else piece)
    return chosen


# ----------------------------------------------------------------------------------------------
# The server process


class Server:
    """`python -m engine serve --port 0` from this repository; `url` once /health answers 200."""

    def __init__(self, model: str, threads: int, log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        env = os.environ | {"PYTHONPATH": str(REPO), "GPT2_ENGINE_THREADS": str(threads)}
        command = [sys.executable, "-m", "engine", "serve", "--model", model, "--port", "0"]
        command += ["--threads", str(threads), "--log-level", "warning"]
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = self._wait_ready()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        url = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"serve benchmark: error: the server exited with {self.process.returncode}:\n{self.output()}"
                )
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
        self.stop(signal.SIGKILL)
        raise SystemExit(f"serve benchmark: error: the server did not start in {START_TIMEOUT} s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


# ----------------------------------------------------------------------------------------------
# The clients


class RequestFailed(Exception):
    pass


def stream_completion(http: httpx.Client, body: dict) -> dict:
    """One streamed request: its text (the pieces joined), token counts, and when its chunks came."""
    sent = time.perf_counter()
    pieces, arrivals, usage = [], [], None
    with http.stream(
        "POST", "/v1/completions", json=body | {"stream": True, "stream_options": {"include_usage": True}}
    ) as response:
        if response.status_code != 200:
            response.read()
            raise RequestFailed(f"HTTP {response.status_code}: {response.text[:200]}")
        for line in response.iter_lines():
            now = time.perf_counter()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            chunk = json.loads(line[len("data: ") :])
            if "error" in chunk:
                raise RequestFailed(f"error in the stream: {chunk['error'].get('message')}")
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                pieces.append(choice["text"])
                if choice["text"]:
                    arrivals.append(now)
    done = time.perf_counter()
    if usage is None or not arrivals:
        raise RequestFailed("the stream ended without text or usage")
    tokens = usage["completion_tokens"]
    return {
        "text": "".join(pieces),
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": tokens,
        "ttft_s": arrivals[0] - sent,
        # From the first piece of text to the last, per token after the first.
        "tpot_s": (arrivals[-1] - arrivals[0]) / (tokens - 1) if tokens > 1 and len(arrivals) > 1 else None,
        "latency_s": done - sent,
    }


def run_level(url: str, clients: int, texts: list[str], max_tokens: int, requests: int) -> dict:
    """`requests` requests shared by `clients` threads; wall time, tokens, and each request's result."""
    results: list[dict | None] = [None] * requests
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as http:
            http.get("/health")  # open the keep-alive connection before the clock starts
            barrier.wait()
            for i in range(k, requests, clients):
                body = {"prompt": texts[i % len(texts)], "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
                try:
                    result = stream_completion(http, body)
                except (httpx.HTTPError, RequestFailed, ValueError) as e:
                    errors.append(f"request {i}: {type(e).__name__}: {e}")
                    return
                results[i] = {"prompt": i % len(texts)} | result

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    if errors or any(r is None for r in results):
        raise SystemExit("serve benchmark: error: requests failed:\n" + "\n".join(errors or ["a client stopped early"]))
    done = [r for r in results if r is not None]
    tokens = sum(r["completion_tokens"] for r in done)
    return {"clients": clients, "wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall, "requests": done}


# ----------------------------------------------------------------------------------------------
# The run


def machine() -> dict:
    return {
        "cpu": cpu_model_name(),
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def measure(args: argparse.Namespace) -> dict:
    texts = prompts(args.corpus)
    data: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "load_before": list(os.getloadavg()),
        "settings": {
            "model": str(args.model),
            "server_threads": args.threads,
            "max_tokens": args.max_tokens,
            "rounds": args.rounds,
            "requests_per_level": args.requests,
            "prompt_chars": [len(t) for t in texts],
        },
    }
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpt2-serve-bench-") as tmp:
        server = Server(str(args.model), args.threads, Path(tmp) / "server.log")
        try:
            data["server_start_s"] = time.perf_counter() - began
            run_level(server.url, max(LEVELS), texts, args.max_tokens, max(LEVELS))  # warm-up, untimed
            run_level(server.url, 1, texts[:1], args.max_tokens, 1)
            rounds = []
            for r in range(args.rounds):
                order = LEVELS if r % 2 == 0 else LEVELS[::-1]
                runs = {}
                for clients in order:
                    runs[clients] = run_level(server.url, clients, texts, args.max_tokens, args.requests)
                    print(
                        f"round {r + 1}: {clients} client(s): {runs[clients]['tokens_per_s']:.1f} tokens/s",
                        file=sys.stderr,
                        flush=True,
                    )
                rounds.append(runs)
        finally:
            code = server.stop()
        if code != 0:
            raise SystemExit(f"serve benchmark: error: the server exited with {code}:\n{server.output()}")
    data["total_s"] = time.perf_counter() - began
    data["load_after"] = list(os.getloadavg())
    data["prompt_tokens"] = {r["prompt"]: r["prompt_tokens"] for r in rounds[0][1]["requests"]}
    data["levels"] = summarize(rounds)
    data["equality"] = check_equality(rounds)
    data["rounds"] = [
        {str(c): {k: v for k, v in run.items() if k != "requests"} for c, run in runs.items()} for runs in rounds
    ]
    one, eight = data["levels"]["1"]["tokens_per_s"], data["levels"][str(max(LEVELS))]["tokens_per_s"]
    data["ratio"] = eight / one
    data["target_met"] = data["ratio"] >= TARGET_RATIO
    return data


def summarize(rounds: list[dict]) -> dict:
    levels = {}
    for clients in LEVELS:
        requests = [q for runs in rounds for q in runs[clients]["requests"]]
        latencies = [q["latency_s"] for q in requests]
        tpots = [q["tpot_s"] for q in requests if q["tpot_s"] is not None]
        levels[str(clients)] = {
            "tokens_per_s": statistics.median(runs[clients]["tokens_per_s"] for runs in rounds),
            "tokens_per_s_min": min(runs[clients]["tokens_per_s"] for runs in rounds),
            "tokens_per_s_max": max(runs[clients]["tokens_per_s"] for runs in rounds),
            "wall_s": statistics.median(runs[clients]["wall_s"] for runs in rounds),
            "tpot_median_s": statistics.median(tpots) if tpots else None,
            "tpot_max_s": max(tpots) if tpots else None,
            "ttft_median_s": statistics.median(q["ttft_s"] for q in requests),
            "ttft_max_s": max(q["ttft_s"] for q in requests),
            "latency_median_s": statistics.median(latencies),
            "latency_max_s": max(latencies),
        }
    return levels


def check_equality(rounds: list[dict]) -> dict:
    """Every response against the first round's single-client response to the same prompt."""
    reference = {q["prompt"]: q["text"] for q in rounds[0][1]["requests"]}
    checked, differing = 0, []
    for r, runs in enumerate(rounds):
        for clients, run in runs.items():
            for q in run["requests"]:
                checked += 1
                if q["text"] != reference[q["prompt"]]:
                    differing.append({"round": r + 1, "clients": clients, "prompt": q["prompt"], "text": q["text"]})
    return {"checked": checked, "differing": differing, "held": not differing}


# ----------------------------------------------------------------------------------------------
# The report


def report(data: dict) -> str:
    m, s = data["machine"], data["settings"]
    before = ", ".join(f"{x:.2f}" for x in data["load_before"])
    after = ", ".join(f"{x:.2f}" for x in data["load_after"])
    lines = [
        "# `gpt2 serve` under load",
        "",
        f"Written by `python -m benchmarks.serve` on {data['date']}, in {data['total_s']:.0f} s.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['system']}, Python {m['python']}.",
        f"- Load average (1, 5, 15 min) before: {before}; after: {after}.",
        f"- Model: `{Path(s['model']).name}`; server threads: {s['server_threads']}; greedy, "
        f"`max_tokens` {s['max_tokens']} with `ignore_eos`.",
        f"- Each level: {s['requests_per_level']} streamed requests (the {PROMPTS} prompts of "
        f"{min(data['prompt_tokens'].values())} to {max(data['prompt_tokens'].values())} tokens in turn), "
        f"{s['rounds']} round(s) in alternating order. Tokens/s: median over rounds (min–max in brackets); "
        "TPOT (time per output token, first to last chunk over the tokens after the first), TTFT (time to "
        "first token) and latency (send to `[DONE]`): over every request of the level.",
        "",
        "| clients | tokens/s | vs 1 client | TPOT median (ms) | TTFT median (s) | latency median (s) | latency max (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    one = data["levels"]["1"]["tokens_per_s"]
    for clients in LEVELS:
        lv = data["levels"][str(clients)]
        lines.append(
            f"| {clients} | {lv['tokens_per_s']:.1f} ({lv['tokens_per_s_min']:.1f}–{lv['tokens_per_s_max']:.1f}) "
            f"| {lv['tokens_per_s'] / one:.2f}x | {milliseconds(lv['tpot_median_s'])} | {lv['ttft_median_s']:.2f} "
            f"| {lv['latency_median_s']:.2f} | {lv['latency_max_s']:.2f} |"
        )
    eq = data["equality"]
    verdict = "met" if data["target_met"] else "missed"
    top = str(max(LEVELS))
    per_round = ", ".join(f"{runs[top]['tokens_per_s'] / runs['1']['tokens_per_s']:.2f}x" for runs in data["rounds"])
    lines += [
        "",
        f"**{top} clients / 1 client: {data['ratio']:.2f}x** (medians; target >= {TARGET_RATIO:.0f}x: {verdict}). "
        f"Round by round: {per_round}.",
        "",
        f"**Greedy equality:** {eq['checked']} responses checked against the single-client response to "
        "the same prompt: "
        + ("all equal." if eq["held"] else f"{len(eq['differing'])} differ (see SERVE_RESULTS.json)."),
        "",
    ]
    return "\n".join(lines)


def milliseconds(seconds: float | None) -> str:
    return "–" if seconds is None else f"{1000 * seconds:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", help=f"model directory to serve (default: the 124M synthetic checkpoint, written into {DATA_DIR})"
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="text the prompts are cut from")
    parser.add_argument("--threads", type=int, default=1, help="the server's threads (default: 1)")
    parser.add_argument(
        "--max-tokens", type=int, default=MAX_TOKENS, help=f"new tokens per request (default: {MAX_TOKENS})"
    )
    parser.add_argument(
        "--requests", type=int, default=REQUESTS, help=f"requests per level and round (default: {REQUESTS})"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the levels (default: 3)")
    parser.add_argument("--out", type=Path, default=OUT, help="the Markdown report; the JSON goes beside it")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the Markdown from the JSON beside it, measuring nothing"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        text = report(json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8")))
        print(text)
        write_atomically(args.out, text)
        return
    if args.rounds < 1 or args.max_tokens < 1 or args.threads < 1 or args.requests < 1:
        parser.error("--rounds, --max-tokens, --requests and --threads must be >= 1")
    if args.model is None:
        args.model = str(ensure_checkpoint(DATA_DIR, PRESET))
    data = measure(args)
    text = report(data)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(args.out.with_suffix(".json"), json.dumps(data, indent=1) + "\n")
    write_atomically(args.out, text)


def write_atomically(path: Path, content: str) -> None:
    """Write beside `path`, then rename: a failed write never leaves half a report."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(content, encoding="utf-8")
    partial.replace(path)


if __name__ == "__main__":
    main()
