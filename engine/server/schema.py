"""Requests: from a JSON body to checked values, or an APIError naming the field.

The Completions fields are OpenAI's legacy `/v1/completions` (with its defaults: max_tokens 16,
temperature 1, top_p 1, n 1), plus the engine's extras in vLLM's manner (top_k, repetition_penalty,
min_tokens, stop_token_ids, num_beams, ignore_eos). Each field is checked here for its JSON type and
OpenAI's range; the generation options are then checked once more by the engine's own
`GenerationOptions.checked`, under the request's field names.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..base.checks import check_integer, integer_or_none
from ..base.errors import InputError
from ..generation import options_from
from ..generation.api import check_token_options
from ..generation.options import GenerationOptions
from ..generation.prompts import check_room, prompt_token_ids
from .errors import APIError, bad_request

MAX_LOGPROBS = 5  # OpenAI's limit on the alternatives per token
MAX_STOP = 4  # OpenAI's limit on stop strings
MAX_CHOICES = 256  # prompts x n in one request
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
END_OF_TEXT = "<|endoftext|>"  # OpenAI's default prompt: the start of a new document

# The engine's option names as a request spells them (for the engine's messages).
REQUEST_NAMES = {
    "max_new_tokens": "max_tokens",
    "min_new_tokens": "min_tokens",
    "num_return_sequences": "n",
    "stop_at_eos": "ignore_eos",
}

COMPLETION_FIELDS = [
    "model",
    "prompt",
    "suffix",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "logprobs",
    "echo",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "best_of",
    "logit_bias",
    "user",
    "seed",
    "top_k",
    "repetition_penalty",
    "min_tokens",
    "stop_token_ids",
    "num_beams",
    "ignore_eos",
]


def shown(value) -> str:
    """A value as a message shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_json(data: bytes) -> object:
    """The body's bytes -> a JSON value (strict UTF-8), or a 400 saying what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise bad_request(
            f"the request body is not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})",
            code="invalid_utf8",
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise bad_request(
            f"the request body is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise bad_request("the request body is not valid JSON: nested too deeply", code="invalid_json") from None


def json_object(body, known: list[str]) -> dict:
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(body).__name__}")
    unknown = [name for name in body if name not in known]
    if unknown:
        raise bad_request(f"unknown field {shown(unknown[0])}", param=unknown[0], code="unknown_field")
    return body


# ----------------------------------------------------------------------------------------------
# One field at a time


def integer(body: dict, name: str, default, low: int, high: int | None = None, high_name: str | None = None):
    value = body.get(name)
    if value is None:
        return default
    try:
        return check_integer(name, value, low, high, high_name)
    except InputError as error:
        raise bad_request(str(error).replace(repr(value), shown(value)), param=name) from None


def number(body: dict, name: str, default, low: float, high: float, low_open: bool = False):
    value = body.get(name)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > high or value < low or (low_open and value == low):
        low_text = f"> {low}" if low_open else f">= {low}"
        range_text = f"a number {low_text}" + (f" and <= {high}" if high != math.inf else "")
        raise bad_request(f"{name} must be {range_text}, got {shown(value)}", param=name)
    return float(value)


def boolean(body: dict, name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false, got {shown(value)}", param=name)
    return value


def string(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise bad_request(f"{name} must be a string, got {shown(value)}", param=name)
    return value


def check_unicode(text: str, name: str) -> None:
    """A JSON string can hold lone surrogates (\\ud800), which are not text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise bad_request(f"{name} is not valid Unicode (a lone surrogate at character {error.start})", name) from None


def prompts_of(body: dict, model, name: str = "prompt") -> list[list[int]]:
    """`prompt`: a string, a list of strings, token ids or a list of token-id lists -> token ids per
    prompt. An empty string (or no prompt) is `<|endoftext|>`, as OpenAI has it: a new document."""
    value = body.get(name, END_OF_TEXT)
    if value == "" or value is None:
        value = END_OF_TEXT
    if isinstance(value, list):
        value = [END_OF_TEXT if p == "" else p for p in value]
    for text in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
        if isinstance(text, str):
            check_unicode(text, name)
    try:
        prompts, _ = prompt_token_ids(model, value, bos=False)
    except InputError as error:
        raise bad_request(str(error), param=name) from None
    return prompts


def stop_strings(body: dict) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOP:
        raise bad_request(f"stop must be a non-empty string or a list of up to {MAX_STOP} of them", param="stop")
    for s in stops:
        check_unicode(s, "stop")
    return tuple(stops)


def token_id_list(body: dict, name: str) -> tuple[int, ...]:
    value = body.get(name)
    if value is None:
        return ()
    ids = [integer_or_none(i) for i in value] if isinstance(value, list) else [None]
    if any(i is None or i < 0 for i in ids):
        raise bad_request(f"{name} must be a list of token ids (integers >= 0), got {shown(value)}", param=name)
    return tuple(i for i in ids if i is not None)


def logit_bias_of(body: dict) -> dict[int, float] | None:
    value = body.get("logit_bias")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"logit_bias must be an object of token ids to numbers, got {shown(value)}", "logit_bias")
    bias = {}
    for key, b in value.items():
        if not (key.isascii() and key.isdigit()):
            raise bad_request(f"logit_bias: {shown(key)} is not a token id", "logit_bias")
        ok = isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) and -100 <= b <= 100
        if not ok:
            raise bad_request(f"logit_bias: the bias of token {key} must be a number from -100 to 100", "logit_bias")
        bias[int(key)] = float(b)
    return bias or None


# ----------------------------------------------------------------------------------------------
# /v1/completions


@dataclass(frozen=True)
class CompletionRequest:
    """A checked completion request. `options` are the generation options of every prompt
    (num_return_sequences is n only with beams; otherwise the n rows are the continuous batch's)."""

    prompts: list[list[int]]
    options: GenerationOptions
    max_tokens: int
    n: int
    stream: bool
    include_usage: bool
    logprobs: int | None
    echo: bool

    @property
    def beams(self) -> bool:
        return self.options.num_beams > 1


def field_of(message: str) -> str | None:
    """The request field an engine message begins with (the engine names its argument first)."""
    for name in sorted(COMPLETION_FIELDS, key=len, reverse=True):
        if message.startswith(name) and message[len(name) : len(name) + 1] in (" ", ":", "=", ""):
            return name
    return "prompt" if message.startswith("the prompt") else None


def parse_completion(body, model, served_name: str, max_batch_size: int) -> CompletionRequest:
    """Check a /v1/completions body against the model (vocabulary, context) and the server's limits."""
    body = json_object(body, COMPLETION_FIELDS)
    check_model(body, served_name)
    if body.get("suffix") is not None:
        raise bad_request("suffix is not supported: GPT-2 continues text, it does not fill it in", "suffix")
    n = integer(body, "n", 1, 1, max_batch_size, f"the server's --max-batch-size ({max_batch_size})")
    best_of = body.get("best_of")
    if best_of is not None and best_of != n:
        raise bad_request(f"best_of must equal n ({n}) if given: best-of selection is not supported", "best_of")
    max_tokens = integer(body, "max_tokens", DEFAULT_MAX_TOKENS, 0)
    stream = boolean(body, "stream", False)
    include_usage = False
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not stream:
            raise bad_request("stream_options is only allowed with stream: true", "stream_options")
        json_object(stream_options, ["include_usage"])
        include_usage = boolean(stream_options, "include_usage", False)
    logprobs = integer(body, "logprobs", None, 0, MAX_LOGPROBS)
    echo = boolean(body, "echo", False)
    string(body, "user")
    num_beams = integer(body, "num_beams", 1, 1, max_batch_size, f"the server's --max-batch-size ({max_batch_size})")
    # Beam search is deterministic: without a temperature it is 0, not OpenAI's default 1.
    temperature = number(body, "temperature", 0.0 if num_beams > 1 else 1.0, 0.0, 2.0)
    top_p = number(body, "top_p", 1.0, 0.0, 1.0, low_open=True)
    raw_top_k = body.get("top_k")
    off = raw_top_k is None or (integer_or_none(raw_top_k) in (-1, 0) and not isinstance(raw_top_k, float))
    top_k = None if off else integer(body, "top_k", None, 1)  # -1 or 0: every token, as vLLM
    if num_beams > 1:
        if n > num_beams:
            raise bad_request(f"n ({n}) must be at most num_beams ({num_beams}): one sequence per beam", "n")
        if logprobs is not None:
            raise bad_request("logprobs is not available with num_beams > 1", "logprobs")
    prompts = prompts_of(body, model)
    if len(prompts) * n > MAX_CHOICES:
        raise bad_request(f"{len(prompts)} prompts x n={n} is more than {MAX_CHOICES} choices in one request", "n")
    options = {
        "max_new_tokens": max(max_tokens, 1),  # max_tokens 0 generates nothing (an echo only)
        "temperature": temperature,
        # Greedy decoding ignores the sampling filters (OpenAI's clients send top_p=1 with temperature 0).
        "top_p": top_p if temperature > 0 and top_p < 1 else None,
        "top_k": top_k if temperature > 0 else None,
        "repetition_penalty": number(body, "repetition_penalty", 1.0, 0.0, math.inf, low_open=True),
        "presence_penalty": number(body, "presence_penalty", 0.0, -2.0, 2.0),
        "frequency_penalty": number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        "logit_bias": logit_bias_of(body),
        "min_new_tokens": integer(body, "min_tokens", 0, 0, max_tokens, f"max_tokens ({max_tokens})"),
        "seed": integer(body, "seed", None, 0, 2**64 - 1),
        "stop": stop_strings(body),
        "stop_token_ids": token_id_list(body, "stop_token_ids"),
        "stop_at_eos": not boolean(body, "ignore_eos", False),
        "num_beams": num_beams,
        "num_return_sequences": n if num_beams > 1 else 1,
    }
    try:
        checked = options_from(options).checked(lambda name: REQUEST_NAMES.get(name, name))
        check_token_options(model, checked, lambda name: REQUEST_NAMES.get(name, name))
        check_room(model, prompts, max_tokens, lambda name: REQUEST_NAMES.get(name, name))
    except InputError as error:
        raise bad_request(str(error), param=field_of(str(error))) from None
    return CompletionRequest(prompts, checked, max_tokens, n, stream, include_usage, logprobs, echo)


def check_model(body: dict, served_name: str) -> None:
    """`model` may be left out; if given it must be the model this server serves (404 otherwise)."""
    name = string(body, "model")
    if name is not None and name != served_name:
        raise APIError(
            404,
            f"the model {shown(name)} does not exist: this server serves {served_name!r}",
            param="model",
            code="model_not_found",
        )


# ----------------------------------------------------------------------------------------------
# /tokenize and /detokenize (vLLM's shapes)


def parse_tokenize(body, model, served_name: str) -> list[int]:
    """{"prompt": text} -> its token ids. add_special_tokens (vLLM's, which lm-evaluation-harness
    sends) is accepted and changes nothing: GPT-2's tokenizer adds no special tokens."""
    body = json_object(body, ["model", "prompt", "add_special_tokens"])
    check_model(body, served_name)
    boolean(body, "add_special_tokens", False)
    text = body.get("prompt")
    if not isinstance(text, str):
        raise bad_request(f"prompt must be a string, got {shown(text)}", "prompt")
    check_unicode(text, "prompt")
    return model.tokenizer.encode(text)


def parse_detokenize(body, model, served_name: str) -> list[int]:
    body = json_object(body, ["model", "tokens"])
    check_model(body, served_name)
    ids = token_id_list(body, "tokens")
    if "tokens" not in body or not isinstance(body["tokens"], list):
        raise bad_request("tokens must be a list of token ids", "tokens")
    bad = [i for i in ids if i >= model.config.vocab_size]
    if bad:
        raise bad_request(
            f"tokens: token id {bad[0]} is out of range for vocab_size {model.config.vocab_size}", "tokens"
        )
    return list(ids)
