"""gpt2 perplexity and gpt2 score (the protocol: engine/scoring.py and docs/scoring.md)."""

from __future__ import annotations

from ..base.errors import GPT2Error
from ..scoring import perplexity_of, window_options
from .common import add_model_argument, add_threads_argument, argument_text, json_line, load_model, read_text_file


def add_scoring_arguments(p) -> None:
    add_model_argument(p)
    p.add_argument("--context", type=int, default=None, help="tokens per window, 2..n_positions (default: n_positions)")
    p.add_argument(
        "--stride", type=int, default=None, help="tokens between window starts, 1..context (default: context // 2)"
    )
    p.add_argument("--bos", action="store_true", help="put <|endoftext|> before the text, so its first token is scored")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default: 4)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar (it is shown only on a terminal anyway)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_threads_argument(p)


def scoring_options(args) -> dict:
    options = {
        "bos": args.bos,
        "context": args.context,
        "stride": args.stride,
        "progress": False if args.quiet else None,
    }
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    return options


def check_scoring_options(model, args) -> None:
    """Refuse a bad --context, --stride or --batch-size before any text is scored."""
    options = scoring_options(args)
    window_options(
        model.config.n_positions,
        options["context"],
        options["stride"],
        options.get("batch_size", 1),
        spell=lambda name: "--" + name.replace("_", "-"),
    )


def summary(s) -> dict:
    return {"perplexity": s.perplexity, "mean_nll": s.mean_nll, "total_nll": s.total_nll, "tokens": s.count}


def add_perplexity_parser(subparsers) -> None:
    p = subparsers.add_parser("perplexity", help="perplexity of text files, with a sliding window")
    p.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files ('-' reads stdin)")
    add_scoring_arguments(p)
    p.set_defaults(run=run_perplexity)


def run_perplexity(args) -> int:
    texts = [read_text_file(path) for path in args.files]  # every file is read before any is scored
    model = load_model(args.model, args.dtype)
    check_scoring_options(model, args)
    results = []
    for path, text in zip(args.files, texts):
        try:
            results.append(model.score(text, **scoring_options(args)))
        except GPT2Error as error:
            raise GPT2Error(f"{path}: {error}") from None
    total_nll, tokens = sum(s.total_nll for s in results), sum(s.count for s in results)
    combined = {
        "perplexity": perplexity_of(total_nll / tokens),
        "mean_nll": total_nll / tokens,
        "total_nll": total_nll,
        "tokens": tokens,
    }
    if args.json:
        files = [
            {"file": path, **summary(s), "text_tokens": len(s.token_ids) - s.bos, "windows": len(s.windows)}
            for path, s in zip(args.files, results)
        ]
        s = results[0]
        print(json_line(combined | {"context": s.context, "stride": s.stride, "bos": s.bos, "files": files}, indent=2))
        return 0
    for path, s in zip(args.files, results):
        print(
            f"{path}: perplexity {s.perplexity:.2f}, mean NLL {s.mean_nll:.6f} over {s.count:,} scored tokens "
            f"of {len(s.token_ids) - s.bos:,} ({len(s.windows)} windows, context {s.context}, stride {s.stride}"
            f"{', BOS' if s.bos else ''})"
        )
    if len(results) > 1:
        print(
            f"combined: perplexity {combined['perplexity']:.2f}, mean NLL {combined['mean_nll']:.6f} "
            f"over {tokens:,} scored tokens"
        )
    return 0


def add_score_parser(subparsers) -> None:
    p = subparsers.add_parser("score", help="log-probability of each token of a text")
    p.add_argument("text", nargs="?", help="the text (read from stdin when omitted)")
    add_scoring_arguments(p)
    p.set_defaults(run=run_score)


def run_score(args) -> int:
    text = read_text_file("-") if args.text is None else argument_text(args.text, "TEXT")
    model = load_model(args.model, args.dtype)
    check_scoring_options(model, args)
    s = model.score(text, **scoring_options(args))
    pieces = model.tokenizer.pieces(s.token_ids, errors="backslashreplace")  # type: ignore[union-attr]  # loaded models have one
    scored = s.scored
    if args.json:
        logprobs = [float(lp) if ok else None for lp, ok in zip(s.logprobs, scored)]
        windows = [[w.begin, w.end, w.first_scored] for w in s.windows]
        print(
            json_line(
                summary(s)
                | {
                    "context": s.context,
                    "stride": s.stride,
                    "bos": s.bos,
                    "token_ids": s.token_ids.tolist(),
                    "pieces": pieces,
                    "logprobs": logprobs,
                    "window": [int(w) if w >= 0 else None for w in s.window],
                    "windows": windows,
                }
            )
        )
        return 0
    print(f"{'pos':>5} {'id':>6}  {'piece':<16} {'logprob':>9} {'window':>6} {'seen':>5}")
    for i, (token, piece, lp, w) in enumerate(zip(s.token_ids, pieces, s.logprobs, s.window)):
        if w >= 0:  # seen: the tokens before it in its window, which it is predicted from
            print(f"{i:>5} {token:>6}  {piece!r:<16} {lp:>9.4f} {w:>6} {i - s.windows[w].begin:>5}")
        else:
            print(f"{i:>5} {token:>6}  {piece!r:<16} {'-':>9} {'-':>6} {'-':>5}")
    print(
        f"{s.count} of {len(s.token_ids)} tokens scored: total NLL {s.total_nll:.4f}, mean NLL {s.mean_nll:.6f}, "
        f"perplexity {s.perplexity:.2f}"
    )
    return 0


def add_parser(subparsers) -> None:
    add_perplexity_parser(subparsers)
    add_score_parser(subparsers)
