"""Writing a file atomically: all of it or, on any failure, nothing (no partial file left behind)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError


def check_destination(path, label: str | None = None) -> Path:
    """The directory a file `path` would be written to; an InputError (naming `label`, default the
    path) if it does not exist or is not writable."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{label or path}: the directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise InputError(f"{label or path}: the directory {directory} is not writable")
    return directory


def write_atomically(path, write) -> Path:
    """Call write(binary file) on a temporary file beside `path`, then rename it to `path` (atomic
    on one file system). The file gets the permissions a new file gets (0666 less the umask), not
    the 0600 of a temporary file. A missing or unwritable directory is an InputError naming it."""
    path = Path(path)
    directory = check_destination(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        umask = os.umask(0o022)  # read the umask (there is no other portable way), then put it back
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path
