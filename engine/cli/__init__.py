"""The `gpt2` command: one module per command, each a pair `add_parser(subparsers)` (its flags) and
`run(args)` (the work), over the `GPT2` facade.

    gpt2 generate "Once upon a time" --model gpt2 --max-new-tokens 40
    gpt2 info gpt2
    gpt2 tokenize "Hello, world!"
    gpt2 perplexity FILE --model DIR          gpt2 score "some text" --model DIR
    gpt2 explain "ROMEO:" --model DIR --max-new-tokens 20 --output romeo.npz --html romeo.html
    gpt2 report romeo.npz --html romeo.html
    gpt2 batch generate prompts.jsonl out.jsonl --model DIR --workers 2   (or --ray; batch score)
    gpt2 quantize DIR OUT                     gpt2 generate "ROMEO:" --model OUT   (int8 weights)
    gpt2 serve --model DIR --port 8000        (OpenAI's completions API; docs/serving.md)

A user error (a `GPT2Error`) prints one line, `gpt2: error: ...`, and exits with status 2, as
argparse does for bad arguments; no traceback. Ctrl-C prints `gpt2: interrupted` and exits with
130. Everything a command prints goes through one guarded stdout (`engine.base.files`): a failed
write is a user error (`gpt2: error: cannot write to stdout (No space left on device)`), and a
reader that went away (`gpt2 tokenize ... | head -1`) ends the command quietly with status 141, as
a Unix tool killed by SIGPIPE reports to the shell. docs/errors.md lists the exit statuses.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from ..base.errors import GPT2Error
from ..base.files import guarded_stdout, silence_stdout
from . import batch, explain, generate, info, quantize, report, scoring, serve, tokenize
from .common import apply_threads

# In the order `gpt2 --help` lists them.
COMMANDS = (generate, info, tokenize, scoring, explain, report, quantize, batch, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpt2", description="GPT-2 inference on the CPU with NumPy and Numba.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


EXIT_USER_ERROR = 2  # as argparse's usage errors
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # 141: what a shell reports for a tool that SIGPIPE ended
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def main(argv=None) -> int:
    try:
        with guarded_stdout():
            args = build_parser().parse_args(argv)
            apply_threads(args)
            return args.run(args)
    except BrokenPipeError:  # the reader of stdout is gone: nothing to tell it, nobody to tell
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except GPT2Error as error:
        say(f"gpt2: error: {error}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        say("gpt2: interrupted")
        return EXIT_INTERRUPTED


def say(line: str) -> None:
    """A line on stderr, if stderr can still take one."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        print(line, file=sys.stderr, flush=True)
