"""Numba kernels for the hot loops, each beside the plain NumPy reference it must agree with."""

from .attention import causal_attention, causal_attention_reference
from .exp import exp, exp_f32, exp_reference
from .gelu import gelu, gelu_reference
from .layer_norm import layer_norm, layer_norm_reference
from .linear import linear, linear_reference, matmul_transposed, matmul_transposed_reference
from .warm_up import KernelWarmUp, warm_up

__all__ = [
    "KernelWarmUp",
    "causal_attention",
    "causal_attention_reference",
    "exp",
    "exp_f32",
    "exp_reference",
    "gelu",
    "gelu_reference",
    "layer_norm",
    "layer_norm_reference",
    "linear",
    "linear_reference",
    "matmul_transposed",
    "matmul_transposed_reference",
    "warm_up",
]
