"""Read GPT-2 weights from a Hugging Face model directory through safetensors.

A directory holds `model.safetensors`, or shards listed by `model.safetensors.index.json`. Tensor
names come in two spellings, both accepted: the published files say `h.0.attn.c_attn.weight`,
`save_pretrained` says `transformer.h.0.attn.c_attn.weight` (and `lm_head.weight`). The causal-mask
buffers `h.{i}.attn.bias` / `h.{i}.attn.masked_bias` are constants, not weights: skipped.

Weights become float32: F32 as stored, F16 widened, BF16 widened exactly (a bfloat16 is the top
half of a float32, so the conversion is a 16-bit shift). With `dtype` bfloat16, float16 or int8,
the weight matrices are kept at that precision instead (engine/state/precision.py says which,
engine/state/formats.py how): a 16-bit file at its own precision as stored, anything else
rounded or quantized a chunk of rows at a time. A file written by `gpt2 quantize` holds int8
values and scales (engine/state/quantized.py).

Memory: all weights live in one block (`WeightArena`), and every tensor is an array view into it.
Bytes already in the precision kept are read from the file straight into their place (no
temporary, so loading never holds two copies of anything); anything converted goes through
chunks of 1M values. The block is anonymous
memory advised to the kernel as huge pages (2 MiB instead of 4 KiB): decoding streams all of it
for every token, and with huge pages that stream crosses 512x fewer page boundaries, so the
hardware prefetchers and the TLB keep up (docs/speed.md).

Every problem is a `CheckpointError` naming the file and the tensor.
"""

from __future__ import annotations

import json
import mmap
import re
import struct
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from ..base.checks import check_memory, shown
from ..base.config import GPT2Config
from ..base.errors import CheckpointError
from ..base.files import read_json, regular_file
from . import formats
from .precision import BYTES_PER_WEIGHT, input_axis, is_matrix
from .quantized import (
    BLOCK_SIZE,
    check_one_scheme,
    check_quantized_tensors,
    check_scales,
    dequantize_stored,
    quantization_of,
    scales_name,
)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SUPPORTED_DTYPES = ("F32", "F16", "BF16")
MASK_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")
LAYER_KEY = re.compile(r"^h\.(\d+)\.")
INDEX_JSON_LIMIT = 64 << 20  # bytes: the index of a sharded GPT-2 holds a few hundred names


def canonical_name(name: str) -> str:
    """The published spelling of a tensor name: without the `transformer.` prefix."""
    return name.removeprefix("transformer.")


def find_weight_files(model_dir: Path) -> tuple[Path, dict[Path, list[str]] | None]:
    """(the file to name in errors, {shard: tensor names} from the index, or None for one file).
    Each file must be a readable regular file (`engine.base.files.regular_file` says what else is
    there: a directory, a dangling link, ...)."""
    single, index = model_dir / SINGLE_FILE, model_dir / INDEX_FILE
    if regular_file(single, CheckpointError):
        return single, None
    if regular_file(index, CheckpointError):
        shards = shards_of_index(index, read_json(index, CheckpointError, INDEX_JSON_LIMIT))
        for shard in shards:
            if not regular_file(shard, CheckpointError):
                raise CheckpointError(f"{index}: lists shard {shard.name}, which is missing")
        return index, shards
    others = sorted(p.name for p in model_dir.glob("*.bin")) + sorted(p.name for p in model_dir.glob("*.h5"))
    hint = f" (found {', '.join(others)}: only safetensors files are read)" if others else ""
    raise CheckpointError(f"{model_dir}: no {SINGLE_FILE} or {INDEX_FILE}{hint}")


def shards_of_index(index: Path, data) -> dict[Path, list[str]]:
    """{shard file: tensor names} of a parsed index: a "weight_map" object of tensor name -> shard
    file name, each shard a file inside the model directory (no absolute path, no "..")."""
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointError(f'{index}: not a valid safetensors index (no "weight_map" object)')
    shards: dict[Path, list[str]] = {}
    for name, shard in weight_map.items():
        parts = PurePosixPath(shard).parts if isinstance(shard, str) and shard and "\0" not in shard else ()
        if not parts or parts[0] == "/" or ".." in parts:
            raise CheckpointError(
                f"{index}: not a valid safetensors index (tensor {shown(name)} is in {shown(shard)}, "
                "not a file name inside the model directory)"
            )
        shards.setdefault(index.parent.joinpath(*parts), []).append(name)
    return shards


def read_header(path: Path) -> tuple[dict, int]:
    """The JSON header of a safetensors file ({name: {dtype, shape, data_offsets}, ...}) and the
    byte offset where tensor data starts (offsets in the header count from there)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size)), 8 + size


CHUNK_ELEMENTS = 1 << 20  # tensors converted on the way in (widened, rounded, quantized): 1M values at a time
ALIGNMENT = 64  # bytes: each tensor starts on a cache line
HUGE_PAGE = 2 << 20


class WeightArena:
    """One block of memory for all the weights, handed out as aligned arrays of any dtype.

    Anonymous memory (not the file mapped: that would tie the arrays to the file staying
    unchanged), advised as huge pages where the system offers them. `slots` lists each array's
    (shape, dtype).
    """

    def __init__(self, slots: list[tuple[tuple[int, ...], np.dtype]]):
        self.offsets, total = [], 0
        for shape, dtype in slots:
            self.offsets.append(total)
            total += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // ALIGNMENT) * ALIGNMENT
        size = max(HUGE_PAGE, -(-total // HUGE_PAGE) * HUGE_PAGE)
        self.buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):  # Linux only; elsewhere ordinary pages
            self.buffer.madvise(mmap.MADV_HUGEPAGE)
        self.bytes = np.frombuffer(self.buffer, dtype=np.uint8)
        self.slots = slots

    def array(self, index: int) -> np.ndarray:
        shape, dtype = self.slots[index]
        start = self.offsets[index]
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.bytes[start : start + size].view(dtype).reshape(shape)


# The NumPy dtype each safetensors dtype is held in (bfloat16 as its uint16 bit patterns).
STORAGE: dict[str, np.dtype] = {
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(np.uint16),
    "I8": np.dtype(np.int8),
}


def read_exactly(f, out: np.ndarray, path: Path, name: str) -> None:
    """Fill `out` (C-contiguous) with the next out.nbytes bytes of f, or a CheckpointError."""
    view = memoryview(out.reshape(-1).view(np.uint8))  # type: ignore[arg-type]  # an ndarray is a buffer
    got = 0
    while got < len(view):  # readinto may return less than asked (large reads, signals)
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    if got != len(view):
        raise CheckpointError(f"{path}: tensor {name!r} is truncated ({got} of {len(view)} bytes)")


def read_tensor_into(path: Path, name: str, entry: dict, data_start: int, out: np.ndarray) -> None:
    """Read tensor `name` (header `entry`: dtype, data_offsets) of `path` into `out`: its bytes as
    they are when `out` holds the file's dtype (F32 into float32, F16 into float16, BF16 into
    uint16 bits, I8 into int8: no temporary), otherwise widened to float32 a chunk at a time."""
    begin, _ = entry["data_offsets"]
    with open(path, "rb", buffering=0) as f:
        f.seek(data_start + begin)
        if STORAGE[entry["dtype"]] == out.dtype:
            read_exactly(f, out, path, name)
            return
        if out.dtype != np.float32:
            raise ValueError(f"cannot read {entry['dtype']} into {out.dtype}")
        flat = out.reshape(-1)
        for start in range(0, flat.size, CHUNK_ELEMENTS):
            flat[start : start + CHUNK_ELEMENTS] = read_float32(
                f, entry["dtype"], min(CHUNK_ELEMENTS, flat.size - start), path, name
            )


def read_float32(f, dtype: str, count: int, path: Path, name: str) -> np.ndarray:
    """The next `count` values of a float tensor of safetensors `dtype` in f, as new float32: F16
    and BF16 widen exactly (a bfloat16 is the top half of a float32: a 16-bit shift)."""
    raw = np.empty(count, dtype=STORAGE[dtype])
    read_exactly(f, raw, path, name)
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw if dtype == "F32" else raw.astype(np.float32)


def float32_row_chunks(path: Path, name: str, entry: dict, data_start: int, rows_at_once: int = 0):
    """Yield (first row, float32 [r, ...]) chunks of the float tensor `name`, whole rows of about
    CHUNK_ELEMENTS values each (a multiple of `rows_at_once` rows, when given): a tensor is
    converted to a lower precision without a float32 copy of all of it."""
    shape = tuple(entry["shape"])
    row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    step = max(1, CHUNK_ELEMENTS // max(row, 1))
    if rows_at_once:
        step = max(rows_at_once, step // rows_at_once * rows_at_once)
    begin, _ = entry["data_offsets"]
    with open(path, "rb", buffering=0) as f:
        f.seek(data_start + begin)
        for start in range(0, shape[0], step):
            rows = min(step, shape[0] - start)
            yield start, read_float32(f, entry["dtype"], rows * row, path, name).reshape(rows, *shape[1:])


def open_safetensors(path: Path):
    regular_file(path, CheckpointError)  # "Permission denied" says so (safetensors says "No such file")
    try:
        return safe_open(str(path), framework="numpy", backend="pread")
    except (SafetensorError, OSError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise CheckpointError(f"{path}: not a readable safetensors file ({reason})") from None


def check_weights_fit(model_dir: str | Path, config: GPT2Config, dtype: str = "float32") -> None:
    """Before anything proportional to config.json's sizes is built (`parameter_shapes` makes 12
    entries per layer, the arena up to 4 bytes per parameter): the weight files must be large
    enough to hold the parameters config.json describes, at one byte each at least, and the
    weights at `dtype` must fit in memory."""
    described, shards = find_weight_files(Path(model_dir))
    files = list(shards) if shards is not None else [described]
    for path in files:  # a file that is not safetensors at all says so first
        with open_safetensors(path):
            pass
    stored = sum(path.stat().st_size for path in files)
    count, c = config.parameter_count, config
    if count > stored:
        raise CheckpointError(
            f"{described}: config.json describes {format_count(count)} parameters (n_layer={shown(c.n_layer)}, "
            f"n_embd={shown(c.n_embd)}, n_inner={shown(c.n_inner)}, vocab_size={shown(c.vocab_size)}, "
            f"n_positions={shown(c.n_positions)}), more than weight files of {stored:,} bytes can hold"
        )
    check_memory(
        count * round(32 * BYTES_PER_WEIGHT[dtype]) // 32, f"{described}: the {dtype} weights ({count:,} parameters)"
    )


def format_count(n: int) -> str:
    return f"{n:,}" if n < 10**30 else shown(n)


def describe_checkpoint(model_dir: str | Path) -> dict:
    """What the weight files hold, without reading tensor data: {files, bytes, dtypes: {dtype: count}}."""
    described, shards = find_weight_files(Path(model_dir))
    files = list(shards) if shards is not None else [described]
    dtypes: dict[str, int] = {}
    for path in files:
        with open_safetensors(path) as f:
            for stored in f.keys():  # noqa: SIM118 (a safetensors file, not a dict)
                if not MASK_BUFFER.match(canonical_name(stored)):
                    dtype = f.get_slice(stored).get_dtype()
                    dtypes[dtype] = dtypes.get(dtype, 0) + 1
    return {"files": [str(p) for p in files], "bytes": sum(p.stat().st_size for p in files), "dtypes": dtypes}


def is_quantized(model_dir: str | Path) -> bool:
    """Whether a model directory's weights were written by `gpt2 quantize` (its metadata says so)."""
    described, shards = find_weight_files(Path(model_dir))
    files = list(shards) if shards is not None else [described]
    schemes = {}
    for path in files:
        with open_safetensors(path) as f:
            schemes[path] = quantization_of(path, f.metadata())
    return check_one_scheme(schemes) is not None


def load_state_dict(
    model_dir: str | Path, expected: dict[str, tuple[int, ...]], config: GPT2Config, dtype: str = "float32"
) -> dict[str, Any]:
    """Read the tensors named in `expected` (checkpoint name -> shape) from `model_dir`: the
    matrices (engine/state/precision.py `is_matrix`) at `dtype`, as engine/state/formats.py
    keeps them, everything else as float32.

    Checks, before any data is read, that every expected tensor is there exactly once with its
    shape and a supported dtype, and that nothing is there that the model does not use. A file
    written by `gpt2 quantize` (engine/state/quantized.py) holds its matrices as int8 and scales.
    """
    model_dir = Path(model_dir)
    described, shards = find_weight_files(model_dir)
    files = list(shards) if shards is not None else [described]

    # Pass 1: the headers. Where is each tensor, in which dtype and shape?
    where: dict[str, tuple[Path, str]] = {}  # canonical name -> (file, name as stored)
    info: dict[str, tuple[str, tuple[int, ...]]] = {}  # canonical name -> (dtype, shape)
    schemes: dict[Path, str | None] = {}
    for path in files:
        with open_safetensors(path) as f:
            schemes[path] = quantization_of(path, f.metadata())
            for stored in f.keys():  # noqa: SIM118 (a safetensors file, not a dict)
                name = canonical_name(stored)
                if MASK_BUFFER.match(name):
                    continue
                if name in where:
                    raise CheckpointError(
                        f"{path}: tensor {name!r} appears twice (as {where[name][1]!r} and {stored!r})"
                    )
                piece = f.get_slice(stored)
                where[name] = (path, stored)
                info[name] = (piece.get_dtype(), tuple(piece.get_shape()))
    quantized = check_one_scheme(schemes)
    if quantized and dtype in ("float16", "bfloat16"):
        raise CheckpointError(
            f"{described}: holds {quantized} weights, which load as int8 (or float32, dequantized); "
            f"rounding them again to {dtype} would only lose more"
        )

    _check_layers(described, where, config)
    for name, shape in expected.items():
        if name not in where:
            raise CheckpointError(f"{described}: missing tensor {name!r}")
        path, stored = where[name]
        found_dtype, found = info[name]
        if quantized and is_matrix(name):
            check_quantized_tensors(path, name, stored, info, shape)
            continue
        if found_dtype == "I8":  # before its shape, which is a q8_0 file's (the metadata is what is missing)
            raise CheckpointError(
                f"{path}: tensor {stored!r} has dtype I8; supported: {', '.join(SUPPORTED_DTYPES)} "
                "(int8 tensors only in a file written by `gpt2 quantize`, whose metadata names the scheme)"
            )
        if found != shape:
            raise CheckpointError(
                f"{path}: tensor {stored!r} has shape {list(found)} but config.json implies {list(shape)}"
            )
        if found_dtype not in SUPPORTED_DTYPES:
            raise CheckpointError(
                f"{path}: tensor {stored!r} has dtype {found_dtype}; supported: {', '.join(SUPPORTED_DTYPES)}"
            )
    # An lm_head beside tied embeddings is a copy of wte: Hugging Face ignores it too.
    scales = {scales_name(n) for n in expected} if quantized else set()
    unused = sorted(set(where) - set(expected) - {"lm_head.weight"} - scales)
    if unused:
        path, stored = where[unused[0]]
        raise CheckpointError(f"{path}: unexpected tensor {stored!r}, not part of a GPT-2 language model")

    # Pass 2: the data, one tensor at a time, straight into its place in the arena.
    names = list(expected)
    layouts = [formats.slots(dtype, n, expected[n]) if is_matrix(n) else [(expected[n], F32)] for n in names]
    arena = WeightArena([slot for layout in layouts for slot in layout])
    headers = {path: read_header(path) for path in files}
    state: dict[str, Any] = {}
    index = 0
    for name, layout in zip(names, layouts):
        arrays = [arena.array(index + k) for k in range(len(layout))]
        index += len(layout)
        path, stored = where[name]
        header, data_start = headers[path]
        try:
            if quantized and is_matrix(name):
                scales_stored = where[scales_name(name)][1]
                read_quantized(path, name, (header[stored], header[scales_stored]), data_start, dtype, arrays)
            elif not is_matrix(name) or dtype == "float32" or STORAGE[info[name][0]] == arrays[0].dtype:
                read_tensor_into(path, stored, header[stored], data_start, arrays[0])  # as stored, or widened
            else:  # rounded to 16 bits or quantized, a chunk of rows at a time
                multiple = formats.rows_at_once(dtype, name)
                for start, rows in float32_row_chunks(path, stored, header[stored], data_start, multiple):
                    formats.fill_rows(dtype, name, arrays, start, rows, path)
        except OSError as error:  # its own errors (CheckpointError) already name file and tensor
            raise CheckpointError(f"{path}: cannot read tensor {stored!r} ({error})") from None
        state[name] = formats.matrix(dtype, name, arrays) if is_matrix(name) else arrays[0]
    return state


F32 = np.dtype(np.float32)


def read_quantized(path: Path, name: str, entries: tuple[dict, dict], data_start: int, dtype: str, arrays) -> None:
    """Matrix `name` of a q8_0 file (entries: the header of its quants and of its scales) into
    `arrays`: in place for int8 (the file's layout is the memory's); for float32, dequantized a
    chunk at a time into the checkpoint's layout."""
    values, scales_entry = entries
    int8 = dtype == "int8"
    scales = arrays[1] if int8 else np.empty(tuple(scales_entry["shape"]), dtype=np.float32)
    quants = arrays[0] if int8 else np.empty(tuple(values["shape"]), dtype=np.int8)
    with open(path, "rb", buffering=0) as f:
        f.seek(data_start + scales_entry["data_offsets"][0])
        read_exactly(f, scales, path, scales_name(name))
        check_scales(path, name, scales)
        f.seek(data_start + values["data_offsets"][0])
        read_exactly(f, quants, path, name)
    if int8:
        return
    out, K = arrays[0], quants.shape[0]
    if input_axis(name) == 0:  # [in, out]: blocks of rows
        step = max(BLOCK_SIZE, CHUNK_ELEMENTS // max(1, quants.shape[1]) // BLOCK_SIZE * BLOCK_SIZE)
        for start in range(0, K, step):
            out[start : start + step] = dequantize_stored(quants[start : start + step], scales[start // BLOCK_SIZE :])
    else:  # wte [V, C] from quants [C, V]: bands of columns
        step = max(1, CHUNK_ELEMENTS // max(1, K))
        for start in range(0, quants.shape[1], step):
            band = slice(start, start + step)
            out[band] = dequantize_stored(quants[:, band], scales[:, band]).T


def _check_layers(described: Path, where: dict, config: GPT2Config) -> None:
    """A file with more blocks than config.json's n_layer describes another model: say so plainly."""
    layers = {int(m.group(1)) for name in where if (m := LAYER_KEY.match(name))}
    if layers and max(layers) + 1 != config.n_layer:
        raise CheckpointError(
            f"{described}: the weights have {max(layers) + 1} layers (h.0 to h.{max(layers)}) "
            f"but config.json says n_layer={config.n_layer}"
        )
