"""The precisions a model's weights can be kept in memory at, and which weights they apply to.

A decode step reads every weight once, so its time is the bytes per weight over the memory's
bandwidth (docs/speed.md). The precision chooses those bytes for the five kinds of matrix that
hold nearly all of GPT-2's parameters: each block's `attn.c_attn`, `attn.c_proj`, `mlp.c_fc`,
`mlp.c_proj`, and the token embeddings `wte`, which are also the (tied) output layer. The rest
(biases, LayerNorm weights, the position embeddings `wpe`: 0.1% of GPT-2 124M's bytes besides
wpe's 3 MB) stays float32 at every precision. The arithmetic is float32 at every precision: the
kernels widen each weight to float32 in registers and accumulate in float32 (kernels/formats.py).

    float32   4 bytes per weight   the checkpoint's values (a 16-bit file is widened exactly)
    bfloat16  2 bytes              float32 with the low 16 bits of the mantissa rounded away
                                   (8 bits of precision, float32's range)
    float16   2 bytes              IEEE half (11 bits of precision, values up to 65504)
    int8      36/32 bytes          q8_0: blocks of 32 weights along the input dimension, each
                                   32 int8 values and one float32 scale (llama.cpp's Q8_0, whose
                                   scale is float16: 34/32)

A bfloat16 or float16 file loaded at its own precision keeps its values as they are; any other
combination rounds (float32 to 16 bits, to nearest even) or quantizes once, at load time.
"""

from __future__ import annotations

import re

from ..base.errors import InputError

DTYPES = ("float32", "bfloat16", "float16", "int8")
DEFAULT_DTYPE = "float32"

BYTES_PER_WEIGHT = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "int8": 36 / 32}  # int8: a float32 scale per 32

# What each precision costs and gives, for `--dtype`'s help and error messages (figures: docs/speed.md).
DESCRIPTIONS = {
    "float32": "4 bytes per weight, exact (the default)",
    "bfloat16": "2 bytes, ~2x faster decoding, 8-bit mantissa (a bfloat16 file keeps its values)",
    "float16": "2 bytes, ~2x faster decoding, 11-bit mantissa (a float16 file keeps its values)",
    "int8": "36/32 bytes (q8_0: blocks of 32 int8 weights with a float32 scale), ~3x faster decoding, perplexity +0.1% or less",
}

# Checkpoint names of the matrices a precision applies to (the published spelling).
MATRIX_NAME = re.compile(
    r"^(wte\.weight|lm_head\.weight|h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight)$"
)


def check_dtype(dtype) -> str:
    """`dtype` if it names a precision the engine keeps weights in, else an InputError listing them."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return dtype
    shown = repr(dtype) if isinstance(dtype, str) else type(dtype).__name__
    raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {shown}")


def is_matrix(name: str) -> bool:
    """Whether the checkpoint tensor `name` is one of the matrices the precision applies to."""
    return MATRIX_NAME.match(name) is not None


def input_axis(name: str) -> int:
    """The axis of matrix `name` that a product sums over (where q8_0's blocks run): axis 0 of a
    Conv1D weight [in, out], axis 1 of the embedding table [V, C] (the output layer is x @ wte.T)."""
    return 1 if name in ("wte.weight", "lm_head.weight") else 0
