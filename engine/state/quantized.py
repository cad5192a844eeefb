"""The model directory `gpt2 quantize DIR OUT` writes: a GPT-2 whose matrices are stored as q8_0.

OUT is a model directory like any other (config.json, the tokenizer files copied from DIR, and
model.safetensors), so `GPT2.from_pretrained(OUT)` and `--model OUT` load it directly, as int8,
with no float copy of the weights and no quantizing at load time.

model.safetensors, format version 1 (a safetensors file: any safetensors reader lists it):

- metadata (`__metadata__`, all strings):
      "format": "pt"
      "gpt2_engine.quantization": "q8_0"
      "gpt2_engine.block_size": "32"
      "gpt2_engine.format_version": "1"
- each matrix NAME that a precision applies to (h.{i}.attn.c_attn.weight, h.{i}.attn.c_proj.weight,
  h.{i}.mlp.c_fc.weight, h.{i}.mlp.c_proj.weight, wte.weight, and lm_head.weight when untied) is
  two tensors, with the input dimension (the one a product sums over) first, K of it:
      NAME          I8 [K, M]: the quants q. A Conv1D weight as the checkpoint stores it,
                    [in, out]; wte [V, C] transposed, [C, V]
      NAME.scales   F32 [ceil(K/32), M]: one scale per 32 consecutive weights along K
  and the weight is w = q x the scale of its block (the last block of K % 32, if any, is short):
      w[k, j] = q[k, j] * scales[k // 32, j]     (for wte: wte[v, c] = q[c, v] * scales[c // 32, v])
  Each block's scale is max|w| / 127 over its weights and q = round(w / scale) (ties to even),
  as llama.cpp's Q8_0 (which stores the scale as float16; here it is float32). This is the
  engine's own layout in memory (kernels/formats.py `Q8Matrix`), so loading reads it in place.
- every other tensor (biases, LayerNorm weights, wpe) F32 under its usual name.

A file whose metadata names another scheme, block size or version, or whose tensors disagree with
this layout, is refused with a `CheckpointError` naming the file and the tensor or field.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..base.errors import CheckpointError, OutputError
from ..base.files import check_destination, what_is_at, write_atomically
from .formats import scales_shape, stored_shape
from .precision import is_matrix

SCHEME_KEY = "gpt2_engine.quantization"
BLOCK_KEY = "gpt2_engine.block_size"
VERSION_KEY = "gpt2_engine.format_version"
SCHEMES = ("q8_0",)
BLOCK_SIZE = 32
FORMAT_VERSION = "1"
SCALES_DTYPE = "F32"
COPIED_FILES = (
    "config.json",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def scales_name(name: str) -> str:
    return f"{name}.scales"


def quantization_of(path: Path, metadata: dict | None) -> str | None:
    """The scheme a safetensors file's metadata names (None for an ordinary checkpoint), checked:
    a scheme, block size or format version this engine does not read is a CheckpointError."""
    if not metadata or SCHEME_KEY not in metadata:
        return None
    scheme = metadata[SCHEME_KEY]
    if scheme not in SCHEMES:
        raise CheckpointError(
            f"{path}: metadata {SCHEME_KEY}={scheme!r} names a quantization this engine does not read "
            f"(it reads {', '.join(SCHEMES)})"
        )
    block = metadata.get(BLOCK_KEY)
    if block != str(BLOCK_SIZE):
        raise CheckpointError(f"{path}: metadata {BLOCK_KEY}={block!r}; {scheme} files have blocks of {BLOCK_SIZE}")
    version = metadata.get(VERSION_KEY)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: metadata {VERSION_KEY}={version!r}; this engine reads format version {FORMAT_VERSION} "
            "(write the file again with this version's `gpt2 quantize`)"
        )
    return scheme


def check_one_scheme(schemes: dict[Path, str | None]) -> str | None:
    """The scheme of a checkpoint's files, which must all be quantized alike (or none of them)."""
    found = set(schemes.values())
    if len(found) > 1:
        mixed = ", ".join(f"{path.name}: {scheme or 'not quantized'}" for path, scheme in schemes.items())
        raise CheckpointError(f"the weight files are not quantized alike ({mixed})")
    return found.pop() if found else None


def check_quantized_tensors(path: Path, name: str, stored: str, info: dict, shape: tuple[int, ...]) -> None:
    """A quantized matrix must be I8 [K, M] (the input dimension first), with its scales beside it
    in float32 [ceil(K/32), M]. `shape` is the matrix's shape in the checkpoint."""
    dtype, found = info[name]
    if dtype != "I8":
        raise CheckpointError(f"{path}: tensor {stored!r} has dtype {dtype}; a q8_0 file holds its matrices as I8")
    if found != stored_shape(name, shape):
        raise CheckpointError(
            f"{path}: tensor {stored!r} has shape {list(found)} but config.json implies "
            f"{list(stored_shape(name, shape))} (q8_0: the input dimension first)"
        )
    scales = scales_name(name)
    if scales not in info:
        raise CheckpointError(f"{path}: missing tensor {scales!r} (the q8_0 scales of {stored!r})")
    dtype, found = info[scales]
    want = scales_shape(name, shape)
    if found != want or dtype != SCALES_DTYPE:
        raise CheckpointError(
            f"{path}: tensor {scales!r} is {dtype} {list(found)}; the scales of {stored!r} {list(shape)} "
            f"are {SCALES_DTYPE} {list(want)}"
        )


def check_scales(path, name: str, scales: np.ndarray) -> None:
    """Scales must be finite and not negative (max|w| / 127): anything else is a corrupt file."""
    if not (np.isfinite(scales).all() and (scales >= 0).all()):
        raise CheckpointError(f"{path}: tensor {scales_name(name)!r} holds negative, NaN or infinite scales")


# ----------------------------------------------------------------------------------------------
# Writing


def safetensors_header(tensors: list[tuple[str, str, tuple[int, ...], int]], metadata: dict[str, str]) -> bytes:
    """The 8-byte length and the JSON header (padded with spaces to 8 bytes, as the format wants)
    of a safetensors file holding `tensors` (name, dtype, shape, bytes) in that order."""
    header: dict = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


SAFETENSORS_DTYPE = {np.dtype(np.float32): "F32", np.dtype(np.int8): "I8"}


def write_model_safetensors(out, state: dict[str, np.ndarray]) -> None:
    """Write {name: float32 or int8 array} (in order) to the binary file `out` as a q8_0 file."""
    arrays = [(name, np.ascontiguousarray(a)) for name, a in state.items()]
    metadata = {"format": "pt", SCHEME_KEY: "q8_0", BLOCK_KEY: str(BLOCK_SIZE), VERSION_KEY: FORMAT_VERSION}
    out.write(safetensors_header([(n, SAFETENSORS_DTYPE[a.dtype], a.shape, a.nbytes) for n, a in arrays], metadata))
    for _, a in arrays:
        out.write(memoryview(a.reshape(-1).view(np.uint8)))  # type: ignore[arg-type]


def file_state(state: dict, file_arrays) -> dict[str, np.ndarray]:
    """The tensors of the file, in the checkpoint's order: a matrix as NAME (int8) and NAME.scales
    (float32, from `file_arrays(name, matrix)`), every other parameter as it is (float32)."""
    tensors: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if is_matrix(name):
            q, scales = file_arrays(name, value)
            tensors[name], tensors[scales_name(name)] = q, scales
        else:
            tensors[name] = value
    return tensors


def check_new_directory(out_dir) -> Path:
    """OUT must not exist yet (or be an empty directory), and its parent must be writable."""
    out = Path(os.fspath(out_dir))
    kind = what_is_at(out)
    if kind == "a directory":
        if any(out.iterdir()):
            raise OutputError(f"{out}: already exists and is not empty; gpt2 quantize writes a new model directory")
    elif kind is not None:
        raise OutputError(f"{out}: already exists ({kind}); gpt2 quantize writes a new model directory")
    check_destination(out / "model.safetensors" if kind else out, str(out))
    return out


def write_quantized_directory(out_dir, source_dir: Path, tensors: dict[str, np.ndarray]) -> Path:
    """Write the model directory: the source's config.json and tokenizer files, and
    model.safetensors holding `tensors` (`file_state`). All of it or nothing: the files are
    written into a temporary directory beside OUT, which is then renamed to OUT."""
    out = check_new_directory(out_dir)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        temporary = Path(tempfile.mkdtemp(prefix=".gpt2-quantize-", dir=parent))
    except OSError as error:
        raise OutputError(f"{out}: cannot create a directory in {parent} ({error.strerror or error})") from None
    try:
        for name in COPIED_FILES:
            if (source_dir / name).is_file():
                data = (source_dir / name).read_bytes()
                write_atomically(temporary / name, lambda f, data=data: f.write(data))
        write_atomically(temporary / "model.safetensors", lambda f: write_model_safetensors(f, tensors))
        os.chmod(temporary, 0o777 & ~_umask())
        os.replace(temporary, out)  # an empty directory at OUT is replaced; anything else was refused
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise OutputError(f"{out}: cannot write the model directory ({error.strerror or error})") from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def dequantize_stored(quants: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 [K, M] of q8_0 quants [K, M] and their scales [ceil(K/32), M] (the layout above);
    rows of quants may start anywhere a block starts."""
    return quants * np.repeat(scales, BLOCK_SIZE, axis=0)[: len(quants)]
