"""Neuron factors: the NumPy NMF against scikit-learn's multiplicative-update solver from the same
start, its properties (non-negative, error never rising, deterministic with a seed), and what the
factors of the tiny model report."""

import numpy as np
import pytest
from sklearn.decomposition import NMF

from engine import InputError
from engine.analysis.factors import factorise, nmf, nmf_init


def activations_like(seed=0, T=23, N=300):
    """Post-GELU-like data: mostly small, some negatives (GELU's tail), a few strong co-firing groups."""
    rng = np.random.default_rng(seed)
    groups = np.abs(rng.standard_normal((4, N))) * (rng.random((4, N)) < 0.1)
    return (np.abs(rng.standard_normal((T, 4))) @ groups * 3 - 0.1 * rng.random((T, N))).astype(np.float32)


@pytest.mark.parametrize("k, iterations, tol", [(3, 50, 0), (6, 200, 0), (6, 500, 1e-4)])
def test_nmf_matches_scikit_learn_mu_from_the_same_start(k, iterations, tol):
    A = np.maximum(activations_like(), 0)
    W0, F0 = nmf_init(A, k, seed=1)
    W, F = nmf(A, k, iterations=iterations, tol=tol, init=(W0, F0))
    reference = NMF(n_components=k, solver="mu", beta_loss="frobenius", init="custom", max_iter=iterations, tol=tol)
    W_ref = reference.fit_transform(A, W=W0.copy(), H=F0.copy())
    F_ref = reference.components_
    assert W.dtype == F.dtype == np.float32 and W_ref.dtype == np.float32
    error = max(np.abs(W - W_ref).max() / np.abs(W_ref).max(), np.abs(F - F_ref).max() / np.abs(F_ref).max())
    print(
        f"k={k}, {iterations} iterations, tol {tol} (scikit-learn stopped after {reference.n_iter_}): "
        f"relative difference from scikit-learn {error:.2e}"
    )
    assert error < 1e-3


def test_nmf_properties():
    A = np.maximum(activations_like(3), 0)
    errors, state = [], nmf_init(A, 4, seed=0)
    for _ in range(20):
        state = nmf(A, 4, iterations=5, init=state)
        errors.append(np.linalg.norm(A - state[0] @ state[1]))
    assert all(later <= earlier * (1 + 1e-6) for earlier, later in zip(errors, errors[1:]))  # never rises
    assert (state[0] >= 0).all() and (state[1] >= 0).all()
    again = nmf(A, 4, iterations=100, seed=0)
    np.testing.assert_array_equal(again[0], nmf(A, 4, iterations=100, seed=0)[0])  # the same seed, the same factors
    assert not np.array_equal(again[0], nmf(A, 4, iterations=100, seed=1)[0])


def test_factorise_clips_negatives_and_maps_neurons_to_layers():
    post = activations_like(T=9, N=2 * 40).reshape(9, 2, 40).transpose(1, 0, 2)  # [2 layers, T, 40]
    factors = factorise(post, [2, 5], k=3, iterations=300)
    A = np.maximum(post, 0).transpose(1, 0, 2).reshape(9, 80)
    W, F = factors.activations.T, factors.loadings
    assert factors.relative_error == pytest.approx(np.linalg.norm(A - W @ F) / np.linalg.norm(A), rel=1e-5)
    assert factors.relative_error < 0.5
    for layer, neuron, loading in factors.top_neurons(0, 5):
        assert loading == F[0, [2, 5].index(layer) * 40 + neuron]
    assert list(factors.top_tokens(1, 3)) == list(np.argsort(-W[:, 1])[:3])
    assert factorise(post, [2, 5], k=50).activations.shape == (9, 9)  # k is capped at T


def test_neuron_factors_of_the_tiny_model(tiny_model):
    ids = tiny_model.tokenizer.encode("ROMEO: What light through yonder window breaks? It is the east")
    factors = tiny_model.neuron_factors(ids, layers=[1, 3], factors=4)
    assert factors.layers == [1, 3] and factors.width == 512
    assert factors.activations.shape == (4, len(ids)) and factors.loadings.shape == (4, 1024)
    assert factors.activations.dtype == np.float32
    _, cache = tiny_model.run_with_cache(ids, names=[("post", 1), ("post", 3)])
    A = np.maximum(np.concatenate([cache["post", 1], cache["post", 3]], axis=-1), 0)
    W, F = factors.activations.T, factors.loadings
    assert np.linalg.norm(A - W @ F) / np.linalg.norm(A) == pytest.approx(factors.relative_error, rel=1e-4)
    np.testing.assert_array_equal(
        tiny_model.neuron_factors(ids, layers=[1, 3], factors=4).activations, factors.activations
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(layers=[4]), "layer 4 is out of range: the model has layers 0 to 3"),
        (dict(layers=[1, 1]), "layers must be distinct"),
        (dict(layers=[]), "at least one layer"),
        (dict(factors=0), "factors must be an integer >= 1, got 0"),
        (dict(iterations=0), "iterations must be an integer >= 1, got 0"),
    ],
)
def test_neuron_factors_refuse_bad_arguments(tiny_model, args, message):
    with pytest.raises(InputError, match=message):
        tiny_model.neuron_factors([1, 2, 3], **args)


@pytest.mark.parametrize(
    "ids, message",
    [
        ([[1, 2, 3]], r"token ids must be a \[T\] array \(one sequence\), got shape \(1, 3\)"),
        ([1, 50300], "token id 50300 is out of range for vocab_size 50257"),
        ([1.5, 2.0], "token ids must be integers"),
    ],
)
def test_neuron_factors_refuse_bad_ids(tiny_model, ids, message):
    with pytest.raises(InputError, match=message):
        tiny_model.neuron_factors(ids)
