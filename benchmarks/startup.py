"""One fresh process: start, load, first token, then the rest of a generation; for the harness.

    python -m benchmarks.startup engine|torch MODEL_DIR THREADS PROMPT_LEN NEW_TOKENS

Prints JSON lines: {"event": "first_token", ...} as soon as the first new token is known (the
harness timestamps that line against the moment it started the process), then {"event": "done",
...} with the peak resident memory (VmHWM) and the resident memory after the imports and after
loading, so the report can say where memory goes. The engine side is what a user's script does:
`from engine import GPT2`, `GPT2.from_pretrained(dir)`, a KV cache, the prompt, argmax.
"""

import json
import sys
import time

START = time.perf_counter()


def resident_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, "t": time.perf_counter() - START, **fields}), flush=True)


def run_engine(model_dir: str, threads: int, prompt_len: int, new_tokens: int) -> None:
    import numpy as np

    from engine import GPT2, set_threads

    set_threads(threads)
    imported = (time.perf_counter() - START, resident_kib("VmRSS"))
    model = GPT2.from_pretrained(model_dir)
    loaded = (time.perf_counter() - START, resident_kib("VmRSS"))
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (1, prompt_len))
    cache = model.new_cache(1, prompt_len + new_tokens)
    next_ids = model(ids, cache=cache, logits_to_keep=1)[:, -1].argmax(axis=-1)
    emit("first_token", token=int(next_ids[0]), imported=imported, loaded=loaded)
    for _ in range(new_tokens - 1):
        next_ids = model(next_ids[:, None], cache=cache)[:, -1].argmax(axis=-1)
    emit("done", peak_kib=resident_kib("VmHWM"), rss_kib=resident_kib("VmRSS"))


def run_torch(model_dir: str, threads: int, prompt_len: int, new_tokens: int) -> None:
    import numpy as np
    import torch
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(threads)
    imported = (time.perf_counter() - START, resident_kib("VmRSS"))
    model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    loaded = (time.perf_counter() - START, resident_kib("VmRSS"))
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, model.config.vocab_size, (1, prompt_len)))
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        next_ids = out.logits[:, -1].argmax(dim=-1)
        emit("first_token", token=int(next_ids[0]), imported=imported, loaded=loaded)
        past = out.cache
        for _ in range(new_tokens - 1):
            out = model(input_ids=next_ids[:, None], cache=past, use_cache=True)
            past = out.cache
            next_ids = out.logits[:, -1].argmax(dim=-1)
    emit("done", peak_kib=resident_kib("VmHWM"), rss_kib=resident_kib("VmRSS"))


if __name__ == "__main__":
    side, model_dir, threads, prompt_len, new_tokens = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    (run_engine if side == "engine" else run_torch)(model_dir, threads, prompt_len, new_tokens)
