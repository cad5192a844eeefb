"""Neuron factors: non-negative matrix factorisation of the MLP activations over the tokens.

A 124M GPT-2 has 3072 MLP neurons per layer. Many fire together: NMF finds a few "factors", each
a group of neurons (its loadings) with one activation per token, so that

    A ~= W @ F,   A [T, N] >= 0 the post-GELU activations (negatives clipped to 0: GELU's small
                  negative tail carries little and NMF needs A >= 0),
                  W [T, k] how strongly each factor fires on each token,
                  F [k, N] how much each neuron belongs to each factor,

with N the neurons of the chosen layers side by side (Ecco's `run_nmf`, from the article
"Interfaces for Explaining Transformer Language Models"). The factorisation minimises the
Frobenius norm ||A - W F|| by the multiplicative updates of Lee and Seung (2001), in NumPy, from a
random start drawn from a seeded generator: the same seed gives the same factors.

Legend: T tokens, N neurons (layers x I), k factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base.checks import as_integer, check_integer, check_sequence
from ..base.errors import InputError
from ..capture import run_with_cache

EPSILON = np.finfo(np.float32).eps  # replaces a zero denominator, as scikit-learn's "mu" solver does
DEFAULT_FACTORS = 10  # Ecco's default
DEFAULT_ITERATIONS = 500  # Ecco's max_iter
DEFAULT_TOL = 1e-4  # scikit-learn's default, which Ecco keeps


def nmf_init(A: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random non-negative start, scaled so W @ F has A's mean: W [T, k], F [k, N], float32."""
    rng = np.random.default_rng(seed)
    scale = np.sqrt(A.mean() / k)
    F = scale * np.abs(rng.standard_normal((k, A.shape[1]), dtype=np.float32))
    W = scale * np.abs(rng.standard_normal((A.shape[0], k), dtype=np.float32))
    return W.astype(np.float32), F.astype(np.float32)


def nmf(
    A: np.ndarray, k: int, *, seed: int = 0, iterations: int = DEFAULT_ITERATIONS, tol: float = DEFAULT_TOL, init=None
):
    """Factorise A float32 [T, N] >= 0 into W [T, k] @ F [k, N] (both >= 0, float32).

    Frobenius multiplicative updates, W then F each iteration:
        W <- W * (A F^T) / (W F F^T),   F <- F * (W^T A) / (W^T W F)
    Each update keeps its factor non-negative and never increases ||A - W F||. A zero denominator
    is replaced by float32 epsilon. At most `iterations`; every 10, the fit stops once the error
    fell by less than tol x the starting error over those 10 (scikit-learn's criterion and default;
    tol=0 runs them all). init: (W, F) to start from, instead of `nmf_init(A, k, seed)`.
    """
    W, F = (np.array(a, dtype=np.float32) for a in init) if init is not None else nmf_init(A, k, seed)
    start_error = previous_error = np.linalg.norm(A - W @ F)
    for iteration in range(1, iterations + 1):
        numerator = A @ F.T  # [T, k]
        denominator = W @ (F @ F.T)  # [T, k]
        denominator[denominator == 0] = EPSILON
        W *= numerator / denominator
        numerator = W.T @ A  # [k, N]
        denominator = (W.T @ W) @ F  # [k, N]
        denominator[denominator == 0] = EPSILON
        F *= numerator / denominator
        if tol > 0 and iteration % 10 == 0:
            error = np.linalg.norm(A - W @ F)
            if (previous_error - error) / start_error < tol:
                break
            previous_error = error
    return W, F


@dataclass
class NeuronFactors:
    """The factors of one selection of layers.

    layers: the layers whose neurons were factorised, side by side (neuron j of the stack is
        neuron j % width of layers[j // width]). width: neurons per layer.
    activations float32 [k, T]: each factor's activation on each token (W transposed).
    loadings float32 [k, N]: each factor's weight on each neuron (F).
    relative_error: ||A - W F|| / ||A||.
    """

    layers: list[int]
    width: int
    activations: np.ndarray
    loadings: np.ndarray
    relative_error: float

    def top_tokens(self, factor: int, n: int = 5) -> np.ndarray:
        """Positions where the factor fires most, strongest first: int64 [n]."""
        return np.argsort(-self.activations[factor], kind="stable")[:n]

    def top_neurons(self, factor: int, n: int = 10) -> list[tuple[int, int, float]]:
        """(layer, neuron, loading) of the neurons with the largest loadings, largest first."""
        best = np.argsort(-self.loadings[factor], kind="stable")[:n]
        return [(self.layers[j // self.width], int(j % self.width), float(self.loadings[factor, j])) for j in best]


def factorise(
    activations: np.ndarray,
    layers: list[int],
    k: int = DEFAULT_FACTORS,
    *,
    seed: int = 0,
    iterations: int = DEFAULT_ITERATIONS,
) -> NeuronFactors:
    """activations float32 [len(layers), T, I], post-GELU -> NeuronFactors (k capped at T)."""
    L, T, I = activations.shape
    A = np.maximum(activations, 0).transpose(1, 0, 2).reshape(T, L * I)  # [T, N], layers side by side
    k = min(k, T)
    W, F = nmf(A, k, seed=seed, iterations=iterations)
    error = float(np.linalg.norm(A - W @ F) / max(np.linalg.norm(A), np.finfo(np.float32).tiny))
    return NeuronFactors(list(layers), I, W.T.copy(), F, error)


def check_layers(layers, n_layer: int) -> list[int]:
    """None (all layers), one layer or a list -> a list of distinct layer numbers in range."""
    if layers is None:
        return list(range(n_layer))
    chosen = [
        as_integer(layer, "layers") for layer in (layers if isinstance(layers, (list, tuple, range)) else [layers])
    ]
    if not chosen:
        raise InputError("layers must name at least one layer")
    for layer in chosen:
        if not 0 <= layer < n_layer:
            raise InputError(f"layer {layer} is out of range: the model has layers 0 to {n_layer - 1}")
    if len(set(chosen)) != len(chosen):
        raise InputError(f"layers must be distinct, got {chosen}")
    return chosen


def check_factor_options(k, iterations, name: str = "factors") -> tuple[int, int]:
    """(factors, iterations) as ints, each at least 1; `name` is the argument that set k (the CLI's flag)."""
    return check_integer(name, k, 1), check_integer("iterations", iterations, 1)


def neuron_factors(
    model,
    ids,
    layers=None,
    factors: int = DEFAULT_FACTORS,
    *,
    seed: int = 0,
    iterations: int = DEFAULT_ITERATIONS,
    cache=None,
) -> NeuronFactors:
    """NMF of the MLP activations (blocks.{i}.mlp.hook_post) of ids [T] over the chosen layers
    (default: all, side by side, as Ecco does). cache: an ActivationCache of this run with those
    activations, to save a forward pass."""
    layers = check_layers(layers, model.config.n_layer)
    factors, iterations = check_factor_options(factors, iterations)
    names = [f"blocks.{i}.mlp.hook_post" for i in layers]
    if cache is None:
        ids = check_sequence(ids, model.config.vocab_size, model.config.n_positions)
        _, cache = run_with_cache(model, ids, names=names)
    return factorise(np.stack([cache[n] for n in names]), layers, factors, seed=seed, iterations=iterations)
