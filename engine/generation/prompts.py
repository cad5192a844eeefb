"""Prompts: from what a user gives (text, token ids, or a batch of either) to checked token ids that
fit the context, and the prefill pass that runs them through the model into a fresh KV cache.

Legend: P = prompts, L = longest prompt, V = vocab_size.
"""

from __future__ import annotations

import numpy as np

from ..base.checks import is_integer
from ..base.errors import InputError


def prompt_token_ids(model, prompt, bos: bool) -> tuple[list[list[int]], bool]:
    """The token ids of each prompt, and whether a single prompt was given.

    prompt: a string, a list of strings, token ids (a list of ints or an int array [T]), or a
    batch of token ids (a list of lists of ints, or an int array [P, T]).
    """
    if isinstance(prompt, np.ndarray):
        if prompt.ndim not in (1, 2) or (prompt.size and not np.issubdtype(prompt.dtype, np.integer)):
            raise InputError(
                f"a prompt array must hold integer token ids [T] or [P, T], got {prompt.dtype} {prompt.shape}"
            )
        prompt = prompt.tolist()
    prompts: list
    if isinstance(prompt, str):
        prompts, single = [prompt], True
    elif isinstance(prompt, (list, tuple)) and prompt and all(is_integer(x) for x in prompt):
        prompts, single = [list(prompt)], True
    elif isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) or is_id_list(p) for p in prompt):
        prompts, single = list(prompt), False
    else:
        raise InputError("the prompt must be a string, a list of strings, token ids, or a list of token id lists")

    eos, n_vocab = model.config.eos_token_id, model.config.vocab_size
    batch = []
    for i, p in enumerate(prompts):
        if isinstance(p, str) and model.tokenizer is None:
            raise InputError("this model has no tokenizer: pass the prompt as token ids")
        ids = model.tokenizer.encode(p) if isinstance(p, str) else [int(x) for x in p]
        if bos:
            ids = [eos] + ids
        which = "the prompt" if single else f"prompt {i}"
        if not ids:
            raise InputError(f"{which} is empty: give some text, or start from <|endoftext|> with bos=True (--bos)")
        bad = [x for x in ids if not 0 <= x < n_vocab]
        if bad:
            raise InputError(f"{which}: token id {bad[0]} is out of range for vocab_size {n_vocab}")
        batch.append(ids)
    return batch, single


def is_id_list(p) -> bool:
    """Whether p is one prompt's token ids: a list, tuple or [T] array of integers."""
    if isinstance(p, np.ndarray) and p.ndim != 1:
        return False
    return isinstance(p, (list, tuple, np.ndarray)) and all(is_integer(x) for x in p)


def check_room(model, prompts: list[list[int]], max_new_tokens: int, spell=lambda name: name) -> None:
    """The longest prompt and max_new_tokens new tokens must fit in the context (n_positions)."""
    n_ctx = model.config.n_positions
    longest = max(len(p) for p in prompts)
    if longest > n_ctx:
        raise InputError(f"the prompt has {longest} tokens, more than the model's context of {n_ctx} tokens")
    if longest + max_new_tokens > n_ctx:
        fits = n_ctx - longest
        room = {0: "no new token fits", 1: "at most 1 new token fits"}.get(fits, f"at most {fits} new tokens fit")
        raise InputError(
            f"{spell('max_new_tokens')}={max_new_tokens} would pass the context of {n_ctx} tokens: the prompt has "
            f"{longest} token{'s' if longest > 1 else ''}, so {room}"
        )


def prefill(model, prompts: list[list[int]], max_new_tokens: int, copies: int, hooks=None):
    """Run the prompts through the model in one left-padded batch and make `copies` rows of each.

    Returns the cache ([P * copies] rows, row i * copies + j is copy j of prompt i) and the
    float32 logits [P * copies, V] of the token after each prompt. With `hooks` (a capture), the
    output layer runs at every position, so that `ln_final.hook_normalized` covers them all.
    """
    lengths = np.array([len(p) for p in prompts])  # [P]
    L = int(lengths.max())
    padding = L - lengths  # [P]
    ids = np.full((len(prompts), L), model.config.eos_token_id, dtype=np.int64)  # [P, L]; padding is never seen
    for i, p in enumerate(prompts):
        ids[i, padding[i] :] = p
    cache = model.new_cache(len(prompts), max_length=L + max_new_tokens, left_padding=padding)
    logits = model(ids, cache=cache, logits_to_keep=None if hooks else 1, hooks=hooks)[:, -1]  # [P, V]
    rows = np.repeat(np.arange(len(prompts)), copies)  # [P * copies]
    cache.select_rows(rows)
    return cache, logits[rows]
