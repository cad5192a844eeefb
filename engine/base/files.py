"""Files: what is at a path, reading a model directory's files, and writing output.

Reading. A model directory's files are read only when they are regular files (a symbolic link to
one is fine, as in the Hugging Face cache). Anything else at the name is an error that says what is
there (a directory, a symbolic link to nothing or in a loop, a FIFO, a device), never "missing";
a file that cannot be opened says why ("Permission denied"). Every read is bounded: a file larger
than its limit is refused before it is read, and JSON nested too deeply is refused, not a
RecursionError.

Writing: one path for files and one for stdout, with the same rules.
- `write_atomically` writes a file completely or not at all: into a temporary file beside it, then
  renamed over it. Only a regular file (or nothing) may be replaced: a directory, a device node
  (/dev/full, /dev/null), a FIFO or a socket at the path is refused by `check_destination` before
  any work, as are a missing directory and a name longer than the file system allows. A failed
  write (a full disk, a quota) removes the temporary file and leaves what was there untouched.
- `guarded_stdout` is the command line's stdout while a command runs: a closed stdout is refused
  before any work, and a write that fails (a full disk, /dev/full) is an `OutputError`. A reader that
  went away (`gpt2 ... | head -1`) raises `BrokenPipeError`, which the command ends quietly on, as
  Unix tools do (docs/errors.md).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path

from .errors import GPT2Error, InputError, OutputError

FILE = "a regular file"  # what `what_is_at` says of a regular file


def what_is_at(path) -> str | None:
    """What is at `path`: None when nothing is (not even a symbolic link), FILE for a regular file
    (after following symbolic links), otherwise a description for an error message."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        try:
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        except (OSError, ValueError):
            return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link that loops"
        if error.errno == errno.ENAMETOOLONG:
            return None  # nothing can be there
        return f"not reachable ({error.strerror or error})"
    except ValueError:  # a NUL character in the path
        return "not a valid path (it holds a NUL character)"
    kinds = (
        (stat.S_ISREG, FILE),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def is_what(kind: str) -> str:
    """`what_is_at`'s description as a predicate: "is a directory", "not reachable (...)"."""
    return kind if kind.startswith("not ") else f"is {kind}"


def regular_file(path, error: type[GPT2Error]) -> bool:
    """Whether a readable regular file is at `path`: False when nothing is there at all; `error`
    saying what is there instead (a directory, a dangling link, ...) or why it cannot be opened."""
    kind = what_is_at(path)
    if kind is None:
        return False
    if kind != FILE:
        raise error(f"{path}: {is_what(kind)}, not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise error(f"{path}: cannot read the file ({e.strerror or e})") from None
    return True


def read_bytes(path, error: type[GPT2Error], limit: int) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them (else `error`)."""
    if not regular_file(path, error):
        raise error(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(limit + 1) if size <= limit else b""
    except OSError as e:
        raise error(f"{path}: cannot read the file ({e.strerror or e})") from None
    if size > limit or len(data) > limit:
        raise error(f"{path}: the file has {max(size, len(data)):,} bytes, more than the {limit:,} allowed for it")
    return data


def decode_utf8(data: bytes, name, error: type[GPT2Error] = GPT2Error) -> str:
    """data as text, or `error` naming `name` and the offset of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{name}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def read_json(path, error: type[GPT2Error], limit: int):
    """The JSON value in the file at `path` (UTF-8, at most `limit` bytes), or `error` saying what
    is wrong with it in one line."""
    text = decode_utf8(read_bytes(path, error, limit), path, error).removeprefix("\ufeff")
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, and integers too long to convert
        raise error(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None


# ----------------------------------------------------------------------------------------------
# Writing files


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def check_destination(path, label: str | None = None) -> Path:
    """The file that writing to `path` will replace or create (a symbolic link to a file is followed,
    so the link stays), checked before any work: an `OutputError` naming `label` (default the path)
    if anything but a regular file is there, if its directory is missing or not writable, or if
    its name is too long for the file system."""
    try:
        given = Path(os.fspath(path))
    except TypeError:
        raise OutputError(f"{label or path!r}: not a file path") from None
    label = label or str(given)
    kind = what_is_at(given)
    if kind not in (None, FILE):
        raise OutputError(f"{label}: {is_what(kind)}; only a regular file (or nothing) can be written there")
    target = Path(os.path.realpath(given)) if kind == FILE and given.is_symlink() else given
    directory = target.parent if str(target.parent) else Path(".")
    if what_is_at(directory) != "a directory":
        raise OutputError(f"{label}: the directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise OutputError(f"{label}: the directory {directory} is not writable")
    length, most = len(os.fsencode(target.name)), _name_max(directory)
    if length > most:
        raise OutputError(f"{label}: the file name is {length} bytes long, more than the {most} the file system allows")
    return target


def write_atomically(path, write) -> Path:
    """Call write(binary file) on a temporary file beside `path`, then rename it to `path` (atomic
    on one file system). The file gets the permissions a new file gets (0666 less the umask), not
    the 0600 of a temporary file. Anything that stops the write (a full disk, an exception in
    `write`) removes the temporary file and leaves `path` as it was; the problems with the
    destination itself are refused first (`check_destination`). Errors are `OutputError`s."""
    target = check_destination(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=".gpt2-", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise OutputError(f"{path}: cannot create a file in {target.parent} ({error.strerror or error})") from None
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        umask = os.umask(0o022)  # read the umask (there is no other portable way), then put it back
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise OutputError(f"{path}: cannot write the file ({error.strerror or error})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return Path(path)


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


# ----------------------------------------------------------------------------------------------
# Writing to stdout


class GuardedStream:
    """A text stream whose failed writes name it: an `OutputError`, or `BrokenPipeError` as is
    when the reader went away. Everything else is the stream's own."""

    def __init__(self, stream, name: str):
        self.stream, self.name = stream, name

    def _call(self, method, *args):
        try:
            return method(*args)
        except BrokenPipeError:
            raise
        except OSError as error:
            raise OutputError(f"cannot write to {self.name} ({error.strerror or error})") from None
        except ValueError:  # the stream was closed under us
            raise OutputError(f"cannot write to {self.name} (it is closed)") from None

    def write(self, text: str) -> int:
        return self._call(self.stream.write, text)

    def flush(self) -> None:
        self._call(self.stream.flush)

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def guarded_stdout():
    """Run a command with sys.stdout guarded (see `GuardedStream`) and flushed at the end, so that
    every failure to write shows while the command can still report it. A closed stdout (started
    with `>&-`) is refused at once: nothing the command did could be seen."""
    stream = sys.stdout
    if stream is None or getattr(stream, "closed", False):
        raise OutputError("stdout is closed, so nothing could be printed: run the command with an open stdout")
    guard = GuardedStream(stream, "stdout")
    sys.stdout = guard
    try:
        yield
        guard.flush()
    except SystemExit:  # argparse after --help or a usage error: what it printed must arrive too
        guard.flush()
        raise
    finally:
        sys.stdout = stream


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null, so that the interpreter's last flush of what is
    still buffered finds nothing to complain about (the recipe of Python's `signal` documentation)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
