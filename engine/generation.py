"""Text generation: continue a prompt one token at a time through the KV cache.

The prompt is processed in one forward pass that fills the cache, then each new token costs one
step of one token. Greedy decoding (always the most likely token) for now.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .model import log_softmax


@dataclass
class GenerationResult:
    text: str  # the new text only, not the prompt
    token_ids: list[int]  # the new token ids
    finish_reason: str  # "length" (max_new_tokens reached) or "eos" (end-of-text produced)
    logprobs: list[float] = field(default_factory=list)  # log-probability of each new token


def encode_prompt(model, prompt) -> list[int]:
    """A prompt as token ids: text is encoded, ids are taken as they are."""
    ids = model.tokenizer.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
    if not ids:
        raise InputError("the prompt is empty: give some text (or start it with <|endoftext|>)")
    return ids


def generate(model, prompt, max_new_tokens: int = 32, stop_at_eos: bool = True) -> GenerationResult:
    """Greedy continuation of `prompt` (a string or token ids) by up to `max_new_tokens` tokens."""
    ids = encode_prompt(model, prompt)
    n_ctx = model.config.n_positions
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if len(ids) + max_new_tokens > n_ctx:
        raise InputError(
            f"prompt ({len(ids)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the context of {n_ctx} tokens"
        )
    eos = model.config.eos_token_id
    cache = model.new_cache(batch_size=1, max_length=len(ids) + max_new_tokens)
    logits = model(ids, cache=cache, logits_to_keep=1)[-1]  # [V] after the whole prompt
    new_ids, logprobs, finish_reason = [], [], "length"
    while True:
        token = int(np.argmax(logits))
        new_ids.append(token)
        logprobs.append(float(log_softmax(logits)[token]))
        if stop_at_eos and token == eos:
            finish_reason = "eos"
            break
        if len(new_ids) == max_new_tokens:
            break
        logits = model([token], cache=cache)[-1]  # [V], one step through the cache
    text_ids = new_ids[:-1] if finish_reason == "eos" else new_ids
    return GenerationResult(model.tokenizer.decode(text_ids), new_ids, finish_reason, logprobs)
