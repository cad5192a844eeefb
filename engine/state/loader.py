"""Read GPT-2 weights from a Hugging Face model directory through safetensors.

A directory holds `model.safetensors`, or shards listed by `model.safetensors.index.json`. Tensor
names come in two spellings, both accepted: the published files say `h.0.attn.c_attn.weight`,
`save_pretrained` says `transformer.h.0.attn.c_attn.weight` (and `lm_head.weight`). The causal-mask
buffers `h.{i}.attn.bias` / `h.{i}.attn.masked_bias` are constants, not weights: skipped.

Weights become float32: F32 as stored, F16 widened, BF16 widened exactly (a bfloat16 is the top
half of a float32, so the conversion is a 16-bit shift).

Memory: all weights live in one block (`WeightArena`), and every tensor is an array view into it.
F32 bytes are read from the file straight into their place (no temporary, so loading never holds
two copies of anything); F16 and BF16 are widened a slice at a time. The block is anonymous
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

import numpy as np
from safetensors import SafetensorError, safe_open

from ..base.checks import check_memory, shown
from ..base.config import GPT2Config
from ..base.errors import CheckpointError
from ..base.files import read_json, regular_file

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


WIDEN_CHUNK_ELEMENTS = 1 << 22  # F16/BF16 are widened 4M values (8 MiB read) at a time
ALIGNMENT = 64  # bytes: each tensor starts on a cache line
HUGE_PAGE = 2 << 20


class WeightArena:
    """One block of memory for all the weights, handed out as aligned float32 arrays.

    Anonymous memory (not the file mapped: that would tie the arrays to the file staying
    unchanged), advised as huge pages where the system offers them.
    """

    def __init__(self, shapes: list[tuple[int, ...]]):
        self.offsets, total = [], 0
        for shape in shapes:
            self.offsets.append(total)
            total += -(-int(np.prod(shape)) * 4 // ALIGNMENT) * ALIGNMENT
        size = max(HUGE_PAGE, -(-total // HUGE_PAGE) * HUGE_PAGE)
        self.buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):  # Linux only; elsewhere ordinary pages
            self.buffer.madvise(mmap.MADV_HUGEPAGE)
        self.floats = np.frombuffer(self.buffer, dtype=np.float32)
        self.shapes = shapes

    def array(self, index: int) -> np.ndarray:
        shape = self.shapes[index]
        start = self.offsets[index] // 4
        return self.floats[start : start + int(np.prod(shape))].reshape(shape)


def read_tensor_into(path: Path, name: str, entry: dict, data_start: int, out: np.ndarray) -> None:
    """Read tensor `name` (header `entry`: dtype, data_offsets) of `path` into float32 `out`."""
    begin, end = entry["data_offsets"]
    dtype = entry["dtype"]
    flat = out.reshape(-1)
    with open(path, "rb", buffering=0) as f:
        f.seek(data_start + begin)
        if dtype == "F32":
            view = memoryview(flat.view(np.uint8))  # type: ignore[arg-type]  # an ndarray is a buffer
            got = 0
            while got < len(view):  # readinto may return less than asked (large reads, signals)
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
            if got != end - begin:
                raise CheckpointError(f"{path}: tensor {name!r} is truncated ({got} of {end - begin} bytes)")
            return
        for start in range(0, flat.size, WIDEN_CHUNK_ELEMENTS):
            count = min(WIDEN_CHUNK_ELEMENTS, flat.size - start)
            raw = f.read(2 * count)
            if len(raw) != 2 * count:
                raise CheckpointError(f"{path}: tensor {name!r} is truncated")
            halves = np.frombuffer(raw, dtype="<u2")
            if dtype == "BF16":  # float32 bits = bfloat16 bits << 16, exactly
                flat[start : start + count] = (halves.astype(np.uint32) << 16).view(np.float32)
            else:  # F16: IEEE half, widened exactly by NumPy
                flat[start : start + count] = halves.view(np.float16)


def open_safetensors(path: Path):
    regular_file(path, CheckpointError)  # "Permission denied" says so (safetensors says "No such file")
    try:
        return safe_open(str(path), framework="numpy", backend="pread")
    except (SafetensorError, OSError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise CheckpointError(f"{path}: not a readable safetensors file ({reason})") from None


def check_weights_fit(model_dir: str | Path, config: GPT2Config) -> None:
    """Before anything proportional to config.json's sizes is built (`parameter_shapes` makes 12
    entries per layer, the arena 4 bytes per parameter): the weight files must be large enough to
    hold the parameters config.json describes, at one byte each at least, and their float32 copy
    must fit in memory."""
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
    check_memory(4 * count, f"{described}: the float32 weights ({count:,} parameters)")


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


def load_state_dict(
    model_dir: str | Path, expected: dict[str, tuple[int, ...]], config: GPT2Config
) -> dict[str, np.ndarray]:
    """Read the tensors named in `expected` (checkpoint name -> shape) from `model_dir` as float32.

    Checks, before any data is read, that every expected tensor is there exactly once with its
    shape and a supported dtype, and that nothing is there that the model does not use.
    """
    model_dir = Path(model_dir)
    described, shards = find_weight_files(model_dir)
    files = list(shards) if shards is not None else [described]

    # Pass 1: the headers. Where is each tensor, in which dtype and shape?
    where: dict[str, tuple[Path, str]] = {}  # canonical name -> (file, name as stored)
    info: dict[str, tuple[str, tuple[int, ...]]] = {}  # canonical name -> (dtype, shape)
    for path in files:
        with open_safetensors(path) as f:
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

    _check_layers(described, where, config)
    for name, shape in expected.items():
        if name not in where:
            raise CheckpointError(f"{described}: missing tensor {name!r}")
        path, stored = where[name]
        dtype, found = info[name]
        if found != shape:
            raise CheckpointError(
                f"{path}: tensor {stored!r} has shape {list(found)} but config.json implies {list(shape)}"
            )
        if dtype not in SUPPORTED_DTYPES:
            raise CheckpointError(
                f"{path}: tensor {stored!r} has dtype {dtype}; supported: {', '.join(SUPPORTED_DTYPES)}"
            )
    # An lm_head beside tied embeddings is a copy of wte: Hugging Face ignores it too.
    unused = sorted(set(where) - set(expected) - {"lm_head.weight"})
    if unused:
        path, stored = where[unused[0]]
        raise CheckpointError(f"{path}: unexpected tensor {stored!r}, not part of a GPT-2 language model")

    # Pass 2: the data, one tensor at a time, straight into its place in the arena, as float32.
    names = list(expected)
    arena = WeightArena([expected[n] for n in names])
    headers = {path: read_header(path) for path in files}
    state: dict[str, np.ndarray] = {}
    for index, name in enumerate(names):
        path, stored = where[name]
        header, data_start = headers[path]
        array = arena.array(index)
        try:
            read_tensor_into(path, stored, header[stored], data_start, array)
        except OSError as error:  # its own errors (CheckpointError) already name file and tensor
            raise CheckpointError(f"{path}: cannot read tensor {stored!r} ({error})") from None
        state[name] = array
    return state


def _check_layers(described: Path, where: dict, config: GPT2Config) -> None:
    """A file with more blocks than config.json's n_layer describes another model: say so plainly."""
    layers = {int(m.group(1)) for name in where if (m := LAYER_KEY.match(name))}
    if layers and max(layers) + 1 != config.n_layer:
        raise CheckpointError(
            f"{described}: the weights have {max(layers) + 1} layers (h.0 to h.{max(layers)}) "
            f"but config.json says n_layer={config.n_layer}"
        )
