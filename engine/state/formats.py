"""A weight matrix at each precision: the arrays it is made of, how a float32 chunk of it is
converted into them, and the object the kernels take (kernels/formats.py).

The loader (engine/state/loader.py) allocates every array in its one block of memory and fills
it a chunk of rows at a time, so a matrix is never held in float32 and in its precision at once:

    float32   the array itself, [rows, cols] float32
    float16   [rows, cols] float16 (NumPy's half)
    bfloat16  [rows, cols] uint16: the top 16 bits of each float32, rounded to nearest even
    int8      q8_0 (llama.cpp's Q8_0): the values as int8, and a scale per 32 consecutive values
              along the input axis (axis 0 of a Conv1D weight [in, out], axis 1 of wte [V, C])

`dense` gives any of them back as float32 (widening is exact; int8 is scale x value), for the
analyses that need the transposed products a backward pass takes (engine/analysis/backward.py).
"""

from __future__ import annotations

import numpy as np

from ..base.errors import CheckpointError
from . import interim_kernels as kernels
from .interim_kernels import BFloat16Matrix, Q8Matrix
from .precision import input_axis

BLOCK = kernels.Q8_BLOCK  # weights per q8_0 scale


def float32_to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even), as uint16 bit patterns."""
    return kernels.bfloat16_bits(np.ascontiguousarray(x, dtype=np.float32))


def slots(dtype: str, name: str, shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], np.dtype]]:
    """The (shape, dtype) of each array a matrix of `shape` is kept in at `dtype`."""
    if dtype == "float32":
        return [(shape, np.dtype(np.float32))]
    if dtype == "float16":
        return [(shape, np.dtype(np.float16))]
    if dtype == "bfloat16":
        return [(shape, np.dtype(np.uint16))]
    return [(s, np.dtype(d)) for s, d in Q8Matrix.layout(shape, input_axis(name))]


def matrix(dtype: str, name: str, arrays: list[np.ndarray]):
    """The object the kernels multiply by, made of `arrays` (as `slots` shaped them)."""
    if dtype in ("float32", "float16"):
        return arrays[0]
    if dtype == "bfloat16":
        return BFloat16Matrix(arrays[0])
    return Q8Matrix.from_arrays(arrays[0], arrays[1], axis=input_axis(name))


def fill_rows(dtype: str, name: str, arrays: list[np.ndarray], start: int, rows: np.ndarray, path) -> None:
    """Convert float32 `rows` (rows start..start+len of the matrix, as stored in the checkpoint)
    into `arrays`. float16 refuses values beyond its range (they would become infinite)."""
    end = start + len(rows)
    if dtype == "float32":
        arrays[0][start:end] = rows
    elif dtype == "float16":
        with np.errstate(over="ignore"):  # said below, in words
            half = rows.astype(np.float16)
        if not np.isfinite(half).all() and np.isfinite(rows).all():
            biggest = float(np.abs(rows).max())
            raise CheckpointError(
                f"{path}: tensor {name!r} holds values up to {biggest:.4g}, beyond float16's range "
                "(65504): load it as bfloat16, int8 or float32"
            )
        arrays[0][start:end] = half
    elif dtype == "bfloat16":
        arrays[0][start:end] = float32_to_bfloat16_bits(rows)
    else:
        Q8Matrix.quantize_rows_into(arrays, start, rows, input_axis(name))


def rows_at_once(dtype: str, name: str) -> int:
    """Rows a conversion chunk must be a multiple of: q8_0 blocks run down the rows of a Conv1D
    weight, so its chunks are whole blocks; 1 otherwise."""
    return BLOCK if dtype == "int8" and input_axis(name) == 0 else 1


def dense(m) -> np.ndarray:
    """Any matrix the kernels take, as float32 (the very array for float32; a new one otherwise)."""
    if isinstance(m, np.ndarray):
        return m if m.dtype == np.float32 else m.astype(np.float32)
    return kernels.dequantize(m)


def dtype_of(m) -> str:
    """The precision a matrix is kept at: float32, float16, bfloat16 or int8."""
    if isinstance(m, np.ndarray):
        return "float16" if m.dtype == np.float16 else "float32"
    return "bfloat16" if isinstance(m, BFloat16Matrix) else "int8"


def fill_quantized(name: str, arrays: list[np.ndarray], q: np.ndarray, scales: np.ndarray) -> None:
    """Fill a q8_0 matrix's `arrays` from the file layout (engine/state/quantized.py): its int8
    values in the checkpoint's shape and float32 scales per 32 along the input axis."""
    Q8Matrix.fill_from_file_layout(arrays, q, scales, input_axis(name))


def file_arrays(name: str, m) -> tuple[np.ndarray, np.ndarray]:
    """A q8_0 matrix in the file layout: (int8 values in the checkpoint's shape, float32 scales)."""
    return m.file_layout()


def nbytes(m) -> int:
    """Bytes of memory a matrix (or any parameter array) takes."""
    return int(m.nbytes)
