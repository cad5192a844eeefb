"""The two sides of the benchmark, each in its own process, driven by `benchmarks/run.py`.

    python -m benchmarks.workers engine|torch THREADS

A worker reads one JSON command per line on stdin and answers one JSON line on stdout, so the
harness can alternate between the engines run by run while each keeps its model loaded and its
own thread pool (the two never run at the same time, and never share a process).

What each side runs, for a prompt of P random token ids per row and N new tokens:

- engine: `cache = model.new_cache(B, P + N)`, `model(prompt, cache=cache, logits_to_keep=1)`
  (the prefill), then N - 1 steps `model(next_ids[:, None], cache=cache)`, greedy (argmax).
- torch: Hugging Face `GPT2LMHeadModel` (float32, its default attention, "sdpa"), under
  `torch.inference_mode()`: `model(prompt, use_cache=True, logits_to_keep=1)`, then N - 1 steps
  `model(next_ids[:, None], cache=past, use_cache=True)` (`cache` is transformers 5's new name
  for `past_key_values`), greedy (argmax). Also `model.generate(...)` itself (greedy, exactly N
  new tokens), timed separately: decode per token = (time for N tokens - time for 1) / (N - 1).

Times come from `time.perf_counter()` around the calls, nothing else inside the loops.
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

    def __init__(self, threads: int):
        import engine

        engine.set_threads(threads)
        self.model = None

    def load(self, model_dir: str) -> dict:
        from engine import GPT2, get_threads

        self.model = GPT2.from_pretrained(model_dir)
        return {"numba_threads": get_threads(), "pools": thread_report()}

    def run(self, batch: int, prompt_len: int, new_tokens: int) -> dict:
        model = self.model
        ids = prompt_ids(batch, prompt_len, model.config.vocab_size)
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

    def __init__(self, threads: int):
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

    def run(self, batch: int, prompt_len: int, new_tokens: int, gaps: bool = False) -> dict:
        """The manual greedy loop through the KV cache. gaps: also record, per step and row, the gap
        between the two largest logits (for telling a near-tie from a real disagreement; off when timing)."""
        torch = self.torch
        ids = torch.from_numpy(prompt_ids(batch, prompt_len, self.model.config.vocab_size))
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


def main() -> None:
    side_name, threads = sys.argv[1], int(sys.argv[2])
    side = (EngineSide if side_name == "engine" else TorchSide)(threads)
    reply = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol
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
