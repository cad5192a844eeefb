"""gpt2 serve: an OpenAI-compatible completions server (engine/server/, docs/serving.md)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..base.config import GPT2Config
from ..base.errors import GPT2Error
from ..base.threads import threads_from_environment, threads_setting
from ..state.hub import resolve_model_dir
from .common import add_model_argument, add_threads_argument, load_model

API_KEY_VARIABLE = "GPT2_API_KEY"


def number_flag(kind, name: str, ok):
    """An argparse type: text -> kind, refused unless ok(value) (NaN and infinity always are)."""

    def parse(text: str):
        value = kind(text)
        if not (ok(value) and math.isfinite(value)):
            raise ValueError(text)
        return value

    parse.__name__ = name  # argparse's error says "invalid positive int value: '0'"
    return parse


positive_int = number_flag(int, "positive int", lambda v: v > 0)
positive_float = number_flag(float, "positive number", lambda v: v > 0)
non_negative_float = number_flag(float, "non-negative number", lambda v: v >= 0)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve the model over HTTP (OpenAI's completions API)",
        description="Serve the model over HTTP with OpenAI's /v1/completions API and continuous batching "
        "(docs/serving.md). Needs the serve extra: pip install 'gpt2-engine[serve]'.",
    )
    add_model_argument(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: 8000)")
    p.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' on every endpoint but /health (default: ${API_KEY_VARIABLE}, or none)",
    )
    p.add_argument(
        "--model-name", default=None, help="the model's name in the API (default: the model directory's name)"
    )
    p.add_argument(
        "--max-batch-size", type=positive_int, default=16, help="rows decoded together at most (default: 16)"
    )
    p.add_argument(
        "--max-queue", type=positive_int, default=64, help="requests waiting for room; more get 429 (default: 64)"
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=600.0,
        help="seconds a request may take, waiting included; then it is cut (default: 600)",
    )
    p.add_argument(
        "--drain-timeout",
        type=non_negative_float,
        default=30.0,
        help="on Ctrl-C or SIGTERM, seconds running requests get to finish before they are cut; 0 cuts them "
        "at once (default: 30)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=4 * 1024 * 1024,
        help="largest request body; larger ones get 413 (default: 4 MiB)",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="the server log's level (default: info)",
    )
    add_threads_argument(p)
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        from ..server import serve
    except ImportError as error:
        raise GPT2Error(
            f"gpt2 serve needs the serve extra ({error.name} is missing): pip install 'gpt2-engine[serve]'"
        ) from None
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_VARIABLE) or None
    # The model's directory and config are checked now, so a wrong --model fails before the server
    # starts; the weights load on the decode thread while /health answers 503.
    model_dir = resolve_model_dir(args.model)
    GPT2Config.from_json(Path(model_dir) / "config.json")
    threads_from_environment()
    return serve(
        lambda: load_model(str(model_dir), args.dtype),
        served_name=args.model_name or Path(model_dir).name,
        host=args.host,
        port=args.port,
        drain_timeout=args.drain_timeout,
        log_level=args.log_level,
        api_key=api_key,
        max_batch_size=args.max_batch_size,
        max_queue=args.max_queue,
        timeout=args.timeout,
        max_body_bytes=args.max_body_bytes,
        threads=threads_setting(),
    )
