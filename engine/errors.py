"""Errors a user can act on.

Every error the engine raises for bad input (a broken model directory, an unknown model name, an
argument out of range) is a `GPT2Error`. Its message is one line that names the file, tensor,
argument or limit at fault. The command line prints that line and exits with status 2; anything
else is a bug and keeps its traceback.
"""

import operator


class GPT2Error(Exception):
    """Base class of the engine's user-facing errors."""


class ConfigError(GPT2Error, ValueError):
    """config.json is missing, unreadable, or describes a model the engine cannot run faithfully."""


class CheckpointError(GPT2Error, ValueError):
    """A weights file is missing, malformed, or disagrees with config.json."""


class ModelNotFoundError(GPT2Error, FileNotFoundError):
    """A model name or directory could not be resolved to files on disk."""


class TokenizerError(GPT2Error, ValueError):
    """The tokenizer files are missing, corrupted, or the text cannot be encoded."""


class InputError(GPT2Error, ValueError):
    """Token ids, prompts or arguments that the model cannot take (out of range, too long, ...)."""


def integer_or_none(value) -> int | None:
    """value as an int if it is an integer (Python or NumPy; not a bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # floats and strings fail
    except TypeError:
        return None


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
