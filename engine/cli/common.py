"""What the commands share: the --model, --dtype and --threads flags, loading the model, reading text."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import BinaryIO

from ..base.checks import format_bytes, memory_limit
from ..base.errors import GPT2Error
from ..base.files import decode_utf8, finite_or_none
from ..base.threads import AUTO, set_threads
from ..gpt2 import GPT2
from ..state.precision import DESCRIPTIONS, DTYPES

DEFAULT_MODEL = "gpt2"


def add_model_argument(parser, positional: bool = False, dtype: bool = True) -> None:
    """--model (or a positional MODEL) and, unless dtype=False, --dtype: what `load_model` takes."""
    help = "model directory, published name (gpt2, gpt2-medium, ...) or size (124M, 355M, 774M, 1558M); default: gpt2"
    if positional:
        parser.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=help)
    else:
        parser.add_argument("--model", "-m", default=DEFAULT_MODEL, help=help)
    if dtype:
        add_dtype_argument(parser)


def add_dtype_argument(parser) -> None:
    choices = "; ".join(f"{name}: {what}" for name, what in DESCRIPTIONS.items())
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help=f"precision of the weight matrices in memory, arithmetic in float32 at each ({choices.replace('%', '%%')}). "
        "Default: float32, or int8 for a directory written by `gpt2 quantize` (docs/speed.md)",
    )


def threads_value(text: str) -> int | str:
    """--threads: a whole number, or "auto"."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number or 'auto', got {text!r}") from None


def add_threads_argument(parser) -> None:
    parser.add_argument(
        "--threads",
        type=threads_value,
        default=None,
        metavar="N|auto",
        help="threads for Numba kernels and BLAS: a number, or auto (all cores, each decode step on one "
        "thread while that is faster, as on a busy machine). Default: $GPT2_ENGINE_THREADS, else auto",
    )


def apply_threads(args) -> None:
    if getattr(args, "threads", None) is not None:
        set_threads(args.threads)


def load_model(name: str, dtype: str | None = None) -> GPT2:
    """The model of --model at --dtype (None: float32, or int8 for a `gpt2 quantize` directory)."""
    return GPT2.from_pretrained(name, dtype=dtype)


def argument_text(value: str, name: str) -> str:
    """A command-line argument as text: undecodable bytes in argv arrive as lone surrogates, so they
    are given back as bytes and refused with the offset of the first bad one."""
    return decode_utf8(os.fsencode(value), name)


# Bytes of memory per byte of a text while it is scored: the bytes, the str, its tokens as Python ints
# and as int64 (GPT-2 makes about one token per 4 bytes of English).
MEMORY_PER_TEXT_BYTE = 20


def read_all(path: str, name: str, cannot_read: str) -> bytes:
    """Every byte of a file, or of stdin for "-", read a MiB at a time and refused (naming `name`)
    once there is more than memory allows for a text the command then tokenizes. A read that fails
    is `cannot_read (the reason)`."""
    limit = memory_limit() // MEMORY_PER_TEXT_BYTE
    chunks, total = [], 0
    try:
        with contextlib.ExitStack() as stack:
            stream: BinaryIO
            if path != "-":
                stream = stack.enter_context(open(path, "rb"))
            elif sys.stdin is None:  # the process was started with stdin closed
                raise GPT2Error(f"{cannot_read} (stdin is closed)")
            else:
                stream = sys.stdin.buffer
            while chunk := stream.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise GPT2Error(
                        f"{name}: more than {format_bytes(limit)} of text, more than memory allows to score "
                        f"({MEMORY_PER_TEXT_BYTE} bytes of memory per byte of text)"
                    )
                chunks.append(chunk)
    except (OSError, ValueError) as error:  # ValueError: a stream closed under us
        raise GPT2Error(f"{cannot_read} ({getattr(error, 'strerror', None) or error})") from None
    return b"".join(chunks)


def read_text_file(path: str) -> str:
    """The text of a file ("-": stdin), its bytes decoded as UTF-8 exactly (no newline translation)."""
    data = read_all(path, path, f"{path}: cannot read the file")
    if not data:
        raise GPT2Error(f"{path}: the file is empty")
    return decode_utf8(data, path)


def json_line(value, indent: int | None = None) -> str:
    """value as JSON that any parser reads: NaN and infinities (an infinite perplexity) become null."""
    return json.dumps(finite_or_none(value), indent=indent, allow_nan=False)
