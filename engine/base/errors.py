"""Errors a user can act on.

Every error the engine raises for bad input (a broken model directory, an unknown model name, an
argument out of range) is a `GPT2Error`. Its message is one line that names the file, tensor,
argument or limit at fault. The command line prints that line and exits with status 2; anything
else is a bug and keeps its traceback. The checks that raise them live in `engine/base/checks.py`
(arguments and sizes), `engine/base/files.py` (what is at a path, reading and writing files) and
beside what they check (config.json in config.py, weight files in the loader).
"""


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


class OutputError(InputError):
    """An output cannot be written: its destination is not a regular file, the disk is full, stdout
    is closed, ... (`engine/base/files.py`). An InputError, as the destination is an argument. A
    reader of stdout that went away is not one of these: that is a `BrokenPipeError`, which the
    command line ends quietly on."""
