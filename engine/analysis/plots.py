"""matplotlib figures of an `Explanation`, for notebooks and papers: each returns a Figure that
saves as PNG (`fig.savefig("saliency.png")`) and that Jupyter shows inline, in a fresh kernel too.

    result.plot_saliency(-1)        # bars: the attributions of the tokens before the last new one
    result.plot_rankings()          # the rank of each new token at every layer (logit lens)
    result.plot_factors()           # a sparkline per neuron factor over the tokens
    result.plot_attention(0, 3)     # the query x key attention of layer 0, head 3

matplotlib is optional (pip install "gpt2-engine[plot]"): it is imported here, when a plot is
asked for, never by the rest of the engine. The figures are made without pyplot, so nothing is
registered in pyplot's global state and no GUI backend is needed; they are of a Figure subclass
with `_repr_png_`, which is how IPython shows an object as an image, so a notebook shows them
without `%matplotlib inline` (with it, its own PNG formatter takes over, to the same effect).

Long texts: no figure grows past MAX_WIDTH inches. Bars and rank columns wrap onto more panels,
one under the other; tick labels of sparklines and attention maps thin out to every n-th token.
Colours follow the HTML report's (engine/analysis/assets/report.css and report.js).
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np

from ..base.errors import InputError
from .report import SALIENCY_LABELS, lens_label, saliency_methods

SALIENCY_COLOUR = (234 / 255, 88 / 255, 12 / 255)  # --saliency in report.css
SUPPORT_COLOUR = (33 / 255, 102 / 255, 172 / 255)  # --support
AGAINST_COLOUR = (178 / 255, 24 / 255, 43 / 255)  # --against
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
GENERATED_COLOUR = "#6d28d9"  # --generated
MAX_WIDTH = 16.0  # inches: wider content wraps onto more panels or thins its tick labels
LABEL_INCHES = 0.15  # room one rotated tick label needs
PNG_DPI = 100  # what a notebook shows


@functools.cache
def figure_class():
    """A matplotlib Figure that shows itself in a notebook (`_repr_png_`), or an ImportError that
    says how to get matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib, an optional dependency: "
            "pip install 'gpt2-engine[plot]' (or pip install matplotlib)"
        ) from None

    class ShownFigure(Figure):
        """A Figure that IPython displays as a PNG, with or without %matplotlib inline."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight")
            return buffer.getvalue()

    return ShownFigure


def new_figure(size, rows: int = 1):
    """(figure, [axes]) of `rows` panels one under the other."""
    figure = figure_class()(figsize=size, layout="constrained")
    return figure, list(figure.subplots(rows, 1, squeeze=False)[:, 0])


def chunks(count: int, per_panel: int) -> list[range]:
    """0..count-1 in consecutive ranges of at most per_panel, as even as possible."""
    panels = max(1, math.ceil(count / per_panel))
    size = math.ceil(count / panels) if count else 0
    return [range(start, min(count, start + size)) for start in range(0, count, size)] if count else [range(0)]


def label_step(count: int, inches: float) -> int:
    """Label every step-th of `count` ticks so that labels fit in `inches`."""
    return max(1, math.ceil(count * LABEL_INCHES / max(inches, 1.0)))


def token_label(text: str, hex_bytes: str | None = None) -> str:
    """A token as a tick label: its bytes when it holds part of a character; line breaks and
    tabs as symbols, an all-space token as ␣."""
    if hex_bytes:
        return "".join(f"\\x{b}" for b in hex_bytes.split())
    shown = text.replace("\r", "␍").replace("\n", "↵").replace("\t", "⇥")
    return shown.replace(" ", "␣") if not text.strip() else shown


def labels_of(result) -> list[str]:
    return [token_label(t, result.piece_bytes.get(int(i))) for t, i in zip(result.tokens, result.token_ids)]


def colour_ticks(labels, first_generated: int, positions=None) -> None:
    """New tokens' tick labels in the report's purple (positions: each tick's token index)."""
    for n, tick in enumerate(labels):
        if (positions[n] if positions is not None else n) >= first_generated:
            tick.set_color(GENERATED_COLOUR)


def generated_index(result, token: int) -> int:
    G = result.generated
    if G == 0:
        raise InputError("nothing was generated: there is no saliency to plot")
    if not -G <= token < G:
        raise InputError(f"token must index the {G} new tokens (-{G} to {G - 1}), got {token}")
    return token % G


def plot_saliency(result, token: int = -1, method: str | None = None, ax=None, foil: int | None = None):
    """Bars for the tokens before new token `token` (an index into the new tokens). method: one
    of result.saliency (default: grad_x_input, else the first there is). Magnitude methods show
    their scores (sizes, summing to 1); signed methods (erasure, integrated gradients) their signed
    values, blue where the token supported the new one and red where it argued against it. foil: j,
    for the contrast with the j-th alternative (result.contrast_ids[token, j]). Long texts wrap."""
    g = generated_index(result, int(token))
    if not result.saliency:
        raise InputError("this result has no saliency (explain ran with no methods)")
    if method is None:
        method = saliency_methods(result)[0]
    if method not in result.saliency:
        raise InputError(f"no {method!r} saliency in this result; it has {', '.join(result.saliency)}")
    position = result.prompt_length + g
    signed = result.signed(method)
    if foil is not None:
        J = result.contrast_ids.shape[1] if result.contrast_ids.ndim == 2 else 0
        if not J or method not in result.contrast_saliency:
            raise InputError("this result has no contrast (explain ran with alternatives=0)")
        if not 0 <= int(foil) < J:
            raise InputError(f"foil must index the {J} alternatives (0 to {J - 1}), got {foil}")
        values = (
            result.contrast_signed[method][g, int(foil)]
            if signed is not None
            else result.contrast_saliency[method][g, int(foil)]
        )
    else:
        values = signed[g] if signed is not None else result.saliency[method][g]
    values = values[:position]  # the tokens before the new one
    largest = float(np.abs(values).max()) if values.size and np.abs(values).max() > 0 else 1.0
    labels = labels_of(result)
    per_panel = int((MAX_WIDTH - 1.5) / 0.32)
    parts = chunks(position, per_panel) if ax is None else [range(position)]
    if ax is None:
        width = max(6.0, 0.32 * len(parts[0]) + 1.5)
        figure, axes = new_figure((width, 3.4 * len(parts)), len(parts))
    else:
        figure, axes = ax.figure, [ax]
    for part, panel in zip(parts, axes):
        x = np.arange(part.start, part.stop)
        v = values[part.start : part.stop]
        if signed is not None:
            colours = [
                (*(SUPPORT_COLOUR if s >= 0 else AGAINST_COLOUR), 0.15 + 0.85 * abs(float(s)) / largest) for s in v
            ]
            edges = [SUPPORT_COLOUR if s >= 0 else AGAINST_COLOUR for s in v]
            panel.axhline(0, color="#8a93a3", linewidth=0.8)
        else:
            colours = [(*SALIENCY_COLOUR, 0.15 + 0.85 * float(s) / largest) for s in v]
            edges = [SALIENCY_COLOUR] * len(v)
        panel.bar(x, v, color=colours, edgecolor=edges, linewidth=0.6)
        panel.set_xticks(x, [labels[i] for i in x], rotation=90, fontfamily="monospace")
        colour_ticks(panel.get_xticklabels(), result.prompt_length, list(x))
        panel.set_xlim(part.start - 0.6, part.stop - 0.4)
        panel.spines[["top", "right"]].set_visible(False)
        if signed is not None:
            f = "log p" if result.of == "logprob" else "p"
            panel.set_ylabel(f"signed, in {f} (+ supports)")
        else:
            panel.set_ylabel("score (sums to 1)")
    name = SALIENCY_LABELS.get(method, method)
    what = f"{labels[position]!r} (token {position})"
    if foil is not None:
        other = int(result.contrast_ids[g, int(foil)])
        what += f" rather than {token_label(result.pieces[other], result.piece_bytes.get(other))!r}"
    axes[0].set_title(f"{name}{' (signed)' if signed is not None else ''}: what mattered for {what}", loc="left")
    return figure


def plot_rankings(result, ax=None):
    """The logit-lens rank (1 = top) of each new token, read after every layer: rows are the
    readings (embeddings, block 0, ...), columns the new tokens (with none: every token after the
    first), wrapped onto more panels past MAX_WIDTH. Colour on a log scale, 1 darkest, 1000 and
    above white, as in the report."""
    P, N = result.prompt_length, len(result.token_ids)
    positions = np.arange(P - 1 if result.generated else 0, N - 1)  # predicted at t: token t + 1
    ranks = result.lens_target_ranks[:, positions]  # [R, columns]
    if ranks.size == 0:
        raise InputError("a single token: nothing is predicted, no rankings to plot")
    R, columns = ranks.shape
    per_panel = int((MAX_WIDTH - 2.0) / 0.55)
    parts = chunks(columns, per_panel) if ax is None else [range(columns)]
    if ax is None:
        figure, axes = new_figure((max(5.0, 0.55 * len(parts[0]) + 2.0), (0.42 * R + 1.6) * len(parts)), len(parts))
    else:
        figure, axes = ax.figure, [ax]
    strength = 1 - np.minimum(np.log10(ranks), 3) / 3  # 1 -> 1, 10 -> 2/3, >= 1000 -> 0
    layer_labels = [lens_label(name) for name in result.lens_layers]
    layer_labels[-1] += " (output)"
    labels = labels_of(result)
    for part, panel in zip(parts, axes):
        panel.imshow(strength[:, part.start : part.stop], cmap=HEAT_MAP, vmin=0, vmax=1.25, aspect="auto")
        for r in range(R):
            for n, c in enumerate(part):
                panel.text(
                    n,
                    r,
                    str(ranks[r, c]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if strength[r, c] > 0.55 else "black",
                )
        panel.set_yticks(np.arange(R), layer_labels)
        panel.set_xticks(
            np.arange(len(part)), [labels[positions[c] + 1] for c in part], rotation=90, fontfamily="monospace"
        )
        colour_ticks(panel.get_xticklabels(), P, [positions[c] + 1 for c in part])
    axes[0].set_title("Rank of each token across layers (1 = top prediction)", loc="left")
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
    width = min(MAX_WIDTH, max(6.0, 0.3 * N + 2.0))
    figure = figure_class()(figsize=(width, 0.55 * F + 1.5), layout="constrained")
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
    step = label_step(N, width - 2.0)
    ticks = x[::step]
    labels = labels_of(result)
    axes[-1].set_xticks(ticks, [labels[t] for t in ticks], rotation=90, fontfamily="monospace")
    colour_ticks(axes[-1].get_xticklabels(), result.prompt_length, list(ticks))
    layer_names = result.factor_layers[s]
    which = f"layer {layer_names[0]}" if len(layer_names) == 1 else "all layers"
    shared = f", fitted over {result.factor_inputs} inputs" if result.factor_inputs > 1 else ""
    axes[0].set_title(
        f"Neuron factors of {which} (NMF{shared}, relative error {result.factor_errors[s]:.2f}); each scaled to its peak"
        + (f"; every {step}th token labelled" if step > 1 else ""),
        loc="left",
    )
    return figure


def plot_attention(result, layer: int = 0, head: int | None = 0, ax=None):
    """The attention of one layer and head (None: the mean of the heads kept) as a query x key
    heatmap; layer and head are the model's numbers, among those the result kept."""
    n_layer, n_head = result.config["n_layer"], result.config["n_head"]
    if not 0 <= int(layer) < n_layer:
        raise InputError(f"layer {layer} is out of range: the model has layers 0 to {n_layer - 1}")
    if head is not None and not 0 <= int(head) < n_head:
        raise InputError(f"head {head} is out of range: the model has heads 0 to {n_head - 1}")
    if int(layer) not in result.attention_layers:
        kept = result.attention_layers or "none"
        raise InputError(f"the attention of layer {layer} was not kept (kept layers: {kept})")
    stored = result.attention[result.attention_layers.index(int(layer))].astype(np.float32)  # [heads, N, N]
    if head is None:
        pattern = stored.mean(0)
    elif result.attention_mean:
        raise InputError("this result kept only each layer's mean over its heads: use head=None")
    elif int(head) not in result.attention_heads:
        raise InputError(f"the attention of head {head} was not kept (kept heads: {result.attention_heads})")
    else:
        pattern = stored[result.attention_heads.index(int(head))]  # [N, N]
    N = pattern.shape[0]
    masked = np.ma.masked_where(np.triu(np.ones((N, N), dtype=bool), 1), pattern)  # keys after the query
    side = min(12.0, 0.26 * N + 2.5)
    if ax is None:
        figure, (ax,) = new_figure((side, side - 0.5))
    else:
        figure = ax.figure
    image = ax.imshow(masked, cmap=HEAT_MAP, vmin=0, vmax=1)
    labels = labels_of(result)
    step = label_step(N, side - 2.5)
    ticks = np.arange(0, N, step)
    ax.set_xticks(ticks, [labels[t] for t in ticks], rotation=90, fontfamily="monospace", fontsize=8)
    ax.set_yticks(ticks, [labels[t] for t in ticks], fontfamily="monospace", fontsize=8)
    colour_ticks(ax.get_xticklabels(), result.prompt_length, list(ticks))
    colour_ticks(ax.get_yticklabels(), result.prompt_length, list(ticks))
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    ax.set_title(f"Attention, layer {layer}, " + ("mean of heads" if head is None else f"head {head}"), loc="left")
    figure.colorbar(image, ax=ax, shrink=0.6, label="probability")
    return figure
