"""A GPT-2 checkpoint in Hugging Face layout -> ONNX with past key values, float32 and dynamic int8.

    python -m benchmarks.onnx_export MODEL_DIR OUT_DIR [--all-logits]

Writes OUT_DIR/model.onnx (float32) and OUT_DIR/model.int8.onnx. What a user of ONNX Runtime does
with a Hugging Face GPT-2, by hand instead of through `optimum` (optimum-onnx does not install
beside transformers 5):

- transformers' `GPT2LMHeadModel` (float32, eager attention: the sdpa path's tracing-time choices
  are not written to the graph) is wrapped so that the cache is flat tensors, and exported by
  `torch.onnx.export` (the dynamo exporter, opset 18) with dynamic batch, new-token and past
  lengths. Inputs: `input_ids` int64 [B, T], `attention_mask` int64 [B, S + T] (all ones here),
  `past.{i}.key` / `past.{i}.value` float32 [B, H, S, D] (S = 0 for the prompt pass). Outputs:
  `logits` float32 [B, 1, V] (the last position only, as the engine's `logits_to_keep=1`; with
  `--all-logits`, [B, T, V], for the fidelity measure), `present.{i}.key` / `.value` [B, H, S + T, D].
- int8: `onnxruntime.quantization.quantize_dynamic(model.onnx, model.int8.onnx)` with its defaults
  (weights int8 per tensor; activations quantized per call at run time, to uint8), the usual
  one-line recipe. It quantizes the MatMul weights it finds as initializers.
The exported graph is checked against transformers (prompt pass and one step through the cache)
before it is kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OPSET = 18


def cache_names(n_layer: int, prefix: str) -> list[str]:
    """['past.0.key', 'past.0.value', 'past.1.key', ...] (or 'present.' ...), the graph's cache order."""
    return [f"{prefix}.{i}.{kind}" for i in range(n_layer) for kind in ("key", "value")]


def export_onnx(model_dir: str | Path, out_dir: str | Path, all_logits: bool = False) -> dict:
    """Export `model_dir` to `out_dir`/model.onnx and quantize it to model.int8.onnx. Returns the paths."""
    import torch
    from transformers import DynamicCache, GPT2LMHeadModel

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    config = model.config
    L, H, D = config.n_layer, config.n_head, config.n_embd // config.n_head

    class WithPast(torch.nn.Module):
        """GPT2LMHeadModel with its cache as 2 * n_layer flat tensors in and out."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, *past):
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(L)], config=config)
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                cache=cache,
                use_cache=True,
                logits_to_keep=0 if all_logits else 1,
            )
            presents = []
            for layer in out.cache.layers:
                presents += [layer.keys, layer.values]
            return (out.logits, *presents)

    wrapper = WithPast().eval()
    B, S, T = 2, 3, 4  # example shapes; all three are dynamic in the graph
    ids = torch.randint(0, config.vocab_size, (B, T))
    mask = torch.ones(B, S + T, dtype=torch.int64)
    past = [torch.randn(B, H, S, D) for _ in range(2 * L)]
    batch, new, past_len, total = (torch.export.Dim(name) for name in ("batch", "new_tokens", "past", "total"))
    dynamic = (
        {0: batch, 1: new},
        {0: batch, 1: total},  # past + new tokens
        tuple({0: batch, 2: past_len} for _ in range(2 * L)),  # *past arrives as one tuple
    )
    path = out_dir / "model.onnx"
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            (ids, mask, *past),
            dynamo=True,
            opset_version=OPSET,
            dynamic_shapes=dynamic,
            input_names=["input_ids", "attention_mask", *cache_names(L, "past")],
            output_names=["logits", *cache_names(L, "present")],
            external_data=False,
        )
    program.save(str(path), external_data=False)
    check_against_torch(path, model, all_logits)

    from onnxruntime.quantization import quantize_dynamic

    int8_path = out_dir / "model.int8.onnx"
    quantize_dynamic(str(path), str(int8_path))
    return {"float32": str(path), "int8": str(int8_path)}


def check_against_torch(path: Path, model, all_logits: bool) -> None:
    """The graph's logits and presents against transformers': a 5-token prompt for 2 rows, then one
    token through the cache (the two ways the benchmark calls it). Raises if they differ."""
    import onnxruntime as ort
    import torch

    config = model.config
    L, H, D = config.n_layer, config.n_head, config.n_embd // config.n_head
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, config.vocab_size, (2, 5))
    step = rng.integers(0, config.vocab_size, (2, 1))
    feeds = {"input_ids": prompt, "attention_mask": np.ones((2, 5), np.int64)}
    feeds |= {name: np.zeros((2, H, 0, D), np.float32) for name in cache_names(L, "past")}
    first = session.run(None, feeds)
    feeds = {"input_ids": step, "attention_mask": np.ones((2, 6), np.int64)}
    feeds |= dict(zip(cache_names(L, "past"), first[1:]))
    second = session.run(None, feeds)
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(prompt), use_cache=True)
        want_first = out.logits.numpy() if all_logits else out.logits[:, -1:].numpy()
        want_second = model(input_ids=torch.from_numpy(step), cache=out.cache, use_cache=True).logits.numpy()
    for name, got, want in (("prompt pass", first[0], want_first), ("step through the cache", second[0], want_second)):
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-3, rtol=1e-3):
            error = np.abs(got - want).max() if got.shape == want.shape else f"shape {got.shape} vs {want.shape}"
            raise RuntimeError(f"{path}: the ONNX graph's {name} logits differ from transformers' ({error})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--all-logits", action="store_true", help="logits for every position (fidelity), not just the last"
    )
    args = parser.parse_args(argv)
    for precision, path in export_onnx(args.model_dir, args.out_dir, args.all_logits).items():
        print(f"{precision}: {path} ({Path(path).stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
