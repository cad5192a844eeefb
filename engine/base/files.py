"""Writing a file atomically: all of it or, on any failure, nothing (no partial file left behind)."""

from __future__ import annotations

import os
import secrets
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


# ----------------------------------------------------------------------------------------------
# Several files at once: all of them, or none (gpt2 explain --output R.npz --html R.html)


def write_together(writes) -> list[Path]:
    """Write several files (a list of (path, write) pairs, as `write_atomically` takes them): all
    of them or, on any failure, none. Each file is written by `write_atomically`, nested so that
    every temporary file is complete before the first rename; a destination that already exists
    is kept as a hard link until all are in place, and put back if a later step fails. (Where the
    file system has no hard links, an existing destination renamed before a failure keeps its new,
    complete content.) Returns the paths."""
    paths = [Path(path) for path, _ in writes]
    if len({os.path.abspath(p) for p in paths}) != len(paths):
        raise InputError(f"the outputs must be different files, got {', '.join(map(str, paths))}")
    for path in paths:
        check_destination(path)
    backups: dict[Path, Path] = {}
    existed = {path for path in paths if path.is_file()}
    done: list[Path] = []

    def nested(rest) -> None:
        if not rest:
            return
        (path, write), later = rest[0], rest[1:]

        def write_then_the_rest(out):
            write(out)
            nested(later)  # the later files are complete and in place before this one is renamed

        write_atomically(path, write_then_the_rest)
        done.append(Path(path))

    try:
        for path in existed:
            backup = path.parent / f".{path.name}.{secrets.token_hex(6)}.old"
            try:
                os.link(path, backup)
                backups[path] = backup
            except OSError:  # no hard links here: no way back for this one
                pass
        nested(list(writes))
    except BaseException:
        for path in done:
            if path in backups:
                os.replace(backups.pop(path), path)
            elif path not in existed:
                os.unlink(path)
        raise
    finally:
        for backup in backups.values():
            backup.unlink(missing_ok=True)
    return paths
