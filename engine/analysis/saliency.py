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

Sign. The scores are sizes: they say how much a token mattered, not in which direction. Two
methods also have a direction (`SIGNED`): erasure's drop, and integrated gradients' attribution
summed over the embedding dimensions, each token's share of f(input) - f(baseline) (completeness
says those shares add up to it). `Attribution.signed` gives that value per token: positive where
the token supported the target, negative where it argued against it. Gradient and gradient x
input stay magnitudes, as Ecco shows them.

Contrast: why target A rather than foil B at the same position. Every attribution here is linear
in f, so the attribution of f(A) - f(B) is the difference of the two attributions (for log p that
is the difference of the two logits, since the log-normaliser cancels): `attribute_contrast`, or
`attribute_targets` for several targets at once (one forward pass serves them all; each target
costs one more backward pass per point, and erasure's forward rows serve every target).

Differences from Ecco: Ecco attributes the probability; the default here is the log-probability
(of="prob" gives Ecco's choice). Captum's Saliency takes |gradient| before the L2 norm, which does
not change the norm. Ecco has no erasure method. Scores cover tokens 0..position; the tokens after
the position cannot affect it and score 0.

Legend: T tokens, C = n_embd, B rows in one batch, S = steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base.checks import as_integer, check_integer, shown
from ..base.errors import InputError
from ..capture import run_with_hooks
from .backward import check_target, embedding_forward, target_forward, targets_gradients

METHODS = ("gradient", "grad_x_input", "integrated_gradients", "erasure")
SIGNED = ("integrated_gradients", "erasure")  # methods whose attribution has a direction per token
DEFAULT_STEPS = 50  # Captum's default for integrated gradients
SAVED_BYTES_PER_BATCH = 256 * 2**20  # how much a batch of path points may keep for its backward pass


@dataclass
class Attribution:
    """One method's attribution of one prediction to the input tokens.

    scores: float32 [T], >= 0, summing to 1 over tokens 0..position (0 after; all 0 if every
        attribution is 0). attributions: float32 [T, C] for the gradient methods, [T] for erasure
        (the signed drop of f). value: f at the input. For integrated gradients: baseline_value
        = f at the baseline, and steps. foil_id: for a contrast (`attribute_contrast`), the token
        B of f(target) - f(B), which value, baseline_value and attributions are then of.
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
    foil_id: int | None = None

    @property
    def signed(self) -> np.ndarray | None:
        """The signed methods (SIGNED) only: float32 [T], each token's attribution with its
        direction, > 0 where it supported the target, < 0 where it argued against it. Erasure: the
        drop f(x) - f(x erased at t); integrated gradients: the attribution summed over the
        embedding dimensions (they add up to f(input) - f(baseline)). None for the others."""
        if self.method == "erasure":
            return self.attributions
        if self.method == "integrated_gradients":
            return self.attributions.sum(-1, dtype=np.float64).astype(np.float32)
        return None

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
    if not isinstance(method, str) or method not in METHODS:
        raise InputError(
            f"{name + ': ' if name else ''}unknown saliency method {shown(method)}; choose from {', '.join(METHODS)}"
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
    return attribute_targets(model, ids, [target_id], position, methods, of, steps)[0]


def attribute_targets(
    model, ids, target_ids, position: int = -1, methods=METHODS, of: str = "logprob", steps: int = DEFAULT_STEPS
) -> list[dict[str, Attribution]]:
    """`attribute_all` for several candidate tokens at one position: one method -> Attribution
    dict per target, in order. The forward passes are shared: each more target costs one backward
    pass (and one per integrated-gradients point), and nothing more for erasure."""
    methods = [check_method(m) for m in methods]
    if not len(target_ids):
        raise InputError("give at least one target id")
    checked = [check_target(model, ids, t, position, of) for t in target_ids]
    ids, p = checked[0][0], checked[0][2]
    targets = [target for _, target, _ in checked]
    if "integrated_gradients" in methods:
        steps = check_steps(steps)
    T = len(ids)
    tok, pos = embedding_forward(model.weights, ids[: p + 1])  # [P, C] each, P = p + 1
    results: list[dict[str, Attribution]] = [{} for _ in targets]

    def result(k, method, attributions, value, **extra):
        padded = np.zeros((T, *attributions.shape[1:]), dtype=np.float32)  # tokens after p: 0
        padded[: p + 1] = attributions
        results[k][method] = Attribution(method, targets[k], p, of, token_scores(padded), padded, float(value), **extra)

    if "gradient" in methods or "grad_x_input" in methods:
        values, grads = targets_gradients(
            model.weights, model.config, (tok + pos)[None], p, targets, of
        )  # [K, 1], [K, 1, P, C]
        for k in range(len(targets)):
            if "gradient" in methods:
                result(k, "gradient", grads[k, 0], values[k, 0])
            if "grad_x_input" in methods:
                result(k, "grad_x_input", grads[k, 0] * tok, values[k, 0])
    if "integrated_gradients" in methods:
        attributions, values, baseline_values = integrated_gradients(model, tok, pos, p, targets, of, steps)
        for k in range(len(targets)):
            result(
                k,
                "integrated_gradients",
                attributions[k],
                values[k],
                baseline_value=float(baseline_values[k]),
                steps=steps,
            )
    if "erasure" in methods:
        drops, values = erasure(model, ids[: p + 1], targets, of)
        for k in range(len(targets)):
            result(k, "erasure", drops[k], values[k])
    return [{m: r[m] for m in methods} for r in results]


def contrast(target: Attribution, foil: Attribution) -> Attribution:
    """The attribution of f(target) - f(foil) from those of f(target) and f(foil) (same method,
    position and input): their difference, since every method here is linear in f."""
    if (target.method, target.position, target.of) != (foil.method, foil.position, foil.of):
        raise InputError("a contrast needs two attributions of one method, position and f")
    attributions = (target.attributions - foil.attributions).astype(np.float32)
    baseline = None
    if target.baseline_value is not None and foil.baseline_value is not None:
        baseline = target.baseline_value - foil.baseline_value
    return Attribution(
        target.method,
        target.target_id,
        target.position,
        target.of,
        token_scores(attributions),
        attributions,
        target.value - foil.value,
        baseline,
        target.steps,
        foil_id=foil.target_id,
    )


def attribute_contrast(
    model,
    ids,
    target_id: int,
    foil_id: int,
    position: int = -1,
    method: str = "grad_x_input",
    of: str = "logprob",
    steps: int = DEFAULT_STEPS,
) -> Attribution:
    """Contrastive saliency: why target_id rather than foil_id at `position`. The attribution of
    f(target_id) - f(foil_id) (log p or p of each), scores normalised as `attribute`'s are;
    `signed` gives the direction for erasure and integrated gradients (> 0: the token favoured
    target_id over foil_id)."""
    if as_integer(target_id, "target_id") == as_integer(foil_id, "foil_id"):
        raise InputError(f"foil_id must differ from target_id (both are {target_id})")
    mine, theirs = attribute_targets(model, ids, [target_id, foil_id], position, [method], of, steps)
    return contrast(mine[method], theirs[method])


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of `steps`-point Gauss-Legendre quadrature on [0, 1] (weights sum to 1)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1], float64
    return ((nodes + 1) / 2).astype(np.float32), (weights / 2).astype(np.float32)


def rows_per_batch(model, T: int) -> int:
    """How many [T]-token rows fit SAVED_BYTES_PER_BATCH of saved activations (at least 1)."""
    c = model.config
    per_layer = T * (8 * c.n_embd + 2 * c.mlp_width + c.n_head * T) * 4  # x's, qkv, GELU in/out, probs
    return max(1, SAVED_BYTES_PER_BATCH // (per_layer * c.n_layer))


def integrated_gradients(model, tok, pos, p: int, targets, of: str, steps: int):
    """tok, pos: float32 [P, C]; targets: K token ids. Returns (attributions float32 [K, P, C],
    f(input) [K], f(baseline) [K]).

    attributions = (e - 0) * sum_i w_i g(alpha_i e + pos), the Gauss-Legendre estimate of
    e * integral_0^1 g(alpha e + pos) d alpha. The two endpoints (alpha = 1 and 0) ride along in
    the batches for f(input) and f(baseline); their gradients are not used. The K targets share
    each batch's forward pass.
    """
    alphas, weights = gauss_legendre(steps)  # [S], [S]
    alphas = np.concatenate([alphas, np.array([1.0, 0.0], dtype=np.float32)])  # [S + 2]
    weights = np.concatenate([weights, np.zeros(2, dtype=np.float32)])  # [S + 2]: the endpoints weigh 0
    K = len(targets)
    values = np.empty((K, len(alphas)), dtype=np.float32)
    mean_grad = np.zeros((K, *tok.shape), dtype=np.float32)  # [K, P, C]
    batch = rows_per_batch(model, len(tok))
    for start in range(0, len(alphas), batch):
        a = alphas[start : start + batch]  # [B]
        x = a[:, None, None] * tok[None] + pos[None]  # [B, P, C], points on the path
        v, g = targets_gradients(model.weights, model.config, x, p, targets, of)  # [K, B], [K, B, P, C]
        values[:, start : start + batch] = v
        for k in range(K):  # one target at a time: the same sums, in the same order, as a single target's
            mean_grad[k] += np.tensordot(weights[start : start + batch], g[k], axes=1)  # [P, C]
    return tok[None] * mean_grad, values[:, -2], values[:, -1]


def erasure(model, ids, targets, of: str) -> tuple[np.ndarray, np.ndarray]:
    """ids: int64 [P], the prediction read at the last; targets: K token ids. Returns (drops
    float32 [K, P], f(input) [K]): drops[k, t] = f_k(ids) - f_k(ids with token t's embedding
    zeroed), from forward passes only (each row's logits serve every target)."""
    P = len(ids)
    rows = np.arange(-1, P)  # row 0 erases nothing (f of the input), row r + 1 erases token r
    values = np.empty((len(targets), len(rows)), dtype=np.float32)
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
        for k, target in enumerate(targets):
            values[k, start : start + batch] = target_forward(logits[:, 0], target, of)[0]
    return (values[:, :1] - values[:, 1:]).astype(np.float32), values[:, 0]


def saliency(
    model,
    ids,
    target_id: int,
    position: int = -1,
    method: str = "grad_x_input",
    of: str = "logprob",
    steps: int = DEFAULT_STEPS,
    foil_id: int | None = None,
) -> np.ndarray:
    """Scores float32 [T] of the input tokens for f = log p(target_id) (or p) at `position`:
    normalised to sum 1 over tokens 0..position (see the module docstring for each method). With
    foil_id: the scores of the contrast f(target_id) - f(foil_id) (`attribute_contrast`)."""
    if foil_id is not None:
        return attribute_contrast(model, ids, target_id, foil_id, position, method, of, steps).scores
    return attribute(model, ids, target_id, position, method, of, steps).scores
