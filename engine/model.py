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
layout: linear weights are stored [in, out] (OpenAI's "Conv1D"), so `x @ weight` needs no transpose.
Everything is float32. The arithmetic of each layer is here; where a loop is hot (LayerNorm,
the matrix products of decoding, attention, GELU) the function calls a Numba kernel from
`kernels/`, each kept beside the NumPy reference that states what it computes.

Every intermediate has a name, the one TransformerLens gives it (`hook_embed`,
`blocks.{i}.hook_resid_post`, `blocks.{i}.attn.hook_pattern`, ...). Pass `hooks`, a function
`(name, array) -> array`, to observe or replace any of them; without it nothing extra is computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import kernels
from kernels import causal_attention, causal_attention_reference, gelu

from .cache import KVCache
from .config import GPT2Config
from .errors import InputError

Hooks = Callable[[str, np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------------
# Weights, named and shaped as in the checkpoint


@dataclass
class LayerNormWeights:
    weight: np.ndarray  # [C]
    bias: np.ndarray  # [C]


@dataclass
class LinearWeights:
    weight: np.ndarray  # [in, out]
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
    wte: np.ndarray  # [V, C] token embeddings, also the output layer
    wpe: np.ndarray  # [P, C] position embeddings
    h: list[BlockWeights]  # n_layer blocks
    ln_f: LayerNormWeights
    lm_head: np.ndarray  # [V, C]; the very same array as wte when the embeddings are tied


def parameter_shapes(config: GPT2Config) -> dict[str, tuple[int, ...]]:
    """Checkpoint name -> shape of every parameter the model needs (lm_head.weight only if untied)."""
    C, I, V, P = config.n_embd, config.mlp_width, config.vocab_size, config.n_positions
    shapes = {"wte.weight": (V, C), "wpe.weight": (P, C)}
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


# ----------------------------------------------------------------------------------------------
# The layers, each a small pure function


def layer_norm(x, ln: LayerNormWeights, eps: float):  # [..., C] -> [..., C]
    # Per row: (x - mean) / sqrt(variance + eps) * weight + bias, in one pass over the row while it
    # is in cache (Numba; kernels/layer_norm.py has the NumPy statement, layer_norm_reference).
    return kernels.layer_norm(x, ln.weight, ln.bias, eps)  # [..., C]


def linear(x, p: LinearWeights):  # [..., in] -> [..., out]
    # Flattening the leading axes makes one matrix product of the whole batch: x @ weight + bias.
    # A few rows (decoding) stream the weights through a Numba kernel, many rows (a prompt) go
    # to BLAS (kernels/linear.py).
    out = kernels.linear(x.reshape(-1, x.shape[-1]), p.weight, p.bias)  # [N, in] @ [in, out] -> [N, out]
    return out.reshape(*x.shape[:-1], p.weight.shape[1])


def unembed(x, lm_head):  # [..., C] -> [..., V]
    # The tied output layer: x @ wte.T, reading wte as stored (no transposed copy): kernels/linear.py.
    logits = kernels.matmul_transposed(x.reshape(-1, x.shape[-1]), lm_head)  # [N, C] @ [C, V] -> [N, V]
    return logits.reshape(*x.shape[:-1], lm_head.shape[0])


def softmax(x, axis=-1):  # [..., V] -> [..., V], rows summing to 1
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):  # [..., V] -> [..., V], log-probabilities
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


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
        q, k, v = (hooks(f"{name}.hook_{n}", a.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) for n, a in zip("qkv", (q, k, v)))
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
        h, w.attn, n_head=config.n_head, scale=attention_scale(config, layer),
        key_start=key_start, cache=cache, layer=layer, hooks=hooks, name=f"{name}.attn",
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

    tok = weights.wte[ids]  # [B, T, C]
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


# ----------------------------------------------------------------------------------------------
# The user-facing model


class GPT2:
    """A GPT-2 language model: weights, config and tokenizer, callable on token ids.

        model = GPT2.from_pretrained("gpt2")               # or a Hugging Face layout directory
        logits = model(model.tokenizer.encode("Hello"))    # float32 [T, V]
    """

    def __init__(self, config: GPT2Config, weights: GPT2Weights, tokenizer=None, source: str | None = None):
        self.config = config
        self.weights = weights
        self.tokenizer = tokenizer
        self.source = source  # the directory the weights came from, if any

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, local_files_only: bool = False) -> "GPT2":
        """Load a model directory in Hugging Face layout, or a published name ("gpt2", "gpt2-medium",
        "openai-community/gpt2-large", ...), which is looked up in the Hugging Face cache and
        downloaded there if missing (unless `local_files_only`)."""
        from .hub import resolve_model_dir
        from .loader import load_state_dict
        from .threads import threads_from_environment
        from .tokenizer import load_tokenizer

        threads_from_environment()
        model_dir = resolve_model_dir(name_or_path, local_files_only=local_files_only)
        config = GPT2Config.from_json(model_dir / "config.json")
        # Load (or compile) the kernels on another thread while the weights are read: start-up.
        kernels_ready = kernels.KernelWarmUp()
        try:
            state = load_state_dict(model_dir, parameter_shapes(config), config)
            weights = weights_from_state_dict(state, config)
            tokenizer = load_tokenizer(model_dir, config.vocab_size)
        finally:
            kernels_ready.wait()
        return cls(config, weights, tokenizer, source=str(model_dir))

    def num_parameters(self) -> int:
        """Distinct parameters (the tied output layer is counted once, as Hugging Face does)."""
        arrays = {id(a): a for a in self._arrays()}
        return sum(a.size for a in arrays.values())

    def _arrays(self):
        w = self.weights
        yield from (w.wte, w.wpe, w.lm_head, w.ln_f.weight, w.ln_f.bias)
        for b in w.h:
            for p in (b.ln_1, b.attn.c_attn, b.attn.c_proj, b.ln_2, b.mlp.c_fc, b.mlp.c_proj):
                yield from (p.weight, p.bias)

    def new_cache(self, batch_size: int = 1, max_length: int | None = None, left_padding=None) -> KVCache:
        """An empty KV cache for `batch_size` rows of up to `max_length` slots (default: the context,
        plus the longest padding). `left_padding[b]` is the number of padding slots row b starts with."""
        c = self.config
        longest_pad = 0 if left_padding is None else int(np.max(left_padding))
        if max_length is None:
            max_length = c.n_positions + longest_pad
        return KVCache(c.n_layer, batch_size, c.n_head, c.head_dim, max_length, left_padding)

    def __call__(self, ids, cache: KVCache | None = None, *, left_padding=None, logits_to_keep=None, hooks=None):
        """Logits of the next token after each position.

        ids: ints [T] or [B, T]. Returns float32 [T, V] or [B, T, V] (the last `logits_to_keep`
        positions only, when given). With `cache`, the tokens continue what the cache holds and
        their keys and values are added to it.
        """
        ids, batched = self._check_ids(ids)
        B, T = ids.shape
        if left_padding is not None:
            if cache is not None:
                raise InputError("pass left_padding to new_cache(), not with a cache")
            left_padding = np.asarray(left_padding, dtype=np.int64)
            if left_padding.shape != (B,) or (left_padding < 0).any() or (left_padding > T).any():
                raise InputError(f"left_padding must be {B} counts between 0 and {T}, got {left_padding.tolist()}")
        if cache is not None:
            self._check_cache(cache, B, T)
        else:
            self._check_context(T, left_padding)
        if logits_to_keep is not None and not (isinstance(logits_to_keep, int) and 1 <= logits_to_keep <= T):
            raise InputError(f"logits_to_keep must be an integer from 1 to {T}, got {logits_to_keep!r}")
        logits = gpt2_forward(
            self.weights, self.config, ids, cache=cache, left_padding=left_padding,
            logits_to_keep=logits_to_keep, hooks=hooks,
        )
        return logits if batched else logits[0]

    forward = __call__

    def _check_ids(self, ids) -> tuple[np.ndarray, bool]:
        ids = np.asarray(ids)
        if ids.ndim not in (1, 2) or ids.shape[-1] == 0:
            raise InputError(f"token ids must be a non-empty [T] or [B, T] array, got shape {ids.shape}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise InputError(f"token ids must be integers, got dtype {ids.dtype}")
        low, high = ids.min(), ids.max()
        if low < 0 or high >= self.config.vocab_size:
            bad = low if low < 0 else high
            raise InputError(f"token id {bad} is out of range for vocab_size {self.config.vocab_size}")
        batched = ids.ndim == 2
        return (ids if batched else ids[None, :]).astype(np.int64, copy=False), batched

    def _check_sequence(self, ids) -> np.ndarray:
        """One sequence of token ids, as the analyses take it: ints [T], in the vocabulary, within
        the context -> int64 [T]."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise InputError(f"token ids must be a [T] array (one sequence), got shape {ids.shape}")
        ids = self._check_ids(ids)[0][0]  # int64 [T]
        self._check_context(len(ids), None)
        return ids

    def _check_context(self, n_slots: int, left_padding) -> None:
        longest = n_slots - (0 if left_padding is None else int(np.min(left_padding)))
        if longest > self.config.n_positions:
            raise InputError(
                f"{longest} tokens exceed the model's context of n_positions={self.config.n_positions}"
            )

    def _check_cache(self, cache: KVCache, B: int, T: int) -> None:
        if cache.batch_size != B:
            raise InputError(f"the cache holds {cache.batch_size} rows but the ids have {B}")
        if T > cache.room():
            raise InputError(
                f"the cache has room for {cache.room()} more tokens (max_length={cache.max_length}), got {T}"
            )
        self._check_context(cache.length + T, cache.left_padding)

    def generate(self, prompt, **options):
        """Continue a prompt (or a batch): a GenerationResult with text, token_ids, finish_reason and
        logprobs (a list of them for a batch); see `engine.generation.generate` for the options."""
        from .generation import generate

        return generate(self, prompt, **options)

    def stream(self, prompt, **options):
        """Continue one prompt, yielding the new text piece by piece (never splitting a character);
        see `engine.generation.stream`."""
        from .generation import stream

        return stream(self, prompt, **options)

    def score(self, text_or_ids, *, bos: bool = False, **options):
        """Per-token log-probabilities of a text (str) or token ids, with a sliding window past the
        context: `Scores` with token_ids, float32 logprobs (NaN where unscored), count, total_nll,
        mean_nll, perplexity. Options: context, stride, batch_size, progress; see `engine.scoring.score`."""
        from .scoring import score

        return score(self, text_or_ids, bos=bos, **options)

    def perplexity(self, text_or_ids, **options) -> float:
        """exp(mean negative log-likelihood per scored token) of a text: `self.score(...).perplexity`."""
        return self.score(text_or_ids, **options).perplexity

    # Looking inside: thin entry points to engine/capture.py, backward.py, saliency.py, lens.py,
    # factors.py and explain.py.

    def run_with_cache(self, ids, names=None, fwd_hooks=(), **forward_options):
        """(logits, ActivationCache) of ids [T] or [B, T]: every intermediate by its TransformerLens
        name, or only `names`; `fwd_hooks` are interventions. See `engine.capture`."""
        from .capture import run_with_cache

        return run_with_cache(self, ids, names=names, fwd_hooks=fwd_hooks, **forward_options)

    def run_with_hooks(self, ids, fwd_hooks=(), **forward_options):
        """Logits with interventions, e.g. fwd_hooks=[zero_neurons(1, [5]), zero_heads(0, [2])]."""
        from .capture import run_with_hooks

        return run_with_hooks(self, ids, fwd_hooks=fwd_hooks, **forward_options)

    def input_gradients(self, ids, target_id, position=-1, of="logprob"):
        """float32 [T, n_embd]: d(log p or p of target_id at position)/d(token + position embeddings),
        by the NumPy backward pass of `engine.backward`."""
        from .backward import input_gradients

        return input_gradients(self, ids, target_id, position=position, of=of)

    def saliency(self, ids, target_id, position=-1, method="grad_x_input", of="logprob", steps=50):
        """float32 [T] scores of the input tokens, summing to 1; methods gradient, grad_x_input,
        integrated_gradients, erasure. See `engine.saliency` (and `attribute` for the details)."""
        from .saliency import saliency

        return saliency(self, ids, target_id, position=position, method=method, of=of, steps=steps)

    def logit_lens(self, ids, top_k=5, targets=None):
        """Per layer and position: top-k next tokens and the rank of a target. See `engine.lens`."""
        from .lens import logit_lens

        return logit_lens(self, ids, top_k=top_k, targets=targets)

    def neuron_factors(self, ids, layers=None, factors=10, seed=0, iterations=500):
        """NMF of the MLP activations over the tokens of ids. See `engine.factors`."""
        from .factors import neuron_factors

        return neuron_factors(self, ids, layers=layers, factors=factors, seed=seed, iterations=iterations)

    def explain(self, prompt, max_new_tokens=20, **options):
        """Generate, then gather saliency, logit lens, attention and neuron factors into one
        `Explanation` (save/load as one .npz file). See `engine.explain`."""
        from .explain import explain

        return explain(self, prompt, max_new_tokens=max_new_tokens, **options)
