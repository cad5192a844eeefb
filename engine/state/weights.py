"""GPT-2's parameters, named and shaped as in the checkpoint.

The dataclasses mirror the checkpoint's tree (wte, wpe, h[i].ln_1, h[i].attn.c_attn, ..., ln_f), so
`weights.h[3].attn.c_attn.weight` is the tensor `h.3.attn.c_attn.weight` of model.safetensors.
Linear weights are stored [in, out] (OpenAI's "Conv1D" layout), so `x @ weight` needs no transpose.

Legend: C = n_embd, I = MLP width (4 * C), V = vocab_size, P = n_positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base.config import GPT2Config
from .formats import Matrix, dtype_of


@dataclass
class LayerNormWeights:
    weight: np.ndarray  # [C]
    bias: np.ndarray  # [C]


@dataclass
class LinearWeights:
    weight: Matrix  # [in, out], at the model's precision (engine/state/formats.py)
    bias: np.ndarray  # [out]


@dataclass
class AttentionWeights:
    c_attn: LinearWeights  # [C, 3C]: queries, keys and values of all heads in one matrix
    c_proj: LinearWeights  # [C, C]


@dataclass
class MLPWeights:
    c_fc: LinearWeights  # [C, I]
    c_proj: LinearWeights  # [I, C]


@dataclass
class BlockWeights:
    ln_1: LayerNormWeights
    attn: AttentionWeights
    ln_2: LayerNormWeights
    mlp: MLPWeights


@dataclass
class GPT2Weights:
    wte: Matrix  # [V, C] token embeddings, also the output layer, at the model's precision
    wpe: np.ndarray  # [P, C] position embeddings
    h: list[BlockWeights]  # n_layer blocks
    ln_f: LayerNormWeights
    lm_head: Matrix  # [V, C]; the very same object as wte when the embeddings are tied

    def dtype(self) -> str:
        """The precision the matrices are kept at (engine/state/precision.py): that of wte, as of all."""
        return dtype_of(self.wte)

    def arrays(self):
        """Every parameter array (the tied output layer appears twice: it is wte)."""
        yield from (self.wte, self.wpe, self.lm_head, self.ln_f.weight, self.ln_f.bias)
        for b in self.h:
            for p in (b.ln_1, b.attn.c_attn, b.attn.c_proj, b.ln_2, b.mlp.c_fc, b.mlp.c_proj):
                yield from (p.weight, p.bias)


def parameter_shapes(config: GPT2Config) -> dict[str, tuple[int, ...]]:
    """Checkpoint name -> shape of every parameter the model needs (lm_head.weight only if untied)."""
    C, I, V, P = config.n_embd, config.mlp_width, config.vocab_size, config.n_positions
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (V, C), "wpe.weight": (P, C)}
    for i in range(config.n_layer):
        shapes |= {
            f"h.{i}.ln_1.weight": (C,),
            f"h.{i}.ln_1.bias": (C,),
            f"h.{i}.attn.c_attn.weight": (C, 3 * C),
            f"h.{i}.attn.c_attn.bias": (3 * C,),
            f"h.{i}.attn.c_proj.weight": (C, C),
            f"h.{i}.attn.c_proj.bias": (C,),
            f"h.{i}.ln_2.weight": (C,),
            f"h.{i}.ln_2.bias": (C,),
            f"h.{i}.mlp.c_fc.weight": (C, I),
            f"h.{i}.mlp.c_fc.bias": (I,),
            f"h.{i}.mlp.c_proj.weight": (I, C),
            f"h.{i}.mlp.c_proj.bias": (C,),
        }
    shapes |= {"ln_f.weight": (C,), "ln_f.bias": (C,)}
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, C)
    return shapes


def weights_from_state_dict(state: dict[str, np.ndarray], config: GPT2Config) -> GPT2Weights:
    """Arrange a flat {checkpoint name: float32 array} (as `parameter_shapes` lists) into GPT2Weights."""

    def linear(name):
        return LinearWeights(state[f"{name}.weight"], state[f"{name}.bias"])

    def layer_norm(name):
        return LayerNormWeights(state[f"{name}.weight"], state[f"{name}.bias"])

    blocks = [
        BlockWeights(
            ln_1=layer_norm(f"h.{i}.ln_1"),
            attn=AttentionWeights(c_attn=linear(f"h.{i}.attn.c_attn"), c_proj=linear(f"h.{i}.attn.c_proj")),
            ln_2=layer_norm(f"h.{i}.ln_2"),
            mlp=MLPWeights(c_fc=linear(f"h.{i}.mlp.c_fc"), c_proj=linear(f"h.{i}.mlp.c_proj")),
        )
        for i in range(config.n_layer)
    ]
    wte = state["wte.weight"]
    lm_head = wte if config.tie_word_embeddings else state["lm_head.weight"]
    return GPT2Weights(wte=wte, wpe=state["wpe.weight"], h=blocks, ln_f=layer_norm("ln_f"), lm_head=lm_head)


def state_dict_of(weights: GPT2Weights, config: GPT2Config) -> dict:
    """The flat {checkpoint name: parameter} of `weights`, in `parameter_shapes`' order: the
    inverse of `weights_from_state_dict`."""
    state: dict = {"wte.weight": weights.wte, "wpe.weight": weights.wpe}
    for i, b in enumerate(weights.h):
        for name, p in (("ln_1", b.ln_1), ("attn.c_attn", b.attn.c_attn), ("attn.c_proj", b.attn.c_proj)):
            state |= {f"h.{i}.{name}.weight": p.weight, f"h.{i}.{name}.bias": p.bias}
        for name, p in (("ln_2", b.ln_2), ("mlp.c_fc", b.mlp.c_fc), ("mlp.c_proj", b.mlp.c_proj)):
            state |= {f"h.{i}.{name}.weight": p.weight, f"h.{i}.{name}.bias": p.bias}
    state |= {"ln_f.weight": weights.ln_f.weight, "ln_f.bias": weights.ln_f.bias}
    if not config.tie_word_embeddings:
        state["lm_head.weight"] = weights.lm_head
    return state
