"""gpt2 explain: generate (or take a given continuation), then look inside (engine/analysis/:
saliency, contrast, logit lens, attention, neuron factors).

Everything is checked before the model is loaded or anything is computed: the options, the
prompts' UTF-8, the destinations. The outputs are rendered in memory first and written together:
both files (--output and --html) or neither.
"""

from __future__ import annotations

from ..analysis.explain import (
    ATTENTION_CHOICES,
    DEFAULT_ALTERNATIVES,
    DEFAULT_MAX_NEW_TOKENS,
    MAX_ALTERNATIVES,
    Explanations,
)
from ..analysis.factors import DEFAULT_ITERATIONS, check_factor_options
from ..analysis.lens import check_top_k
from ..analysis.report import page_bytes
from ..analysis.saliency import DEFAULT_STEPS, METHODS, check_method, check_steps
from ..base.checks import check_integer
from ..base.errors import GPT2Error
from ..base.files import check_destination, write_together
from ..generation import options_from
from .common import add_model_argument, add_threads_argument, argument_text, load_model
from .generate import add_sampling_arguments, sampling_options, spell_flag


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "explain",
        help="generate, then look inside: saliency, logit lens, attention, neuron factors",
        description="Continue a prompt (greedy unless --temperature says otherwise), or take --continuation, "
        "then analyse every new token. Several prompts share one neuron factorisation.",
    )
    p.add_argument("prompt", nargs="+", help="the prompt (several: one result each, with shared neuron factors)")
    add_model_argument(p)
    p.add_argument(
        "--max-new-tokens",
        "-n",
        type=int,
        default=None,
        help=f"tokens to generate (default: {DEFAULT_MAX_NEW_TOKENS}; 0: the prompt alone)",
    )
    p.add_argument(
        "--continuation",
        action="append",
        metavar="TEXT",
        help="analyse TEXT as the new tokens, as if generated (teacher forcing): why would the model say it? "
        "Once per prompt.",
    )
    add_sampling_arguments(p, temperature_default="0, greedy")
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
    p.add_argument(
        "--alternatives",
        type=int,
        default=DEFAULT_ALTERNATIVES,
        help=f"contrastive saliency against this many likeliest other tokens per new token (default: "
        f"{DEFAULT_ALTERNATIVES}; 0: none; each costs about one more saliency pass)",
    )
    p.add_argument(
        "--lens-top-k", type=int, default=5, help="logit-lens candidates per layer and position (default: 5)"
    )
    add_attention_arguments(p, "keep")
    p.add_argument("--factors", type=int, default=10, help="neuron factors per layer set (default: 10)")
    p.add_argument("--factor-seed", type=int, default=0, help="seed of the factorisation's random start (default: 0)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar (it is shown only on a terminal anyway)")
    add_threads_argument(p)
    p.set_defaults(run=run)


def add_attention_arguments(p, verb: str) -> None:
    """--attention, --attention-layers, --attention-heads: which attention to keep (explain) or
    to put on the page (report)."""
    choices = ATTENTION_CHOICES if verb == "keep" else ("auto", *ATTENTION_CHOICES)
    default = (
        "default: every head in the result; the page then carries them while it stays small, else each layer's mean"
        if verb == "keep"
        else "default: auto, every head while the page stays small, else each layer's mean, else none"
    )
    p.add_argument(
        "--attention",
        choices=choices,
        default=None,
        help=f"attention to {verb}: every head, each layer's mean over its heads, or none ({default})",
    )
    p.add_argument(
        "--attention-layers", type=integer_list, metavar="L,L,...", help=f"{verb} the attention of these layers only"
    )
    p.add_argument(
        "--attention-heads", type=integer_list, metavar="H,H,...", help=f"{verb} the attention of these heads only"
    )


def integer_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def given_sampling(args) -> list[str]:
    """The sampling flags given on the command line (they do not apply to --continuation)."""
    given = {
        "--temperature": args.temperature is not None,
        "--top-k": args.top_k is not None,
        "--top-p": args.top_p is not None,
        "--repetition-penalty": args.repetition_penalty != 1.0,
        "--no-repeat-ngram-size": args.no_repeat_ngram_size != 0,
        "--min-new-tokens": args.min_new_tokens != 0,
        "--seed": args.seed is not None,
        "--stop": bool(args.stop),
        "--stop-id": bool(args.stop_id),
        "--ignore-eos": args.ignore_eos,
        "--max-new-tokens": args.max_new_tokens is not None,
    }
    return [flag for flag, yes in given.items() if yes]


def check_explain_options(args) -> dict:
    """Refuse bad options before the model is loaded (the library's own checks, naming the flags);
    return the keyword arguments of model.explain, the ones checked against the model later included."""
    prompts = [argument_text(p, "PROMPT") for p in args.prompt]
    for method in args.methods.split(","):
        check_method(method, "--methods")
    check_steps(args.steps, "--steps")
    check_factor_options(args.factors, DEFAULT_ITERATIONS, "--factors")
    check_integer("--factor-seed", args.factor_seed, 0)
    check_integer(
        "--lens-top-k", args.lens_top_k, 1
    )  # its upper limit, the vocabulary, is known once the model is loaded
    check_integer("--alternatives", args.alternatives, 0, MAX_ALTERNATIVES)
    options: dict = {
        "methods": args.methods.split(","),
        "of": args.of,
        "steps": args.steps,
        "alternatives": args.alternatives,
        "lens_top_k": args.lens_top_k,
        "factors": args.factors,
        "factor_seed": args.factor_seed,
        "attention": args.attention or "all",
        "attention_layers": args.attention_layers,
        "attention_heads": args.attention_heads,
        "progress": False if args.quiet else None,
    }
    if args.continuation is not None:
        flags = given_sampling(args)
        if flags:
            raise GPT2Error(f"--continuation gives the new tokens, so nothing is generated: drop {', '.join(flags)}")
        if len(args.continuation) != len(prompts):
            raise GPT2Error(
                f"give --continuation once per prompt: {len(prompts)} prompts, {len(args.continuation)} continuations"
            )
        texts = [argument_text(c, "--continuation") for c in args.continuation]
        options["continuation"] = texts if len(prompts) > 1 else texts[0]
        options["bos"] = args.bos
    else:
        max_new_tokens = DEFAULT_MAX_NEW_TOKENS if args.max_new_tokens is None else args.max_new_tokens
        check_integer("--max-new-tokens", max_new_tokens, 0)
        sampling = sampling_options(args, 0.0)  # explain is greedy unless asked, as model.explain is
        options_from({**sampling, "max_new_tokens": max(1, max_new_tokens)}).checked(spell_flag)
        options |= sampling | {"max_new_tokens": max_new_tokens}
    options["prompt"] = prompts if len(prompts) > 1 else prompts[0]
    return options


def run(args) -> int:
    options = check_explain_options(args)
    for option, destination in (("--output", args.output), ("--html", args.html)):
        if destination is not None:  # refuse an unwritable destination before the long computation
            check_destination(destination, f"{option} {destination}")
    if args.output is not None and args.html is not None and args.output == args.html:
        raise GPT2Error("--output and --html must be different files")
    model = load_model(args.model, args.dtype)
    check_top_k(args.lens_top_k, model.config.vocab_size, "--lens-top-k")
    check_integer("--alternatives", args.alternatives, 0, model.config.vocab_size - 1)
    result = model.explain(**options)  # checks the rest (layers, heads, room in the context) before any work
    print(result.summary())
    results = list(result) if isinstance(result, Explanations) else [result]
    writes = []
    if args.output is not None:
        data = result.npz_bytes()
        writes.append((args.output, lambda out: out.write(data)))
    if args.html is not None:
        # The page carries what was kept; with --attention unset, only what stays small (auto).
        page = page_bytes(results, attention=args.attention or "auto")
        writes.append((args.html, lambda out: out.write(page)))
    for path in write_together(writes):
        note = "; open it in a browser" if str(path) == str(args.html) else ""
        print(f"wrote {path} ({path.stat().st_size:,} bytes{note})")
    return 0
