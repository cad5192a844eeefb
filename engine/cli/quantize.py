"""gpt2 quantize: write a model's matrices once as int8 (q8_0), into a new model directory that
`--model` and `GPT2.from_pretrained` then load directly (the layout: engine/state/quantized.py)."""

from __future__ import annotations

from pathlib import Path

from ..state.formats import file_arrays
from ..state.quantized import check_new_directory, file_state, write_quantized_directory
from ..state.weights import state_dict_of
from .common import load_model


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="write a model with int8 (q8_0) weights, to load directly",
        description="Quantize a model's weight matrices (each block's attention and MLP weights, and the "
        "tied token embeddings / output layer) to q8_0: blocks of 32 int8 weights along the input dimension, "
        "one float32 scale each (36/32 bytes per weight instead of 4). Writes OUT, a new model "
        "directory (config.json, the tokenizer files, model.safetensors) that --model OUT loads as int8. "
        "Biases, LayerNorm weights and the position embeddings stay float32.",
    )
    p.add_argument("model", metavar="DIR", help="the model to quantize: a directory or a published name")
    p.add_argument("out", metavar="OUT", help="the new model directory (must not exist, or be empty)")
    p.set_defaults(run=run)


def run(args) -> int:
    out = check_new_directory(args.out)  # before the model is read
    model = load_model(args.model, "int8")
    tensors = file_state(state_dict_of(model.weights, model.config), file_arrays)
    write_quantized_directory(out, Path(str(model.source)), tensors)
    size = (out / "model.safetensors").stat().st_size
    print(f"wrote {out} (q8_0, {size:,} bytes of weights; load it with --model {out})")
    return 0
