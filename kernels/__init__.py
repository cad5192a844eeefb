"""Numba kernels for the hot loops, each beside the plain NumPy reference it must agree with."""

from .attention import causal_attention, causal_attention_reference
from .exp import exp, exp_f32, exp_reference
from .formats import Q8_BLOCK, BFloat16Matrix, Q8Matrix, Weight, dequantize, format_name, quantize_q8, rows
from .gelu import gelu, gelu_reference
from .layer_norm import layer_norm, layer_norm_reference
from .linear import linear, linear_reference, matmul_transposed, matmul_transposed_reference
from .warm_up import KernelWarmUp, warm_up

__all__ = [
    "Q8_BLOCK",
    "BFloat16Matrix",
    "KernelWarmUp",
    "Q8Matrix",
    "Weight",
    "causal_attention",
    "causal_attention_reference",
    "dequantize",
    "exp",
    "exp_f32",
    "exp_reference",
    "format_name",
    "gelu",
    "gelu_reference",
    "layer_norm",
    "layer_norm_reference",
    "linear",
    "linear_reference",
    "matmul_transposed",
    "matmul_transposed_reference",
    "quantize_q8",
    "rows",
    "warm_up",
]
