"""The logit lens: what the model would predict if it stopped after each layer.

The residual stream is read before the first block (the embeddings) and after every block, and
each reading goes through the model's own last two steps, the final LayerNorm and the tied output
layer, to give a next-token distribution (nostalgebraist 2020, "interpreting GPT: the logit lens").
After the last block that is exactly the model's output. For each layer and position: the top-k
tokens with their probabilities, and the rank of a chosen token (Ecco's "rankings": 1 = the top
prediction), by default the token that actually came next.

Ecco applies the output layer to the hidden states without the final LayerNorm; the lens here
applies it at every layer, so that each reading is scaled the way the output layer expects.

Legend: L = n_layer, R = L + 1 readings, T tokens, C = n_embd, V = vocab size, k = top_k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base.checks import check_integer, check_sequence, check_token_ids
from ..base.errors import InputError
from ..base.numeric import softmax, top_sorted
from ..capture import run_with_cache
from ..model import layer_norm, unembed


@dataclass
class LogitLens:
    """Per reading of the residual stream (R = n_layer + 1) and position (T):

    layers: the R hook names read ("blocks.0.hook_resid_pre" = the embeddings, then
        "blocks.{i}.hook_resid_post"). top_ids int64 [R, T, k], top_probs float32 [R, T, k]:
        the k most likely next tokens, most likely first. targets int64 [T]: the token ranked at
        each position. target_ranks int64 [R, T] (1 = top), target_probs float32 [R, T].
    """

    layers: list[str]
    top_ids: np.ndarray
    top_probs: np.ndarray
    targets: np.ndarray
    target_ranks: np.ndarray
    target_probs: np.ndarray


def lens_names(n_layer: int) -> list[str]:
    """The residual-stream readings of the lens, in order."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layer)]


def lens_logits(model, residual: np.ndarray) -> np.ndarray:
    """A residual-stream reading [..., C] -> logits float32 [..., V] through ln_f and the output layer."""
    return unembed(layer_norm(residual, model.weights.ln_f, model.config.layer_norm_epsilon), model.weights.lm_head)


def check_top_k(top_k, vocab_size: int, name: str = "top_k") -> int:
    """The number of lens candidates: an integer from 1 to vocab_size."""
    return check_integer(name, top_k, 1, vocab_size)


def logit_lens(model, ids, top_k: int = 5, targets=None, cache=None) -> LogitLens:
    """The logit lens of ids [T].

    targets: ints [T], the token to rank at each position; default: the next token of ids, and at
    the last position the model's own top prediction. cache: an ActivationCache of this run holding
    the lens readings (`lens_names`), to save a forward pass.
    """
    ids = check_sequence(ids, model.config.vocab_size, model.config.n_positions)  # int64 [T]
    T = len(ids)
    top_k = check_top_k(top_k, model.config.vocab_size)
    if targets is not None:
        targets = check_token_ids(targets, model.config.vocab_size)[0]  # [rows, T']
        if targets.shape != (1, T):
            raise InputError(f"targets must be {T} token ids (one per position), got shape {np.shape(targets)}")
        targets = targets[0]  # [T]
    names = lens_names(model.config.n_layer)
    if cache is None:
        _, cache = run_with_cache(model, ids, names=names)

    R = len(names)
    top_ids = np.empty((R, T, top_k), dtype=np.int64)
    top_probs = np.empty((R, T, top_k), dtype=np.float32)
    ranks = np.empty((R, T), dtype=np.int64)
    target_probs = np.empty((R, T), dtype=np.float32)
    # The last reading first: the model's output, whose top prediction is the default last target.
    for r in reversed(range(R)):
        logits = lens_logits(model, cache[names[r]])  # [T, V], one reading at a time to bound memory
        probs = softmax(logits)  # [T, V]
        if targets is None:
            targets = np.concatenate([ids[1:], logits[-1:].argmax(-1)])  # [T]
        top_ids[r], _ = top_sorted(logits, top_k)  # [T, k], most likely first (ties: lower id first)
        top_probs[r] = np.take_along_axis(probs, top_ids[r], -1)
        target_logit = logits[np.arange(T), targets][:, None]  # [T, 1]
        ranks[r] = 1 + (logits > target_logit).sum(-1)  # how many tokens score strictly higher, + 1
        target_probs[r] = probs[np.arange(T), targets]
    return LogitLens(names, top_ids, top_probs, targets, ranks, target_probs)
