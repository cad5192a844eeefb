"""Checks of arguments: each returns the value in the form the engine uses, or raises an
`InputError` whose one line names the argument and what it must be.

Token ids are checked here once for everyone (the model call, generation, scoring, the analyses):
they must be integers in the vocabulary, and a sequence must fit the context.

Sizes are checked here too, before anything proportional to them is allocated: `check_memory`
compares the bytes a request needs (worked out with Python integers, which cannot overflow) with
what this process may allocate (`memory_limit`), and names the argument that asked for them.
"""

from __future__ import annotations

import math
import numbers
import operator
import os

import numpy as np

from .errors import CheckpointError, InputError


def shown(value) -> str:
    """repr(value) for an error message, kept to one short line: a huge integer is shown by its
    order of magnitude (repr of one with more than 4300 digits would itself fail), a long value cut."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"{'-' if value < 0 else ''}about 10^{int(math.log10(abs(value)))}"
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails: its type will do
        return f"a {type(value).__name__}"
    text = " ".join(text.split())  # one line
    return text if len(text) <= 80 else text[:77] + "..."


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
        raise InputError(f"{name} must be an integer, got {shown(value)}")
    return number


def check_integer(name: str, value, low: int, high: int | None = None, high_name: str | None = None) -> int:
    """value as an int from low to high (None: no upper limit; high_name: how the message states
    high, default its number), or an InputError naming the argument and the range."""
    number = integer_or_none(value)
    if number is None or number < low or (high is not None and number > high):
        limit = f"from {low} to {high_name or high}" if high is not None else f">= {low}"
        raise InputError(f"{name} must be an integer {limit}, got {shown(value)}")
    return number


def integer_array(values, name: str) -> np.ndarray:
    """values (a list, nested lists of equal length, or an array) as an int64 array, or an
    InputError naming the argument: ragged rows, non-integers (bools and floats included) and
    integers beyond int64 are refused."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):  # ragged rows
        raise InputError(f"{name} must be an array of integers with rows of equal length") from None
    if array.dtype == object:  # Python integers beyond int64, or a mix of types
        values = [integer_or_none(x) for x in array.reshape(-1)]
        if None in values:
            bad = array.reshape(-1)[values.index(None)]
            raise InputError(f"{name} must be integers, got {shown(bad)}")
        biggest = max(values, key=abs, default=0)
        if -(2**63) <= biggest < 2**63:  # integers of several types (Python's and NumPy's)
            return np.array(values, dtype=np.int64).reshape(array.shape)
        raise InputError(f"{name} must be integers that fit in 64 bits, got {shown(biggest)}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{name} must be integers, got dtype {array.dtype}")
    if array.dtype == np.uint64 and array.size and array.max() > np.iinfo(np.int64).max:
        raise InputError(f"{name} must be integers that fit in 64 bits, got {array.max()}")
    return array.astype(np.int64, copy=False)


def check_token_ids(ids, vocab_size: int) -> tuple[np.ndarray, bool]:
    """Token ids [T] or [B, T] -> (int64 [B, T], whether a batch was given). Each id must be an
    integer in [0, vocab_size)."""
    ids = integer_array(ids, "token ids")
    if ids.ndim not in (1, 2) or ids.size == 0:
        raise InputError(f"token ids must be a non-empty [T] or [B, T] array, got shape {ids.shape}")
    low, high = ids.min(), ids.max()
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise InputError(f"token id {bad} is out of range for vocab_size {vocab_size}")
    batched = ids.ndim == 2
    return (ids if batched else ids[None, :]), batched


def check_counts(values, name: str, n: int, high: int | None = None) -> np.ndarray:
    """n integer counts from 0 to high (None: no upper limit) -> int64 [n], or an InputError."""
    counts = integer_array(values, name)
    if counts.shape != (n,) or (counts < 0).any() or (high is not None and (counts > high).any()):
        limit = f"between 0 and {high}" if high is not None else ">= 0"
        raise InputError(f"{name} must be {n} integer counts {limit}, got {shown(counts.tolist())}")
    return counts


def check_context(n_slots: int, n_positions: int, left_padding=None) -> None:
    """`n_slots` slots (the longest row's, less its left padding) must fit the context."""
    longest = n_slots - (0 if left_padding is None else int(np.min(left_padding)))
    if longest > n_positions:
        raise InputError(f"{longest} tokens exceed the model's context of n_positions={n_positions}")


def check_sequence(ids, vocab_size: int, n_positions: int) -> np.ndarray:
    """One sequence of token ids, as the analyses take it: ints [T], in the vocabulary, within the
    context -> int64 [T]."""
    ids = integer_array(ids, "token ids")
    if ids.ndim != 1:
        raise InputError(f"token ids must be a [T] array (one sequence), got shape {ids.shape}")
    ids = check_token_ids(ids, vocab_size)[0][0]  # int64 [T]
    check_context(len(ids), n_positions)
    return ids


def format_bytes(n: int) -> str:
    """A byte count for people: 1.5 GB, 300 MB (powers of 1000, as disk and memory sizes are sold)."""
    n = int(n)
    if n >= 10**15:  # absurd requests: their order of magnitude (str() of a huge int would fail)
        return f"about 10^{int(math.log10(n))} bytes"
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def memory_limit() -> int:
    """The bytes this process may allocate at most: the machine's physical memory, or less where
    an address-space limit (RLIMIT_AS, `ulimit -v`) leaves less beside what is mapped already."""
    try:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume no limit worth checking
        limit = 1 << 62
    try:
        import resource
    except ImportError:
        return limit
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/statm") as statm:  # Linux: the first number is the pages mapped
                mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            mapped = 0
        limit = min(limit, max(0, soft - mapped))
    return limit


def check_memory(nbytes: int, what: str) -> None:
    """Refuse a request of `nbytes` (a Python int, so no overflow) that cannot fit in memory:
    an InputError that starts with `what` (the argument and its value)."""
    limit = memory_limit()
    if nbytes > limit:
        raise InputError(
            f"{what} needs {format_bytes(nbytes)} of memory, more than the {format_bytes(limit)} this process can have"
        )


def check_finite(values: np.ndarray, what: str) -> None:
    """The model's output must be finite: NaN or infinite logits mean NaN or infinite weights (or
    weights so large that float32 overflows), which no sampling or score can mean anything with."""
    if not np.isfinite(values).all():
        raise CheckpointError(
            f"{what} are not finite (NaN or infinity): the model's weights hold NaN or infinite values, "
            "or values so large that float32 overflows"
        )


FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)


def is_finite_number(value) -> bool:
    """Whether value is a real number (not a bool) with a finite value (huge integers included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond float's range
        return False
