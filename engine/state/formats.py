"""A weight matrix at each precision: the arrays it is kept in, how a float32 chunk of it is
converted into them, and the object the kernels take (kernels/formats.py defines the formats).

The loader (engine/state/loader.py) allocates every array in its one block of memory and fills
it a chunk of rows at a time, so a matrix is never held in float32 and in its precision at once:

    float32   the array itself, [rows, cols] float32
    float16   [rows, cols] float16 (NumPy's half)
    bfloat16  `BFloat16Matrix`: [rows, cols] uint16, the top 16 bits of each float32, rounded to
              nearest even
    int8      `Q8Matrix` (q8_0, as llama.cpp's Q8_0): int8 quants [K, M] with the input
              dimension first (a Conv1D weight [in, out] as it is; wte [V, C] transposed to
              [C, V]) and float32 scales [ceil(K/32), M], one per 32 consecutive weights along K

`dense` gives any of them back as float32 (widening is exact; int8 is quant x scale), for the
analyses that need the transposed products a backward pass takes (engine/analysis/backward.py).
"""

from __future__ import annotations

import numpy as np

import kernels
from kernels import Q8_BLOCK, BFloat16Matrix, Q8Matrix, Weight, quantize_q8

from ..base.errors import CheckpointError
from .precision import input_axis

Matrix = Weight  # what the kernels multiply by: float32 or float16 arrays, BFloat16Matrix, Q8Matrix


def stored_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of matrix `name`'s int8 quants: its own, with the input dimension first."""
    return tuple(shape) if input_axis(name) == 0 else tuple(shape[::-1])


def scales_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of matrix `name`'s q8_0 scales: one per 32 along the input dimension (rounded up)."""
    K, M = stored_shape(name, shape)
    return (-(-K // Q8_BLOCK), M)


def slots(dtype: str, name: str, shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], np.dtype]]:
    """The (shape, dtype) of each array a matrix of `shape` is kept in at `dtype`."""
    storage = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}
    if dtype in storage:
        return [(tuple(shape), np.dtype(storage[dtype]))]
    return [(stored_shape(name, shape), np.dtype(np.int8)), (scales_shape(name, shape), np.dtype(np.float32))]


def matrix(dtype: str, name: str, arrays: list[np.ndarray]) -> Matrix:
    """The object the kernels multiply by, made of `arrays` (as `slots` shaped them)."""
    if dtype in ("float32", "float16"):
        return arrays[0]
    if dtype == "bfloat16":
        return BFloat16Matrix(arrays[0])
    return Q8Matrix(arrays[0], arrays[1], input_axis(name))


def fill_rows(dtype: str, name: str, arrays: list[np.ndarray], start: int, rows: np.ndarray, path) -> None:
    """Convert float32 `rows` (rows start..start+len of the matrix, as the checkpoint stores it)
    into `arrays`. float16 refuses values beyond its range (they would become infinite); int8
    refuses NaN and infinities. A Conv1D weight's chunks start on a block of 32 (`rows_at_once`)."""
    end = start + len(rows)
    if dtype == "float32":
        arrays[0][start:end] = rows
    elif dtype == "float16":
        with np.errstate(over="ignore"):  # said below, in words
            half = rows.astype(np.float16)
        if not np.isfinite(half).all() and np.isfinite(rows).all():
            raise CheckpointError(
                f"{path}: tensor {name!r} holds values up to {float(np.abs(rows).max()):.4g}, beyond float16's "
                "range (65504): load it as bfloat16, int8 or float32"
            )
        arrays[0][start:end] = half
    elif dtype == "bfloat16":
        arrays[0][start:end] = BFloat16Matrix.from_float32(rows).bits
    else:
        if not np.isfinite(rows).all():
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or infinite values, which int8 cannot hold")
        q = quantize_q8(rows, input_axis(name))
        if input_axis(name) == 0:  # rows of [in, out] are rows of the quants, 32 to a scale
            arrays[0][start:end] = q.quants
            arrays[1][start // Q8_BLOCK : start // Q8_BLOCK + len(q.scales)] = q.scales
        else:  # rows of wte [V, C] are columns of the quants [C, V] and of the scales
            arrays[0][:, start:end] = q.quants
            arrays[1][:, start:end] = q.scales


def rows_at_once(dtype: str, name: str) -> int:
    """Rows a conversion chunk must be a multiple of: q8_0 blocks run down the rows of a Conv1D
    weight, so its chunks are whole blocks; 1 otherwise."""
    return Q8_BLOCK if dtype == "int8" and input_axis(name) == 0 else 1


def dense(m: Matrix) -> np.ndarray:
    """Any matrix the kernels take, as float32 (the very array for float32; a new one otherwise)."""
    return kernels.dequantize(m)


def dtype_of(m: Matrix) -> str:
    """The precision a matrix is kept at: float32, float16, bfloat16 or int8."""
    return kernels.format_name(m)


def file_arrays(name: str, m: Q8Matrix) -> tuple[np.ndarray, np.ndarray]:
    """A q8_0 matrix as `gpt2 quantize` writes it (engine/state/quantized.py): quants and scales."""
    return m.quants, m.scales


def nbytes(m) -> int:
    """Bytes of memory a matrix (or any parameter array) takes."""
    return int(m.nbytes)
