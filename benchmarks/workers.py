"""The sides of the benchmark, each in its own process, driven by `benchmarks/run.py`.

    python -m benchmarks.workers engine|torch|llama.cpp|onnxruntime THREADS [PRECISION]

(THREADS: a number; for the engine also "auto", its default setting: benchmarks/busy.py.)

A worker reads one JSON command per line on stdin and answers one JSON line on stdout, so the
harness can alternate between the engines run by run while each keeps its model loaded and its
own thread pool (no two run at the same time, and none shares a process). A side whose library
cannot be imported answers {"error": ...} instead of {"ready": ...} and exits: the harness then
reports it as missing.

What each side runs, for a prompt of P random token ids per row and N new tokens:

- engine: `GPT2.from_pretrained(dir)` (with `dtype=PRECISION` when the harness gives one), then
  `cache = model.new_cache(B, P + N)`, `model(prompt, cache=cache, logits_to_keep=1)`
  (the prefill), then N - 1 steps `model(next_ids[:, None], cache=cache)`, greedy (argmax).
- torch: Hugging Face `GPT2LMHeadModel` (float32, its default attention, "sdpa"), under
  `torch.inference_mode()`: `model(prompt, use_cache=True, logits_to_keep=1)`, then N - 1 steps
  `model(next_ids[:, None], cache=past, use_cache=True)` (`cache` is transformers 5's new name
  for `past_key_values`), greedy (argmax). Also `model.generate(...)` itself (greedy, exactly N
  new tokens), timed separately: decode per token = (time for N tokens - time for 1) / (N - 1).

- llama.cpp and onnxruntime: `benchmarks/peers.py`.

Times come from `time.perf_counter()` around the calls, nothing else inside the loops. Every side
also answers `fidelity` (benchmarks/fidelity.py) on a second model that it loads for the purpose.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

PROMPT_SEED = 1234


def prompt_ids(batch: int, prompt_len: int, vocab_size: int) -> np.ndarray:
    """The same seeded random prompt for both sides: int64 [B, P]."""
    return np.random.default_rng(PROMPT_SEED + 1000 * batch + prompt_len).integers(0, vocab_size, (batch, prompt_len))


def thread_report() -> dict:
    """Every thread pool this process has loaded, and how many threads each will use."""
    from threadpoolctl import threadpool_info

    return {f"{p['internal_api']} ({os.path.basename(p['filepath'])})": p["num_threads"] for p in threadpool_info()}


class EngineSide:
    name = "engine"

    def __init__(self, threads: int | str, precision: str | None = None):
        import engine

        engine.set_threads(threads)
        self.dtype = precision  # None: from_pretrained's own default (float32), nothing passed
        self.model = None

    def _load(self, model_dir: str):
        from engine import GPT2

        if self.dtype is None:
            return GPT2.from_pretrained(model_dir)
        return GPT2.from_pretrained(model_dir, dtype=self.dtype)

    def load(self, model_dir: str) -> dict:
        from engine import get_threads

        self.model = self._load(model_dir)
        return {"numba_threads": get_threads(), "pools": thread_report(), "dtype": self.dtype or "float32 (default)"}

    def run(self, batch: int, prompt_len: int, new_tokens: int, ids=None) -> dict:
        model = self.model
        ids = prompt_ids(batch, prompt_len, model.config.vocab_size) if ids is None else np.asarray(ids, dtype=np.int64)
        tokens = np.empty((batch, new_tokens), dtype=np.int64)
        start = time.perf_counter()
        cache = model.new_cache(batch, prompt_len + new_tokens)
        logits = model(ids, cache=cache, logits_to_keep=1)  # [B, 1, V]
        next_ids = logits[:, -1].argmax(axis=-1)  # [B]
        prefill_done = time.perf_counter()
        tokens[:, 0] = next_ids
        for step in range(1, new_tokens):
            logits = model(next_ids[:, None], cache=cache)  # [B, 1, V]
            next_ids = logits[:, -1].argmax(axis=-1)
            tokens[:, step] = next_ids
        end = time.perf_counter()
        return {"prefill_s": prefill_done - start, "decode_s": end - prefill_done, "tokens": tokens.tolist()}

    def fidelity(self, model_path: str, windows: list, prompts: list, new_tokens: int, reference: dict) -> dict:
        """benchmarks/fidelity.py: every position's logits of each window, then greedy continuations."""
        from benchmarks.fidelity import compare_window, greedy_from, new_totals, totals_summary

        model = self._load(model_path)
        totals = new_totals()
        for w, window in enumerate(np.asarray(windows, dtype=np.int64)):
            compare_window(totals, reference, w, window, model(window))  # [T, V]

        def greedy(ids, n):
            B, P = ids.shape
            cache = model.new_cache(B, P + n)
            tokens = np.empty((B, n), dtype=np.int64)
            next_ids = model(ids, cache=cache, logits_to_keep=1)[:, -1].argmax(axis=-1)
            tokens[:, 0] = next_ids
            for step in range(1, n):
                next_ids = model(next_ids[:, None], cache=cache)[:, -1].argmax(axis=-1)
                tokens[:, step] = next_ids
            return tokens

        return totals_summary(totals) | {
            "generated": greedy_from(greedy, np.asarray(prompts, dtype=np.int64), new_tokens)
        }

    def matmul_flops(self, size: int = 2048, repeats: int = 5) -> dict:
        """Best float32 matrix-multiply rate of NumPy's BLAS (what the engine's prompt pass uses)."""
        a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
        best = float("inf")
        for _ in range(repeats + 1):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        return {"flops": 2 * size**3 / best}

    def bandwidth(self, gib: float = 1.0, repeats: int = 10) -> dict:
        from benchmarks.roofline import read_bandwidth

        return read_bandwidth(gib, repeats)


class TorchSide:
    name = "torch"

    def __init__(self, threads: int, precision: str | None = None):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = None

    def load(self, model_dir: str) -> dict:
        from transformers import GPT2LMHeadModel

        self.model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=self.torch.float32).eval()
        return {
            "torch_threads": self.torch.get_num_threads(),
            "attn_implementation": self.model.config._attn_implementation,
            "pools": thread_report(),
        }

    def run(self, batch: int, prompt_len: int, new_tokens: int, gaps: bool = False, ids=None) -> dict:
        """The manual greedy loop through the KV cache. gaps: also record, per step and row, the gap
        between the two largest logits (for telling a near-tie from a real disagreement; off when timing)."""
        torch = self.torch
        if ids is None:
            ids = prompt_ids(batch, prompt_len, self.model.config.vocab_size)
        ids = torch.from_numpy(np.asarray(ids, dtype=np.int64))
        tokens = torch.empty((batch, new_tokens), dtype=torch.int64)
        top2_gaps = []
        with torch.inference_mode():
            start = time.perf_counter()
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            next_ids = out.logits[:, -1].argmax(dim=-1)
            prefill_done = time.perf_counter()
            tokens[:, 0] = next_ids
            if gaps:
                top2_gaps.append(self._gap(out.logits[:, -1]))
            past = out.cache
            for step in range(1, new_tokens):
                out = self.model(input_ids=next_ids[:, None], cache=past, use_cache=True)
                past = out.cache
                next_ids = out.logits[:, -1].argmax(dim=-1)
                tokens[:, step] = next_ids
                if gaps:
                    top2_gaps.append(self._gap(out.logits[:, -1]))
            end = time.perf_counter()
        result = {"prefill_s": prefill_done - start, "decode_s": end - prefill_done, "tokens": tokens.tolist()}
        if gaps:
            result["top2_gaps"] = np.array(top2_gaps).T.tolist()  # [B, N]
        return result

    def _gap(self, logits):
        top = logits.topk(2, dim=-1).values
        return (top[:, 0] - top[:, 1]).tolist()

    def generate(self, batch: int, prompt_len: int, new_tokens: int) -> dict:
        """`model.generate()` itself, greedy, exactly `new_tokens` new tokens (end-of-text not a stop)."""
        torch = self.torch
        ids = torch.from_numpy(prompt_ids(batch, prompt_len, self.model.config.vocab_size))
        options = dict(
            attention_mask=torch.ones_like(ids), do_sample=False, num_beams=1, eos_token_id=None, pad_token_id=0
        )
        with torch.inference_mode():
            start = time.perf_counter()
            self.model.generate(ids, max_new_tokens=1, min_new_tokens=1, **options)
            one = time.perf_counter() - start
            start = time.perf_counter()
            out = self.model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **options)
            full = time.perf_counter() - start
        return {"one_token_s": one, "total_s": full, "tokens": out[:, prompt_len:].tolist()}

    def fidelity(self, model_path: str, windows: list, prompts: list, new_tokens: int, reference: dict) -> dict:
        """benchmarks/fidelity.py, with transformers' model at float32 (a check of the reference)."""
        from transformers import GPT2LMHeadModel

        from benchmarks.fidelity import compare_window, greedy_from, new_totals, totals_summary

        torch = self.torch
        saved, self.model = self.model, GPT2LMHeadModel.from_pretrained(model_path, dtype=torch.float32).eval()
        try:
            totals = new_totals()
            with torch.inference_mode():
                for w, window in enumerate(np.asarray(windows, dtype=np.int64)):
                    logits = self.model(input_ids=torch.from_numpy(window[None])).logits[0].numpy()
                    compare_window(totals, reference, w, window, logits)
            prompts = np.asarray(prompts, dtype=np.int64)
            generated = greedy_from(
                lambda ids, n: self.run(len(ids), ids.shape[1], n, ids=ids)["tokens"], prompts, new_tokens
            )
        finally:
            self.model = saved
        return totals_summary(totals) | {"generated": generated}

    def matmul_flops(self, size: int = 2048, repeats: int = 5) -> dict:
        torch = self.torch
        a = torch.randn(size, size, dtype=torch.float32)
        b = torch.randn(size, size, dtype=torch.float32)
        best = float("inf")
        for _ in range(repeats + 1):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        return {"flops": 2 * size**3 / best}


def make_side(name: str, threads, precision: str | None):
    """The side called `name`; llama.cpp and onnxruntime come from benchmarks/peers.py."""
    if name == "engine":
        return EngineSide(threads, precision)
    if name == "torch":
        return TorchSide(threads, precision)
    from benchmarks.peers import LlamaCppSide, OnnxSide

    sides = {"llama.cpp": LlamaCppSide, "onnxruntime": OnnxSide}
    if name not in sides:
        raise ValueError(f"unknown side {name!r}")
    return sides[name](threads, precision)


def main() -> None:
    side_name, threads = sys.argv[1], (sys.argv[2] if sys.argv[2] == "auto" else int(sys.argv[2]))
    precision = sys.argv[3] if len(sys.argv) > 3 else None
    reply = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol
    try:
        side = make_side(side_name, threads, precision)
    except Exception as error:  # e.g. the peer's package is not installed: the harness reports it missing
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), file=reply, flush=True)
        return
    print(json.dumps({"ready": side.name}), file=reply, flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        action = command.pop("action")
        if action == "quit":
            break
        try:
            result = getattr(side, action)(**command)
        except Exception as error:  # reported to the harness, which stops with the message
            result = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(result), file=reply, flush=True)


if __name__ == "__main__":
    main()
