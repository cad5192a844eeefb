"""The `gpt2` command.

    gpt2 generate "Once upon a time" --model gpt2 --max-new-tokens 40
    gpt2 info gpt2
    gpt2 tokenize "Hello, world!"
    gpt2 explain "ROMEO:" --model DIR --max-new-tokens 20 --output romeo.npz --html romeo.html

Each subcommand is a pair: `add_<name>_parser` declares its arguments, `run_<name>` does the work.
A user error (a `GPT2Error`) prints one line, `gpt2: error: ...`, and exits with status 2, as
argparse does for bad arguments; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import GPT2Error

DEFAULT_MODEL = "gpt2"


def add_threads_argument(parser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for Numba kernels and BLAS (default: all cores, or $GPT2_ENGINE_THREADS)")


def apply_threads(args) -> None:
    if getattr(args, "threads", None) is not None:
        from .threads import set_threads

        set_threads(args.threads)


def load_model(name: str):
    from .model import GPT2

    return GPT2.from_pretrained(name)


# ----------------------------------------------------------------------------------------------
# gpt2 generate (the options: engine/generation.py and README.md, "Generating text")

# Generation option -> the flag that sets it, for error messages.
GENERATE_FLAGS = {"num_return_sequences": "--batch-size", "stop_token_ids": "--stop-id", "stop_at_eos": "--ignore-eos"}


def add_generate_parser(subparsers) -> None:
    p = subparsers.add_parser("generate", help="continue a prompt",
                              description="Continue a prompt. Prints the prompt and its continuation; streams "
                                          "them as they are generated when stdout is a terminal.")
    p.add_argument("prompt", nargs="?", help="the prompt (read from stdin, exactly as given, when omitted)")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                   help="model directory, published name, or 124M/355M/774M/1558M (default: gpt2)")
    p.add_argument("--max-new-tokens", "-n", type=int, default=50, help="tokens to generate at most (default: 50)")
    p.add_argument("--temperature", "-t", type=float, default=None,
                   help="sampling temperature, 0 for greedy (default: 1.0; 0 with --num-beams)")
    p.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens (default: all)")
    p.add_argument("--top-p", type=float, default=None,
                   help="sample from the smallest set of tokens whose probability reaches p, in (0, 1] (default: 1)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 makes seen tokens less likely (default: 1)")
    p.add_argument("--no-repeat-ngram-size", type=int, default=0, help="never repeat an n-gram of this size (default: off)")
    p.add_argument("--min-new-tokens", type=int, default=0, help="no end-of-text or stop id before this many tokens")
    p.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same text")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop before this text (repeatable; the text is cut before it)")
    p.add_argument("--stop-id", action="append", type=int, default=[], metavar="ID", help="stop at this token id (repeatable)")
    p.add_argument("--ignore-eos", action="store_true", help="do not stop at <|endoftext|>")
    p.add_argument("--bos", action="store_true", help="put <|endoftext|> before the prompt (allows an empty prompt)")
    p.add_argument("--batch-size", "-b", type=int, default=1,
                   help="samples of the prompt, generated as one batch (with --num-beams: best beams shown) (default: 1)")
    p.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams (default: 1, no beams)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam score = log-probability / length ** this (default: 1)")
    p.add_argument("--early-stopping", choices=["true", "false", "never"], default="false",
                   help="when beam search stops, as Hugging Face's early_stopping (default: false)")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="print the text as it is generated (default: when stdout is a terminal; "
                        "not with --json, --batch-size > 1 or --num-beams > 1)")
    p.add_argument("--json", action="store_true", help="print each result as one line of JSON")
    add_threads_argument(p)
    p.set_defaults(run=run_generate)


def read_prompt(args) -> str:
    import os

    if args.prompt is not None:  # undecodable bytes in argv arrive as lone surrogates: give them back as bytes
        return decode_utf8(os.fsencode(args.prompt), "PROMPT")
    if sys.stdin is None:  # the process was started with stdin closed
        raise GPT2Error("cannot read the prompt from stdin (it is closed): give PROMPT, or pipe the prompt in")
    if sys.stdin.isatty():
        print("gpt2: reading the prompt from stdin (end it with Ctrl-D)", file=sys.stderr)
    try:
        data = sys.stdin.buffer.read()
    except (OSError, ValueError) as error:
        raise GPT2Error(f"cannot read the prompt from stdin ({getattr(error, 'strerror', None) or error})") from None
    return decode_utf8(data, "the prompt on stdin")


def generation_options(args) -> dict:
    return {
        "max_new_tokens": args.max_new_tokens, "top_k": args.top_k,
        # The command samples by default (as R's gpt2() and llama.cpp do); beam search is greedy.
        "temperature": args.temperature if args.temperature is not None else (1.0 if args.num_beams == 1 else 0.0),
        "top_p": args.top_p, "repetition_penalty": args.repetition_penalty,
        "no_repeat_ngram_size": args.no_repeat_ngram_size, "min_new_tokens": args.min_new_tokens,
        "seed": args.seed, "stop": tuple(args.stop), "stop_token_ids": tuple(args.stop_id),
        "stop_at_eos": not args.ignore_eos, "bos": args.bos, "num_return_sequences": args.batch_size,
        "num_beams": args.num_beams, "length_penalty": args.length_penalty,
        "early_stopping": {"true": True, "false": False, "never": "never"}[args.early_stopping],
    }


def spell_flag(name: str) -> str:
    return GENERATE_FLAGS.get(name, "--" + name.replace("_", "-"))


def print_results(prompt: str, results, as_json: bool) -> None:
    for i, result in enumerate(results):
        if as_json:
            print(json.dumps(result.to_dict()))
            continue
        if len(results) > 1:
            score = f", score {result.score:.4f}" if result.score is not None else ""
            print(f"--- {i + 1} of {len(results)} ({result.finish_reason}{score}) ---")
        print(prompt + result.text)


def run_generate(args) -> int:
    from .generation import GenerationStream, make_search, options_from

    prompt = read_prompt(args)
    options = generation_options(args)
    options_from(options).checked(spell_flag)  # bad values are refused before the model is loaded
    model = load_model(args.model)
    search, _ = make_search(model, prompt, options, spell_flag)
    streaming = args.stream if args.stream is not None else sys.stdout.isatty()
    if streaming and not args.json and args.batch_size == 1 and args.num_beams == 1:
        return stream_to_stdout(prompt, GenerationStream(search))
    try:
        for _ in search.steps():
            pass
    except KeyboardInterrupt:  # Ctrl-C: show what was generated so far
        print_results(prompt, search.results(), args.json)
        print("gpt2: interrupted", file=sys.stderr)
        return 130
    print_results(prompt, search.results(), args.json)
    return 0


def stream_to_stdout(prompt: str, stream) -> int:
    out = sys.stdout
    out.write(prompt)
    out.flush()
    try:
        for piece in stream:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:  # Ctrl-C: the text held back (a possible stop string) is shown too
        out.write(stream.rest() + "\n")
        out.flush()
        print("gpt2: interrupted", file=sys.stderr)
        return 130
    out.write("\n")
    return 0


# ----------------------------------------------------------------------------------------------
# gpt2 info


def add_info_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="show a model's shape, size and dtype")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="model directory or published name")
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    p.set_defaults(run=run_info)


def run_info(args) -> int:
    from .loader import describe_checkpoint

    model = load_model(args.model)
    c = model.config
    files = describe_checkpoint(model.source)
    facts = {
        "source": model.source,
        "n_layer": c.n_layer, "n_head": c.n_head, "n_embd": c.n_embd, "head_dim": c.head_dim,
        "n_ctx": c.n_ctx, "vocab_size": c.vocab_size, "mlp_width": c.mlp_width,
        "parameters": model.num_parameters(),
        "stored_dtypes": files["dtypes"], "compute_dtype": "float32",
        "file_bytes": files["bytes"], "files": files["files"],
    }
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    stored = ", ".join(f"{d} ({n} tensors)" for d, n in files["dtypes"].items())
    print(f"model       {model.source}")
    print(f"shape       {c.n_layer} layers, {c.n_head} heads x {c.head_dim}, n_embd {c.n_embd}, "
          f"MLP {c.mlp_width}, context {c.n_ctx}, vocab {c.vocab_size}")
    print(f"parameters  {facts['parameters']:,} ({facts['parameters'] / 1e6:.1f}M, output layer tied to wte)"
          if c.tie_word_embeddings else f"parameters  {facts['parameters']:,}")
    print(f"dtype       stored {stored}; computed in float32")
    print(f"file size   {files['bytes']:,} bytes ({files['bytes'] / 2**20:.1f} MiB) in {len(files['files'])} file(s)")
    return 0


# ----------------------------------------------------------------------------------------------
# gpt2 tokenize


def add_tokenize_parser(subparsers) -> None:
    p = subparsers.add_parser("tokenize", help="show the token ids and pieces of a text")
    p.add_argument("text", help="the text to tokenize")
    p.add_argument("--json", action="store_true", help="print ids and pieces as JSON")
    p.set_defaults(run=run_tokenize)


def run_tokenize(args) -> int:
    from .tokenizer import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    ids = tokenizer.encode(args.text)
    pieces = [piece.decode("utf-8", errors="backslashreplace") for piece in tokenizer.token_bytes(ids)]
    if args.json:
        print(json.dumps({"ids": ids, "pieces": pieces}))
        return 0
    for i, piece in zip(ids, pieces):
        print(f"{i:>6}  {piece!r}")
    print(f"{len(ids)} tokens")
    return 0


# ----------------------------------------------------------------------------------------------
# gpt2 perplexity, gpt2 score (the protocol: engine/scoring.py and README, "Scoring and perplexity")


def add_scoring_arguments(p) -> None:
    p.add_argument("--model", "-m", default=DEFAULT_MODEL, help="model directory or published name (default: gpt2)")
    p.add_argument("--context", type=int, default=None, help="tokens per window, 2..n_positions (default: n_positions)")
    p.add_argument("--stride", type=int, default=None, help="tokens between window starts, 1..context (default: context // 2)")
    p.add_argument("--bos", action="store_true", help="put <|endoftext|> before the text, so its first token is scored")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default: 4)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar (it is shown only on a terminal anyway)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_threads_argument(p)


def scoring_options(args) -> dict:
    options = {"bos": args.bos, "context": args.context, "stride": args.stride, "progress": False if args.quiet else None}
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    return options


def check_scoring_options(model, args) -> None:
    """Refuse a bad --context, --stride or --batch-size before any text is scored."""
    from .scoring import window_options

    options = scoring_options(args)
    window_options(model.config.n_positions, options["context"], options["stride"], options.get("batch_size", 1),
                   spell=lambda name: "--" + name.replace("_", "-"))


def decode_utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise GPT2Error(f"{name}: not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})") from None


def read_text_file(path: str) -> str:
    """The text of a file ("-": stdin), its bytes decoded as UTF-8 exactly (no newline translation)."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    except OSError as error:
        raise GPT2Error(f"{path}: cannot read the file ({error.strerror or error})") from None
    if not data:
        raise GPT2Error(f"{path}: the file is empty")
    return decode_utf8(data, path)


def summary(s) -> dict:
    return {"perplexity": s.perplexity, "mean_nll": s.mean_nll, "total_nll": s.total_nll, "tokens": s.count}


def add_perplexity_parser(subparsers) -> None:
    p = subparsers.add_parser("perplexity", help="perplexity of text files, with a sliding window")
    p.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files ('-' reads stdin)")
    add_scoring_arguments(p)
    p.set_defaults(run=run_perplexity)


def run_perplexity(args) -> int:
    import math

    texts = [read_text_file(path) for path in args.files]  # every file is read before any is scored
    model = load_model(args.model)
    check_scoring_options(model, args)
    results = []
    for path, text in zip(args.files, texts):
        try:
            results.append(model.score(text, **scoring_options(args)))
        except GPT2Error as error:
            raise GPT2Error(f"{path}: {error}") from None
    total_nll, tokens = sum(s.total_nll for s in results), sum(s.count for s in results)
    combined = {"perplexity": math.exp(total_nll / tokens), "mean_nll": total_nll / tokens,
                "total_nll": total_nll, "tokens": tokens}
    if args.json:
        files = [{"file": path, **summary(s), "text_tokens": len(s.token_ids) - s.bos, "windows": len(s.windows)}
                 for path, s in zip(args.files, results)]
        s = results[0]
        print(json.dumps(combined | {"context": s.context, "stride": s.stride, "bos": s.bos, "files": files}, indent=2))
        return 0
    for path, s in zip(args.files, results):
        print(f"{path}: perplexity {s.perplexity:.2f}, mean NLL {s.mean_nll:.6f} over {s.count:,} scored tokens "
              f"of {len(s.token_ids) - s.bos:,} ({len(s.windows)} windows, context {s.context}, stride {s.stride}"
              f"{', BOS' if s.bos else ''})")
    if len(results) > 1:
        print(f"combined: perplexity {combined['perplexity']:.2f}, mean NLL {combined['mean_nll']:.6f} "
              f"over {tokens:,} scored tokens")
    return 0


def add_score_parser(subparsers) -> None:
    p = subparsers.add_parser("score", help="log-probability of each token of a text")
    p.add_argument("text", nargs="?", help="the text (read from stdin when omitted)")
    add_scoring_arguments(p)
    p.set_defaults(run=run_score)


def run_score(args) -> int:
    import os

    if args.text is None:
        text = read_text_file("-")
    else:  # undecodable bytes in argv arrive as lone surrogates: give them back as bytes
        text = decode_utf8(os.fsencode(args.text), "TEXT")
    model = load_model(args.model)
    check_scoring_options(model, args)
    s = model.score(text, **scoring_options(args))
    pieces = [piece.decode("utf-8", errors="backslashreplace") for piece in model.tokenizer.token_bytes(s.token_ids)]
    scored = s.scored
    if args.json:
        logprobs = [float(lp) if ok else None for lp, ok in zip(s.logprobs, scored)]
        windows = [[w.begin, w.end, w.first_scored] for w in s.windows]
        print(json.dumps(summary(s) | {
            "context": s.context, "stride": s.stride, "bos": s.bos, "token_ids": s.token_ids.tolist(),
            "pieces": pieces, "logprobs": logprobs, "window": [int(w) if w >= 0 else None for w in s.window],
            "windows": windows,
        }))
        return 0
    print(f"{'pos':>5} {'id':>6}  {'piece':<16} {'logprob':>9} {'window':>6} {'seen':>5}")
    for i, (token, piece, lp, w) in enumerate(zip(s.token_ids, pieces, s.logprobs, s.window)):
        if w >= 0:  # seen: the tokens before it in its window, which it is predicted from
            print(f"{i:>5} {token:>6}  {piece!r:<16} {lp:>9.4f} {w:>6} {i - s.windows[w].begin:>5}")
        else:
            print(f"{i:>5} {token:>6}  {piece!r:<16} {'-':>9} {'-':>6} {'-':>5}")
    print(f"{s.count} of {len(s.token_ids)} tokens scored: total NLL {s.total_nll:.4f}, mean NLL {s.mean_nll:.6f}, "
          f"perplexity {s.perplexity:.2f}")
    return 0


# ----------------------------------------------------------------------------------------------
# gpt2 explain (engine/explain.py: saliency, logit lens, attention, neuron factors)


def add_explain_parser(subparsers) -> None:
    from .saliency import DEFAULT_STEPS, METHODS

    p = subparsers.add_parser("explain", help="generate, then look inside: saliency, logit lens, attention, neuron factors")
    p.add_argument("prompt", help="the prompt")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL, help="model directory or published name (default: gpt2)")
    p.add_argument("--max-new-tokens", "-n", type=int, default=20, help="tokens to generate (default: 20; 0: the prompt alone)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the whole result to FILE (.npz with JSON metadata)")
    p.add_argument("--html", metavar="FILE",
                   help="write an explorable page to FILE: one self-contained HTML file (saliency, neuron factors, logit lens, attention)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"saliency methods, comma-separated (default: {','.join(METHODS)})")
    p.add_argument("--of", choices=("logprob", "prob"), default="logprob",
                   help="attribute the log-probability (default) or the probability (Ecco's choice) of each token")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"integrated-gradients steps (default: {DEFAULT_STEPS})")
    p.add_argument("--top-k", type=int, default=5, help="logit-lens candidates per layer and position (default: 5)")
    p.add_argument("--factors", type=int, default=10, help="neuron factors per layer set (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the factorisation's random start (default: 0)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar (it is shown only on a terminal anyway)")
    add_threads_argument(p)
    p.set_defaults(run=run_explain)


def check_explain_options(args) -> None:
    """Refuse bad options before the model is loaded: the library's own checks, naming the flags."""
    from .errors import check_integer
    from .factors import DEFAULT_ITERATIONS, check_factor_options
    from .saliency import check_method, check_steps

    for method in args.methods.split(","):
        check_method(method, "--methods")
    check_steps(args.steps, "--steps")
    check_factor_options(args.factors, DEFAULT_ITERATIONS, "--factors")
    check_integer("--max-new-tokens", args.max_new_tokens, 0)
    check_integer("--top-k", args.top_k, 1)  # its upper limit, the vocabulary, is known once the model is loaded


def run_explain(args) -> int:
    from .files import check_destination
    from .lens import check_top_k

    for option, destination in (("--output", args.output), ("--html", args.html)):
        if destination is not None:  # refuse an unwritable destination before the long computation
            check_destination(destination, f"{option} {destination}")
    check_explain_options(args)
    model = load_model(args.model)
    check_top_k(args.top_k, model.config.vocab_size, "--top-k")
    result = model.explain(
        args.prompt, max_new_tokens=args.max_new_tokens, methods=args.methods.split(","), of=args.of,
        steps=args.steps, top_k=args.top_k, factors=args.factors, seed=args.seed,
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


# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpt2", description="GPT-2 inference on the CPU with NumPy and Numba.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_generate_parser, add_info_parser, add_tokenize_parser, add_perplexity_parser, add_score_parser,
                add_explain_parser):
        add(subparsers)
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


if __name__ == "__main__":
    sys.exit(main())
