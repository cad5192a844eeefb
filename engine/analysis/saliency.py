"""Input saliency: how much each input token mattered for one prediction.

The prediction is a scalar f: log p(target_id) (of="logprob") or p(target_id) (of="prob") in the
next-token distribution at `position`. Each method gives an attribution per input token, then a
score per token, the attribution's size, normalised so that the scores sum to 1, as Ecco does:

    gradient              g_t = d f / d x_t                        score: ||g_t||_2
    grad_x_input          g_t * e_t (elementwise)                  score: ||g_t * e_t||_2
    integrated_gradients  e_t * mean over the path of g_t          score: ||.||_2
    erasure               f(x) - f(x with e_t set to 0)            score: |.|

Here x_t = e_t + p_t is the input of the first block, e_t token t's embedding (a row of wte) and p_t
its position embedding. The gradient is the same with respect to x_t or e_t (x is a sum). The
"input" of grad_x_input and the path of integrated gradients are the token embeddings e_t, with the
position embeddings left in place, as in Ecco: it passes the token embeddings as `inputs_embeds` to
Hugging Face, which adds the position embeddings itself, and runs Captum's Saliency, InputXGradient
and IntegratedGradients on them.

Integrated gradients (Sundararajan et al. 2017) integrates the gradient along the straight path
from a baseline e' to the input e. The baseline is e' = 0 for every token (Captum's default, as
Ecco uses it): the positions stay, the tokens are gone. The integral over alpha in [0, 1] of
g(e' + alpha (e - e')) is computed with `steps`-point Gauss-Legendre quadrature (Captum's default
method, and its default of 50 steps). Completeness says the attributions sum to f(e) - f(e'): the
result reports both sides and their gap.

Erasure uses only forward passes: "erasing" token t replaces its token embedding by the same
baseline, 0, and keeps its position embedding, so the sequence keeps its length and every other
token its position (removing the token would shift them all and change more than one thing), and
erasure and integrated gradients measure against the same reference input. The raw attribution
is the drop f(x) - f(x erased at t), positive when the token helped; the score is its size.

Differences from Ecco: Ecco attributes the probability; the default here is the log-probability
(of="prob" gives Ecco's choice). Captum's Saliency takes |gradient| before the L2 norm, which does
not change the norm. Ecco has no erasure method. Scores cover tokens 0..position; the tokens after
the position cannot affect it and score 0.

Legend: T tokens, C = n_embd, B rows in one batch, S = steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base.checks import check_integer
from ..base.errors import InputError
from ..capture import run_with_hooks
from .backward import check_target, embedding_forward, target_forward, target_gradients

METHODS = ("gradient", "grad_x_input", "integrated_gradients", "erasure")
DEFAULT_STEPS = 50  # Captum's default for integrated gradients
SAVED_BYTES_PER_BATCH = 256 * 2**20  # how much a batch of path points may keep for its backward pass


@dataclass
class Attribution:
    """One method's attribution of one prediction to the input tokens.

    scores: float32 [T], >= 0, summing to 1 over tokens 0..position (0 after; all 0 if every
        attribution is 0). attributions: float32 [T, C] for the gradient methods, [T] for erasure
        (the signed drop of f). value: f at the input. For integrated gradients: baseline_value
        = f at the baseline, and steps.
    """

    method: str
    target_id: int
    position: int
    of: str
    scores: np.ndarray
    attributions: np.ndarray
    value: float
    baseline_value: float | None = None
    steps: int | None = None

    @property
    def completeness(self) -> dict | None:
        """Integrated gradients only: sum of the attributions vs f(input) - f(baseline)."""
        if self.method != "integrated_gradients":
            return None
        assert self.baseline_value is not None  # integrated gradients always records it
        total = float(self.attributions.sum(dtype=np.float64))  # summed in float64: a reporting choice
        difference = self.value - self.baseline_value
        gap = abs(total - difference)
        return {
            "sum_of_attributions": total,
            "output_difference": difference,
            "gap": gap,
            "relative_gap": gap / abs(difference) if difference else float("inf") if gap else 0.0,
        }


def token_scores(attributions: np.ndarray) -> np.ndarray:
    """[T, C] -> L2 norm per token, or [T] -> |value|; then normalised to sum 1 (float32 [T])."""
    size = np.linalg.norm(attributions, axis=-1) if attributions.ndim == 2 else np.abs(attributions)
    total = size.sum()
    return (size / total if total > 0 else size).astype(np.float32)


def check_method(method: str, name: str | None = None) -> str:
    """A saliency method's name; `name`, if given, is the argument the error names (the CLI's flag)."""
    if method not in METHODS:
        raise InputError(
            f"{name + ': ' if name else ''}unknown saliency method {method!r}; choose from {', '.join(METHODS)}"
        )
    return method


def check_steps(steps, name: str = "steps") -> int:
    """Integrated-gradients steps: an integer from 1 to 10000."""
    return check_integer(name, steps, 1, 10_000)


def attribute(
    model,
    ids,
    target_id: int,
    position: int = -1,
    method: str = "grad_x_input",
    of: str = "logprob",
    steps: int = DEFAULT_STEPS,
) -> Attribution:
    """Attribute f (log p or p of target_id at position) to the tokens of ids [T] with one method."""
    return attribute_all(model, ids, target_id, position, [method], of, steps)[method]


def attribute_all(
    model, ids, target_id: int, position: int = -1, methods=METHODS, of: str = "logprob", steps: int = DEFAULT_STEPS
) -> dict[str, Attribution]:
    """Several methods for one prediction: method -> Attribution. gradient and grad_x_input share
    one backward pass; integrated gradients costs `steps` more, erasure position + 1 forward rows."""
    methods = [check_method(m) for m in methods]
    ids, target, p = check_target(model, ids, target_id, position, of)
    if "integrated_gradients" in methods:
        steps = check_steps(steps)
    T = len(ids)
    tok, pos = embedding_forward(model.weights, ids[: p + 1])  # [P, C] each, P = p + 1
    results = {}

    def result(method, attributions, value, **extra):
        padded = np.zeros((T, *attributions.shape[1:]), dtype=np.float32)  # tokens after p: 0
        padded[: p + 1] = attributions
        return Attribution(method, target, p, of, token_scores(padded), padded, float(value), **extra)

    if "gradient" in methods or "grad_x_input" in methods:
        value, grads = target_gradients(model.weights, model.config, (tok + pos)[None], p, target, of)
        if "gradient" in methods:
            results["gradient"] = result("gradient", grads[0], value[0])
        if "grad_x_input" in methods:
            results["grad_x_input"] = result("grad_x_input", grads[0] * tok, value[0])
    if "integrated_gradients" in methods:
        attributions, value, baseline_value = integrated_gradients(model, tok, pos, p, target, of, steps)
        results["integrated_gradients"] = result(
            "integrated_gradients", attributions, value, baseline_value=baseline_value, steps=steps
        )
    if "erasure" in methods:
        drops, value = erasure(model, ids[: p + 1], target, of)
        results["erasure"] = result("erasure", drops, value)
    return {m: results[m] for m in methods}


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of `steps`-point Gauss-Legendre quadrature on [0, 1] (weights sum to 1)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1], float64
    return ((nodes + 1) / 2).astype(np.float32), (weights / 2).astype(np.float32)


def rows_per_batch(model, T: int) -> int:
    """How many [T]-token rows fit SAVED_BYTES_PER_BATCH of saved activations (at least 1)."""
    c = model.config
    per_layer = T * (8 * c.n_embd + 2 * c.mlp_width + c.n_head * T) * 4  # x's, qkv, GELU in/out, probs
    return max(1, SAVED_BYTES_PER_BATCH // (per_layer * c.n_layer))


def integrated_gradients(model, tok, pos, p: int, target: int, of: str, steps: int):
    """tok, pos: float32 [P, C]. Returns (attributions float32 [P, C], f(input), f(baseline)).

    attributions = (e - 0) * sum_i w_i g(alpha_i e + pos), the Gauss-Legendre estimate of
    e * integral_0^1 g(alpha e + pos) d alpha. The two endpoints (alpha = 1 and 0) ride along in
    the batches for f(input) and f(baseline); their gradients are not used.
    """
    alphas, weights = gauss_legendre(steps)  # [S], [S]
    alphas = np.concatenate([alphas, np.array([1.0, 0.0], dtype=np.float32)])  # [S + 2]
    weights = np.concatenate([weights, np.zeros(2, dtype=np.float32)])  # [S + 2]: the endpoints weigh 0
    values = np.empty(len(alphas), dtype=np.float32)
    mean_grad = np.zeros_like(tok)  # [P, C]
    batch = rows_per_batch(model, len(tok))
    for start in range(0, len(alphas), batch):
        a = alphas[start : start + batch]  # [B]
        x = a[:, None, None] * tok[None] + pos[None]  # [B, P, C], points on the path
        v, g = target_gradients(model.weights, model.config, x, p, target, of)  # [B], [B, P, C]
        values[start : start + batch] = v
        mean_grad += np.tensordot(weights[start : start + batch], g, axes=1)  # [P, C]
    return tok * mean_grad, float(values[-2]), float(values[-1])


def erasure(model, ids, target: int, of: str) -> tuple[np.ndarray, float]:
    """ids: int64 [P], the prediction read at the last. Returns (drops float32 [P], f(input)):
    drops[t] = f(ids) - f(ids with token t's embedding zeroed), from forward passes only."""
    P = len(ids)
    rows = np.arange(-1, P)  # row 0 erases nothing (f of the input), row r + 1 erases token r
    values = np.empty(len(rows), dtype=np.float32)
    batch = max(1, 4 * rows_per_batch(model, P))  # no backward: nothing is kept per layer
    for start in range(0, len(rows), batch):
        erased = rows[start : start + batch]  # [B]

        def zero_tokens(tok, erased=erased):  # [B, P, C]: row b loses token erased[b]
            chosen = erased >= 0
            tok[np.nonzero(chosen)[0], erased[chosen]] = 0
            return tok

        logits = run_with_hooks(
            model, np.tile(ids, (len(erased), 1)), [("hook_embed", zero_tokens)], logits_to_keep=1
        )  # [B, 1, V]
        values[start : start + batch] = target_forward(logits[:, 0], target, of)[0]
    return (values[0] - values[1:]).astype(np.float32), float(values[0])


def saliency(
    model,
    ids,
    target_id: int,
    position: int = -1,
    method: str = "grad_x_input",
    of: str = "logprob",
    steps: int = DEFAULT_STEPS,
) -> np.ndarray:
    """Scores float32 [T] of the input tokens for f = log p(target_id) (or p) at `position`:
    normalised to sum 1 over tokens 0..position (see the module docstring for each method)."""
    return attribute(model, ids, target_id, position, method, of, steps).scores
