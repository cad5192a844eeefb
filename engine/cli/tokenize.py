"""gpt2 tokenize: the token ids and pieces of a text."""

from __future__ import annotations

from ..state.tokenizer import gpt2_tokenizer
from .common import argument_text, json_line


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("tokenize", help="show the token ids and pieces of a text")
    p.add_argument("text", help="the text to tokenize")
    p.add_argument("--json", action="store_true", help="print ids and pieces as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    tokenizer = gpt2_tokenizer()
    ids = tokenizer.encode(argument_text(args.text, "TEXT"))  # invalid UTF-8 refused, as generate does
    pieces = tokenizer.pieces(ids, errors="backslashreplace")
    if args.json:
        print(json_line({"ids": ids, "pieces": pieces}))
        return 0
    for i, piece in zip(ids, pieces):
        print(f"{i:>6}  {piece!r}")
    print(f"{len(ids)} tokens")
    return 0
