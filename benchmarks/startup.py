"""One fresh process: start, load, first token, then the rest of a generation; for the harness.

    python -m benchmarks.startup engine|torch|llama.cpp|onnxruntime MODEL THREADS PROMPT_LEN NEW_TOKENS [PRECISION]

Prints JSON lines: {"event": "first_token", ...} as soon as the first new token is known (the
harness timestamps that line against the moment it started the process), then {"event": "done",
...} with the peak resident memory (VmHWM) and the resident memory after the imports and after
loading, so the report can say where memory goes. The engine side is what a user's script does:
`from engine import GPT2`, `GPT2.from_pretrained(dir)` (with `dtype=PRECISION` when one is given),
a KV cache, the prompt, argmax. The peers (MODEL is then their GGUF or ONNX file) run the same
calls as their benchmark side (benchmarks/peers.py): llama.cpp's `llama_decode` of the prompt and
then of one token per step, ONNX Runtime's session through an io_binding.
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


def run_engine(model_dir: str, threads: int, prompt_len: int, new_tokens: int, precision: str | None = None) -> None:
    import numpy as np

    from engine import GPT2, set_threads

    set_threads(threads)
    imported = (time.perf_counter() - START, resident_kib("VmRSS"))
    model = GPT2.from_pretrained(model_dir) if precision is None else GPT2.from_pretrained(model_dir, dtype=precision)
    loaded = (time.perf_counter() - START, resident_kib("VmRSS"))
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (1, prompt_len))
    cache = model.new_cache(1, prompt_len + new_tokens)
    next_ids = model(ids, cache=cache, logits_to_keep=1)[:, -1].argmax(axis=-1)
    emit("first_token", token=int(next_ids[0]), imported=imported, loaded=loaded)
    for _ in range(new_tokens - 1):
        next_ids = model(next_ids[:, None], cache=cache)[:, -1].argmax(axis=-1)
    emit("done", peak_kib=resident_kib("VmHWM"), rss_kib=resident_kib("VmRSS"))


def run_torch(model_dir: str, threads: int, prompt_len: int, new_tokens: int, precision: str | None = None) -> None:
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


def run_llama_cpp(path: str, threads: int, prompt_len: int, new_tokens: int, precision: str | None = None) -> None:
    import numpy as np

    from benchmarks.peers import LlamaCppSide

    side = LlamaCppSide(threads, precision)
    imported = (time.perf_counter() - START, resident_kib("VmRSS"))
    side.load(path)
    loaded = (time.perf_counter() - START, resident_kib("VmRSS"))
    context, batch, _ = side._context(side.model, 1, prompt_len + new_tokens, side.contexts)
    ids = np.random.default_rng(0).integers(0, side.n_vocab, (1, prompt_len))
    next_ids = side._decode(context, batch, ids, 0, last_only=True).argmax(axis=-1)
    emit("first_token", token=int(next_ids[0]), imported=imported, loaded=loaded)
    for step in range(1, new_tokens):
        next_ids = side._decode(context, batch, next_ids[:, None], prompt_len + step - 1, last_only=True).argmax(
            axis=-1
        )
    emit("done", peak_kib=resident_kib("VmHWM"), rss_kib=resident_kib("VmRSS"))


def run_onnxruntime(path: str, threads: int, prompt_len: int, new_tokens: int, precision: str | None = None) -> None:
    import numpy as np

    from benchmarks.peers import OnnxSide

    side = OnnxSide(threads, precision)
    imported = (time.perf_counter() - START, resident_kib("VmRSS"))
    side.load(path)
    loaded = (time.perf_counter() - START, resident_kib("VmRSS"))
    session, layout = side.session, side.layout
    ids = np.random.default_rng(0).integers(0, session.get_outputs()[0].shape[-1], (1, prompt_len))
    logits, past = side._call(session, layout, ids, side._empty_past(layout, 1), 0)
    next_ids = logits[:, -1].argmax(axis=-1)
    emit("first_token", token=int(next_ids[0]), imported=imported, loaded=loaded)
    for step in range(1, new_tokens):
        logits, past = side._call(session, layout, next_ids[:, None], past, prompt_len + step - 1)
        next_ids = logits[:, -1].argmax(axis=-1)
    emit("done", peak_kib=resident_kib("VmHWM"), rss_kib=resident_kib("VmRSS"))


if __name__ == "__main__":
    side, model_dir, threads, prompt_len, new_tokens = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    precision = sys.argv[6] if len(sys.argv) > 6 else None
    runners = {"engine": run_engine, "torch": run_torch, "llama.cpp": run_llama_cpp, "onnxruntime": run_onnxruntime}
    runners[side](model_dir, threads, prompt_len, new_tokens, precision)
