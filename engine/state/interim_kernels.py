"""INTERIM, removed when the kernels branch commits kernels/formats.py (issue 12): the names of its
API (BFloat16Matrix, Q8Matrix, quantize_q8, dequantize, format_name, rows, and linear /
matmul_transposed taking any format) in plain NumPy, so the engine side can be built and tested
before they land."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import kernels as _k
from kernels import KernelWarmUp, layer_norm  # noqa: F401

Q8_BLOCK = 32


@dataclass(frozen=True, eq=False)
class BFloat16Matrix:
    bits: np.ndarray

    @classmethod
    def from_float32(cls, w):
        bits = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
        return cls(((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16))

    def to_float32(self):
        return (self.bits.astype(np.uint32) << 16).view(np.float32)

    @property
    def shape(self):
        return self.bits.shape

    @property
    def nbytes(self):
        return self.bits.nbytes


@dataclass(frozen=True, eq=False)
class Q8Matrix:
    quants: np.ndarray  # int8 [K, M], the input dimension first
    scales: np.ndarray  # float32 [ceil(K/32), M]
    input_axis: int = 0

    @property
    def shape(self):
        K, M = self.quants.shape
        return (K, M) if self.input_axis == 0 else (M, K)

    @property
    def nbytes(self):
        return self.quants.nbytes + self.scales.nbytes


def quantize_q8(w, input_axis=0):
    w = np.asarray(w, dtype=np.float32)
    by_input = w if input_axis == 0 else w.T
    K, M = by_input.shape
    blocks = -(-K // Q8_BLOCK)
    padded = np.zeros((blocks * Q8_BLOCK, M), dtype=np.float32)
    padded[:K] = by_input
    scales = (np.abs(padded.reshape(blocks, Q8_BLOCK, M)).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1))
    quants = np.clip(np.rint(by_input / np.repeat(safe, Q8_BLOCK, axis=0)[:K]), -127, 127).astype(np.int8)
    return Q8Matrix(np.ascontiguousarray(quants), np.ascontiguousarray(scales), input_axis)


def dequantize(m):
    if isinstance(m, Q8Matrix):
        K = m.quants.shape[0]
        by_input = m.quants.astype(np.float32) * np.repeat(m.scales, Q8_BLOCK, axis=0)[:K]
        return by_input if m.input_axis == 0 else np.ascontiguousarray(by_input.T)
    if isinstance(m, BFloat16Matrix):
        return m.to_float32()
    return m if m.dtype == np.float32 else m.astype(np.float32)


def format_name(m):
    if isinstance(m, Q8Matrix):
        return "int8"
    if isinstance(m, BFloat16Matrix):
        return "bfloat16"
    return str(m.dtype)


def rows(table, ids):
    ids = np.asarray(ids)
    if isinstance(table, Q8Matrix):
        flat = ids.reshape(-1)
        K = table.quants.shape[0]
        values = table.quants[:, flat].astype(np.float32) * np.repeat(table.scales[:, flat], Q8_BLOCK, axis=0)[:K]
        return np.ascontiguousarray(values.T).reshape(ids.shape + (K,))
    if isinstance(table, BFloat16Matrix):
        return (table.bits[ids].astype(np.uint32) << 16).view(np.float32)
    return table[ids].astype(np.float32)


def linear(x, weight, bias):
    return _k.linear(x, dequantize(weight), bias)


def matmul_transposed(x, table):
    return _k.matmul_transposed(x, dequantize(table))
