"""Backpropagation through GPT-2 in NumPy: the gradient of one output with respect to the input.

Training needs gradients for the weights; attribution needs them for the *input*: how the
log-probability (or the probability) of one token at one position moves with each coordinate of
each input embedding. This file computes that by hand, one layer at a time, as llm.c does. Every
layer is a pair

    X_forward(input, weights)  -> output, saved     # saved: what the backward half will need
    X_backward(d_output, saved) -> d_input

where `d_Y` is d(scalar)/dY, an array of Y's own shape. The backward pass runs the layers in
reverse, each turning the gradient of its output into the gradient of its input (the chain rule).
Weight gradients are not computed: attribution never needs them. (For a linear layer they would
be d_weight = x^T @ d_out and d_bias = d_out summed over rows.)

The forward halves call model.py's own layer functions (`layer_norm`, `linear`, `split_heads`,
`merge_heads`, the GELU kernel, the NumPy attention reference), so the network differentiated is
the network that runs; `tests/test_backward.py` checks that its logits equal `model(ids)` and that
every backward half agrees with PyTorch autograd. Everything is float32.

Legend (llm.c): B = rows (e.g. points on an integrated-gradients path), T = tokens, C = n_embd,
H = n_head, D = C / H, I = MLP width, V = vocab size, K = positions whose logits are computed.
Left padding and the KV cache are not supported here: a row is one sequence from position 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import causal_attention_reference, gelu, matmul_transposed
from kernels.gelu import CUBIC_COEFF, SQRT_2_OVER_PI

from ..base.checks import as_integer, check_sequence
from ..base.config import GPT2Config
from ..base.errors import InputError
from ..base.numeric import log_softmax, softmax
from ..model import attention_scale, embed, layer_norm, linear, merge_heads, split_heads, unembed
from ..state.formats import Matrix, dense
from ..state.weights import AttentionWeights, BlockWeights, GPT2Weights, LayerNormWeights, LinearWeights, MLPWeights

TARGETS = ("logprob", "prob")


# ----------------------------------------------------------------------------------------------
# Embedding: x = wte[ids] + wpe[positions]
#
# Its backward is the identity twice: the gradient of a sum reaches both terms unchanged, so
# d/d(token embedding) = d/d(position embedding) = d/d(x). That is why one gradient, "with respect
# to the summed embeddings", serves as the gradient of the token embedding too.


def embedding_forward(weights: GPT2Weights, ids: np.ndarray):  # ids [T] -> tok [T, C], pos [T, C]
    tok = embed(weights.wte, ids)  # [T, C]
    pos = weights.wpe[: len(ids)]  # [T, C], positions 0 .. T-1
    return tok, pos


# ----------------------------------------------------------------------------------------------
# LayerNorm: y = (x - mean) / sqrt(var + eps) * weight + bias, over the last axis


def layer_norm_forward(x, ln: LayerNormWeights, eps: float):  # [..., C] -> [..., C]
    return layer_norm(x, ln, eps), (x, ln, eps)  # the mean and 1/std are recomputed from x


def layer_norm_backward(d_out, saved):  # [..., C] -> [..., C]
    x, ln, eps = saved
    mean = x.mean(axis=-1, keepdims=True)  # [..., 1]
    rstd = 1 / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + np.float32(eps))  # [..., 1]
    x_hat = (x - mean) * rstd  # [..., C], the normalised input
    d_x_hat = d_out * ln.weight  # [..., C]
    # x_hat depends on every x of its row through the mean and the variance: two correction terms,
    # one that removes the gradient's mean, one its component along x_hat.
    return rstd * (
        d_x_hat - d_x_hat.mean(axis=-1, keepdims=True) - x_hat * (d_x_hat * x_hat).mean(axis=-1, keepdims=True)
    )


# ----------------------------------------------------------------------------------------------
# Linear: y = x @ weight + bias (weight stored [in, out])


def linear_forward(x, p: LinearWeights):  # [..., in] -> [..., out]
    return linear(x, p), p  # the input gradient needs only the weight, not x


def linear_backward(d_out, p: LinearWeights):  # [..., out] -> [..., in]
    # d_x = d_out @ weight^T: the engine's product kernel reads weight [in, out] as stored (on the
    # engine's threads: BLAS itself is limited to one thread once a model is loaded). A 16-bit or
    # int8 weight is used as the float32 values the forward pass multiplied by (`dense`).
    d_x = matmul_transposed(np.ascontiguousarray(d_out.reshape(-1, d_out.shape[-1])), dense(p.weight))  # [N, in]
    return d_x.reshape(*d_out.shape[:-1], p.weight.shape[0])


# ----------------------------------------------------------------------------------------------
# GELU, tanh form: y = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)


def gelu_forward(x):  # [...] -> [...]
    return gelu(x), x


def gelu_backward(d_out, x):  # [...] -> [...]
    t = np.tanh(SQRT_2_OVER_PI * (x + CUBIC_COEFF * x * x * x))
    du_dx = SQRT_2_OVER_PI * (1 + 3 * CUBIC_COEFF * x * x)
    # product rule: d/dx [0.5 x (1 + t)] = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx
    return d_out * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du_dx)


# ----------------------------------------------------------------------------------------------
# MLP: c_proj(gelu(c_fc(x)))


def mlp_forward(x, w: MLPWeights):  # [B, T, C] -> [B, T, C]
    h, fc = linear_forward(x, w.c_fc)  # [B, T, I]
    a, pre = gelu_forward(h)  # [B, T, I]
    out, proj = linear_forward(a, w.c_proj)  # [B, T, C]
    return out, (fc, pre, proj)


def mlp_backward(d_out, saved):  # [B, T, C] -> [B, T, C]
    fc, pre, proj = saved
    d_a = linear_backward(d_out, proj)  # [B, T, I]
    d_h = gelu_backward(d_a, pre)  # [B, T, I]
    return linear_backward(d_h, fc)  # [B, T, C]


# ----------------------------------------------------------------------------------------------
# Softmax over the last axis, and causal self-attention


def softmax_backward(d_probs, probs):  # [..., S] -> [..., S]
    # d p_i / d s_j = p_i (delta_ij - p_j), so d_s = p * (d_p - sum_i d_p_i p_i). Masked keys have
    # p = 0 exactly, so they get d_s = 0: the causal mask needs no backward of its own.
    return probs * (d_probs - (d_probs * probs).sum(axis=-1, keepdims=True))


def attention_forward(x, w: AttentionWeights, n_head: int, scale: float):  # [B, T, C] -> [B, T, C]
    qkv, c_attn = linear_forward(x, w.c_attn)  # [B, T, 3C]
    q, k, v = (split_heads(a, n_head) for a in np.split(qkv, 3, axis=-1))  # 3 x [B, H, T, D]
    no_padding = np.zeros(x.shape[0], dtype=np.int64)  # [B]: every row starts at slot 0
    z, probs = causal_attention_reference(q, k, v, no_padding, scale)  # [B, H, T, D], [B, H, T, T]
    out, c_proj = linear_forward(merge_heads(z), w.c_proj)  # [B, T, C]
    return out, (c_attn, q, k, v, probs, np.float32(scale), c_proj)


def attention_backward(d_out, saved):  # [B, T, C] -> [B, T, C]
    c_attn, q, k, v, probs, scale, c_proj = saved
    n_head = q.shape[1]
    d_z = split_heads(linear_backward(d_out, c_proj), n_head)  # [B, H, T, D]
    # z = probs @ v
    d_probs = d_z @ v.swapaxes(-1, -2)  # [B, H, T, T]
    d_v = probs.swapaxes(-1, -2) @ d_z  # [B, H, T, D]
    # probs = softmax(scores), scores = q @ k^T * scale
    d_scores = softmax_backward(d_probs, probs) * scale  # [B, H, T, T]
    d_q = d_scores @ k  # [B, H, T, D]
    d_k = d_scores.swapaxes(-1, -2) @ q  # [B, H, T, D]
    d_qkv = np.concatenate([merge_heads(d_q), merge_heads(d_k), merge_heads(d_v)], axis=-1)  # [B, T, 3C]
    return linear_backward(d_qkv, c_attn)  # [B, T, C]


# ----------------------------------------------------------------------------------------------
# Block: x + attn(ln_1(x)), then + mlp(ln_2(.)). A residual sum passes its gradient to both
# branches, so each backward step adds the branch's input gradient to the running d_x.


def block_forward(x, w: BlockWeights, config: GPT2Config, layer: int):  # [B, T, C] -> [B, T, C]
    eps = config.layer_norm_epsilon
    h, ln_1 = layer_norm_forward(x, w.ln_1, eps)  # [B, T, C]
    a, attn = attention_forward(h, w.attn, config.n_head, attention_scale(config, layer))  # [B, T, C]
    x = x + a  # [B, T, C]
    h, ln_2 = layer_norm_forward(x, w.ln_2, eps)  # [B, T, C]
    m, mlp = mlp_forward(h, w.mlp)  # [B, T, C]
    return x + m, (ln_1, attn, ln_2, mlp)


def block_backward(d_out, saved):  # [B, T, C] -> [B, T, C]
    ln_1, attn, ln_2, mlp = saved
    d_x = d_out + layer_norm_backward(mlp_backward(d_out, mlp), ln_2)  # [B, T, C], at the middle residual
    return d_x + layer_norm_backward(attention_backward(d_x, attn), ln_1)  # [B, T, C]


# ----------------------------------------------------------------------------------------------
# The whole network, from the input embeddings to the logits of chosen positions


@dataclass
class ForwardPass:
    """What `gpt2_backward` needs from `gpt2_forward`."""

    blocks: list  # per block, the saved tensors of block_forward
    ln_f: tuple  # saved by layer_norm_forward
    keep: np.ndarray  # int64 [K]: positions whose logits were computed
    lm_head: Matrix  # [V, C], at the model's precision
    n_tokens: int  # T of the input


def gpt2_forward(weights: GPT2Weights, config: GPT2Config, x, keep) -> tuple[np.ndarray, ForwardPass]:
    """Input embeddings x float32 [B, T, C] (token + position) -> logits float32 [B, K, V] at the
    positions `keep` (ints [K]), and what the backward pass needs."""
    keep = np.atleast_1d(np.asarray(keep, dtype=np.int64))
    T = x.shape[1]
    saved = []
    for layer, w in enumerate(weights.h):
        x, s = block_forward(x, w, config, layer)  # [B, T, C]
        saved.append(s)
    x, ln_f = layer_norm_forward(x[:, keep], weights.ln_f, config.layer_norm_epsilon)  # [B, K, C]
    logits = unembed(x, weights.lm_head)  # [B, K, V]
    return logits, ForwardPass(saved, ln_f, keep, weights.lm_head, T)


def gpt2_backward(d_logits, fp: ForwardPass):  # [B, K, V] -> [B, T, C]
    """d(scalar)/d(logits at the kept positions) -> d(scalar)/d(input embeddings)."""
    B, K, V = d_logits.shape
    # logits = x @ lm_head^T. A sum over all 50257 tokens: BLAS's blocked sum keeps it accurate
    # (the streaming kernel's one running sum per output is several times less accurate here)
    d_x = (d_logits.reshape(-1, V) @ dense(fp.lm_head)).reshape(B, K, -1)  # [B, K, C]
    d_x = layer_norm_backward(d_x, fp.ln_f)  # [B, K, C]
    d_resid = np.zeros((B, fp.n_tokens, d_x.shape[-1]), dtype=np.float32)  # [B, T, C]
    # positions not kept get no gradient from the output (numpy's stubs reject the slice index)
    np.add.at(d_resid, (slice(None), fp.keep), d_x)  # type: ignore[arg-type]
    for saved in reversed(fp.blocks):
        d_resid = block_backward(d_resid, saved)  # [B, T, C]
    return d_resid


# ----------------------------------------------------------------------------------------------
# The scalar: log p(target) or p(target) from one row of logits


def target_forward(logits, target: int, of: str):  # [B, V] -> [B]
    """log p(target) (of="logprob") or p(target) (of="prob") under softmax(logits), per row."""
    probs = softmax(logits)  # [B, V]
    # log p from the log-softmax, not the log of a rounded probability (which can underflow to 0)
    value = log_softmax(logits)[:, target] if of == "logprob" else probs[:, target]  # [B]
    return value, probs


def target_backward(probs, target: int, of: str):  # [B, V] -> d_logits [B, V]
    # d log p_t / d logit_j = [j = t] - p_j; and d p_t / d logit_j = p_t ([j = t] - p_j).
    d_logits = -probs
    d_logits[:, target] += 1
    if of == "prob":
        d_logits *= probs[:, target : target + 1]
    return d_logits


def target_gradients(weights: GPT2Weights, config: GPT2Config, x, position: int, target: int, of: str):
    """The scalar (log p or p of `target` at `position`) and its gradient, for each row of x.

    x: float32 [B, T, C] input embeddings (token + position). Returns (values float32 [B],
    gradients float32 [B, T, C]). Positions after `position` get exactly zero (causality).
    """
    values, gradients = targets_gradients(weights, config, x, position, [target], of)
    return values[0], gradients[0]


def targets_gradients(weights: GPT2Weights, config: GPT2Config, x, position: int, targets, of: str):
    """`target_gradients` for several targets at one position (K of them): one forward pass, then
    one backward pass per target over the same saved activations. Returns (values float32 [K, B],
    gradients float32 [K, B, T, C])."""
    logits, fp = gpt2_forward(weights, config, x, [position])  # [B, 1, V]
    values, gradients = [], []
    for target in targets:
        value, probs = target_forward(logits[:, 0], target, of)  # [B], [B, V]
        d_logits = target_backward(probs, target, of)[:, None]  # [B, 1, V]
        values.append(value)
        gradients.append(gpt2_backward(d_logits, fp))  # [B, T, C]; the backward only reads fp
    return np.stack(values), np.stack(gradients)


# ----------------------------------------------------------------------------------------------
# The public entry point and the checks of its arguments


def check_target(model, ids, target_id, position, of: str) -> tuple[np.ndarray, int, int]:
    """Validate (ids [T], target_id, position, of) -> (ids int64 [T], target, position in 0..T-1)."""
    ids = check_sequence(ids, model.config.vocab_size, model.config.n_positions)  # int64 [T]
    T, V = len(ids), model.config.vocab_size
    target = as_integer(target_id, "target_id")
    if not 0 <= target < V:
        raise InputError(f"target_id {target} is out of range for vocab_size {V}")
    p = as_integer(position, "position")
    if not -T <= p < T:
        raise InputError(f"position {p} is out of range for {T} tokens (use 0 to {T - 1}, or -1 for the last)")
    check_of(of)
    return ids, target, p % T


def check_of(of: str) -> str:
    """The scalar that is attributed: "logprob" or "prob"."""
    if of not in TARGETS:
        raise InputError(f"of must be one of {', '.join(map(repr, TARGETS))}, got {of!r}")
    return of


def input_gradients(model, ids, target_id: int, position: int = -1, of: str = "logprob") -> np.ndarray:
    """d(log p(target_id) at `position`)/d(input embeddings), or of p(target_id) with of="prob".

    ids: ints [T]. position: the position whose next-token distribution is read (-1: the last),
    so target_id is a candidate for token position + 1. Returns float32 [T, n_embd], the gradient
    with respect to the summed token + position embeddings (equal to that of either term). Rows
    after `position` are zero: those tokens cannot affect it.
    """
    ids, target, p = check_target(model, ids, target_id, position, of)
    tok, pos = embedding_forward(model.weights, ids[: p + 1])  # the tokens after p change nothing
    _, grads = target_gradients(model.weights, model.config, (tok + pos)[None], p, target, of)
    out = np.zeros((len(ids), model.config.n_embd), dtype=np.float32)
    out[: p + 1] = grads[0]
    return out
