"""gpt2 report: a saved explain result (gpt2 explain --output, Explanation.save) as an explorable page."""

from __future__ import annotations

from ..analysis.explain import load_results
from ..analysis.report import page_bytes
from ..base.files import check_destination, write_atomically
from .explain import add_attention_arguments


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="turn a saved explain result into an explorable HTML page",
        description="Write the explorable page of a result saved by gpt2 explain --output (or Explanation.save): "
        "one self-contained HTML file that fetches nothing.",
    )
    p.add_argument("result", metavar="RESULT.npz", help="a result written by gpt2 explain --output")
    p.add_argument("--html", metavar="FILE", required=True, help="write the page to FILE")
    add_attention_arguments(p, "put on the page")
    p.set_defaults(run=run)


def run(args) -> int:
    check_destination(args.html, f"--html {args.html}")
    results = load_results(args.result)
    page = page_bytes(
        results,
        attention=args.attention or "auto",
        attention_layers=args.attention_layers,
        attention_heads=args.attention_heads,
    )
    path = write_atomically(args.html, lambda out: out.write(page))
    print(f"wrote {path} ({path.stat().st_size:,} bytes; open it in a browser)")
    return 0
