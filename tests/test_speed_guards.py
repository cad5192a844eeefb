"""The properties that make the engine fast, checked directly, never by timing.

Timings live in benchmarks/ (they are noisy on a shared machine); what is tested here is what
they depend on: float32 everywhere (no silent float64, which halves SIMD width and doubles the
bytes), the KV cache written in place and read without copies, kernels compiled once per
signature and cached on disk (start-up), the weights held once (the output layer is wte itself,
no transposed copy), decoding streaming the weights through the few-rows kernels (not BLAS), and
one setting controlling every thread.
"""

import importlib
import tracemalloc

import numba
import numpy as np
import pytest
from numba import types
from numba.core.registry import CPUDispatcher
from threadpoolctl import threadpool_info

import engine.model
import kernels
from engine import GPT2, get_threads, set_threads
from engine.state.weights import parameter_shapes

KERNEL_FUNCTIONS = ("layer_norm", "linear", "matmul_transposed", "gelu", "causal_attention")
KERNEL_MODULES = [importlib.import_module(f"kernels.{m}") for m in ("attention", "exp", "gelu", "layer_norm", "linear")]


@pytest.fixture(scope="module")
def model(small_dir):
    return GPT2.from_pretrained(small_dir)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Every call the model makes into kernels/: (name, positional arguments, result)."""
    calls = []
    for name in KERNEL_FUNCTIONS:
        original = getattr(kernels, name)

        def spy(*args, _original=original, _name=name, **options):
            result = _original(*args, **options)
            calls.append((_name, args, result))
            return result

        monkeypatch.setattr(kernels, name, spy)
        if name in ("gelu", "causal_attention"):  # model.py imports these two by name
            monkeypatch.setattr(engine.model, name, spy)
    return calls


def generate(model, batch=1, prompt=5, steps=4):
    """Prefill and a few greedy decode steps through a cache; returns the cache."""
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (batch, prompt))
    cache = model.new_cache(batch, prompt + steps)
    next_ids = model(ids, cache=cache, logits_to_keep=1)[:, -1].argmax(-1)
    for _ in range(steps):
        next_ids = model(next_ids[:, None], cache=cache)[:, -1].argmax(-1)
    return cache


def dispatchers():
    for module in KERNEL_MODULES:
        for value in vars(module).values():
            inlined = isinstance(value, CPUDispatcher) and value.targetoptions.get("inline") == "always"
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module.__name__ and not inlined:
                yield f"{module.__name__}.{value.py_func.__name__}", value


def test_forward_pass_is_float32_throughout(model, kernel_calls):
    cache = generate(model, batch=2, prompt=70)  # 70 rows: the parallel and BLAS paths too
    assert kernel_calls, "the model calls the kernels"
    for name, args, result in kernel_calls:
        arrays = [a for a in (*args, result) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        assert all(a.dtype == np.float32 for a in arrays), f"{name}: {[a.dtype for a in arrays]}"
    assert cache.keys.dtype == cache.values.dtype == np.float32
    # and what Numba compiled takes no float64 array anywhere
    for name, dispatcher in dispatchers():
        for signature in dispatcher.signatures:
            for arg in signature:
                assert not (isinstance(arg, types.Array) and arg.dtype == types.float64), f"{name}{signature}"


def test_decoding_writes_the_cache_in_place_and_attention_reads_it_in_place(model, kernel_calls):
    cache = model.new_cache(1, 12)
    keys, values, keys_memory = cache.keys, cache.values, cache.keys.ctypes.data
    next_ids = model(np.arange(4), cache=cache, logits_to_keep=1)[-1:].argmax(-1)
    for _ in range(6):
        next_ids = model(next_ids, cache=cache)[-1:].argmax(-1)
    assert cache.keys is keys and cache.values is values and cache.keys.ctypes.data == keys_memory
    attention_calls = [args for name, args, _ in kernel_calls if name == "causal_attention"]
    assert len(attention_calls) == 7 * model.config.n_layer
    for _q, k, v, *_ in attention_calls:  # views into the cache, not copies
        assert np.shares_memory(k, cache.keys) and np.shares_memory(v, cache.values)
    from kernels.attention import _c_contiguous_parent

    k = attention_calls[-1][1]
    assert _c_contiguous_parent(k).ctypes.data == k.ctypes.data  # handed to Numba without a copy


def test_kernels_compile_once_per_signature_and_cache_to_disk(model):
    generate(model, batch=1, prompt=5)
    generate(model, batch=2, prompt=70)
    compiled = {name: len(d.signatures) for name, d in dispatchers()}
    generate(model, batch=3, prompt=9, steps=7)  # other lengths and batch sizes: no new types
    generate(model, batch=1, prompt=100, steps=2)
    assert {name: len(d.signatures) for name, d in dispatchers()} == compiled
    for name, d in dispatchers():
        # one compile per weight format (float32, float16 bits, bfloat16 bits, int8 quants: other
        # tests of this process may have used them); two for one format are two layouts
        formats = [tuple(a.dtype for a in signature if isinstance(a, types.Array)) for signature in d.signatures]
        assert len(formats) == len(set(formats)), (
            f"{name} was compiled for {d.signatures}: one layout per argument keeps start-up short"
        )
        assert type(d._cache).__name__ == "FunctionCache", f"{name} is not cached on disk (cache=True)"


def test_weights_are_held_once_and_the_output_layer_is_wte(model, kernel_calls):
    w = model.weights
    assert w.lm_head is w.wte
    arrays = list({id(a): a for a in model.weights.arrays()}.values())
    arena = arrays[0]
    while isinstance(arena.base, np.ndarray):  # up the chain of views to the block they share
        arena = arena.base
    spans = []
    for a in arrays:
        assert a.dtype == np.float32 and a.flags.c_contiguous
        assert np.shares_memory(a, arena), "every weight is a view into the one weight block"
        spans.append((a.ctypes.data, a.ctypes.data + a.nbytes))
    spans.sort()
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), "no two weights overlap"
    assert sum(a.nbytes for a in arrays) == 4 * model.num_parameters()
    generate(model)
    tables = [args[1] for name, args, _ in kernel_calls if name == "matmul_transposed"]
    assert tables and all(t is w.wte for t in tables), "the output layer reads wte itself, no transposed copy"


def test_decode_steps_stream_weights_without_blas(model, monkeypatch):
    cache = model.new_cache(2, 8)
    next_ids = model(np.zeros((2, 3), dtype=np.int64), cache=cache, logits_to_keep=1)[:, -1].argmax(-1)

    def no_blas(*args, **options):
        raise AssertionError("a decode step went through BLAS")

    monkeypatch.setattr(importlib.import_module("kernels.linear"), "_blas_in_row_blocks", no_blas)
    model(next_ids[:, None], cache=cache)


def test_one_setting_controls_numba_and_blas_threads():
    before = get_threads()
    try:
        set_threads(1)
        assert get_threads() == numba.get_num_threads() == 1
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas), (
            "BLAS runs single-threaded; the engine splits its work"
        )
        set_threads(numba.config.NUMBA_NUM_THREADS)
        assert get_threads() == numba.config.NUMBA_NUM_THREADS
    finally:
        set_threads(before)


def traced_peak(function) -> int:
    """Peak bytes NumPy (and Python) allocated while `function` ran (NumPy reports to tracemalloc)."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("rows", [1, 8, 40])  # decode rows, and BLAS row blocks
def test_output_layer_never_copies_the_embedding(rows):
    table = np.ones((50257, 64), dtype=np.float32)  # 12.9 MB
    x = np.ones((rows, 64), dtype=np.float32)
    kernels.matmul_transposed(x, table)  # compile outside the measurement
    peak = traced_peak(lambda: kernels.matmul_transposed(x, table))
    assert peak < table.nbytes / 4 + rows * 50257 * 4, f"{peak} bytes allocated: a copy of the table?"


def test_loading_and_decoding_allocate_no_copy_of_the_weights(tmp_path):
    from engine.state.synthetic import preset_config, write_checkpoint

    half = write_checkpoint(tmp_path / "half", preset_config("gpt2", n_layer=1), dtype="bfloat16")
    weight_bytes = 4 * sum(int(np.prod(shape)) for shape in parameter_shapes(preset_config("gpt2", n_layer=1)).values())
    loaded = {}
    peak = traced_peak(lambda: loaded.setdefault("model", GPT2.from_pretrained(half)))
    # the weights go straight into their block (not traced); only bounded widening slices are
    assert peak < weight_bytes / 4, f"loading allocated {peak} bytes for {weight_bytes} bytes of weights"
    model = loaded["model"]
    cache = model.new_cache(1, 8)
    next_ids = model(np.arange(3), cache=cache, logits_to_keep=1)[-1:].argmax(-1)
    peak = traced_peak(lambda: model(next_ids, cache=cache))
    assert peak < weight_bytes / 50, f"a decode step allocated {peak} bytes"
