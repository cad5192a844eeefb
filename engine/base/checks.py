"""Checks of arguments: each returns the value in the form the engine uses, or raises an
`InputError` whose one line names the argument and what it must be.

Token ids are checked here once for everyone (the model call, generation, scoring, the analyses):
they must be integers in the vocabulary, and a sequence must fit the context.
"""

from __future__ import annotations

import operator

import numpy as np

from .errors import InputError


def integer_or_none(value) -> int | None:
    """value as an int if it is an integer (Python or NumPy; not a bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # floats and strings fail
    except TypeError:
        return None


def is_integer(value) -> bool:
    """Whether value is an integer (Python or NumPy), not a bool."""
    return integer_or_none(value) is not None


def as_integer(value, name: str) -> int:
    """value as an int, or an InputError naming the argument (callers check the range themselves)."""
    number = integer_or_none(value)
    if number is None:
        raise InputError(f"{name} must be an integer, got {value!r}")
    return number


def check_integer(name: str, value, low: int, high: int | None = None, high_name: str | None = None) -> int:
    """value as an int from low to high (None: no upper limit; high_name: how the message states
    high, default its number), or an InputError naming the argument and the range."""
    number = integer_or_none(value)
    if number is None or number < low or (high is not None and number > high):
        limit = f"from {low} to {high_name or high}" if high is not None else f">= {low}"
        raise InputError(f"{name} must be an integer {limit}, got {value!r}")
    return number


def check_token_ids(ids, vocab_size: int) -> tuple[np.ndarray, bool]:
    """Token ids [T] or [B, T] -> (int64 [B, T], whether a batch was given). Each id must be an
    integer in [0, vocab_size)."""
    ids = np.asarray(ids)
    if ids.ndim not in (1, 2) or ids.shape[-1] == 0:
        raise InputError(f"token ids must be a non-empty [T] or [B, T] array, got shape {ids.shape}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"token ids must be integers, got dtype {ids.dtype}")
    low, high = ids.min(), ids.max()
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise InputError(f"token id {bad} is out of range for vocab_size {vocab_size}")
    batched = ids.ndim == 2
    return (ids if batched else ids[None, :]).astype(np.int64, copy=False), batched


def check_context(n_slots: int, n_positions: int, left_padding=None) -> None:
    """`n_slots` slots (the longest row's, less its left padding) must fit the context."""
    longest = n_slots - (0 if left_padding is None else int(np.min(left_padding)))
    if longest > n_positions:
        raise InputError(f"{longest} tokens exceed the model's context of n_positions={n_positions}")


def check_sequence(ids, vocab_size: int, n_positions: int) -> np.ndarray:
    """One sequence of token ids, as the analyses take it: ints [T], in the vocabulary, within the
    context -> int64 [T]."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise InputError(f"token ids must be a [T] array (one sequence), got shape {ids.shape}")
    ids = check_token_ids(ids, vocab_size)[0][0]  # int64 [T]
    check_context(len(ids), n_positions)
    return ids
