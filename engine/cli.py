"""The `gpt2` command.

    gpt2 generate "Once upon a time" --model gpt2 --max-new-tokens 40
    gpt2 info gpt2
    gpt2 tokenize "Hello, world!"

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
# gpt2 generate


def add_generate_parser(subparsers) -> None:
    p = subparsers.add_parser("generate", help="continue a prompt")
    p.add_argument("prompt", nargs="?", help="the prompt (read from stdin when omitted)")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL, help="model directory or published name (default: gpt2)")
    p.add_argument("--max-new-tokens", "-n", type=int, default=50, help="tokens to generate (default: 50)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_threads_argument(p)
    p.set_defaults(run=run_generate)


def read_prompt(args) -> str:
    if args.prompt is not None:
        return args.prompt
    try:
        return sys.stdin.read()
    except (OSError, UnicodeDecodeError) as error:
        raise GPT2Error(f"cannot read the prompt from stdin ({error})") from None


def run_generate(args) -> int:
    prompt = read_prompt(args)
    model = load_model(args.model)
    result = model.generate(prompt, max_new_tokens=args.max_new_tokens)
    if args.json:
        print(json.dumps({"text": result.text, "token_ids": result.token_ids,
                          "finish_reason": result.finish_reason, "logprobs": result.logprobs}))
    else:
        print(prompt + result.text)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpt2", description="GPT-2 inference on the CPU with NumPy and Numba.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_generate_parser, add_info_parser, add_tokenize_parser):
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
