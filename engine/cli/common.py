"""What the commands share: the --model and --threads flags, loading the model, reading text."""

from __future__ import annotations

import json
import math
import os
import sys

from ..base.errors import GPT2Error
from ..base.files import decode_utf8
from ..base.threads import set_threads
from ..gpt2 import GPT2

DEFAULT_MODEL = "gpt2"


def add_model_argument(parser, positional: bool = False) -> None:
    help = "model directory, published name (gpt2, gpt2-medium, ...) or size (124M, 355M, 774M, 1558M); default: gpt2"
    if positional:
        parser.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=help)
    else:
        parser.add_argument("--model", "-m", default=DEFAULT_MODEL, help=help)


def add_threads_argument(parser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for Numba kernels and BLAS (default: all cores, or $GPT2_ENGINE_THREADS)",
    )


def apply_threads(args) -> None:
    if getattr(args, "threads", None) is not None:
        set_threads(args.threads)


def load_model(name: str) -> GPT2:
    return GPT2.from_pretrained(name)


def argument_text(value: str, name: str) -> str:
    """A command-line argument as text: undecodable bytes in argv arrive as lone surrogates, so they
    are given back as bytes and refused with the offset of the first bad one."""
    return decode_utf8(os.fsencode(value), name)


def read_text_file(path: str) -> str:
    """The text of a file ("-": stdin), its bytes decoded as UTF-8 exactly (no newline translation)."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as file:
                data = file.read()
    except OSError as error:
        raise GPT2Error(f"{path}: cannot read the file ({error.strerror or error})") from None
    if not data:
        raise GPT2Error(f"{path}: the file is empty")
    return decode_utf8(data, path)


def finite_or_none(value):
    """value with every float that JSON cannot hold (NaN, infinity) replaced by None (null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def json_line(value, indent: int | None = None) -> str:
    """value as JSON that any parser reads: NaN and infinities (an infinite perplexity) become null."""
    return json.dumps(finite_or_none(value), indent=indent, allow_nan=False)
