"""Weight matrices in the precisions a user may choose, and their NumPy statements.

Decoding reads every weight once per step, so the bytes per weight set its speed. The kernels take
a weight matrix in any of these formats, widen each weight to float32 in registers, and do all
arithmetic and accumulation in float32:

- float32: a plain `np.float32` array (4 bytes per weight).
- float16: a plain `np.float16` array (2 bytes). Widening is exact (every float16 is a float32).
- bfloat16: `BFloat16Matrix`, its `bits` a `np.uint16` array of the same shape (2 bytes). NumPy has
  no bfloat16 dtype; a bfloat16 is the upper half of a float32, so widening (bits << 16) is exact.
- int8: `Q8Matrix`, as llama.cpp's Q8_0: blocks of Q8_BLOCK = 32 consecutive weights along the
  input dimension share one float32 scale, weight = quant * scale with quant in [-127, 127]
  (1.125 bytes per weight with the scales).

`dequantize(weight)` turns any of them into the float32 matrix it stands for; that is the whole
meaning of a format: `kernels.linear(x, w, b)` gives `linear(x, dequantize(w), b)`, and the
references say exactly that (tests/test_kernels_formats.py). The decode kernels give it bit for bit
for the float formats; for Q8 they sum each block of bare quants and scale the sum once (a
quarter less arithmetic), which differs from the dequantized product by rounding only.

Q8 layout. A `Q8Matrix` stands for a logical matrix of `shape`; `input_axis` says which of its
axes is the input dimension (0 for a linear weight [in, out], as GPT-2 stores them; 1 for the
tied output table [vocab, C], read as x @ table.T). Whatever the logical shape, the storage puts
the input dimension first, so the kernels read it as they read a float32 linear weight, row by
row, each row contiguous:

    quants: int8 [K, M]              K = input features, M = outputs
    scales: float32 [ceil(K/32), M]  scales[b, j] serves quants[32*b : 32*b+32, j]

(for the output table, quants is [C, vocab]: the table transposed). When K is not a multiple of
32 the last block is shorter (a tail block of K % 32 weights with its own scale); nothing is
padded. Scales are float32, not float16 as in llama.cpp: 0.0625 bytes per weight more, and no
half-precision conversion in the kernels' inner loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Q8_BLOCK = 32  # weights per scale, along the input dimension
Q8_MAX = 127  # quants lie in [-127, 127] (symmetric: -128 is never used)


@dataclass(frozen=True, eq=False)
class BFloat16Matrix:
    """A bfloat16 matrix: `bits` (np.uint16, any shape) are the upper 16 bits of float32 values."""

    bits: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.bits, np.ndarray) or self.bits.dtype != np.uint16:
            raise TypeError(f"BFloat16Matrix bits must be a numpy uint16 array, got {_describe(self.bits)}")

    @classmethod
    def from_float32(cls, w: np.ndarray) -> BFloat16Matrix:
        """Round float32 to bfloat16: nearest, ties to even; NaN stays NaN, infinities stay."""
        bits = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
        rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        nan = np.isnan(np.ascontiguousarray(w, dtype=np.float32))
        if nan.any():  # rounding could carry a NaN's low bits into infinity: keep it a (quiet) NaN
            rounded[nan] = (bits[nan] >> 16).astype(np.uint16) | np.uint16(0x0040)
        return cls(rounded)

    def to_float32(self) -> np.ndarray:
        """The float32 values, exactly (a new array)."""
        return (self.bits.astype(np.uint32) << 16).view(np.float32)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.bits.shape

    @property
    def nbytes(self) -> int:
        return self.bits.nbytes


@dataclass(frozen=True, eq=False)
class Q8Matrix:
    """An int8 matrix in blocks of Q8_BLOCK weights along the input dimension (layout: module doc).

    quants: int8 [K, M]; scales: float32 [ceil(K / Q8_BLOCK), M]; input_axis: 0 when the logical
    matrix is [K, M] (a linear weight), 1 when it is [M, K] (the output table, stored transposed).
    """

    quants: np.ndarray
    scales: np.ndarray
    input_axis: int = 0

    def __post_init__(self) -> None:
        q, s = self.quants, self.scales
        if not isinstance(q, np.ndarray) or q.dtype != np.int8 or q.ndim != 2:
            raise TypeError(f"Q8Matrix quants must be a 2-D numpy int8 array, got {_describe(q)}")
        if not isinstance(s, np.ndarray) or s.dtype != np.float32 or s.ndim != 2:
            raise TypeError(f"Q8Matrix scales must be a 2-D numpy float32 array, got {_describe(s)}")
        K, M = q.shape
        if s.shape != (-(-K // Q8_BLOCK), M):
            raise ValueError(f"Q8Matrix scales have shape {s.shape}; quants {q.shape} need {(-(-K // Q8_BLOCK), M)}")
        if self.input_axis not in (0, 1):
            raise ValueError(f"Q8Matrix input_axis must be 0 or 1, got {self.input_axis!r}")

    @property
    def shape(self) -> tuple[int, int]:
        """The logical matrix's shape ([in, out] for input_axis 0, [out, in] for 1)."""
        K, M = self.quants.shape
        return (K, M) if self.input_axis == 0 else (M, K)

    @property
    def nbytes(self) -> int:
        return self.quants.nbytes + self.scales.nbytes


Weight = np.ndarray | BFloat16Matrix | Q8Matrix  # float32 or float16 arrays, or the two classes


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__


def quantize_q8(w: np.ndarray, input_axis: int = 0) -> Q8Matrix:
    """Quantize a float32 2-D matrix to Q8 blocks along `input_axis` (0: w is [in, out]; 1: w is
    [out, in], as the output table [vocab, C]).

    Per block: scale = max |w| / 127, quant = round(w / scale) (to nearest, ties to even), so the
    largest weight of a block comes back exactly and every other is within scale / 2. A block of
    zeros has scale 0 and quants 0. Raises ValueError on NaN or infinite weights (they have no
    int8 form).
    """
    w = np.asarray(w)
    if w.ndim != 2 or w.dtype not in (np.float32, np.float16):
        raise TypeError(f"quantize_q8 expects a 2-D float32 matrix, got {_describe(w)}")
    if input_axis not in (0, 1):
        raise ValueError(f"input_axis must be 0 or 1, got {input_axis!r}")
    w = w.astype(np.float32, copy=False)
    if not np.isfinite(w).all():
        raise ValueError("cannot quantize a matrix with NaN or infinite weights")
    by_input = w if input_axis == 0 else w.T  # [K, M]
    K, M = by_input.shape
    blocks = -(-K // Q8_BLOCK)
    padded = np.zeros((blocks * Q8_BLOCK, M), dtype=np.float32)
    padded[:K] = by_input
    amax = np.abs(padded.reshape(blocks, Q8_BLOCK, M)).max(axis=1)  # [blocks, M]
    scales = (amax / np.float32(Q8_MAX)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    quants = np.rint(by_input / np.repeat(safe, Q8_BLOCK, axis=0)[:K])
    quants = np.clip(quants, -Q8_MAX, Q8_MAX).astype(np.int8)  # clip: amax / scale may round to 127.00001
    return Q8Matrix(np.ascontiguousarray(quants), np.ascontiguousarray(scales), input_axis)


def _q8_by_input(m: Q8Matrix) -> np.ndarray:
    """float32 [K, M]: quant * scale, each product rounded to float32 once (as the kernels do)."""
    K = m.quants.shape[0]
    return m.quants.astype(np.float32) * np.repeat(m.scales, Q8_BLOCK, axis=0)[:K]


def dequantize(weight: Weight) -> np.ndarray:
    """The float32 matrix a weight in any format stands for (exact for the 16-bit formats; for Q8,
    quant * scale rounded to float32). A float32 array is returned as it is."""
    if isinstance(weight, Q8Matrix):
        by_input = _q8_by_input(weight)
        return by_input if weight.input_axis == 0 else np.ascontiguousarray(by_input.T)
    if isinstance(weight, BFloat16Matrix):
        return weight.to_float32()
    if isinstance(weight, np.ndarray) and weight.dtype == np.float16:
        return weight.astype(np.float32)
    if isinstance(weight, np.ndarray) and weight.dtype == np.float32:
        return weight
    raise TypeError(f"not a weight format the kernels know: {_describe(weight)}")


def format_name(weight: Weight) -> str:
    """'float32', 'float16', 'bfloat16' or 'int8'."""
    if isinstance(weight, Q8Matrix):
        return "int8"
    if isinstance(weight, BFloat16Matrix):
        return "bfloat16"
    if isinstance(weight, np.ndarray) and weight.dtype in (np.float32, np.float16):
        return str(weight.dtype)
    raise TypeError(f"not a weight format the kernels know: {_describe(weight)}")


def rows(table: Weight, ids: np.ndarray) -> np.ndarray:
    """Rows `ids` of a [vocab, C] table in any format, as float32 [len(ids), C] (the embedding
    lookup). ids: integer array of any shape; the result has shape ids.shape + (C,)."""
    ids = np.asarray(ids)
    if isinstance(table, Q8Matrix):
        if table.input_axis != 1:
            raise ValueError("rows() reads a table [vocab, C] quantized along C (input_axis=1)")
        flat = ids.reshape(-1)
        K = table.quants.shape[0]
        quants = table.quants[:, flat].astype(np.float32)  # [C, n]: the stored table is [C, vocab]
        scales = np.repeat(table.scales[:, flat], Q8_BLOCK, axis=0)[:K]
        return np.ascontiguousarray((quants * scales).T).reshape(ids.shape + (K,))
    if isinstance(table, BFloat16Matrix):
        return (table.bits[ids].astype(np.uint32) << 16).view(np.float32)
    if isinstance(table, np.ndarray) and table.dtype in (np.float32, np.float16):
        return table[ids].astype(np.float32)
    raise TypeError(f"not a weight format the kernels know: {_describe(table)}")
