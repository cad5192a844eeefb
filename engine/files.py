"""Writing a file atomically: all of it or, on any failure, nothing (no partial file left behind)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError


def write_atomically(path, write) -> Path:
    """Call write(binary file) on a temporary file beside `path`, then rename it to `path` (atomic
    on one file system). The file gets the permissions a new file gets (0666 less the umask), not
    the 0600 of a temporary file. A missing directory is an InputError naming it."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{path}: the directory {directory} does not exist")
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
