"""The `gpt2` command: one module per command, each a pair `add_parser(subparsers)` (its flags) and
`run(args)` (the work), over the `GPT2` facade.

    gpt2 generate "Once upon a time" --model gpt2 --max-new-tokens 40
    gpt2 info gpt2
    gpt2 tokenize "Hello, world!"
    gpt2 perplexity FILE --model DIR          gpt2 score "some text" --model DIR
    gpt2 explain "ROMEO:" --model DIR --max-new-tokens 20 --output romeo.npz --html romeo.html
    gpt2 serve --model DIR --port 8000        (OpenAI's completions API; docs/serving.md)

A user error (a `GPT2Error`) prints one line, `gpt2: error: ...`, and exits with status 2, as
argparse does for bad arguments; no traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..base.errors import GPT2Error
from . import explain, generate, info, scoring, serve, tokenize
from .common import apply_threads

COMMANDS = (generate, info, tokenize, scoring, explain, serve)  # in the order `gpt2 --help` lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpt2", description="GPT-2 inference on the CPU with NumPy and Numba.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        apply_threads(args)
        return args.run(args)
    except GPT2Error as error:
        print(f"gpt2: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
