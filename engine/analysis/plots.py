"""matplotlib figures of an `Explanation`, for notebooks and papers: each returns a Figure that
saves as PNG (`fig.savefig("saliency.png")`) and that Jupyter shows inline.

    result.plot_saliency(-1)        # bars: the scores of the tokens before the last generated one
    result.plot_rankings()          # the rank of each generated token at every layer (logit lens)
    result.plot_factors()           # a sparkline per neuron factor over the tokens
    result.plot_attention(0, 3)     # the query x key attention of layer 0, head 3

matplotlib is optional (pip install "gpt2-engine[plot]"): it is imported here, when a plot is
asked for, never by the rest of the engine. The figures are `matplotlib.figure.Figure` objects made
without pyplot, so nothing is registered in pyplot's global state and no GUI backend is needed.
Colours follow the HTML report's (engine/analysis/assets/report.css and report.js).
"""

from __future__ import annotations

import numpy as np

from ..base.errors import InputError
from .report import SALIENCY_LABELS, lens_label, saliency_methods

SALIENCY_COLOUR = (234 / 255, 88 / 255, 12 / 255)  # --saliency in report.css
HEAT_MAP = "Blues"
PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
]  # the factor colours of report.js
GENERATED_COLOUR = "#7c3aed"  # --generated


def figure_class():
    """matplotlib's Figure, or an ImportError that says how to get it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib, an optional dependency: "
            "pip install 'gpt2-engine[plot]' (or pip install matplotlib)"
        ) from None
    return Figure


def new_axes(ax, size):
    """(figure, axes): the given axes and its figure, or a new figure of `size` inches."""
    if ax is not None:
        return ax.figure, ax
    figure = figure_class()(figsize=size, layout="constrained")
    return figure, figure.add_subplot()


def token_label(text: str) -> str:
    """A token as a tick label: line breaks and tabs as symbols, an all-space token as ␣."""
    shown = text.replace("\r", "\\r").replace("\n", "↵").replace("\t", "⇥")
    return shown.replace(" ", "␣") if not shown.strip() else shown


def colour_ticks(labels, prompt_length: int) -> None:
    """Generated tokens' tick labels in the report's purple."""
    for i, tick in enumerate(labels):
        if i >= prompt_length:
            tick.set_color(GENERATED_COLOUR)


def generated_index(result, token: int) -> int:
    G = result.generated
    if G == 0:
        raise InputError("nothing was generated: there is no saliency to plot")
    if not -G <= token < G:
        raise InputError(f"token must index the {G} generated tokens (-{G} to {G - 1}), got {token}")
    return token % G


def plot_saliency(result, token: int = -1, method: str | None = None, ax=None):
    """Bars of the scores of the tokens before generated token `token` (index into the generated
    tokens). method: one of result.saliency (default: grad_x_input, else the first there is)."""
    g = generated_index(result, int(token))
    if not result.saliency:
        raise InputError("this result has no saliency (explain ran with no methods)")
    if method is None:
        method = saliency_methods(result)[0]
    if method not in result.saliency:
        raise InputError(f"no {method!r} saliency in this result; it has {', '.join(result.saliency)}")
    position = result.prompt_length + g
    scores = result.saliency[method][g][:position]  # the tokens before the generated one
    largest = float(scores.max()) if scores.size and scores.max() > 0 else 1.0
    figure, ax = new_axes(ax, (max(6.0, 0.32 * position + 1.5), 3.4))
    colours = [(*SALIENCY_COLOUR, 0.15 + 0.85 * float(s) / largest) for s in scores]
    ax.bar(np.arange(position), scores, color=colours, edgecolor=SALIENCY_COLOUR, linewidth=0.6)
    ax.set_xticks(
        np.arange(position), [token_label(t) for t in result.tokens[:position]], rotation=90, fontfamily="monospace"
    )
    colour_ticks(ax.get_xticklabels(), result.prompt_length)
    ax.set_xlim(-0.6, position - 0.4)
    ax.set_ylabel("score (sums to 1)")
    ax.set_title(
        f"{SALIENCY_LABELS.get(method, method)}: what mattered for "
        f"{token_label(result.tokens[position])!r} (token {position})",
        loc="left",
    )
    ax.spines[["top", "right"]].set_visible(False)
    return figure


def plot_rankings(result, ax=None):
    """The logit-lens rank (1 = top) of each generated token, read after every layer: rows are the
    readings (embeddings, block 0, ...), columns the generated tokens (with none: every token after
    the first). Colour on a log scale, 1 darkest, 1000 and above white, as in the report."""
    P, N = result.prompt_length, len(result.token_ids)
    positions = np.arange(P - 1 if result.generated else 0, N - 1)  # predicted at t: token t + 1
    ranks = result.lens_target_ranks[:, positions]  # [R, columns]
    if ranks.size == 0:
        raise InputError("a single token: nothing is predicted, no rankings to plot")
    R, columns = ranks.shape
    figure, ax = new_axes(ax, (max(5.0, 0.55 * columns + 2.0), 0.42 * R + 1.6))
    strength = 1 - np.minimum(np.log10(ranks), 3) / 3  # 1 -> 1, 10 -> 2/3, >= 1000 -> 0
    ax.imshow(strength, cmap=HEAT_MAP, vmin=0, vmax=1.25, aspect="auto")
    for r in range(R):
        for c in range(columns):
            ax.text(
                c,
                r,
                str(ranks[r, c]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if strength[r, c] > 0.55 else "black",
            )
    labels = [lens_label(name) for name in result.lens_layers]
    labels[-1] += " (output)"
    ax.set_yticks(np.arange(R), labels)
    ax.set_xticks(
        np.arange(columns), [token_label(result.tokens[t + 1]) for t in positions], rotation=90, fontfamily="monospace"
    )
    if result.generated:
        for tick in ax.get_xticklabels():
            tick.set_color(GENERATED_COLOUR)
    ax.set_title("Rank of each token across layers (1 = top prediction)", loc="left")
    return figure


def factor_set(result, layers) -> int:
    """The index of the factor set of `layers`: None = all layers side by side (the last set)."""
    if layers is None:
        return len(result.factor_layers) - 1
    wanted = [int(layers)] if np.ndim(layers) == 0 else [int(layer) for layer in layers]
    if wanted not in result.factor_layers:
        sets = ", ".join(str(s) for s in result.factor_layers)
        raise InputError(f"no neuron factors of layers {wanted} in this result; it has {sets}")
    return result.factor_layers.index(wanted)


def plot_factors(result, layers=None):
    """A sparkline per neuron factor: its activation on every token (each scaled to its own peak),
    for the factor set of `layers` (one layer, a list, or None: all layers side by side)."""
    s = factor_set(result, layers)
    activations = result.factor_activations[s]  # [F, N]
    F, N = activations.shape
    Figure = figure_class()
    figure = Figure(figsize=(max(6.0, 0.3 * N + 2.0), 0.55 * F + 1.5), layout="constrained")
    axes = figure.subplots(F, 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(N)
    for f, ax in enumerate(axes):
        peak = activations[f].max()
        y = np.maximum(activations[f], 0) / peak if peak > 0 else np.zeros(N)
        colour = PALETTE[f % len(PALETTE)]
        ax.fill_between(x, y, color=colour, alpha=0.2, linewidth=0)
        ax.plot(x, y, color=colour, linewidth=1.6)
        if result.generated and result.prompt_length:
            ax.axvline(result.prompt_length - 0.5, color="#c3c9d4", linestyle="--", linewidth=0.8)
        ax.set_ylim(0, 1.08)
        ax.set_yticks([])
        ax.set_ylabel(f"factor {f + 1}", rotation=0, ha="right", va="center", fontsize=9)
        ax.spines[["top", "right", "left"]].set_visible(False)
    axes[-1].set_xticks(x, [token_label(t) for t in result.tokens], rotation=90, fontfamily="monospace")
    colour_ticks(axes[-1].get_xticklabels(), result.prompt_length)
    layer_names = result.factor_layers[s]
    which = f"layer {layer_names[0]}" if len(layer_names) == 1 else "all layers"
    axes[0].set_title(
        f"Neuron factors of {which} (NMF, relative error {result.factor_errors[s]:.2f}); each scaled to its peak",
        loc="left",
    )
    return figure


def plot_attention(result, layer: int = 0, head: int | None = 0, ax=None):
    """The attention of one layer and head (None: the mean of the heads) as a query x key heatmap."""
    n_layer, n_head = result.attention.shape[:2]
    if not 0 <= int(layer) < n_layer:
        raise InputError(f"layer {layer} is out of range: the model has layers 0 to {n_layer - 1}")
    if head is not None and not 0 <= int(head) < n_head:
        raise InputError(f"head {head} is out of range: the model has heads 0 to {n_head - 1}")
    pattern = result.attention[int(layer)].astype(np.float32)  # [H, N, N]
    pattern = pattern.mean(0) if head is None else pattern[int(head)]  # [N, N]
    N = pattern.shape[0]
    masked = np.ma.masked_where(np.triu(np.ones((N, N), dtype=bool), 1), pattern)  # keys after the query
    figure, ax = new_axes(ax, (0.26 * N + 2.5, 0.26 * N + 2.0))
    image = ax.imshow(masked, cmap=HEAT_MAP, vmin=0, vmax=1)
    labels = [token_label(t) for t in result.tokens]
    ax.set_xticks(np.arange(N), labels, rotation=90, fontfamily="monospace", fontsize=8)
    ax.set_yticks(np.arange(N), labels, fontfamily="monospace", fontsize=8)
    colour_ticks(ax.get_xticklabels(), result.prompt_length)
    colour_ticks(ax.get_yticklabels(), result.prompt_length)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    ax.set_title(f"Attention, layer {layer}, " + ("mean of heads" if head is None else f"head {head}"), loc="left")
    figure.colorbar(image, ax=ax, shrink=0.6, label="probability")
    return figure
