"""The output file: what an earlier run left in it, and appending whole lines in the input's order.

Line k of the output is the output of row k of the input (blank input lines are not rows), so a
job's output is always a prefix of its complete output, and resuming is skipping as many rows as
there are lines. Each line is checked against its row's id before anything is appended: an output
that belongs to another input is refused, never extended.

Lines are appended (O_APPEND), never rewritten: a batch of finished lines goes out in one write,
then fsync, so a crash or Ctrl-C loses at most the rows still running or waiting for an earlier
row. A crash in the middle of a write can leave a last line without its newline (or, after a power
cut, not JSON): it is dropped when the job is resumed, and its row runs again. A write that fails
(a full disk) is cut back to the last whole line, and stops the job with an OutputError. An exclusive lock
(flock) keeps two jobs from appending to one file at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..base.errors import GPT2Error, OutputError
from ..base.files import check_destination
from .rows import id_key
from .tasks import Done


@dataclass
class Existing:
    """What an output file already holds: `keys[k]` is the id (canonical JSON) of line k, `failed`
    the lines with an error, `size` the bytes up to the end of the last whole line, `torn` whether
    bytes after it (a line cut short) are to be dropped."""

    keys: list[str] = field(default_factory=list)
    failed: int = 0
    first_error: str | None = None
    size: int = 0
    torn: bool = False

    @property
    def lines(self) -> int:
        return len(self.keys)


def check_paths(input_path, output_path) -> None:
    """Refuse, before any work, an output that would clobber the input or cannot be written."""
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        reason = "no such file" if not input_path.exists() else "not a file"
        raise GPT2Error(f"{input_path}: cannot read the input ({reason})")
    if output_path.exists():
        if output_path.is_dir():
            raise GPT2Error(f"{output_path}: the output is a directory")
        if os.path.samefile(input_path, output_path):
            raise GPT2Error(f"{output_path}: the output is the input file; give another path for the output")
    check_destination(output_path)


def read_existing(path) -> Existing:
    """Read an earlier run's output (an absent file is an empty one)."""
    existing = Existing()
    try:
        file = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return existing
    except OSError as error:
        raise GPT2Error(f"{path}: cannot read the output ({error.strerror or error})") from None
    with file:
        pending_bad = None  # a line that is not a record: allowed only as the very last one
        for number, data in enumerate(file, start=1):
            if pending_bad is not None:
                raise GPT2Error(
                    f"{path}: line {pending_bad} is not a line gpt2 batch writes; refusing to append to it "
                    "(give another output, or remove it to start again)"
                )
            if not data.endswith(b"\n"):
                existing.torn = True  # cut short by a crash: dropped, its row runs again
                break
            try:
                record = json.loads(data)
                key = id_key(record["id"])
            except (ValueError, KeyError, TypeError):
                pending_bad = number
                continue
            existing.keys.append(key)
            existing.size += len(data)
            if "error" in record:
                existing.failed += 1
                existing.first_error = existing.first_error or f"line {record.get('line')}: {record['error']}"
        if pending_bad is not None:
            existing.torn = True
    return existing


class OutputFile:
    """Appends rows' lines in row order: `add` takes them in any order, `flush` writes (and syncs)
    every line whose predecessors are all written."""

    def __init__(self, path) -> None:
        """Open (or create) the output and take its lock; `start` says where to append."""
        self.path = path
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as error:
            raise OutputError(f"{path}: cannot write the output ({error.strerror or error})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise GPT2Error(f"{path}: another job is writing this output") from None
        self.next = 0  # the index of the next row to write
        self.size = 0  # the bytes of the whole lines in the file
        self.pending: dict[int, str] = {}
        self.written = 0

    def start(self, existing: Existing) -> None:
        """Append after the whole lines an earlier run wrote (read under the lock); a torn last line
        is cut off."""
        if existing.torn:
            try:
                os.ftruncate(self.fd, existing.size)
                os.fsync(self.fd)
            except OSError as error:
                raise OutputError(f"{self.path}: cannot cut its last, torn line ({error.strerror or error})") from None
        self.next = existing.lines
        self.size = existing.size

    def add(self, done: list[Done]) -> None:
        for d in done:
            self.pending[d.index] = d.line

    def flush(self) -> int:
        """Write the lines that are next in order; how many were written."""
        lines = []
        while self.next in self.pending:
            lines.append(self.pending.pop(self.next))
            self.next += 1
        if lines:
            data = ("\n".join(lines) + "\n").encode("utf-8")
            end = self.size  # where this write starts: the end of the last whole line
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view) :]
                os.fsync(self.fd)
            except OSError as error:  # a full disk, a quota, a file size limit: the lines go, and so
                self.fd, fd = -1, self.fd  # does a part of one that was written; the job stops
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end)
                os.close(fd)
                raise OutputError(f"{self.path}: cannot write the output ({error.strerror or error})") from None
            self.size += len(data)
            self.written += len(lines)
        return len(lines)

    def close(self) -> None:
        if self.fd >= 0:
            self.flush()
            os.close(self.fd)  # releases the lock
            self.fd = -1
