"""Numba kernels for the hot loops, each beside the plain NumPy reference it must agree with."""

from .attention import causal_attention, causal_attention_reference
from .gelu import gelu, gelu_reference

__all__ = ["causal_attention", "causal_attention_reference", "gelu", "gelu_reference"]
