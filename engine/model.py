"""GPT-2, from token ids to logits, in NumPy.

Read top to bottom, this is the model of Radford et al. (2019), "Language Models are Unsupervised
Multitask Learners": token and position embeddings, then `n_layer` pre-LayerNorm transformer blocks
(causal multi-head self-attention, then a GELU MLP, each added back to the residual stream), a
final LayerNorm, and logits through the token embedding matrix again (tied weights).

Legend, as in llm.c:
    B = batch rows          T = tokens in this call      S = key slots (cached + this call)
    C = n_embd              H = n_head                   D = C // H, the head size
    I = MLP width (4 * C)   V = vocab_size               P = n_positions (the context)

Parameters keep the checkpoint's own names (wte, wpe, h[i].ln_1, h[i].attn.c_attn, ...) and its
layout (engine/state/weights.py): linear weights are stored [in, out] (OpenAI's "Conv1D"), so
`x @ weight` needs no transpose. Everything is float32. The arithmetic of each layer is here; where a loop is hot (LayerNorm,
the matrix products of decoding, attention, GELU) the function calls a Numba kernel from
`kernels/`, each kept beside the NumPy reference that states what it computes.

Every intermediate has a name, the one TransformerLens gives it (`hook_embed`,
`blocks.{i}.hook_resid_post`, `blocks.{i}.attn.hook_pattern`, ...). Pass `hooks`, a function
`(name, array) -> array`, to observe or replace any of them; without it nothing extra is computed
(engine/capture.py builds such functions).

This file is the math only: arguments are assumed checked. The `GPT2` class that users call
(engine/gpt2.py) checks them, then calls `gpt2_forward`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import kernels
from kernels import causal_attention, causal_attention_reference, gelu

from .base.config import GPT2Config
from .state.kv_cache import KVCache
from .state.weights import AttentionWeights, BlockWeights, GPT2Weights, LayerNormWeights, LinearWeights, MLPWeights

Hooks = Callable[[str, np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------------
# The layers, each a small pure function


def layer_norm(x, ln: LayerNormWeights, eps: float):  # [..., C] -> [..., C]
    # Per row: (x - mean) / sqrt(variance + eps) * weight + bias, in one pass over the row while it
    # is in cache (Numba; kernels/layer_norm.py has the NumPy statement, layer_norm_reference).
    return kernels.layer_norm(x, ln.weight, ln.bias, eps)  # [..., C]


def linear(x, p: LinearWeights):  # [..., in] -> [..., out]
    # Flattening the leading axes makes one matrix product of the whole batch: x @ weight + bias.
    # A few rows (decoding) stream the weights through a Numba kernel, many rows (a prompt) go
    # to BLAS (kernels/linear.py). A 16-bit or int8 weight is widened to float32 inside the kernel.
    out = kernels.linear(x.reshape(-1, x.shape[-1]), p.weight, p.bias)  # [N, in] @ [in, out] -> [N, out]
    return out.reshape(*x.shape[:-1], p.weight.shape[1])


def unembed(x, lm_head):  # [..., C] -> [..., V]
    # The tied output layer: x @ wte.T, reading wte as stored (no transposed copy): kernels/linear.py.
    logits = kernels.matmul_transposed(x.reshape(-1, x.shape[-1]), lm_head)  # [N, C] @ [C, V] -> [N, V]
    return logits.reshape(*x.shape[:-1], lm_head.shape[0])


def embed(wte, ids):  # [...] -> [..., C]
    # The rows of the token embeddings, as float32 at any precision (kernels/formats.py).
    return kernels.rows(wte, ids)  # [..., C]


def split_heads(x, n_head: int):  # [B, T, C] -> [B, H, T, D]
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def merge_heads(x):  # [B, H, T, D] -> [B, T, C]
    B, H, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * D)


def mlp(x, w: MLPWeights, hooks: Hooks | None, name: str):  # [B, T, C] -> [B, T, C]
    h = linear(x, w.c_fc)  # [B, T, I]
    if hooks is not None:
        h = hooks(f"{name}.hook_pre", h)
    h = gelu(h, out=h)  # [B, T, I], in place: the pre-activation is not needed again
    if hooks is not None:
        h = hooks(f"{name}.hook_post", h)
    return linear(h, w.c_proj)  # [B, T, C]


def attention_scale(config: GPT2Config, layer: int) -> float:
    """The factor applied to q.k: 1/sqrt(D) for GPT-2, optionally also 1/(layer + 1)."""
    scale = config.head_dim**-0.5 if config.scale_attn_weights else 1.0
    if config.scale_attn_by_inverse_layer_idx:
        scale /= layer + 1
    return scale


def attention(x, w: AttentionWeights, *, n_head, scale, key_start, cache, layer, hooks, name):
    """Causal multi-head self-attention. x: [B, T, C] -> [B, T, C].

    With a cache, this call's keys and values are stored after the cached ones and the queries
    attend to all of them; without one, they attend to this call's keys only.
    """
    qkv = linear(x, w.c_attn)  # [B, T, 3C]
    C = qkv.shape[-1] // 3
    q, k, v = qkv[..., :C], qkv[..., C : 2 * C], qkv[..., 2 * C :]  # 3 x [B, T, C], views
    q, k, v = (split_heads(a, n_head) for a in (q, k, v))  # 3 x [B, H, T, D]
    if hooks is not None:  # TransformerLens order: [B, T, H, D]
        q, k, v = (
            hooks(f"{name}.hook_{n}", a.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) for n, a in zip("qkv", (q, k, v))
        )
    if cache is not None:
        k, v = cache.write(layer, k, v)  # 2 x [B, H, S, D], S = cached + T
    if hooks is None:
        z = causal_attention(q, k, v, key_start, scale)  # [B, H, T, D], Numba
    else:  # materialise the probabilities so they can be seen and changed
        _, probs = causal_attention_reference(q, k, v, key_start, scale)  # [B, H, T, S]
        probs = hooks(f"{name}.hook_pattern", probs)
        z = hooks(f"{name}.hook_z", (probs @ v).transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)  # [B, H, T, D]
    return linear(merge_heads(z), w.c_proj)  # [B, T, C]


def block(x, w: BlockWeights, config: GPT2Config, *, layer, key_start, cache, hooks):  # [B, T, C] -> [B, T, C]
    name = f"blocks.{layer}"
    eps = config.layer_norm_epsilon
    if hooks is not None:
        x = hooks(f"{name}.hook_resid_pre", x)
    h = layer_norm(x, w.ln_1, eps)  # [B, T, C]
    if hooks is not None:
        h = hooks(f"{name}.ln1.hook_normalized", h)
    a = attention(
        h,
        w.attn,
        n_head=config.n_head,
        scale=attention_scale(config, layer),
        key_start=key_start,
        cache=cache,
        layer=layer,
        hooks=hooks,
        name=f"{name}.attn",
    )  # [B, T, C]
    if hooks is not None:
        a = hooks(f"{name}.hook_attn_out", a)
    x = x + a  # [B, T, C] residual
    if hooks is not None:
        x = hooks(f"{name}.hook_resid_mid", x)
    h = layer_norm(x, w.ln_2, eps)  # [B, T, C]
    if hooks is not None:
        h = hooks(f"{name}.ln2.hook_normalized", h)
    m = mlp(h, w.mlp, hooks, f"{name}.mlp")  # [B, T, C]
    if hooks is not None:
        m = hooks(f"{name}.hook_mlp_out", m)
    x = x + m  # [B, T, C] residual
    if hooks is not None:
        x = hooks(f"{name}.hook_resid_post", x)
    return x


def gpt2_forward(
    weights: GPT2Weights,
    config: GPT2Config,
    ids: np.ndarray,
    *,
    cache: KVCache | None = None,
    left_padding: np.ndarray | None = None,
    logits_to_keep: int | None = None,
    hooks: Hooks | None = None,
) -> np.ndarray:
    """Token ids [B, T] -> logits float32 [B, T, V] (or [B, logits_to_keep, V]).

    The tokens occupy the slots after what `cache` holds (slot 0 without a cache). Row b's first
    `left_padding[b]` slots are padding: its real tokens are numbered from position 0, and no
    query attends to a padding slot. Arguments are assumed checked (see `GPT2.__call__`).
    """
    B, T = ids.shape
    offset = cache.length if cache is not None else 0
    if cache is not None:
        left_padding = cache.left_padding
    elif left_padding is None:
        left_padding = np.zeros(B, dtype=np.int64)
    slots = offset + np.arange(T)  # [T]
    positions = np.maximum(slots[None, :] - left_padding[:, None], 0)  # [B, T]

    tok = embed(weights.wte, ids)  # [B, T, C]
    pos = weights.wpe[positions]  # [B, T, C]
    if hooks is not None:
        tok = hooks("hook_embed", tok)
        pos = hooks("hook_pos_embed", pos)
    x = tok + pos  # [B, T, C] the residual stream

    for layer, w in enumerate(weights.h):
        x = block(x, w, config, layer=layer, key_start=left_padding, cache=cache, hooks=hooks)  # [B, T, C]
    if cache is not None:
        cache.advance(T)

    if logits_to_keep is not None:
        x = x[:, -logits_to_keep:]  # [B, K, C]: only the positions whose predictions are wanted
    x = layer_norm(x, weights.ln_f, config.layer_norm_epsilon)  # [B, K, C]
    if hooks is not None:
        x = hooks("ln_final.hook_normalized", x)
    return unembed(x, weights.lm_head)  # [B, K, V]
