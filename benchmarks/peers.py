"""The peers' sides of the benchmark: llama.cpp (through llama-cpp-python) and ONNX Runtime.

Imported by `benchmarks/workers.py`, one side per process, at the harness's thread count. Each
does what the engine side does, for a prompt of P seeded random ids per row and N new tokens:
the prompt in one call, timed until the first new token's argmax (the prefill), then N - 1 greedy
steps of one token per row through its own KV cache (the decode). Nothing else is inside the
timed region but filling the inputs of each call and the argmax.

- llama.cpp: llama-cpp-python's low-level C API (`llama_cpp.llama_decode` on a `llama_batch`), the
  way llama.cpp's own batched example drives it; the high-level `Llama` class handles one sequence
  only. One context per batch size B, with B sequences (`n_seq_max = B`, a KV cache of its own
  per sequence) of `n_ctx / B` slots each, `n_batch` large enough for the whole prompt (llama.cpp
  splits it into micro-batches of `n_ubatch` = 512 tokens itself), `n_threads` and
  `n_threads_batch` the harness's count, flash attention at llama.cpp's default ("auto"), and the
  KV cache in F32 (llama.cpp's default is F16): so that the rows of llama.cpp differ in the weights'
  precision only, as the engine's do, and its F32 row can be held to the engine's greedy tokens.
  Prefill: one `llama_decode` of the B x P prompt tokens (row b is sequence b, positions
  0..P-1), logits requested for each row's last token only. Decode: one `llama_decode` of B tokens
  per step, one per sequence. The cache is cleared (`llama_memory_clear`) before each run, outside
  the timing.
- ONNX Runtime: the graph `benchmarks/onnx_export.py` writes (transformers' GPT-2 with past key
  values, last-position logits), `InferenceSession` on the CPU provider with `intra_op_num_threads`
  = the harness's count and `inter_op_num_threads` = 1, its default graph optimizations
  (ORT_ENABLE_ALL). Inputs and outputs go through an `io_binding`, so the presents a step returns
  are fed to the next step as they are (OrtValues, no copy to NumPy), as optimum does. Prefill: the
  B x P prompt with an empty past [B, H, 0, D]; decode: one token per row with the past.

The fidelity measure (`fidelity`, the same for every side): the logits of every position of
fixed windows of a real model's held-out text, against the float32 reference's, and greedy
continuations of fixed prompts.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

import numpy as np

from benchmarks.fidelity import compare_window, greedy_from, new_totals, totals_summary


def top2_gaps(logits: np.ndarray) -> list[float]:
    """Per row, the gap between the two largest logits: float32 [B, V] -> B floats."""
    top = np.partition(logits, -2, axis=-1)[:, -2:]
    return (top[:, 1] - top[:, 0]).tolist()


# ----------------------------------------------------------------------------------------------
# llama.cpp


class LlamaCppSide:
    name = "llama.cpp"

    def __init__(self, threads: int, precision: str):
        import llama_cpp

        self.ll = llama_cpp
        self.threads = threads
        self.precision = precision
        llama_cpp.llama_backend_init()
        # llama.cpp logs every load to stderr; keep the callback referenced, or ctypes frees it.
        self._quiet = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(self._quiet, ctypes.c_void_p(0))
        self.model = None
        self.contexts = {}  # batch size -> (context, llama_batch, slots per sequence)

    def load(self, model_dir: str) -> dict:
        self.model, self.n_vocab = self._load_model(model_dir)
        return {"threads": self.threads, "file": model_dir, "system_info": self.ll.llama_print_system_info().decode()}

    def _load_model(self, path: str):
        ll = self.ll
        model = ll.llama_model_load_from_file(str(path).encode(), ll.llama_model_default_params())
        if not model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        return model, ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(model))

    def _context(self, model, batch: int, length: int, cache: dict):
        """A context of `batch` sequences of at least `length` slots each (reused while it is big
        enough), and a llama_batch that holds a whole prompt."""
        ll = self.ll
        if batch in cache and cache[batch][2] >= length:
            return cache[batch]
        if batch in cache:
            self._free(cache.pop(batch))
        slots = -(-length // 256) * 256  # llama.cpp pads each sequence's cache to 256 slots anyway
        params = ll.llama_context_default_params()
        params.n_ctx = batch * slots
        params.n_batch = batch * slots
        params.n_seq_max = batch
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = self.threads
        params.type_k = params.type_v = ll.GGML_TYPE_F32
        params.no_perf = True
        context = ll.llama_init_from_model(model, params)
        if not context:
            raise RuntimeError(f"llama.cpp could not make a context of {batch} x {slots} slots")
        cache[batch] = (context, ll.llama_batch_init(batch * slots, 0, batch), slots)
        return cache[batch]

    def _free(self, entry) -> None:
        context, batch, _ = entry
        self.ll.llama_batch_free(batch)
        self.ll.llama_free(context)

    def _decode(self, context, batch, ids: np.ndarray, start: int, last_only: bool) -> np.ndarray:
        """Append ids [B, T] to sequences 0..B-1 at positions start..start+T-1; return the logits
        float32 [B, V] of each row's last token (last_only) or [B * T, V] of every token."""
        ll = self.ll
        B, T = ids.shape
        n = B * T
        batch.n_tokens = n
        np.ctypeslib.as_array(batch.token, shape=(n,))[:] = ids.reshape(-1)
        np.ctypeslib.as_array(batch.pos, shape=(n,))[:] = np.tile(np.arange(start, start + T), B)
        np.ctypeslib.as_array(batch.n_seq_id, shape=(n,))[:] = 1
        wants = np.ctypeslib.as_array(batch.logits, shape=(n,))
        wants[:] = 0
        if last_only:
            wants[T - 1 :: T] = 1
        else:
            wants[:] = 1
        for i in range(n):
            batch.seq_id[i][0] = i // T
        status = ll.llama_decode(context, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status} ({B} x {T} tokens at position {start})")
        rows = B if last_only else n
        return np.ctypeslib.as_array(ll.llama_get_logits(context), shape=(rows, self.n_vocab))

    def run(self, batch: int, prompt_len: int, new_tokens: int, gaps: bool = False, ids=None) -> dict:
        from benchmarks.workers import prompt_ids

        context, llama_batch, _ = self._context(self.model, batch, prompt_len + new_tokens, self.contexts)
        self.ll.llama_memory_clear(self.ll.llama_get_memory(context), False)
        ids = prompt_ids(batch, prompt_len, self.n_vocab) if ids is None else np.asarray(ids, dtype=np.int64)
        tokens = np.empty((batch, new_tokens), dtype=np.int64)
        top2 = []
        start = time.perf_counter()
        logits = self._decode(context, llama_batch, ids, 0, last_only=True)  # [B, V]
        next_ids = logits.argmax(axis=-1)  # [B]
        prefill_done = time.perf_counter()
        tokens[:, 0] = next_ids
        if gaps:
            top2.append(top2_gaps(logits))
        for step in range(1, new_tokens):
            logits = self._decode(context, llama_batch, next_ids[:, None], prompt_len + step - 1, last_only=True)
            next_ids = logits.argmax(axis=-1)
            tokens[:, step] = next_ids
            if gaps:
                top2.append(top2_gaps(logits))
        end = time.perf_counter()
        result = {"prefill_s": prefill_done - start, "decode_s": end - prefill_done, "tokens": tokens.tolist()}
        if gaps:
            result["top2_gaps"] = np.array(top2).T.tolist()
        return result

    def fidelity(self, model_path: str, windows: list, prompts: list, new_tokens: int, reference: dict) -> dict:
        """See benchmarks/fidelity.py: every position's logits of each window, then greedy
        continuations of the prompts, on the model at `model_path` (a GGUF), freed afterwards."""
        model, n_vocab = self._load_model(model_path)
        saved = getattr(self, "n_vocab", None)  # the benchmark model's, if one is loaded
        self.n_vocab = n_vocab
        contexts = {}
        try:
            totals = new_totals()
            windows = np.asarray(windows, dtype=np.int64)
            context, llama_batch, _ = self._context(model, 1, windows.shape[1], contexts)
            for w, window in enumerate(windows):
                self.ll.llama_memory_clear(self.ll.llama_get_memory(context), False)
                logits = self._decode(context, llama_batch, window[None], 0, last_only=False)  # [T, V]
                compare_window(totals, reference, w, window, logits)
            prompts = np.asarray(prompts, dtype=np.int64)

            def greedy(ids, n):
                return self.run_on(model, contexts, ids, n)

            generated = greedy_from(greedy, prompts, new_tokens)
        finally:
            for entry in contexts.values():
                self._free(entry)
            self.ll.llama_model_free(model)
            self.n_vocab = saved
        return totals_summary(totals) | {"generated": generated}

    def run_on(self, model, contexts: dict, ids: np.ndarray, new_tokens: int) -> list:
        """Greedy tokens [B, new_tokens] after prompts ids [B, P] on `model` (untimed)."""
        B, P = ids.shape
        context, llama_batch, _ = self._context(model, B, P + new_tokens, contexts)
        self.ll.llama_memory_clear(self.ll.llama_get_memory(context), False)
        tokens = np.empty((B, new_tokens), dtype=np.int64)
        next_ids = self._decode(context, llama_batch, ids, 0, last_only=True).argmax(axis=-1)
        tokens[:, 0] = next_ids
        for step in range(1, new_tokens):
            next_ids = self._decode(context, llama_batch, next_ids[:, None], P + step - 1, last_only=True).argmax(
                axis=-1
            )
            tokens[:, step] = next_ids
        return tokens.tolist()


# ----------------------------------------------------------------------------------------------
# ONNX Runtime


class OnnxSide:
    name = "onnxruntime"

    def __init__(self, threads: int, precision: str):
        import onnxruntime

        self.ort = onnxruntime
        self.threads = threads
        self.precision = precision
        self.session = None

    def _session(self, path: str):
        ort = self.ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        past = [i for i in session.get_inputs() if i.name.startswith("past.")]
        _, H, _, D = past[0].shape
        layout = {
            "H": int(H),
            "D": int(D),
            "past": [i.name for i in past],
            "outputs": [o.name for o in session.get_outputs()],
        }
        return session, layout

    def load(self, model_dir: str) -> dict:
        self.session, self.layout = self._session(model_dir)
        return {
            "threads": self.threads,
            "file": model_dir,
            "onnxruntime": self.ort.__version__,
            "providers": self.session.get_providers(),
        }

    def _call(self, session, layout, ids: np.ndarray, past: list, past_len: int):
        """One session call through an io_binding: ids [B, T] after `past_len` cached positions ->
        (logits float32 [B, T or 1, V] as NumPy, presents as OrtValues)."""
        B, T = ids.shape
        binding = session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(ids, dtype=np.int64))
        binding.bind_cpu_input("attention_mask", np.ones((B, past_len + T), dtype=np.int64))
        for name, value in zip(layout["past"], past):
            binding.bind_ortvalue_input(name, value)
        for name in layout["outputs"]:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        return outputs[0].numpy(), outputs[1:]

    def _empty_past(self, layout, batch: int) -> list:
        empty = np.zeros((batch, layout["H"], 0, layout["D"]), dtype=np.float32)
        return [self.ort.OrtValue.ortvalue_from_numpy(empty) for _ in layout["past"]]

    def run(self, batch: int, prompt_len: int, new_tokens: int, gaps: bool = False, ids=None) -> dict:
        from benchmarks.workers import prompt_ids

        session, layout = self.session, self.layout
        vocab = session.get_outputs()[0].shape[-1]
        ids = prompt_ids(batch, prompt_len, vocab) if ids is None else np.asarray(ids, dtype=np.int64)
        tokens = np.empty((batch, new_tokens), dtype=np.int64)
        top2 = []
        past = self._empty_past(layout, batch)
        start = time.perf_counter()
        logits, past = self._call(session, layout, ids, past, 0)  # [B, 1, V]
        next_ids = logits[:, -1].argmax(axis=-1)  # [B]
        prefill_done = time.perf_counter()
        tokens[:, 0] = next_ids
        if gaps:
            top2.append(top2_gaps(logits[:, -1]))
        for step in range(1, new_tokens):
            logits, past = self._call(session, layout, next_ids[:, None], past, prompt_len + step - 1)
            next_ids = logits[:, -1].argmax(axis=-1)
            tokens[:, step] = next_ids
            if gaps:
                top2.append(top2_gaps(logits[:, -1]))
        end = time.perf_counter()
        result = {"prefill_s": prefill_done - start, "decode_s": end - prefill_done, "tokens": tokens.tolist()}
        if gaps:
            result["top2_gaps"] = np.array(top2).T.tolist()
        return result

    def fidelity(self, model_path: str, windows: list, prompts: list, new_tokens: int, reference: dict) -> dict:
        """See benchmarks/fidelity.py; `model_path` is a graph exported with all positions' logits."""
        session, layout = self._session(model_path)
        totals = new_totals()
        for w, window in enumerate(np.asarray(windows, dtype=np.int64)):
            logits, _ = self._call(session, layout, window[None], self._empty_past(layout, 1), 0)
            compare_window(totals, reference, w, window, logits[0])

        def greedy(ids, n):
            B, P = ids.shape
            tokens = np.empty((B, n), dtype=np.int64)
            logits, past = self._call(session, layout, ids, self._empty_past(layout, B), 0)
            next_ids = logits[:, -1].argmax(axis=-1)
            tokens[:, 0] = next_ids
            for step in range(1, n):
                logits, past = self._call(session, layout, next_ids[:, None], past, P + step - 1)
                next_ids = logits[:, -1].argmax(axis=-1)
                tokens[:, step] = next_ids
            return tokens.tolist()

        return totals_summary(totals) | {
            "generated": greedy_from(greedy, np.asarray(prompts, dtype=np.int64), new_tokens)
        }


def file_bytes(path: str) -> int:
    return Path(path).stat().st_size
