"""gpt2 explain: generate, then look inside (engine/analysis/: saliency, logit lens, attention,
neuron factors)."""

from __future__ import annotations

from ..analysis.factors import DEFAULT_ITERATIONS, check_factor_options
from ..analysis.lens import check_top_k
from ..analysis.saliency import DEFAULT_STEPS, METHODS, check_method, check_steps
from ..base.checks import check_integer
from ..base.files import check_destination
from .common import add_model_argument, add_threads_argument, load_model


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="generate, then look inside: saliency, logit lens, attention, neuron factors"
    )
    p.add_argument("prompt", help="the prompt")
    add_model_argument(p)
    p.add_argument(
        "--max-new-tokens", "-n", type=int, default=20, help="tokens to generate (default: 20; 0: the prompt alone)"
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write the whole result to FILE (.npz with JSON metadata)")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="write an explorable page to FILE: one self-contained HTML file (saliency, neuron factors, logit lens, attention)",
    )
    p.add_argument(
        "--methods", default=",".join(METHODS), help=f"saliency methods, comma-separated (default: {','.join(METHODS)})"
    )
    p.add_argument(
        "--of",
        choices=("logprob", "prob"),
        default="logprob",
        help="attribute the log-probability (default) or the probability (Ecco's choice) of each token",
    )
    p.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"integrated-gradients steps (default: {DEFAULT_STEPS})"
    )
    p.add_argument("--top-k", type=int, default=5, help="logit-lens candidates per layer and position (default: 5)")
    p.add_argument("--factors", type=int, default=10, help="neuron factors per layer set (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the factorisation's random start (default: 0)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar (it is shown only on a terminal anyway)")
    add_threads_argument(p)
    p.set_defaults(run=run)


def check_explain_options(args) -> None:
    """Refuse bad options before the model is loaded: the library's own checks, naming the flags."""
    for method in args.methods.split(","):
        check_method(method, "--methods")
    check_steps(args.steps, "--steps")
    check_factor_options(args.factors, DEFAULT_ITERATIONS, "--factors")
    check_integer("--max-new-tokens", args.max_new_tokens, 0)
    check_integer("--top-k", args.top_k, 1)  # its upper limit, the vocabulary, is known once the model is loaded


def run(args) -> int:
    for option, destination in (("--output", args.output), ("--html", args.html)):
        if destination is not None:  # refuse an unwritable destination before the long computation
            check_destination(destination, f"{option} {destination}")
    check_explain_options(args)
    model = load_model(args.model)
    check_top_k(args.top_k, model.config.vocab_size, "--top-k")
    result = model.explain(
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        methods=args.methods.split(","),
        of=args.of,
        steps=args.steps,
        top_k=args.top_k,
        factors=args.factors,
        seed=args.seed,
        progress=False if args.quiet else None,
    )
    print(result.summary())
    if args.output is not None:
        path = result.save(args.output)
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if args.html is not None:
        path = result.save_html(args.html)
        print(f"wrote {path} ({path.stat().st_size:,} bytes; open it in a browser)")
    return 0
