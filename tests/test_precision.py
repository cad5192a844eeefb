"""Weights kept at bfloat16, float16 or int8 (q8_0): what is in memory, what the logits do, and the
file `gpt2 quantize` writes (engine/state/precision.py, formats.py, quantized.py; docs/speed.md).

The bounds are measured (the figures beside them), with a margin:
- float32 stays exactly what it was: the default and dtype="float32" give identical logits.
- a 16-bit file loaded at its own precision gives the logits of the same file loaded as float32
  (widening is exact; only the order of accumulation may differ).
- at each precision, logits against Hugging Face float32 on the same file, and on the tiny
  Shakespeare model the perplexity of held-out Tempest (2,040 tokens) against float32: int8 within
  llama.cpp Q8_0's +0.13% (issue 12), 16-bit within 0.05%, and the mean KL divergence bounded.
"""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from reference import hf_logits

from engine import GPT2, CheckpointError, InputError, OutputError
from engine.base.config import GPT2Config
from engine.state.formats import dense, dtype_of
from engine.state.precision import DTYPES
from engine.state.quantized import BLOCK_SIZE, dequantize_stored, scales_name
from engine.state.synthetic import write_checkpoint
from engine.state.weights import state_dict_of

REPO = Path(__file__).resolve().parent.parent
LOW = ("bfloat16", "float16", "int8")
CONFIG = GPT2Config(n_layer=2, n_head=4, n_embd=96, n_positions=128)  # the `small_dir` fixture's shape
IDS = np.random.default_rng(7).integers(0, 50257, size=(2, 40))


def matrices(model):
    """The matrices a precision applies to, by checkpoint name."""
    from engine.state.precision import is_matrix

    return {n: a for n, a in state_dict_of(model.weights, model.config).items() if is_matrix(n)}


def rest(model):
    from engine.state.precision import is_matrix

    return {n: a for n, a in state_dict_of(model.weights, model.config).items() if not is_matrix(n)}


@pytest.fixture(scope="module")
def small_models(small_dir):
    return {dtype: GPT2.from_pretrained(small_dir, dtype=dtype) for dtype in DTYPES}


# ----------------------------------------------------------------------------------------------
# What is in memory


def test_default_is_float32_exactly(small_dir, small_models):
    default = GPT2.from_pretrained(small_dir)
    assert default.dtype == small_models["float32"].dtype == "float32"
    assert np.array_equal(default(IDS), small_models["float32"](IDS))
    for a in default.weights.arrays():
        assert isinstance(a, np.ndarray) and a.dtype == np.float32


@pytest.mark.parametrize("dtype", LOW)
def test_matrices_are_kept_at_the_precision(small_models, dtype):
    model, reference = small_models[dtype], small_models["float32"]
    assert model.dtype == dtype
    ours, theirs = matrices(model), matrices(reference)
    for name, m in ours.items():
        assert dtype_of(m) == dtype, name
        assert tuple(m.shape) == theirs[name].shape, name
    for name, a in rest(model).items():  # biases, LayerNorm, wpe: float32, the very values
        assert a.dtype == np.float32 and np.array_equal(a, rest(reference)[name]), name
    # bytes: 2 per matrix weight at 16 bits; q8_0: 1 + 4/32 (int8 and a float32 scale per 32)
    per_weight = {"bfloat16": 2, "float16": 2, "int8": 1 + 4 / BLOCK_SIZE}[dtype]
    count = sum(int(np.prod(m.shape)) for m in ours.values())
    others = sum(a.nbytes for a in rest(model).values())
    assert model.weight_bytes() == pytest.approx(count * per_weight + others, rel=0.01)
    assert model.num_parameters() == reference.num_parameters()


@pytest.mark.parametrize("dtype", LOW)
def test_matrices_round_as_stated(small_models, dtype):
    """16-bit: each weight is float32's rounded to nearest; int8: within half a step of its block."""
    for name, m in matrices(small_models[dtype]).items():
        w = matrices(small_models["float32"])[name]
        got = dense(m)
        if dtype == "float16":
            assert np.array_equal(got, w.astype(np.float16).astype(np.float32)), name
        elif dtype == "bfloat16":
            assert np.all(np.abs(got - w) <= np.abs(w) * 2.0**-8), name  # half an ulp of 8 significant bits
        else:
            axis = 1 if name.startswith(("wte", "lm_head")) else 0
            blocks = np.moveaxis(w, axis, -1).reshape(*np.moveaxis(w, axis, -1).shape[:-1], -1, BLOCK_SIZE)
            step = np.abs(blocks).max(-1, keepdims=True) / 127
            error = np.abs(np.moveaxis(got, axis, -1).reshape(blocks.shape) - blocks)
            assert np.all(error <= step / 2 * (1 + 1e-4)), name


@pytest.mark.parametrize("stored", ["bfloat16", "float16"])
def test_16_bit_file_at_its_own_precision(synthetic, stored):
    """The file's 16-bit values are kept bit for bit, and give the logits they give as float32."""
    from safetensors.numpy import load_file

    model_dir = synthetic(f"small-{stored}", CONFIG, dtype=stored)
    at_own, as_float32 = GPT2.from_pretrained(model_dir, dtype=stored), GPT2.from_pretrained(model_dir)
    if stored == "float16":
        file = load_file(str(model_dir / "model.safetensors"))
        assert np.array_equal(matrices(at_own)["h.1.mlp.c_fc.weight"], file["h.1.mlp.c_fc.weight"])
    for name, m in matrices(at_own).items():  # widening is exact
        assert np.array_equal(dense(m), matrices(as_float32)[name]), name
    ours, theirs = at_own(IDS), as_float32(IDS)
    worst = float(np.abs(ours - theirs).max())
    print(f"{stored} file at {stored} vs as float32: max|diff| {worst:.2e}")  # measured ~1e-6
    assert worst <= 1e-4 * max(1.0, float(np.abs(theirs).max()))  # the parity bound: accumulation order only


# Measured max|ours - Hugging Face float32| / max(1, max|reference|) on the small synthetic model:
# float32 5.5e-7, bfloat16 3.5e-3, float16 4.6e-4, int8 1.2e-2. The bounds: about 3x those.
HF_BOUNDS = {"float32": 1e-4, "bfloat16": 1e-2, "float16": 1.5e-3, "int8": 3e-2}


@pytest.mark.parametrize("dtype", DTYPES)
def test_logits_against_hugging_face(small_dir, small_models, dtype):
    reference = hf_logits(small_dir, IDS)
    ours = small_models[dtype](IDS)
    scale = max(1.0, float(np.abs(reference).max()))
    worst = float(np.abs(ours - reference).max()) / scale
    print(f"{dtype}: max|diff| / max|ref| = {worst:.2e} (bound {HF_BOUNDS[dtype]:.0e})")
    assert worst <= HF_BOUNDS[dtype]


@pytest.mark.parametrize("dtype", LOW)
def test_decoding_through_the_cache_matches_one_pass(small_models, dtype):
    model = small_models[dtype]
    whole = model(IDS)
    cache = model.new_cache(batch_size=2)
    steps = [model(IDS[:, :30], cache=cache)] + [model(IDS[:, t : t + 1], cache=cache) for t in range(30, 40)]
    assert np.abs(np.concatenate(steps, axis=1) - whole).max() <= 1e-4 * max(1.0, float(np.abs(whole).max()))


# ----------------------------------------------------------------------------------------------
# Fidelity on a trained model: perplexity of held-out text


# Measured on the 2,040 scored tokens: perplexity change against float32 and mean KL(float32 || dtype):
# bfloat16 -0.016%, 4.3e-6; float16 +0.007%, 8.4e-8; int8 +0.104%, 3.0e-5 (llama.cpp Q8_0: +0.13%).
PERPLEXITY_BOUNDS = {"bfloat16": 0.0005, "float16": 0.0002, "int8": 0.0013}
KL_BOUNDS = {"bfloat16": 2e-5, "float16": 1e-6, "int8": 1e-4}


@pytest.fixture(scope="module")
def tempest_windows(tiny_model):
    from conftest import shared_path

    from benchmarks.fidelity import heldout_windows

    text = shared_path("corpora/heldout_tempest.txt").read_text(encoding="utf-8")
    return heldout_windows(tiny_model.tokenizer, text)  # 8 windows of 256 tokens


def log_probs(model, windows):
    from benchmarks.fidelity import log_softmax

    return [log_softmax(model(w)[:-1]) for w in windows]  # float64 [255, V] each


@pytest.mark.parametrize("dtype", LOW)
def test_heldout_perplexity_within_bound(tiny_model, tiny_model_dir, tempest_windows, dtype):
    reference = log_probs(tiny_model, tempest_windows)
    ours = log_probs(GPT2.from_pretrained(tiny_model_dir, dtype=dtype), tempest_windows)

    def nll(lps):
        return -np.mean([lp[np.arange(len(w) - 1), w[1:]] for lp, w in zip(lps, tempest_windows)])

    change = float(np.exp(nll(ours) - nll(reference)) - 1)
    kl = float(np.mean([(np.exp(r) * (r - o)).sum(-1).mean() for r, o in zip(reference, ours)]))
    print(f"{dtype}: perplexity {change:+.4%} against float32, mean KL {kl:.2e}")
    assert abs(change) <= PERPLEXITY_BOUNDS[dtype]
    assert kl <= KL_BOUNDS[dtype]


# ----------------------------------------------------------------------------------------------
# gpt2 quantize: the file, loading it, and what is refused


@pytest.fixture(scope="module")
def quantized_dir(small_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("quantized") / "small-q8"
    done = gpt2_cli("quantize", str(small_dir), str(out))
    assert done.returncode == 0, done.stderr
    return out


def gpt2_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO), GPT2_ENGINE_THREADS="1")
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, env=env, cwd=REPO)


def test_quantized_file_layout(quantized_dir, small_models):
    from safetensors import safe_open

    with safe_open(str(quantized_dir / "model.safetensors"), framework="numpy") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (a safetensors file)
    assert metadata["gpt2_engine.quantization"] == "q8_0"
    assert metadata["gpt2_engine.block_size"] == "32"
    assert metadata["gpt2_engine.format_version"] == "1"
    w = matrices(small_models["float32"])
    for name, weight in w.items():
        q, scales = tensors[name], tensors[scales_name(name)]
        by_input = weight if name != "wte.weight" else weight.T  # [K, M]: the input dimension first
        assert q.dtype == np.int8 and q.shape == by_input.shape, name
        assert scales.dtype == np.float32 and scales.shape == (-(-by_input.shape[0] // 32), by_input.shape[1])
        restored = dequantize_stored(q, scales)  # w[k, j] = q[k, j] * scales[k // 32, j], as docs/speed.md states
        int8 = dense(matrices(small_models["int8"])[name])  # what the model multiplies by
        assert np.array_equal(restored, int8.T if name == "wte.weight" else int8), name
        assert np.abs(restored - by_input).max() <= scales.max() / 2 * (1 + 1e-4), name
    for name, a in rest(small_models["float32"]).items():
        assert np.array_equal(tensors[name], a), name
    assert json.loads((quantized_dir / "config.json").read_text())["n_embd"] == CONFIG.n_embd


def test_quantized_directory_loads_as_int8_directly(quantized_dir, small_models):
    loaded = GPT2.from_pretrained(quantized_dir)  # int8 by default: the file's own precision
    assert loaded.dtype == "int8"
    assert np.array_equal(loaded(IDS), small_models["int8"](IDS))  # the same values as quantizing at load time
    assert np.array_equal(GPT2.from_pretrained(quantized_dir, dtype="int8")(IDS), loaded(IDS))
    as_float32 = GPT2.from_pretrained(quantized_dir, dtype="float32")  # dequantized: the same network
    assert as_float32.dtype == "float32"
    ours, theirs = as_float32(IDS), loaded(IDS)
    assert np.abs(ours - theirs).max() <= 1e-4 * max(1.0, float(np.abs(theirs).max()))


def test_quantized_directory_refuses_16_bits(quantized_dir):
    with pytest.raises(CheckpointError, match=r"holds q8_0 weights, which load as int8 .* to float16"):
        GPT2.from_pretrained(quantized_dir, dtype="float16")


def rewrite(source: Path, out: Path, edit) -> Path:
    """A copy of a model directory whose model.safetensors header went through edit(header)."""
    out.mkdir()
    for f in source.iterdir():
        if f.name != "model.safetensors":
            (out / f.name).write_bytes(f.read_bytes())
    data = (source / "model.safetensors").read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    (out / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size :])
    return out


def set_metadata(key, value):
    def edit(header):
        header["__metadata__"][key] = value

    return edit


def swap_scales_shape(header):
    entry = header["h.0.mlp.c_fc.weight.scales"]
    entry["shape"] = entry["shape"][::-1]


def rename(name, new):
    def edit(header):
        header[new] = header.pop(name)

    return edit


BROKEN = {
    "unknown scheme": (
        set_metadata("gpt2_engine.quantization", "q4_k"),
        r"metadata gpt2_engine\.quantization='q4_k' names a quantization this engine does not read \(it reads q8_0\)",
    ),
    "block size": (
        set_metadata("gpt2_engine.block_size", "64"),
        r"metadata gpt2_engine\.block_size='64'; q8_0 files have blocks of 32",
    ),
    "version": (
        set_metadata("gpt2_engine.format_version", "9"),
        r"metadata gpt2_engine\.format_version='9'; this engine reads format version 1",
    ),
    "scales shape": (swap_scales_shape, r"tensor 'h\.0\.mlp\.c_fc\.weight\.scales' is F32 \[\d+, \d+\]; the scales"),
    "scales missing": (rename("wte.weight.scales", "wte.weight.scale"), r"missing tensor 'wte\.weight\.scales'"),
    "no metadata": (
        lambda h: h["__metadata__"].clear(),
        r"tensor '.*weight' has dtype I8; supported: F32, F16, BF16 \(int8 tensors only in a file written by",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_quantized_file_is_refused(quantized_dir, tmp_path, case):
    edit, message = BROKEN[case]
    broken = rewrite(quantized_dir, tmp_path / "broken", edit)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: " + message):
        GPT2.from_pretrained(broken)


def test_corrupt_scales_and_truncated_file_are_refused(quantized_dir, tmp_path):
    data = (quantized_dir / "model.safetensors").read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    begin = 8 + size + header["wte.weight.scales"]["data_offsets"][0]
    nan = rewrite(quantized_dir, tmp_path / "nan", lambda h: None)
    corrupt = bytearray(data)
    corrupt[begin : begin + 4] = np.float32(np.nan).tobytes()
    (nan / "model.safetensors").write_bytes(bytes(corrupt))
    with pytest.raises(CheckpointError, match=r"tensor 'wte\.weight\.scales' holds negative, NaN or infinite"):
        GPT2.from_pretrained(nan)
    short = rewrite(quantized_dir, tmp_path / "short", lambda h: None)
    (short / "model.safetensors").write_bytes(data[:-1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: "):
        GPT2.from_pretrained(short)


def test_unknown_dtype_is_refused(small_dir):
    for bad in ("int4", "fp16", "Float32", 8):
        with pytest.raises(InputError, match=r"dtype must be one of float32, bfloat16, float16, int8, got"):
            GPT2.from_pretrained(small_dir, dtype=bad)


def test_float16_refuses_values_beyond_its_range(synthetic, tmp_path):
    from engine.state.synthetic import random_parameters

    params = random_parameters(CONFIG)
    params["h.1.attn.c_proj.weight"][3, 5] = 1e6
    model_dir = write_checkpoint(tmp_path / "huge", CONFIG, params=params)
    with pytest.raises(CheckpointError, match=r"tensor 'h\.1\.attn\.c_proj\.weight' holds values up to 1e\+06, beyond"):
        GPT2.from_pretrained(model_dir, dtype="float16")
    assert GPT2.from_pretrained(model_dir, dtype="bfloat16").dtype == "bfloat16"


def test_quantize_refuses_an_existing_directory_and_leaves_it(quantized_dir, small_dir, tmp_path):
    before = (quantized_dir / "model.safetensors").read_bytes()
    done = gpt2_cli("quantize", str(small_dir), str(quantized_dir))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"gpt2: error: {quantized_dir}: already exists and is not empty; gpt2 quantize writes a new model directory"
    ]
    assert (quantized_dir / "model.safetensors").read_bytes() == before
    (tmp_path / "afile").write_text("x")
    done = gpt2_cli("quantize", str(small_dir), str(tmp_path / "afile"))
    assert done.returncode == 2 and "already exists (a regular file)" in done.stderr
    done = gpt2_cli("quantize", str(small_dir), str(tmp_path / "missing" / "out"))
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert not list(tmp_path.glob(".gpt2-quantize-*"))  # no temporary directory left behind


def test_quantize_writes_nothing_when_interrupted(small_dir, tmp_path, monkeypatch):
    """A failure while writing (here: the disk 'fills' at model.safetensors) leaves no OUT and no
    temporary directory."""
    from engine.state import quantized

    def fail(out, tensors):
        out.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quantized, "write_model_safetensors", fail)
    model = GPT2.from_pretrained(small_dir, dtype="int8")
    from engine.state.formats import file_arrays

    tensors = quantized.file_state(state_dict_of(model.weights, model.config), file_arrays)
    with pytest.raises(OutputError, match="No space left on device"):
        quantized.write_quantized_directory(tmp_path / "out", small_dir, tensors)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# The command line: --dtype on every command that loads a model


@pytest.mark.parametrize("command", ["generate", "info", "perplexity", "score", "explain"])
def test_every_model_command_takes_dtype(command):
    from engine.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    help_text = sub.format_help()
    assert "--dtype {float32,bfloat16,float16,int8}" in help_text
    assert "q8_0" in help_text and "2 bytes" in help_text  # what each costs and gives


def test_info_reports_the_precision(small_dir):
    done = gpt2_cli("info", str(small_dir), "--dtype", "bfloat16", "--json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["dtype"] == "bfloat16"
    assert facts["weight_bytes"] < facts["parameters"] * 2.1


# ----------------------------------------------------------------------------------------------
# Looking inside at a lower precision: the analyses use the float32 values the forward pass multiplies by


def test_analyses_at_int8_see_the_network_that_runs(quantized_dir):
    """An int8 model and its exact float32 twin (the quantized file loaded as float32): the same
    network, so the same gradients, saliency, lens and captured activations."""
    int8, twin = GPT2.from_pretrained(quantized_dir), GPT2.from_pretrained(quantized_dir, dtype="float32")
    ids = IDS[0, :12]
    g8, g32 = int8.input_gradients(ids, 11), twin.input_gradients(ids, 11)
    assert np.abs(g8 - g32).max() <= 1e-4 * max(1e-3, float(np.abs(g32).max()))
    s8, s32 = (
        int8.saliency(ids, 11, method="integrated_gradients", steps=8),
        twin.saliency(ids, 11, steps=8, method="integrated_gradients"),
    )
    assert np.abs(s8 - s32).max() <= 1e-3
    lens8, lens32 = int8.logit_lens(ids), twin.logit_lens(ids)
    assert np.array_equal(lens8.top_ids, lens32.top_ids)
    _, cache8 = int8.run_with_cache(ids)
    _, cache32 = twin.run_with_cache(ids)
    a, b = cache8["blocks.1.mlp.hook_post"], cache32["blocks.1.mlp.hook_post"]
    assert np.abs(a - b).max() <= 1e-4 * max(1.0, float(np.abs(b).max()))
    e8, e32 = (m.explain(ids.tolist(), max_new_tokens=2, steps=4, iterations=20, progress=False) for m in (int8, twin))
    assert np.array_equal(e8.token_ids, e32.token_ids)
    assert np.abs(e8.saliency["grad_x_input"] - e32.saliency["grad_x_input"]).max() <= 1e-3
    f8, f32 = (m.neuron_factors(ids, factors=3, iterations=20) for m in (int8, twin))
    assert np.abs(f8.activations - f32.activations).max() <= 1e-3 * max(1.0, float(np.abs(f32.activations).max()))


# ----------------------------------------------------------------------------------------------
# Memory: no float32 copy of the weights on the way in


MEMORY_PROBE = """
import json, resource, sys
import kernels
from engine import GPT2
kernels.warm_up()  # the kernels' own memory (LLVM, compiled code) is not the weights'
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024
base = rss()
model = GPT2.from_pretrained(sys.argv[1], dtype=sys.argv[2])
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"base": base, "peak": peak, "weights": model.weight_bytes()}))
"""


@pytest.mark.parametrize(("stored", "dtype"), [("bfloat16", "bfloat16"), ("float32", "int8"), ("float32", "float16")])
def test_loading_holds_no_float32_copy(synthetic, stored, dtype):
    """One block with the real vocabulary: wte (38.6M weights) is most of it, 154 MB as float32. The
    load's peak over the process before it stays within the weights at their precision + 60 MB
    (a conversion works on chunks of 4 MB), far from the 154 MB a float32 copy of wte would add."""
    from engine.state.synthetic import preset_config

    model_dir = synthetic(f"gpt2-1L-{stored}", preset_config("gpt2", 1), dtype=stored)
    env = dict(os.environ, PYTHONPATH=str(REPO), GPT2_ENGINE_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(model_dir), dtype], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    m = json.loads(done.stdout)
    extra = m["peak"] - m["base"]
    print(f"{stored} file as {dtype}: peak - base {extra / 1e6:.0f} MB, weights {m['weights'] / 1e6:.0f} MB")
    assert extra <= m["weights"] + 60e6


def test_speed_page_example(monkeypatch, tiny_model_dir, capsys):
    """docs/speed.md's example runs (from the repository root) and prints what the page says."""
    import re

    section = (REPO / "docs" / "speed.md").read_text(encoding="utf-8").split("## Precisions", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(REPO)
    exec(compile(code, "docs/speed.md", "exec"), {})
    shown = re.search(r"# (\w+ \d+) \(", code).group(1)  # type: ignore[union-attr]
    assert capsys.readouterr().out.strip() == shown
