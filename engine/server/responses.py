"""OpenAI's completion objects, built from the decode loop's events (engine/server/worker.py).

A choice's `logprobs` is OpenAI's legacy object: `tokens` (each token's text; a token that is not a
whole UTF-8 character on its own is shown as "bytes:\\xe2\\x80"), `token_logprobs` (log p of each
token under the model's own distribution; null for a prompt's first token with echo),
`top_logprobs` (per token, {token text: log p} of the `logprobs` most likely tokens, and of the
chosen token when it is not among them; null for a prompt's first token) and `text_offset` (each
token's character offset in the prompt's text followed by the generated text).
"""

from __future__ import annotations

import codecs
import math
import time
import uuid

from .errors import APIError
from .schema import CompletionRequest
from .worker import Done, Failed, PromptTokens, Tokens


def token_text(tokenizer, token_id: int) -> str:
    """A token as text, or OpenAI's "bytes:\\x.." spelling when its bytes are not whole characters."""
    data = tokenizer.token_bytes([token_id])[0]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in data)


def finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


class Choice:
    def __init__(self, index: int, with_logprobs: bool):
        self.index = index
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.completion_tokens = 0
        self.logprobs: dict[str, list] | None = (
            {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []} if with_logprobs else None
        )


class CompletionResponse:
    """One request's response as it is built: `apply(events)` returns the streaming chunks of
    those events; `body()` the whole response once every event is in."""

    def __init__(self, request: CompletionRequest, tokenizer, model_name: str):
        self.request = request
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.id = "cmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        n = request.n
        self.choices = [Choice(c, request.logprobs is not None) for c in range(len(request.prompts) * n)]
        self.prompt_tokens = sum(len(p) for p in request.prompts)
        self.done = False
        self.error: APIError | None = None

    # ------------------------------------------------------------------------------------------

    def apply(self, events: list) -> list[dict]:
        chunks = []
        for event in events:
            if isinstance(event, PromptTokens):
                for j in range(self.request.n):
                    chunks.append(self._echo(self.choices[event.prompt * self.request.n + j], event))
            elif isinstance(event, Tokens):
                chunk = self._tokens(self.choices[event.choice], event)
                if chunk is not None:
                    chunks.append(chunk)
            elif isinstance(event, Failed):
                self.error = event.error
                self.done = True
            elif isinstance(event, Done):
                self.done = True
        return chunks

    def _echo(self, choice: Choice, event: PromptTokens) -> dict:
        text = self.tokenizer.decode(event.token_ids)
        logprobs = None
        if choice.logprobs is not None:
            assert event.top_ids is not None and event.top_values is not None
            values = [None] + [finite(v) for v in event.logprobs[1:]]
            tops: list[dict | None] = [None]
            tops += [
                self._top(event.top_ids[t], event.top_values[t], token, event.logprobs[t])
                for t, token in enumerate(event.token_ids)
                if t > 0
            ]
            logprobs = self._extend(
                choice, event.token_ids, values, tops, prompt_offsets(self.tokenizer, event.token_ids)
            )
        choice.parts.append(text)
        return self._chunk(choice.index, text, logprobs, None)

    def _tokens(self, choice: Choice, event: Tokens) -> dict | None:
        choice.completion_tokens += len(event.token_ids)
        choice.finish_reason = event.finish_reason
        choice.parts.append(event.text)
        logprobs = None
        if choice.logprobs is not None:
            tops = [
                self._top(ids, values, token, lp)
                for (ids, values), token, lp in zip(event.alternatives or [], event.token_ids, event.logprobs)
            ]
            logprobs = self._extend(
                choice, event.token_ids, [finite(v) for v in event.logprobs], tops, list(event.text_offset)
            )
        if not event.text and not event.token_ids and event.finish_reason is None:
            return None
        return self._chunk(choice.index, event.text, logprobs, event.finish_reason)

    def _top(self, ids, values, token: int, logprob: float) -> dict[str, float | None]:
        top = {token_text(self.tokenizer, int(i)): finite(v) for i, v in zip(ids, values)}
        top.setdefault(token_text(self.tokenizer, token), finite(logprob))  # the chosen one, always
        return top

    def _extend(self, choice: Choice, token_ids, values, tops, offsets) -> dict:
        part = {
            "tokens": [token_text(self.tokenizer, t) for t in token_ids],
            "token_logprobs": values,
            "top_logprobs": tops,
            "text_offset": offsets,
        }
        assert choice.logprobs is not None
        for key, items in part.items():
            choice.logprobs[key].extend(items)
        return part

    # ------------------------------------------------------------------------------------------

    def _chunk(self, index: int, text: str, logprobs, finish_reason) -> dict:
        chunk = self._envelope([{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}])
        if self.request.include_usage:
            chunk["usage"] = None
        return chunk

    def _envelope(self, choices: list) -> dict:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model_name,
            "choices": choices,
        }

    def usage(self) -> dict:
        completion = sum(c.completion_tokens for c in self.choices)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def usage_chunk(self) -> dict:
        return self._envelope([]) | {"usage": self.usage()}

    def body(self) -> dict:
        choices = [
            {"index": c.index, "text": "".join(c.parts), "logprobs": c.logprobs, "finish_reason": c.finish_reason}
            for c in self.choices
        ]
        return self._envelope(choices) | {"usage": self.usage()}


def prompt_offsets(tokenizer, token_ids: list[int]) -> list[int]:
    """Each prompt token's character offset in the prompt's text (whole characters decoded before it)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offsets, count = [], 0
    for piece in tokenizer.token_bytes(token_ids):
        offsets.append(count)
        count += len(decoder.decode(piece))
    return offsets
