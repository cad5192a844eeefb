"""INTERIM, removed when kernels/ gains its weight formats (issue 12, the kernels branch): the
same names in NumPy, so the engine side can be built and tested before they land."""

from __future__ import annotations

import numpy as np

import kernels as _k
from kernels import KernelWarmUp, layer_norm  # noqa: F401

Q8_BLOCK = 32


def bfloat16_bits(x: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


class BFloat16Matrix:
    def __init__(self, bits: np.ndarray):
        self.bits = bits
        self.shape = bits.shape
        self.nbytes = bits.nbytes

    def to_float32(self) -> np.ndarray:
        return (self.bits.astype(np.uint32) << 16).view(np.float32)


def _scales_shape(shape, axis):
    out = list(shape)
    out[axis] = -(-shape[axis] // Q8_BLOCK)
    return tuple(out)


class Q8Matrix:
    def __init__(self, q, scales, axis):
        self.q, self.scales, self.axis = q, scales, axis
        self.shape = q.shape
        self.nbytes = q.nbytes + scales.nbytes

    @staticmethod
    def layout(shape, axis):
        return [(tuple(shape), np.int8), (_scales_shape(shape, axis), np.float32)]

    @classmethod
    def from_arrays(cls, q, scales, axis):
        return cls(q, scales, axis)

    @staticmethod
    def quantize_rows_into(arrays, start, rows, axis):
        q, scales = arrays
        end = start + len(rows)
        if axis == 0:
            n = len(rows)
            pad = -n % Q8_BLOCK
            padded = np.concatenate([rows, np.zeros((pad, rows.shape[1]), np.float32)]) if pad else rows
            blocks = padded.reshape(-1, Q8_BLOCK, rows.shape[1])
            d = np.abs(blocks).max(axis=1) / 127  # [nb, M]
            inv = np.where(d > 0, 1 / np.where(d > 0, d, 1), 0)
            qq = np.rint(blocks * inv[:, None, :]).astype(np.int8).reshape(-1, rows.shape[1])[:n]
            q[start:end] = qq
            scales[start // Q8_BLOCK : start // Q8_BLOCK + len(d)] = d
        else:
            C = rows.shape[1]
            pad = -C % Q8_BLOCK
            padded = np.concatenate([rows, np.zeros((len(rows), pad), np.float32)], axis=1) if pad else rows
            blocks = padded.reshape(len(rows), -1, Q8_BLOCK)
            d = np.abs(blocks).max(axis=2) / 127
            inv = np.where(d > 0, 1 / np.where(d > 0, d, 1), 0)
            q[start:end] = np.rint(blocks * inv[:, :, None]).astype(np.int8).reshape(len(rows), -1)[:, :C]
            scales[start:end] = d

    @staticmethod
    def fill_from_file_layout(arrays, q, scales, axis):
        arrays[0][...] = q
        arrays[1][...] = scales

    def file_layout(self):
        return self.q, self.scales

    def to_float32(self):
        r = np.repeat(self.scales, Q8_BLOCK, axis=self.axis)
        r = r[: self.shape[0]] if self.axis == 0 else r[:, : self.shape[1]]
        return self.q * r


def dequantize(m) -> np.ndarray:
    if isinstance(m, np.ndarray):
        return m.astype(np.float32)
    return m.to_float32()


def _dense(m):
    return m if isinstance(m, np.ndarray) and m.dtype == np.float32 else dequantize(m)


def linear(x, weight, bias):
    return _k.linear(x, _dense(weight), bias)


def matmul_transposed(x, table):
    return _k.matmul_transposed(x, _dense(table))


def gather_rows(table, ids):
    if isinstance(table, np.ndarray):
        return table[ids].astype(np.float32, copy=False)
    flat = np.asarray(ids).reshape(-1)
    if isinstance(table, BFloat16Matrix):
        rows = (table.bits[flat].astype(np.uint32) << 16).view(np.float32)
    else:
        rows = Q8Matrix(table.q[flat], table.scales[flat], 1).to_float32()
    return rows.reshape(*np.shape(ids), table.shape[1])
