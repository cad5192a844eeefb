"""Seeded random GPT-2 checkpoints, written exactly as Hugging Face publishes the real ones.

The OpenAI weights cannot be downloaded everywhere (not in this project's CI), so tests and
benchmarks make stand-ins: a `config.json` with the published fields and a `model.safetensors` with
the published tensor names (no `transformer.` prefix), Conv1D [in, out] layouts, the `h.{i}.attn.bias`
causal-mask buffers a loader must skip, and no `lm_head.weight` (it is tied to `wte`). The values
are random but shaped like a trained network's (unit-scale attention scores, logits spread over
several units), so attention is neither uniform nor one-hot and greedy choices are well separated.

    python -m engine.state.synthetic DIR --preset gpt2 [--layers 2] [--dtype bfloat16] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from safetensors import TensorSpec, serialize_file

from ..base.config import GPT2Config
from .weights import parameter_shapes

# The published shapes: (n_layer, n_head, n_embd); all have n_positions 1024 and vocab 50257.
PRESETS = {
    "gpt2": (12, 12, 768),
    "gpt2-medium": (24, 16, 1024),
    "gpt2-large": (36, 20, 1280),
    "gpt2-xl": (48, 25, 1600),
    "distilgpt2": (6, 12, 768),
}
DTYPES = ("float32", "float16", "bfloat16")


def preset_config(preset: str, n_layer: int | None = None, **overrides) -> GPT2Config:
    """The config of a published model, optionally with fewer layers or other fields."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    layers, heads, width = PRESETS[preset]
    fields = dict(n_layer=n_layer or layers, n_head=heads, n_embd=width, n_positions=1024, vocab_size=50257)
    return GPT2Config(**(fields | overrides))


def random_parameters(config: GPT2Config, seed: int = 0) -> dict[str, np.ndarray]:
    """Float32 weights for every parameter of `config`, drawn in name order from one seeded stream."""
    rng = np.random.default_rng(seed)
    C, I = config.n_embd, config.mlp_width
    # Standard deviations that keep activations of unit scale whatever the width.
    scale = {
        "wte.weight": 3.0 / math.sqrt(C),  # logits ~ N(0, 3^2): a spread like a trained model's
        "wpe.weight": 0.5 / math.sqrt(C),
        "attn.c_attn.weight": 1.0 / math.sqrt(C),  # q.k / sqrt(D) ~ N(0, 1)
        "attn.c_proj.weight": 0.5 / math.sqrt(C),
        "mlp.c_fc.weight": 1.0 / math.sqrt(C),
        "mlp.c_proj.weight": 0.5 / math.sqrt(I),
        "lm_head.weight": 3.0 / math.sqrt(C),
    }
    params = {}
    for name, shape in parameter_shapes(config).items():
        kind = name.split(".", 2)[-1] if name.startswith("h.") else name
        if kind.startswith(("ln_", "ln_f")) and name.endswith(".weight"):
            values = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
        elif name.endswith(".bias"):
            values = 0.02 * rng.standard_normal(shape, dtype=np.float32)
        else:
            values = np.float32(scale[kind]) * rng.standard_normal(shape, dtype=np.float32)
        params[name] = values.astype(np.float32)
    return params


def float32_to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even), as uint16 bit patterns."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    round_bit = (bits >> 16) & 1
    return ((bits + 0x7FFF + round_bit) >> 16).astype(np.uint16)


def _tensor_spec(array: np.ndarray, dtype: str) -> tuple[TensorSpec, np.ndarray]:
    """The safetensors description of `array` stored as `dtype`, and the buffer it points to."""
    if dtype == "bfloat16":
        buffer = float32_to_bfloat16_bits(array)
    else:
        buffer = np.ascontiguousarray(array, dtype=dtype)
    spec = TensorSpec(dtype=dtype, shape=list(array.shape), data_ptr=buffer.ctypes.data, data_len=buffer.nbytes)
    return spec, buffer


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str, metadata: dict | None = None) -> None:
    buffers = []  # keep every buffer alive until the file is written
    specs = {}
    for name, array in tensors.items():
        specs[name], buffer = _tensor_spec(array, dtype)
        buffers.append(buffer)
    serialize_file(specs, str(path), metadata=metadata or {"format": "pt"})


def published_config_json(config: GPT2Config) -> dict:
    """config.json as Hugging Face publishes it for GPT-2 (dropout and summary fields included)."""
    return {
        "activation_function": config.activation_function,
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "resid_pdrop": 0.1,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id if not config.extra_eos_token_ids else list(config.eos_token_ids),
        "initializer_range": 0.02,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "model_type": "gpt2",
        "n_ctx": config.n_positions,
        "n_embd": config.n_embd,
        "n_head": config.n_head,
        "n_inner": config.n_inner,
        "n_layer": config.n_layer,
        "n_positions": config.n_positions,
        "scale_attn_weights": config.scale_attn_weights,
        "scale_attn_by_inverse_layer_idx": config.scale_attn_by_inverse_layer_idx,
        "tie_word_embeddings": config.tie_word_embeddings,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "vocab_size": config.vocab_size,
    }


def write_checkpoint(
    out_dir: str | Path,
    config: GPT2Config,
    *,
    dtype: str = "float32",
    seed: int = 0,
    prefix: bool = False,
    mask_buffers: bool = True,
    shards: int = 1,
    params: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write a checkpoint of `config` into `out_dir`; returns the directory.

    dtype: "float32", "float16" or "bfloat16" for the stored tensors. prefix: spell names as
    `save_pretrained` does (`transformer.h.0...`). mask_buffers: include the published files'
    `h.{i}.attn.bias` [1, 1, P, P] buffers. shards > 1: split into `model-0000k-of-0000n.safetensors`
    with a `model.safetensors.index.json`. params: the float32 weights (default: `random_parameters`).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = params if params is not None else random_parameters(config, seed)
    tensors: dict[str, np.ndarray] = {}
    for name, array in params.items():
        tensors[name if (not prefix or name == "lm_head.weight") else f"transformer.{name}"] = array
    if mask_buffers:
        P = config.n_positions
        causal = np.tril(np.ones((P, P), dtype=np.float32))[None, None]  # [1, 1, P, P]
        for i in range(config.n_layer):
            tensors[f"{'transformer.' if prefix else ''}h.{i}.attn.bias"] = causal

    if shards == 1:
        write_safetensors(out_dir / "model.safetensors", tensors, dtype)
    else:
        names = list(tensors)
        groups = [names[k::shards] for k in range(shards)]
        weight_map: dict[str, str] = {}
        total = 0
        for k, group in enumerate(groups, start=1):
            file_name = f"model-{k:05d}-of-{shards:05d}.safetensors"
            write_safetensors(out_dir / file_name, {n: tensors[n] for n in group}, dtype)
            weight_map |= dict.fromkeys(group, file_name)
            total += sum(tensors[n].size for n in group) * (4 if dtype == "float32" else 2)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (out_dir / "config.json").write_text(json.dumps(published_config_json(config), indent=2))
    return out_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.state.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--preset", default="gpt2", choices=list(PRESETS))
    parser.add_argument("--layers", type=int, default=None, help="fewer layers than the preset (same widths)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix", action="store_true", help="name tensors transformer.* as save_pretrained does")
    parser.add_argument("--shards", type=int, default=1)
    args = parser.parse_args(argv)
    config = preset_config(args.preset, args.layers)
    out = write_checkpoint(
        args.out_dir, config, dtype=args.dtype, seed=args.seed, prefix=args.prefix, shards=args.shards
    )
    print(f"wrote {out} ({args.preset}, {config.n_layer} layers, {args.dtype})")


if __name__ == "__main__":
    main()
