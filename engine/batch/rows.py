"""Input rows: JSON Lines in, one `Row` per line that is not blank, each with its id or the error
that stops it; the seed a row's random stream starts from; output lines that are always valid JSON.

A row is a JSON object with an `id` (a string or a number, unique in the file) and the fields of its
job (`prompt` or `text`, and options). What can be wrong with a line, and so become an error line
in the output instead of stopping the job: not UTF-8, not JSON (NaN and Infinity are not JSON), not an
object, a key given twice, no id, an id that is not a string or a finite number, an id an earlier
line already has. The fields themselves are checked by the job (engine/batch/tasks.py).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from ..base.checks import format_bytes, memory_limit
from ..base.errors import GPT2Error, InputError
from ..base.files import finite_or_none


@dataclass
class Row:
    """Line `line` of the input (1-based), the `index`-th row (0-based; blank lines are not rows).

    id: the row's id as parsed (None if it could not be read); fields: the other keys; error: why the
    row cannot run (None while it can)."""

    index: int
    line: int
    id: str | int | float | None
    fields: dict
    error: str | None = None

    @property
    def key(self) -> str:
        return id_key(self.id)


def id_key(value) -> str:
    """The canonical JSON of an id: what makes two ids the same, and what a row's seed is made from.
    Strings are JSON strings with their characters as they are (UTF-8, no \\u escapes), integers
    their decimal digits, other numbers Python's shortest repr (1.5, 1e+100): so "1" (a string),
    1 and 1.0 are three different ids."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def row_seed(job_seed: int, row_id) -> int:
    """The seed of a row's random stream: the first 8 bytes (big-endian) of the SHA-256 of the UTF-8
    of the canonical JSON of [job_seed, id], with no spaces. It depends on the job seed and the id
    only, never on the row's position or on the worker that runs it."""
    text = json.dumps([job_seed, row_id], ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def json_line(record: dict) -> str:
    """One line of JSON (UTF-8, compact, no newline). A number that is not finite, which JSON has no
    spelling for, is written as null."""
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(finite_or_none(record), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def error_record(row: Row) -> dict:
    return {"id": row.id, "line": row.line, "error": row.error}


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _object_without_repeats(pairs):
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} is given twice")
        seen.add(key)
    return dict(pairs)


def parse_row(data: bytes, index: int, line: int) -> Row:
    """One input line (without its newline) -> a Row, with `error` set if it cannot be read."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return Row(index, line, None, {}, f"not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_object_without_repeats)
    except json.JSONDecodeError as error:
        return Row(index, line, None, {}, f"invalid JSON: {error.msg} (column {error.colno})")
    except ValueError as error:
        return Row(index, line, None, {}, f"invalid JSON: {error}")
    except RecursionError:
        return Row(index, line, None, {}, "invalid JSON: nested too deeply for this reader")
    if not isinstance(value, dict):
        return Row(index, line, None, {}, f"a row must be a JSON object, got {json_type(value)}")
    if "id" not in value:
        return Row(index, line, None, {}, 'the row has no "id"')
    row_id = value.pop("id")
    if isinstance(row_id, bool) or not isinstance(row_id, (str, int, float)):
        return Row(index, line, None, value, f"the id must be a string or a number, got {json_type(row_id)}")
    if isinstance(row_id, float) and not math.isfinite(row_id):
        return Row(index, line, None, value, f"the id must be a finite number, got {row_id}")
    return Row(index, line, row_id, value)


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


# Memory a line takes while it is read and parsed, per byte: its bytes, the str they decode to (up to
# 4 bytes a character: one emoji makes every character of an ASCII text 4 bytes wide) and the value
# parsed from it (up to 7 bytes per byte for a list of token ids). Measured with tracemalloc: peaks of
# 2, 8 and 7 bytes per byte for an ASCII text, an ASCII text with one emoji, and token ids.
LINE_PEAK_FACTOR = 10
ROW_OVERHEAD = 600  # the Row, its dict and id: 581 bytes measured for a row of 26 bytes


def held_bytes(value) -> int:
    """About what a parsed JSON value holds in memory: sys.getsizeof of it and of everything in it (a
    small int counted although Python shares it). Without recursion: JSON nests deep."""
    size, waiting = 0, [value]
    while waiting:
        item = waiting.pop()
        size += sys.getsizeof(item)
        if isinstance(item, dict):
            waiting.extend(item.keys())
            waiting.extend(item.values())
        elif isinstance(item, list):
            waiting.extend(item)
    return size


def read_rows(path, limit: int | None = None, memory: int | None = None) -> Iterator[Row]:
    """The rows of a JSON Lines file, in order, up to `limit` of them; blank lines are skipped, and a
    line's `\\r\\n` ending is taken as `\\n`. Duplicate ids are marked here: the first line with an id
    keeps it, each later one gets an error naming that first line.

    The job holds every row while it runs. A line is read only if parsing it fits in `memory` bytes
    (default: what this process may allocate) beside the rows read before it, and each row is charged
    what it holds: once a line does not fit, an InputError naming it stops the job before anything is
    allocated for it."""
    first_line: dict[str, int] = {}
    budget = memory_limit() if memory is None else memory
    spent = 0

    def too_much(number: int) -> InputError:
        return InputError(
            f"{path}: line {number}: the rows up to here need more than the {format_bytes(budget)} of memory "
            "this process can have (a job holds all its rows): split the input into several jobs"
        )

    try:
        file = open(path, "rb")  # noqa: SIM115 (closed below; the generator keeps it open between rows)
    except OSError as error:
        raise GPT2Error(f"{path}: cannot read the file ({error.strerror or error})") from None
    with file:
        index = 0
        for number in itertools.count(1):
            if limit is not None and index >= limit:
                return
            longest = max(0, budget - spent - ROW_OVERHEAD) // LINE_PEAK_FACTOR
            try:
                data = file.readline(longest + 1)
            except OSError as error:
                raise GPT2Error(f"{path}: cannot read the file ({error.strerror or error})") from None
            except MemoryError:  # the estimate fell short: still one line, not a traceback
                raise too_much(number) from None
            if not data:
                return
            if len(data) > longest:
                raise too_much(number)
            data = data.rstrip(b"\n").rstrip(b"\r")
            if not data.strip():
                continue
            try:
                row = parse_row(data, index, number)
            except MemoryError:
                raise too_much(number) from None
            del data
            spent += ROW_OVERHEAD + held_bytes(row.id) + held_bytes(row.fields)
            if spent > budget:
                raise too_much(number)
            if row.error is None:
                earlier = first_line.setdefault(row.key, number)
                if earlier != number:
                    row.error = f"duplicate id {row.key}: line {earlier} has it too"
            yield row
            index += 1


def check_fields(row: Row, text_field: str, known: tuple[str, ...], booleans: tuple[str, ...]) -> None:
    """The row's fields: the text field present, no unknown field, true/false where a flag is meant.
    Raises InputError."""
    if text_field not in row.fields:
        raise InputError(f'the row has no "{text_field}"')
    unknown = [name for name in row.fields if name != text_field and name not in known]
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r} (known: id, {text_field}, {', '.join(known)})")
    for name in booleans:
        if name in row.fields and not isinstance(row.fields[name], bool):
            raise InputError(f"{name} must be true or false, got {json.dumps(row.fields[name])}")
    value = row.fields[text_field]
    if isinstance(value, str) or (
        isinstance(value, list) and value and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    ):
        return
    raise InputError(f"{text_field} must be a string or a list of token ids, got {json_type(value)}")
