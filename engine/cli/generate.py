"""gpt2 generate: continue a prompt (the options: engine/generation/ and docs/generation.md)."""

from __future__ import annotations

import argparse
import sys

from ..base.errors import GPT2Error
from ..generation import GenerationStream, make_search, options_from
from .common import (
    add_model_argument,
    add_threads_argument,
    argument_text,
    decode_utf8,
    json_line,
    load_model,
    read_all,
)

# Generation option -> the flag that sets it, for error messages.
GENERATE_FLAGS = {"num_return_sequences": "--batch-size", "stop_token_ids": "--stop-id", "stop_at_eos": "--ignore-eos"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="continue a prompt",
        description="Continue a prompt. Prints the prompt and its continuation; streams "
        "them as they are generated when stdout is a terminal.",
    )
    p.add_argument("prompt", nargs="?", help="the prompt (read from stdin, exactly as given, when omitted)")
    add_model_argument(p)
    p.add_argument("--max-new-tokens", "-n", type=int, default=50, help="tokens to generate at most (default: 50)")
    add_sampling_arguments(p, temperature_default="1.0; 0 with --num-beams")
    p.add_argument(
        "--batch-size",
        "-b",
        type=int,
        default=1,
        help="samples of the prompt, generated as one batch (with --num-beams: best beams shown) (default: 1)",
    )
    p.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams (default: 1, no beams)")
    p.add_argument(
        "--length-penalty", type=float, default=1.0, help="beam score = log-probability / length ** this (default: 1)"
    )
    p.add_argument(
        "--early-stopping",
        choices=["true", "false", "never"],
        default="false",
        help="when beam search stops, as Hugging Face's early_stopping (default: false)",
    )
    p.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print the text as it is generated (default: when stdout is a terminal; "
        "not with --json, --batch-size > 1 or --num-beams > 1)",
    )
    p.add_argument("--json", action="store_true", help="print each result as one line of JSON")
    add_threads_argument(p)
    p.set_defaults(run=run)


def add_sampling_arguments(p, temperature_default: str) -> None:
    """The flags that choose how one sequence is sampled, shared with `gpt2 explain` (which
    samples the way generate does): temperature, top-k, top-p, penalties, seed, stops, BOS."""
    p.add_argument(
        "--temperature",
        "-t",
        type=float,
        default=None,
        help=f"sampling temperature, 0 for greedy (default: {temperature_default})",
    )
    p.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens (default: all)")
    p.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="sample from the smallest set of tokens whose probability reaches p, in (0, 1] (default: 1)",
    )
    p.add_argument(
        "--repetition-penalty", type=float, default=1.0, help="> 1 makes seen tokens less likely (default: 1)"
    )
    p.add_argument(
        "--no-repeat-ngram-size", type=int, default=0, help="never repeat an n-gram of this size (default: off)"
    )
    p.add_argument("--min-new-tokens", type=int, default=0, help="no end-of-text or stop id before this many tokens")
    p.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same text")
    p.add_argument(
        "--stop",
        action="append",
        default=[],
        metavar="TEXT",
        help="stop before this text (repeatable; the text is cut before it)",
    )
    p.add_argument(
        "--stop-id", action="append", type=int, default=[], metavar="ID", help="stop at this token id (repeatable)"
    )
    p.add_argument("--ignore-eos", action="store_true", help="do not stop at <|endoftext|>")
    p.add_argument("--bos", action="store_true", help="put <|endoftext|> before the prompt (allows an empty prompt)")


def sampling_options(args, default_temperature: float) -> dict:
    """The generation options of the flags `add_sampling_arguments` adds."""
    return {
        "top_k": args.top_k,
        "temperature": args.temperature if args.temperature is not None else default_temperature,
        "top_p": args.top_p,
        "repetition_penalty": args.repetition_penalty,
        "no_repeat_ngram_size": args.no_repeat_ngram_size,
        "min_new_tokens": args.min_new_tokens,
        "seed": args.seed,
        "stop": tuple(args.stop),
        "stop_token_ids": tuple(args.stop_id),
        "stop_at_eos": not args.ignore_eos,
        "bos": args.bos,
    }


def read_prompt(args) -> str:
    if args.prompt is not None:
        return argument_text(args.prompt, "PROMPT")
    if sys.stdin is None:  # the process was started with stdin closed
        raise GPT2Error("cannot read the prompt from stdin (it is closed): give PROMPT, or pipe the prompt in")
    if sys.stdin.isatty():
        print("gpt2: reading the prompt from stdin (end it with Ctrl-D)", file=sys.stderr)
    data = read_all("-", "the prompt on stdin", "cannot read the prompt from stdin")
    return decode_utf8(data, "the prompt on stdin")


def generation_options(args) -> dict:
    # The command samples by default (as R's gpt2() and llama.cpp do); beam search is greedy.
    return {
        "max_new_tokens": args.max_new_tokens,
        **sampling_options(args, 1.0 if args.num_beams == 1 else 0.0),
        "num_return_sequences": args.batch_size,
        "num_beams": args.num_beams,
        "length_penalty": args.length_penalty,
        "early_stopping": {"true": True, "false": False, "never": "never"}[args.early_stopping],
    }


def spell_flag(name: str) -> str:
    return GENERATE_FLAGS.get(name, "--" + name.replace("_", "-"))


def print_results(prompt: str, results, as_json: bool) -> None:
    for i, result in enumerate(results):
        if as_json:
            print(json_line(result.to_dict()))
            continue
        if len(results) > 1:
            score = f", score {result.score:.4f}" if result.score is not None else ""
            print(f"--- {i + 1} of {len(results)} ({result.finish_reason}{score}) ---")
        print(prompt + result.text)


def run(args) -> int:
    prompt = read_prompt(args)
    options = generation_options(args)
    options_from(options).checked(spell_flag)  # bad values are refused before the model is loaded
    model = load_model(args.model, args.dtype)
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
