"""The benchmark: this engine, Hugging Face transformers + PyTorch, llama.cpp and ONNX Runtime,
side by side, in one run.

    python -m benchmarks.run            # 124M; writes benchmarks/RESULTS.md and benchmarks/results.png
    python -m benchmarks.run --full     # also the 355M (gpt2-medium) shape
    python -m benchmarks.run --no-peers # the engine and PyTorch only

Every side runs the same synthetic float32 checkpoint (engine/state/synthetic.py, seed 0, the published
layout) with the same thread count, each in its own worker process, at each precision in `SIDES`:
the engine at `ENGINE_PRECISIONS`, PyTorch at float32, llama.cpp at F32, F16 and Q8_0 (GGUF files
written from the checkpoint by benchmarks/gguf_export.py) and ONNX Runtime at float32 and dynamic
int8 (exported with past key values by benchmarks/onnx_export.py). For each (prompt tokens, new
tokens) in (16, 128) and (512, 128), batch 1 and 8: one untimed warm-up run per side (Numba
compiles on first use), which also checks every side's greedy tokens against the engine's float32
tokens (float32 sides must agree, or the report says where they part; other precisions report
how long they agree); then `--repeats` timed runs, rotating which side goes first. Reported:
medians with min and max. In the same run: the machine's read bandwidth and matrix-multiply
FLOP/s (the roofline), each decode figure as a percentage of its bandwidth limit at its
precision's bytes, process start to first token and peak resident memory (a fresh process per
side), and fidelity against float32 on the tiny Shakespeare model (benchmarks/fidelity.py). A side
that cannot be installed, converted or loaded is reported as missing with the reason. See
benchmarks/workers.py and benchmarks/peers.py for exactly what each side runs, and
benchmarks/PEERS.md for how the peers are installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dataclasses import dataclass  # noqa: E402

from benchmarks.roofline import BYTES_PER_WEIGHT, decode_bytes, weight_bytes  # noqa: E402
from engine.state.synthetic import preset_config, write_checkpoint  # noqa: E402

CONFIGS = [(16, 1), (16, 8), (512, 1), (512, 8)]  # (prompt tokens, batch)
TARGETS = {
    "decode_ratio": 2.0,
    "decode_bandwidth": 0.85,
    "prefill_ratio": 1.5,
    "warm_first_token_s": 1.5,
    "rss_ratio": 1.2,
}

# The engine's precisions in the benchmark, each a side of its own (a worker started with
# `GPT2.from_pretrained(dir, dtype=...)`; float32 passes no dtype). The first is the reference every
# other side's greedy tokens and fidelity are held to; their bytes per weight are in
# roofline.BYTES_PER_WEIGHT (from engine/state/precision.py).
ENGINE_PRECISIONS = ("float32", "bfloat16", "float16", "int8")


def shared_dir() -> Path:
    """../shared beside the repository; from a git worktree elsewhere, the one beside the main checkout."""
    beside = REPO.parent / "shared"
    git = REPO / ".git"
    if not beside.is_dir() and git.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        gitdir = Path(git.read_text().split("gitdir:", 1)[-1].strip())
        main = next((d.parent for d in gitdir.parents if d.name == ".git"), None)
        if main is not None and (main.parent / "shared").is_dir():
            return main.parent / "shared"
    return beside


DATA_DIR = Path(tempfile.gettempdir()) / "gpt2-engine-bench"  # the checkpoints and peers' files, reused

SHAKESPEARE = shared_dir() / "models" / "shakespeare-gpt2-tiny"
TEMPEST = shared_dir() / "corpora" / "heldout_tempest.txt"


@dataclass(frozen=True)
class Side:
    """One row of the results: a worker (`benchmarks.workers` side name) at one precision."""

    worker: str  # engine, torch, llama.cpp, onnxruntime
    precision: str  # as the side spells it: float32, F16, Q8_0, dynamic int8, ...
    label: str

    @property
    def key(self) -> str:
        return f"{self.worker} {self.precision}"

    @property
    def float32(self) -> bool:
        """Held to the engine's float32 greedy tokens exactly (else: how long it agrees)."""
        return BYTES_PER_WEIGHT[self.precision] == 4.0

    @property
    def bytes_per_weight(self) -> float:
        return BYTES_PER_WEIGHT[self.precision]

    def worker_precision(self) -> str | None:
        """The PRECISION argument of the worker: none for the engine's float32 (no dtype passed) and PyTorch."""
        if self.worker == "torch" or (self.worker == "engine" and self.precision == "float32"):
            return None
        return self.precision


ENGINE = [Side("engine", p, f"gpt2-engine, {p}") for p in ENGINE_PRECISIONS]
TORCH = Side("torch", "float32", "PyTorch + transformers, float32")
PEERS = [
    Side("llama.cpp", "F32", "llama.cpp, F32 GGUF"),
    Side("llama.cpp", "F16", "llama.cpp, F16 GGUF"),
    Side("llama.cpp", "Q8_0", "llama.cpp, Q8_0 GGUF"),
    Side("onnxruntime", "float32", "ONNX Runtime, float32"),
    Side("onnxruntime", "dynamic int8", "ONNX Runtime, dynamic int8"),
]
REFERENCE = ENGINE[0]


# ----------------------------------------------------------------------------------------------
# Workers


class SideFailed(Exception):
    """A side could not be started, converted, loaded or run; the message says why."""


class Worker:
    """A `benchmarks.workers` process: one JSON command in, one JSON answer out."""

    def __init__(self, side: Side | str, threads: int | str, env: dict):
        side = TORCH if side == "torch" else (REFERENCE if side == "engine" else side)
        self.side = side.key
        precision = side.worker_precision()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.workers", side.worker, str(threads)]
            + ([precision] if precision else []),
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._read()  # {"ready": ...}

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SideFailed(f"the {self.side} worker exited (status {self.process.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise SideFailed(answer["error"])
        return answer

    def __call__(self, action: str, **arguments) -> dict:
        self.process.stdin.write(json.dumps({"action": action, **arguments}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"action": "quit"}) + "\n")
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        self.process.wait()


def worker_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("GPT2_ENGINE_THREADS", None)  # the thread count is the harness's argument
    return env


# ----------------------------------------------------------------------------------------------
# Measurements


def ensure_checkpoint(data_dir: Path, preset: str) -> Path:
    model_dir = data_dir / f"{preset}-synthetic-float32-seed0"
    if not (model_dir / "model.safetensors").is_file():
        print(f"writing the synthetic {preset} checkpoint to {model_dir}", flush=True)
        write_checkpoint(model_dir, preset_config(preset), dtype="float32", seed=0)
    return model_dir


def check_same_tokens(engine_tokens, torch_run, tolerance: float) -> dict:
    """Greedy tokens of two float32 sides: identical, or (failing that) diverging first where the
    other side's two best logits are within `tolerance` (a near-tie float32 cannot order)."""
    torch_tokens, gaps = torch_run["tokens"], torch_run.get("top2_gaps")
    for row, (ours, theirs) in enumerate(zip(engine_tokens, torch_tokens)):
        for step, (a, b) in enumerate(zip(ours, theirs)):
            if a != b:
                gap = gaps[row][step] if gaps else float("inf")
                verdict = "near-tie" if gap <= tolerance else "MISMATCH"
                return {"identical": False, "verdict": verdict, "row": row, "step": step, "gap": gap}
    return {"identical": True, "verdict": "identical", "count": sum(len(r) for r in engine_tokens)}


def token_agreement(reference_tokens, tokens) -> dict:
    """Greedy tokens of a side at a lower precision against the reference's: per row, the steps
    before the first difference, as a share of all steps (after a difference the two continue
    from different text, so later matches mean little), and where the first difference is."""
    prefix = [
        next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), len(ref))
        for ref, got in zip(reference_tokens, tokens)
    ]
    total = sum(len(r) for r in reference_tokens)
    first = min(range(len(prefix)), key=lambda r: prefix[r])
    return {
        "identical": sum(prefix) == total,
        "verdict": "agreement",
        "share": sum(prefix) / total,
        "count": total,
        "row": first,
        "step": prefix[first],
    }


def startup_runs(
    side: str,
    model_dir: Path,
    threads: int,
    env: dict,
    numba_cache: Path,
    prompt_len: int,
    new_tokens: int,
    precision: str | None = None,
) -> dict:
    """Process start to first token, measured from here (the parent) to the child's first line."""
    env = dict(env, NUMBA_CACHE_DIR=str(numba_cache))
    start = time.perf_counter()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.startup",
            side,
            str(model_dir),
            str(threads),
            str(prompt_len),
            str(new_tokens),
        ]
        + ([precision] if precision else []),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = child.stdout.readline()
    if not line:
        raise SideFailed(f"the {side} start-up run exited (status {child.wait()})")
    first = json.loads(line)
    first_token_s = time.perf_counter() - start
    done = json.loads(child.stdout.readline())
    child.wait()
    return {
        "first_token_s": first_token_s,
        "imported": first["imported"],
        "loaded": first["loaded"],
        "in_child_first_token_s": first["t"],
        "peak_kib": done["peak_kib"],
    }


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


# ----------------------------------------------------------------------------------------------
# The peers' model files, made from the same checkpoint (kept in --data-dir and reused)


def run_tool(command: list[str], what: str, env: dict) -> None:
    done = subprocess.run([sys.executable, "-m", *command], cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise SideFailed(f"{what} failed: {tail}")


def model_file(side: Side, model_dir: Path, data_dir: Path, env: dict, all_logits: bool = False) -> str:
    """What `side` loads for the checkpoint `model_dir`: the directory itself (engine, PyTorch), or
    a GGUF / ONNX file converted from it on first use. all_logits: the ONNX graph that returns
    every position's logits (fidelity) instead of the last one's."""
    if side.worker in ("engine", "torch"):
        return str(model_dir)
    if side.worker == "llama.cpp":
        path = data_dir / "gguf" / f"{model_dir.name}-{side.precision}.gguf"
        if not path.is_file():
            print(f"  writing {path.name} (benchmarks/gguf_export.py)", flush=True)
            run_tool(
                ["benchmarks.gguf_export", str(model_dir), str(path), "--precision", side.precision.lower()],
                f"writing the {side.precision} GGUF",
                env,
            )
        return str(path)
    if side.worker == "onnxruntime":
        folder = data_dir / "onnx" / (model_dir.name + ("-all-logits" if all_logits else ""))
        path = folder / ("model.onnx" if side.float32 else "model.int8.onnx")
        if not path.is_file():
            print(f"  exporting {folder.name} to ONNX (benchmarks/onnx_export.py)", flush=True)
            run_tool(
                ["benchmarks.onnx_export", str(model_dir), str(folder)] + (["--all-logits"] if all_logits else []),
                "the ONNX export",
                env,
            )
        return str(path)
    raise ValueError(side.worker)


def start_workers(sides: list[Side], threads: int, env: dict, missing: dict) -> dict:
    """A worker per side; a peer that cannot start goes into `missing` with the reason."""
    workers = {}
    for side in sides:
        try:
            workers[side.key] = Worker(side, threads, env)
        except SideFailed as error:
            if side in (REFERENCE, TORCH):
                raise SystemExit(f"benchmark: the {side.key} worker failed: {error}") from None
            missing[side.key] = f"not installed or not importable: {error}"
    return workers


def drop(workers: dict, key: str, missing: dict, reason: str) -> None:
    if key in (REFERENCE.key, TORCH.key):
        raise SystemExit(f"benchmark: {key}: {reason}")
    missing[key] = reason
    workers.pop(key).close()


# ----------------------------------------------------------------------------------------------
# Measurements


def measure_model(preset: str, model_dir: Path, workers: dict, sides: list[Side], args, missing: dict) -> dict:
    config = preset_config(preset)
    N = args.new_tokens
    env = worker_env()
    info = {}
    for side in sides:
        if side.key not in workers:
            continue
        try:
            info[side.key] = workers[side.key]("load", model_dir=model_file(side, model_dir, args.data_dir, env))
        except SideFailed as error:
            drop(workers, side.key, missing, f"could not load the model: {error}")
    live = [side for side in sides if side.key in workers]
    results = {"preset": preset, "info": info, "configs": {}}
    for P, B in CONFIGS:
        print(f"  {preset} prompt {P} batch {B}: warm-up and token check", flush=True)
        reference = workers[REFERENCE.key]("run", batch=B, prompt_len=P, new_tokens=N)
        entry = {
            "checks": {},
            "runs": {s.key: [] for s in live},
            "not_run": {},
            "generate": [],
            "reference_tokens": reference["tokens"],
        }
        for side in live:
            if side == REFERENCE:
                continue
            try:
                extra = {} if side.worker == "engine" else {"gaps": True}
                theirs = workers[side.key]("run", batch=B, prompt_len=P, new_tokens=N, **extra)
            except SideFailed as error:
                entry["not_run"][side.key] = str(error)
                continue
            if side == TORCH:
                torch_tokens = theirs["tokens"]
            entry["checks"][side.key] = (
                check_same_tokens(reference["tokens"], theirs, args.tie_tolerance)
                if side.float32
                else token_agreement(reference["tokens"], theirs["tokens"])
            )
        if args.generate:
            generated = workers[TORCH.key]("generate", batch=B, prompt_len=P, new_tokens=N)
            entry["generate_check"] = generated["tokens"] == torch_tokens
        results["configs"][f"{P},{B}"] = entry
    for repeat in range(args.repeats):
        for P, B in CONFIGS:
            entry = results["configs"][f"{P},{B}"]
            order = [s for s in live if s.key not in entry["not_run"]]
            shift = repeat % len(order)
            order = order[shift:] + order[:shift]  # rotating which side goes first
            for side in order if repeat % 2 == 0 else order[::-1]:
                run = workers[side.key]("run", batch=B, prompt_len=P, new_tokens=N)
                if side == REFERENCE and run["tokens"] != entry["reference_tokens"]:
                    raise SystemExit(f"benchmark: engine tokens changed between runs ({preset}, prompt {P}, batch {B})")
                entry["runs"][side.key].append({"prefill_s": run["prefill_s"], "decode_s": run["decode_s"]})
            print(f"  {preset} prompt {P} batch {B}: repeat {repeat + 1}/{args.repeats}", flush=True)
    # generate() is timed in a phase of its own, after the side-by-side runs: in a trial the engine's
    # prompt pass right after generate() in the PyTorch worker measured ~2x slower (8 x 16 tokens:
    # ~300-480 against ~800 tokens/s after its own run). (The 8 x 16 prefill stays low in the harness
    # even so: docs/speed.md.)
    for repeat in range(args.repeats if args.generate else 0):
        for P, B in CONFIGS:
            results["configs"][f"{P},{B}"]["generate"].append(
                workers[TORCH.key]("generate", batch=B, prompt_len=P, new_tokens=N)
            )
        print(f"  {preset} generate(): repeat {repeat + 1}/{args.repeats}", flush=True)
    for P, B in CONFIGS:
        entry = results["configs"][f"{P},{B}"]
        entry.pop("reference_tokens")
        entry["sides"] = {
            key: {
                "prefill_tok_s": summary([B * P / r["prefill_s"] for r in runs]),
                "decode_ms": summary([1e3 * r["decode_s"] / (N - 1) for r in runs]),
            }
            for key, runs in entry.pop("runs").items()
            if runs
        }
        # The engine-vs-PyTorch table of issue 4 reads these three.
        entry["engine"], entry["torch"], entry["check"] = (
            entry["sides"][REFERENCE.key],
            entry["sides"][TORCH.key],
            entry["checks"][TORCH.key],
        )
        gen = entry.pop("generate")
        if gen:
            entry["generate"] = {"decode_ms": summary([1e3 * (g["total_s"] - g["one_token_s"]) / (N - 1) for g in gen])}
        entry["bytes"] = decode_bytes(config, B, kv_slots=P + N / 2)
        entry["bytes_by_side"] = {
            s.key: decode_bytes(config, B, kv_slots=P + N / 2, bytes_per_weight=s.bytes_per_weight) for s in live
        }
    return results


def measure_fidelity(workers: dict, sides: list[Side], args, missing: dict) -> dict:
    """benchmarks/fidelity.py for every live side, the engine's float32 first (the reference)."""
    from benchmarks.fidelity import NEW_TOKENS, PROMPT_LEN, WINDOW, WINDOWS, greedy_agreement, heldout_windows
    from engine.state.tokenizer import load_tokenizer

    model_dir, text = args.fidelity_model, args.fidelity_text
    for path in (model_dir, text):
        if not path.exists():
            return {"skipped": f"{path} is missing"}
    windows = heldout_windows(load_tokenizer(model_dir), text.read_text(encoding="utf-8"))
    prompts = windows[:, :PROMPT_LEN]
    reference_file = args.data_dir / "fidelity-reference-logprobs.npy"
    env = worker_env()
    results = {
        "model": str(model_dir),
        "text": str(text),
        "windows": WINDOWS,
        "window": WINDOW,
        "prompts": len(prompts),
        "prompt_len": PROMPT_LEN,
        "new_tokens": NEW_TOKENS,
        "sides": {},
        "not_run": {},
    }
    for side in sides:
        if side.key not in workers:
            continue
        print(f"  fidelity: {side.key}", flush=True)
        try:
            path = model_file(side, model_dir, args.data_dir, env, all_logits=True)
            results["sides"][side.key] = workers[side.key](
                "fidelity",
                model_path=path,
                windows=windows.tolist(),
                prompts=prompts.tolist(),
                new_tokens=NEW_TOKENS,
                reference={"path": str(reference_file), "write": side == REFERENCE, "windows": WINDOWS},
            )
        except SideFailed as error:
            if side == REFERENCE:
                raise SystemExit(f"benchmark: the float32 reference's fidelity run failed: {error}") from None
            results["not_run"][side.key] = str(error)
    reference_generated = results["sides"][REFERENCE.key]["generated"]
    for r in results["sides"].values():
        r["greedy"] = greedy_agreement(reference_generated, r.pop("generated"))
    reference_file.unlink(missing_ok=True)
    return results


def peer_versions() -> dict:
    """The installed versions of the peers' packages (without importing them), or "not installed"."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("llama-cpp-python", "gguf", "onnxruntime", "onnx", "onnxscript"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def cpu_model_name() -> str:
    """The CPU's name as Linux gives it ("?" elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def machine_info(threads: int) -> dict:
    import numba
    import numpy
    import torch
    import transformers

    cpu = cpu_model_name()
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem_kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    except OSError:
        mem_kib = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": threads,
        "peer_versions": peer_versions(),
        "numba_threading_layer": os.environ.get("NUMBA_THREADING_LAYER", "default"),
    }


# ----------------------------------------------------------------------------------------------
# Report


def fmt_range(s: dict, digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def bandwidth_variants(bandwidth: dict) -> str:
    """Each reduction's median (and best) pass, for the roofline row."""

    def one(key):
        best = bandwidth.get(f"{key}_best")
        return f"{bandwidth[key] / 1e9:.1f}" + (f" (best {best / 1e9:.1f})" if best else "")

    return (
        f"flat sum: huge pages {one('flat_sum_huge_pages')}, 4 KiB pages {one('flat_sum_small_pages')}; "
        f"sum of row bands: huge pages {one('row_band_sum_huge_pages')}, 4 KiB pages {one('row_band_sum_small_pages')}"
    )


def args_repeats(data: dict) -> int:
    return data["args"].get("bandwidth_repeats", 10)


def write_report(data: dict, out: Path, plot_name: str) -> None:
    m = data["machine"]
    roof = data["roofline"]
    bw = roof["bandwidth"]["bytes_per_s"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python -m benchmarks.run{' --full' if data['args']['full'] else ''}` on "
        f"{data['date']} ({data['elapsed_min']:.0f} min). One run: every figure below comes from it.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores; {m['memory_gib']} GiB; {m['system']}",
        f"- Load average (1 min) at start / end: {data['load_start']:.2f} / {data['load_end']:.2f} "
        "(other work on the machine slows every side; ratios are measured side by side)",
        f"- Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}, PyTorch {m['torch']}, "
        f"transformers {m['transformers']}" + "".join(f", {k} {v}" for k, v in m.get("peer_versions", {}).items()),
        f"- Threads: {m['threads']} for every side. Engine: Numba {data['threads']['engine']['numba_threads']}, "
        f"pools {fmt_pools(data['threads']['engine']['pools'])}. PyTorch: torch.get_num_threads() = "
        f"{data['threads']['torch']['torch_threads']}, pools {fmt_pools(data['threads']['torch']['pools'])}; "
        f'attention implementation "{data["threads"]["torch"]["attn_implementation"]}".' + peer_threads(data),
        "",
        "## What each side runs",
        "",
        "The same synthetic checkpoint (`engine/state/synthetic.py`, preset gpt2, float32, seed 0; random weights in the",
        "published layout) and the same seeded random prompt ids. Prefill = the prompt in one call, timed until the",
        "first new token's argmax; decode = the remaining N - 1 steps of one token per row, greedy.",
        "",
        "- **engine**: `cache = model.new_cache(B, P + N)`, `model(prompt, cache=cache, logits_to_keep=1)`, then",
        "  `model(next_ids[:, None], cache=cache)` per step (the public API; `benchmarks/workers.py`).",
        "- **PyTorch**: transformers `GPT2LMHeadModel.from_pretrained(dir, dtype=torch.float32)` (default attention),",
        "  `torch.inference_mode()`, `model(prompt, use_cache=True, logits_to_keep=1)`, then",
        "  `model(next_ids[:, None], cache=past, use_cache=True)` per step: the same manual KV-cache loop.",
        "- **HF generate()**: `model.generate(prompt, max_new_tokens=N, min_new_tokens=N, do_sample=False)`; its",
        "  decode figure is (time for N new tokens - time for 1) / (N - 1). It is timed after all the side-by-side",
        "  runs, not between them: the engine's next prompt pass measured up to ~2x slower right after it (docs/speed.md).",
        "- **llama.cpp** (llama-cpp-python, built from source by pip for this CPU): GGUF files written from the same",
        "  checkpoint by `benchmarks/gguf_export.py` (F32; F16; Q8_0 by `gguf.quants`, as llama.cpp's converter does),",
        "  driven through the C API: one context per batch size with a sequence per row and an F32 KV cache, the",
        "  B x P prompt in one `llama_decode` (logits for each row's last token), then one `llama_decode` of B tokens",
        "  per step (`benchmarks/peers.py`).",
        "- **ONNX Runtime**: transformers' GPT-2 exported with past key values by `torch.onnx.export`",
        "  (`benchmarks/onnx_export.py`; last-position logits), float32 and `quantize_dynamic` int8; an",
        "  `InferenceSession` with `intra_op_num_threads` = the thread count, prompt with an empty past, then one",
        "  token per row per call with the presents fed back through an io_binding (`benchmarks/peers.py`).",
        "- Every side's greedy tokens are compared with the engine's float32 tokens in an untimed warm-up run (and",
        "  generate()'s with the manual loop's): float32 sides must be identical (or part at a near-tie of their",
        "  own logits); lower precisions report how long they agree. The engine's tokens are checked again in",
        "  every timed run. Timed runs rotate which side goes first.",
        "",
    ]
    lines += peers_section(data)
    lines += fidelity_section(data)
    lines += [
        "## Roofline",
        "",
        "| measure | value |",
        "|---|---|",
        f"| memory read bandwidth ({roof['bandwidth']['threads']} threads, Numba reductions over "
        f"{roof['bandwidth']['array_bytes'] / 2**30:.0f} GiB, {'median' if 'flat_sum_huge_pages_best' in roof['bandwidth'] else 'best'} of {args_repeats(data)} passes each; the highest) | "
        f"**{bw / 1e9:.1f} GB/s** ({bandwidth_variants(roof['bandwidth'])}) |",
        f"| float32 matmul 2048³, NumPy's BLAS (engine's prompt pass) | {roof['engine_flops'] / 1e9:.0f} GFLOP/s |",
        f"| float32 matmul 2048³, torch.mm | {roof['torch_flops'] / 1e9:.0f} GFLOP/s |",
        "",
        "The bandwidth limit of a decode step is the bytes it must read divided by the bandwidth above.",
        "Bytes counted (float32): every block's weights, biases and LayerNorm parameters, ln_f, the",
        'whole wte once (the tied output layer), and one wte row and one wpe row per batch row. "% of',
        'limit" uses those weight bytes, as the issue defines it; "with KV" also counts the keys and',
        "values attention reads (the average cached length over the run).",
        "",
    ]
    for model in data["models"]:
        preset = model["preset"]
        config = preset_config(preset)
        lines += [
            f"## {preset} ({weight_bytes(config) / 1e6:.0f} MB of float32 weights)",
            "",
            f"{data['args']['new_tokens']} new tokens; median (min–max) of {data['args']['repeats']} runs per side, "
            "alternating which side runs first. Decode: ms per step, one new token per batch row.",
            "",
            "| prompt | batch | engine prefill tok/s | PyTorch prefill tok/s | prefill speed-up | engine decode ms | "
            "PyTorch decode ms | HF generate() ms | decode speed-up | bandwidth limit ms | engine % of limit (with KV) | greedy tokens |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for key, entry in model["configs"].items():
            P, B = map(int, key.split(","))
            e, t = entry["engine"], entry["torch"]
            limit_ms = 1e3 * entry["bytes"]["weights"] / bw
            limit_kv_ms = 1e3 * (entry["bytes"]["weights"] + entry["bytes"]["kv"]) / bw
            gen = fmt_range(entry["generate"]["decode_ms"]) if "generate" in entry else "–"
            check = entry["check"]
            tokens = (
                f"identical ({check['count']})"
                if check["identical"]
                else f"{check['verdict']} at row {check['row']} step {check['step']} (top-2 gap {check['gap']:.1e})"
            )
            if "generate_check" in entry:
                tokens += "; generate() the same" if entry["generate_check"] else "; generate() DIFFERS"
            lines.append(
                f"| {P} | {B} | {fmt_range(e['prefill_tok_s'], 0)} | {fmt_range(t['prefill_tok_s'], 0)} | "
                f"**{e['prefill_tok_s']['median'] / t['prefill_tok_s']['median']:.2f}x** | {fmt_range(e['decode_ms'])} | "
                f"{fmt_range(t['decode_ms'])} | {gen} | **{t['decode_ms']['median'] / e['decode_ms']['median']:.2f}x** | "
                f"{limit_ms:.1f} | {100 * limit_ms / e['decode_ms']['median']:.0f}% ({100 * limit_kv_ms / e['decode_ms']['median']:.0f}%) | {tokens} |"
            )
        lines.append("")
    s = data["startup"]
    lines += [
        "## Start-up and memory (124M)",
        "",
        "A fresh process per row, timed from the harness starting it to the child printing the first",
        f"new token of a {data['args']['startup_prompt']}-token prompt (`python -m benchmarks.startup`: import, load, prefill, argmax).",
        "Cold: an empty Numba cache (`NUMBA_CACHE_DIR` a new directory: every kernel compiles). Warm: the",
        "same directory again. The weight file is in the OS page cache in every row (it was just written or read).",
        "",
        "| process | first token s | imports done s (RSS MB) | weights loaded s (RSS MB) | peak RSS MB (x float32 weight bytes) |",
        "|---|---|---|---|---|",
    ]
    for label, run in s["runs"]:
        weights = run.get("weight_bytes", s["weight_bytes"])
        lines.append(
            f"| {label} | **{run['first_token_s']:.2f}** | {run['imported'][0]:.2f} ({run['imported'][1] / 1024:.0f}) | "
            f"{run['loaded'][0]:.2f} ({run['loaded'][1] / 1024:.0f}) | {run['peak_kib'] / 1024:.0f} "
            f"({run['peak_kib'] * 1024 / weights:.2f}x weights) |"
        )
    wb, fb = s["weight_bytes"], s["file_bytes"]
    lines += [
        "",
        f"Weights (124M): {wb / 1e6:.1f} MB of float32 parameters; the file is {fb / 1e6:.1f} MB (it also holds the "
        "published `attn.bias` mask buffers, which are skipped). Peak RSS is the child's VmHWM after "
        f"{data['args']['new_tokens']} new tokens. The engine's peak over the weights is the runtime: the RSS at "
        '"imports done" (Python, NumPy, Numba with LLVM\'s library), plus what Numba adds when it loads the kernels '
        "(its type registries, LLVM's JIT), plus the tokenizer, the KV cache and activations.",
        "",
    ]
    lines += targets_section(data)
    lines += [""] + issue12_targets(data)
    lines += ["", f"![decode and prefill, every side]({plot_name})", ""]
    lines += ["The analysis of these figures is on docs/speed.md, written by hand after a run.", ""]
    out.write_text("\n".join(lines))


def peer_threads(data: dict) -> str:
    """llama.cpp's and ONNX Runtime's thread settings and build, from their workers' load answers."""
    sides = data["threads"].get("sides", {})
    llama = next((v for k, v in sides.items() if k.startswith("llama.cpp")), None)
    onnx = next((v for k, v in sides.items() if k.startswith("onnxruntime")), None)
    text = ""
    if llama:
        features = [
            part.split("=")[0].strip() for part in llama["system_info"].split("|") if part.strip().endswith("= 1")
        ]
        text += f" llama.cpp: n_threads = n_threads_batch = {llama['threads']}; built with {', '.join(features)}."
    if onnx:
        text += f" ONNX Runtime: intra_op_num_threads = {onnx['threads']}, inter_op_num_threads = 1, {', '.join(onnx['providers'])}."
    return text


def side_rows(data: dict) -> list[dict]:
    """The sides of the run, in SIDES order, as stored in results.json."""
    return data.get("sides") or [
        {
            "key": "engine float32",
            "label": "gpt2-engine, float32",
            "precision": "float32",
            "bytes_per_weight": 4.0,
            "float32": True,
        }
    ]


def tokens_verdict(check: dict | None, reason: str | None = None) -> str:
    if check is None:
        return f"n/a ({reason})" if reason else "–"
    if check["verdict"] == "agreement":
        return f"{100 * check['share']:.0f}%" + (
            "" if check["identical"] else f" (first differs: row {check['row']} step {check['step']})"
        )
    if check["identical"]:
        return "identical"
    return f"{check['verdict']} at row {check['row']} step {check['step']} (top-2 gap {check['gap']:.1e})"


def peers_section(data: dict) -> list[str]:
    """Issue 12's table: a row per (side, precision) on the 124M shape, and every configuration below it."""
    model = data["models"][0]
    configs = model["configs"]
    bw = data["roofline"]["bandwidth"]["bytes_per_s"]
    N = data["args"]["new_tokens"]
    peaks = data["startup"].get("peak_kib", {})
    missing = data.get("missing", {})
    d, torch_ms = configs["16,1"], configs["16,1"]["sides"]["torch float32"]["decode_ms"]["median"]
    engine_ms = d["sides"]["engine float32"]["decode_ms"]["median"]
    lines = [
        f"## Every side and precision ({model['preset']}, one run)",
        "",
        f"Median (min–max) of {data['args']['repeats']} timed runs per side and configuration, {N} new tokens. Decode: ms per",
        "step of one new token per row. Prefill: prompt tokens per second, batch 1. % of limit: the decode step against",
        "the bandwidth limit at the side's own bytes per weight (matrices at that precision, every other parameter",
        "float32; `benchmarks/roofline.py`). Peak RSS: a fresh process that loads the model and generates",
        f"{data['args']['startup_prompt']}+{N} tokens at batch 1 (start-up table below). Greedy tokens: against the engine's",
        "float32 tokens in the four configurations (16+N, 8x16+N, 512+N, 8x512+N): identical, or for lower",
        "precisions the share of steps before the first difference.",
        "",
        f"| side, precision | decode ms/token (16+{N}, batch 1) | vs PyTorch | vs engine float32 | prefill tok/s (16) | "
        f"prefill tok/s (512) | batch 8 decode ms/step (16+{N}) | bytes/weight | limit ms | % of limit | peak RSS MB | greedy tokens vs engine float32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for side in side_rows(data):
        key = side["key"]
        if key in missing and key not in d["sides"]:
            lines.append(f"| {side['label']} | missing ({missing[key]}) |" + " |" * 10)
            continue

        def cell(config, field, digits=1, key=key):
            entry = configs[config]
            if key in entry["sides"]:
                return fmt_range(entry["sides"][key][field], digits)
            return f"n/a ({entry['not_run'].get(key, 'not run')})"

        one = d["sides"].get(key)
        limit_ms = 1e3 * d["bytes_by_side"][key]["weights"] / bw
        ratio = lambda ref, one=one: f"{ref / one['decode_ms']['median']:.2f}x" if one else "–"  # noqa: E731
        share = f"{100 * limit_ms / one['decode_ms']['median']:.0f}%" if one else "–"
        checks = []
        for config in configs:
            if key == "engine float32":
                checks = ["reference"]
                break
            checks.append(tokens_verdict(configs[config]["checks"].get(key), configs[config]["not_run"].get(key)))
        tokens = checks[0] if len(set(checks)) == 1 else " / ".join(checks)
        peak = f"{peaks[key] / 1024:.0f}" if key in peaks else "–"
        lines.append(
            f"| {side['label']} | {cell('16,1', 'decode_ms')} | {ratio(torch_ms)} | {ratio(engine_ms)} | {cell('16,1', 'prefill_tok_s', 0)} | "
            f"{cell('512,1', 'prefill_tok_s', 0)} | {cell('16,8', 'decode_ms')} | {side['bytes_per_weight']:.4g} | {limit_ms:.1f} | {share} | {peak} | {tokens} |"
        )
    partly = [
        f"**{k}** at {key.split(',')[1]} x {key.split(',')[0]}+{N}: {v}"
        for key, entry in configs.items()
        for k, v in entry["not_run"].items()
        if k not in missing
    ]
    if missing or partly:
        lines += [
            "",
            "Missing or partly run: " + "; ".join([f"**{k}**: {v}" for k, v in missing.items()] + partly) + ".",
        ]
    lines += [
        "",
        "Every configuration, every side: prefill tok/s | decode ms per step (median of the timed runs).",
        "",
        "| side, precision | " + " | ".join(f"{k.split(',')[1]} x {k.split(',')[0]}+{N}" for k in configs) + " |",
        "|---|" + "---|" * len(configs),
    ]
    for side in side_rows(data):
        cells = []
        for entry in configs.values():
            got = entry["sides"].get(side["key"])
            cells.append(f"{got['prefill_tok_s']['median']:.0f} \\| {got['decode_ms']['median']:.1f}" if got else "n/a")
        lines.append(f"| {side['label']} | " + " | ".join(cells) + " |")
    return lines + [""]


def fidelity_section(data: dict) -> list[str]:
    f = data.get("fidelity")
    if not f:
        return ["## Fidelity", "", "Not measured in this run (`--no-fidelity`).", ""]
    if "skipped" in f:
        return ["## Fidelity", "", f"Not measured: {f['skipped']}.", ""]
    ref = f["sides"]["engine float32"]
    lines = [
        "## Fidelity against float32 (tiny Shakespeare model, held-out text)",
        "",
        f"`{Path(f['model']).name}` (4 layers, 128 wide, trained) on the first {f['windows']} x {f['window']} tokens of",
        f"`{Path(f['text']).name}` (not in its training text), cut into {f['windows']} windows of {f['window']} tokens (its whole",
        f"context); each window scores its last {f['window'] - 1} tokens from the logits of one call with no cache:",
        f"{ref['scored']:,} tokens. Against the engine's float32 logits (the reference): the change in perplexity, the",
        "mean KL(float32 || row) of the next-token distribution over the whole vocabulary, and how often the most",
        f"likely token is the same. Greedy: {f['prompts']} prompts (the first {f['prompt_len']} tokens of each window)",
        f"continued for {f['new_tokens']} tokens through each side's KV cache, against float32's continuations: the share",
        "of tokens before the first difference, and the prompts whose continuation is identical throughout.",
        "`benchmarks/fidelity.py`.",
        "",
        "| side, precision | perplexity | change vs engine float32 | change vs the same runtime's float32 | mean KL (nats) | "
        "top-1 agreement | greedy: tokens before first difference | greedy: identical prompts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    own_float32 = {}
    for side in side_rows(data):
        if side.get("float32") and side["key"] in f["sides"]:
            own_float32.setdefault(side["key"].split(" ")[0], f["sides"][side["key"]]["perplexity"])
    for side in side_rows(data):
        key = side["key"]
        r = f["sides"].get(key)
        if r is None:
            reason = f["not_run"].get(key) or data.get("missing", {}).get(key, "not run")
            lines.append(f"| {side['label']} | n/a ({reason}) |" + " |" * 6)
            continue
        change = 100 * (r["perplexity"] / ref["perplexity"] - 1)
        own = own_float32.get(key.split(" ")[0])
        own_change = f"{100 * (r['perplexity'] / own - 1):+.3f}%" if own else "–"
        g = r["greedy"]
        lines.append(
            f"| {side['label']} | {r['perplexity']:.3f} | {change:+.3f}% | {own_change} | {r['mean_kl']:.2e} | "
            f"{100 * r['top1_agreement']:.2f}% | {100 * g['share']:.1f}% | {g['identical']} of {g['prompts']} |"
        )
    return lines + [""]


def issue12_targets(data: dict) -> list[str]:
    """Issue 12's targets that this run can measure; a precision the engine does not have yet says so."""
    configs = data["models"][0]["configs"]
    bw = data["roofline"]["bandwidth"]["bytes_per_s"]

    def decode(key, config="16,1"):
        got = configs[config]["sides"].get(key)
        return got["decode_ms"]["median"] if got else None

    def share(key, config="16,1"):
        ms = decode(key, config)
        return 1e3 * configs[config]["bytes_by_side"][key]["weights"] / bw / ms if ms else None

    rows = []

    def ratio_row(name, ours, theirs, want):
        a, b = decode(ours), decode(theirs)
        if a is None or b is None:
            missing = ours if a is None else theirs
            rows.append((name, f">= {want:.1f}x", f"not measured ({missing} is not in this run)", None))
        else:
            rows.append((name, f">= {want:.1f}x", f"{b / a:.2f}x ({a:.1f} vs {b:.1f} ms)", b / a >= want))

    ratio_row(
        "float32 decode, batch 1: llama.cpp F32 ms / engine float32 ms (parity)", "engine float32", "llama.cpp F32", 1.0
    )
    for dtype in ("bfloat16", "float16"):
        ratio_row(
            f"{dtype} decode, batch 1: llama.cpp F16 ms / engine {dtype} ms", f"engine {dtype}", "llama.cpp F16", 1.0
        )
    ratio_row("int8 decode, batch 1: llama.cpp Q8_0 ms / engine int8 ms", "engine int8", "llama.cpp Q8_0", 1.0)
    ratio_row(
        "int8 decode, batch 1: ONNX Runtime int8 ms / engine int8 ms", "engine int8", "onnxruntime dynamic int8", 1.0
    )
    s = share("engine int8")
    rows.append(
        (
            "int8 decode, batch 1: share of the bandwidth limit at its bytes",
            ">= 80%",
            f"{s:.0%}" if s else "not measured (engine int8 is not in this run)",
            s >= 0.8 if s else None,
        )
    )
    for side in side_rows(data):
        if side["key"].startswith("engine "):
            s8 = share(side["key"], "16,8")
            rows.append(
                (
                    f"batch 8 decode (16+128), engine {side['precision']}: share of the bandwidth limit",
                    ">= 70% (of max(bandwidth, arithmetic))",
                    f"{s8:.0%} of the bandwidth limit" if s8 else "not measured",
                    s8 >= 0.7 if s8 else None,
                )
            )
    f = data.get("fidelity", {}).get("sides", {})
    if "engine int8" in f and "llama.cpp Q8_0" in f:
        ref = f["engine float32"]["perplexity"]
        ours, theirs = f["engine int8"]["perplexity"] / ref - 1, f["llama.cpp Q8_0"]["perplexity"] / ref - 1
        rows.append(
            (
                "int8 perplexity change (held-out text) <= llama.cpp Q8_0's",
                f"<= {theirs:+.3%}",
                f"{ours:+.3%}",
                ours <= theirs,
            )
        )
    else:
        rows.append(
            (
                "int8 perplexity change (held-out text) <= llama.cpp Q8_0's",
                "llama.cpp Q8_0's change",
                "not measured (engine int8 or llama.cpp Q8_0 is not in this run)",
                None,
            )
        )
    lines = [
        "## Targets (issue 12, as ratios from this run)",
        "",
        "| target | wanted | measured | met |",
        "|---|---|---|---|",
    ]
    lines += [f"| {n} | {w} | {m} | {'–' if ok is None else ('yes' if ok else '**no**')} |" for n, w, m, ok in rows]
    return lines


def fmt_pools(pools: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in pools.items()) or "none"


def targets_section(data: dict) -> list[str]:
    model = data["models"][0]
    bw = data["roofline"]["bandwidth"]["bytes_per_s"]
    d = model["configs"]["16,1"]
    p = model["configs"]["512,1"]
    decode_ratio = d["torch"]["decode_ms"]["median"] / d["engine"]["decode_ms"]["median"]
    decode_share = 1e3 * d["bytes"]["weights"] / bw / d["engine"]["decode_ms"]["median"]
    prefill_ratio = p["engine"]["prefill_tok_s"]["median"] / p["torch"]["prefill_tok_s"]["median"]
    warm = data["startup"]["warm_first_token_s"]
    rss_ratio = data["startup"]["engine_peak_kib"] * 1024 / data["startup"]["weight_bytes"]
    rows = [
        (
            "decode 124M, 16+128, batch 1: PyTorch ms / engine ms",
            f">= {TARGETS['decode_ratio']}x",
            f"{decode_ratio:.2f}x",
            decode_ratio >= TARGETS["decode_ratio"],
        ),
        (
            "same, engine as a share of the bandwidth limit",
            f">= {TARGETS['decode_bandwidth']:.0%}",
            f"{decode_share:.0%}",
            decode_share >= TARGETS["decode_bandwidth"],
        ),
        (
            "prefill 124M, 512 tokens, batch 1: engine tok/s / PyTorch tok/s",
            f">= {TARGETS['prefill_ratio']}x",
            f"{prefill_ratio:.2f}x",
            prefill_ratio >= TARGETS["prefill_ratio"],
        ),
        (
            "second process (warm Numba cache), start to first token",
            f"<= {TARGETS['warm_first_token_s']} s",
            f"{warm:.2f} s",
            warm <= TARGETS["warm_first_token_s"],
        ),
        (
            "peak RSS / float32 weight bytes (124M)",
            f"<= {TARGETS['rss_ratio']}x",
            f"{rss_ratio:.2f}x ({data['startup']['engine_peak_kib'] * 1024 / data['startup']['file_bytes']:.2f}x the file size)",
            rss_ratio <= TARGETS["rss_ratio"],
        ),
    ]
    lines = ["## Targets (issue 4)", "", "| target | wanted | measured | met |", "|---|---|---|---|"]
    lines += [f"| {name} | {want} | {got} | {'yes' if ok else '**no**'} |" for name, want, got, ok in rows]
    return lines


def write_plot(data: dict, path: Path) -> None:
    """Two panels, a group of bars per (side, precision) on the 124M shape: decode ms per step at
    batch 1 and 8 (16-token prompts) with each side's bandwidth limit at batch 1, and prefill
    tokens/s for 16- and 512-token prompts at batch 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bw = data["roofline"]["bandwidth"]["bytes_per_s"]
    configs = data["models"][0]["configs"]
    N = data["args"]["new_tokens"]
    sides = [s for s in side_rows(data) if s["key"] in configs["16,1"]["sides"]]

    def median(config, key, field):
        got = configs[config]["sides"].get(key)
        return got[field]["median"] if got else 0

    labels = [s["label"].replace(", ", "\n", 1) for s in sides]
    x = list(range(len(sides)))
    w = 0.38
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(9, 1.5 * len(sides)), 8.5))
    top.bar([i - w / 2 for i in x], [median("16,1", s["key"], "decode_ms") for s in sides], w, label=f"batch 1, 16+{N}")
    top.bar([i + w / 2 for i in x], [median("16,8", s["key"], "decode_ms") for s in sides], w, label=f"batch 8, 16+{N}")
    limits = [1e3 * configs["16,1"]["bytes_by_side"][s["key"]]["weights"] / bw for s in sides]
    top.scatter(
        [i - w / 2 for i in x],
        limits,
        marker="_",
        s=500,
        color="black",
        zorder=3,
        label="bandwidth limit at the side's bytes per weight (batch 1)",
    )
    top.set_ylabel("decode ms per step (lower is better)")
    top.set_xticks(x, labels, fontsize=7)
    top.legend(fontsize=8)
    bottom.bar(
        [i - w / 2 for i in x], [median("16,1", s["key"], "prefill_tok_s") for s in sides], w, label="16-token prompt"
    )
    bottom.bar(
        [i + w / 2 for i in x], [median("512,1", s["key"], "prefill_tok_s") for s in sides], w, label="512-token prompt"
    )
    bottom.set_ylabel("prefill tokens/s, batch 1 (higher is better)")
    bottom.set_xticks(x, labels, fontsize=7)
    bottom.legend(fontsize=8)
    fig.suptitle(
        f"GPT-2 124M (synthetic weights), {data['machine']['cpu']}, {data['machine']['threads']} threads; medians of one run"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also the 355M (gpt2-medium) shape")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="threads for every side (default: all cores)"
    )
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip llama.cpp and ONNX Runtime")
    parser.add_argument("--no-fidelity", dest="fidelity", action="store_false", help="skip the fidelity measure")
    parser.add_argument(
        "--fidelity-model", type=Path, default=SHAKESPEARE, help="a trained model directory (default: %(default)s)"
    )
    parser.add_argument(
        "--fidelity-text", type=Path, default=TEMPEST, help="held-out text it was not trained on (default: %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side and configuration (default: 5)")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument(
        "--bandwidth-repeats", type=int, default=10, help="passes per bandwidth measure (the median is kept)"
    )
    parser.add_argument(
        "--no-generate", dest="generate", action="store_false", help="skip timing transformers' generate()"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DATA_DIR,
        help="where the synthetic checkpoints and the peers' GGUF and ONNX files are written (reused across runs)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    parser.add_argument(
        "--tie-tolerance",
        type=float,
        default=1e-3,
        help="a token disagreement where the reference's top-2 logits are this close is a near-tie, not a failure",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite RESULTS.md and the plot from the last run's results.json, measuring nothing",
    )
    args = parser.parse_args(argv)
    args.startup_prompt = 16
    if args.report_only:
        data = json.loads(args.out.with_name("results.json").read_text())
        write_plot(data, args.out.with_name("results.png"))
        write_report(data, args.out, "results.png")
        print(f"rewrote {args.out} from {args.out.with_name('results.json')}")
        return
    began = time.perf_counter()
    data = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load_start": os.getloadavg()[0],
        "machine": machine_info(args.threads),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    args.data_dir.mkdir(parents=True, exist_ok=True)
    presets = ["gpt2"] + (["gpt2-medium"] if args.full else [])
    model_dirs = {p: ensure_checkpoint(args.data_dir, p) for p in presets}

    env = worker_env()
    sides = ENGINE + [TORCH] + (PEERS if args.peers else [])
    data["sides"] = [
        {
            "key": s.key,
            "worker": s.worker,
            "precision": s.precision,
            "label": s.label,
            "bytes_per_weight": s.bytes_per_weight,
            "float32": s.float32,
        }
        for s in sides
    ]
    missing = data["missing"] = {}  # side key -> why it is not in the run
    workers = start_workers(sides, args.threads, env, missing)
    try:
        engine, torch = workers[REFERENCE.key], workers[TORCH.key]
        print("roofline: bandwidth and matmul FLOP/s", flush=True)
        data["roofline"] = {
            "bandwidth": engine("bandwidth", repeats=args.bandwidth_repeats),
            "engine_flops": engine("matmul_flops")["flops"],
            "torch_flops": torch("matmul_flops")["flops"],
        }
        data["models"] = []
        for preset in presets:
            result = measure_model(preset, model_dirs[preset], workers, sides, args, missing)
            data["threads"] = {
                "engine": result["info"][REFERENCE.key],
                "torch": result["info"][TORCH.key],
                "sides": result["info"],
            }
            data["models"].append(result)
        if args.fidelity:
            print("fidelity", flush=True)
            data["fidelity"] = measure_fidelity(workers, sides, args, missing)
    finally:
        for worker in workers.values():
            worker.close()

    print("start-up and memory", flush=True)
    numba_cache = Path(tempfile.mkdtemp(prefix="gpt2-engine-numba-cache-"))
    try:
        N, P = args.new_tokens, args.startup_prompt
        runs = [
            (
                "engine, cold Numba cache",
                startup_runs("engine", model_dirs["gpt2"], args.threads, env, numba_cache, P, N),
            )
        ]
        warm = [startup_runs("engine", model_dirs["gpt2"], args.threads, env, numba_cache, P, N) for _ in range(3)]
        runs += [(f"engine, warm Numba cache (run {i + 1} of 3)", w) for i, w in enumerate(warm)]
        peaks = {REFERENCE.key: max(w["peak_kib"] for w in warm)}  # side key -> peak RSS KiB of a fresh process
        for side in sides:
            if side == REFERENCE or side.key in missing:
                continue
            try:
                run = startup_runs(
                    side.worker,
                    model_file(side, model_dirs["gpt2"], args.data_dir, env),
                    args.threads,
                    env,
                    numba_cache,
                    P,
                    N,
                    side.worker_precision(),
                )
            except SideFailed as error:
                missing[side.key] = f"start-up run failed: {error}"
                continue
            runs.append(("PyTorch + transformers" if side == TORCH else side.label, run))
            peaks[side.key] = run["peak_kib"]
        for preset in presets[1:]:  # --full: the larger shape too, where the fixed runtime cost weighs less
            run = startup_runs("engine", model_dirs[preset], args.threads, env, numba_cache, P, N)
            run["weight_bytes"] = weight_bytes(preset_config(preset))
            runs.append((f"engine, {preset}, warm Numba cache", run))
    finally:
        shutil.rmtree(numba_cache, ignore_errors=True)
    data["startup"] = {
        "runs": runs,
        "peak_kib": peaks,
        "warm_first_token_s": statistics.median(w["first_token_s"] for w in warm),
        "engine_peak_kib": max(w["peak_kib"] for w in warm),
        "weight_bytes": weight_bytes(preset_config("gpt2")),
        "file_bytes": (model_dirs["gpt2"] / "model.safetensors").stat().st_size,
    }
    data["load_end"] = os.getloadavg()[0]
    data["elapsed_min"] = (time.perf_counter() - began) / 60

    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = out.with_name("results.png")
    out.with_name("results.json").write_text(json.dumps(data, indent=1))
    write_plot(data, plot)
    write_report(data, out, plot.name)
    print(f"wrote {out}, {plot} and {out.with_name('results.json')}")
    bad = [
        (f"{m['preset']} {k}", side, c)
        for m in data["models"]
        for k, e in m["configs"].items()
        for side, c in e["checks"].items()
        if c["verdict"] == "MISMATCH"
    ]
    if bad:
        raise SystemExit(f"benchmark: float32 greedy tokens differ from the engine's: {bad}")


if __name__ == "__main__":
    main()
