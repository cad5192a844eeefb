"""Explorables: an `Explanation` as one self-contained HTML page.

    html = render_html(result)            # a str: the whole page
    write_html(result, "report.html")     # the same, written atomically
    gpt2 explain "ROMEO:" --model DIR --max-new-tokens 20 --html report.html

The page has four views of what the model did: input saliency (hover, tap or focus a generated
token to shade the tokens before it by their scores), neuron factors (tokens coloured by their
dominant factor, a sparkline per factor), the logit lens (the top token of every layer at every
position, and each token's rank across layers) and attention (a query x key heatmap per layer and
head). It is one file: the CSS and JavaScript (engine/analysis/assets/report.css, report.js) are inlined and
nothing is fetched, so it opens from disk, in a mail attachment or in a notebook's iframe.

The data rides in a <script type="application/json"> element, as JSON in which every "<", ">" and
"&" is written as a \\u escape: no token text can end that element ("</script>") or open a comment
("<!--"), and the page reads the exact strings back with JSON.parse. The page never puts data into
innerHTML; token texts become text nodes.

Size. Attention dominates: its lower triangle (key <= query) of every layer and head, as the float16
values the Explanation stores, base64-encoded: 2 n_layer n_head N (N + 1) / 2 bytes x 4/3. For the
124M shape (12 x 12) and N = 30 tokens that is 0.18 MB; everything else grows with N, not with the
vocabulary or the MLP width. Probabilities and scores are written with 5 decimals, factor
activations with 4 significant digits.
"""

from __future__ import annotations

import base64
import html
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np

from ..base.files import write_atomically

SALIENCY_ORDER = ("grad_x_input", "integrated_gradients", "erasure", "gradient")  # the page's method switch
SALIENCY_LABELS = {
    "grad_x_input": "Gradient × input",
    "integrated_gradients": "Integrated gradients",
    "erasure": "Erasure",
    "gradient": "Gradient",
}
DECIMALS = 5  # probabilities and saliency scores, all in [0, 1]
SIGNIFICANT = 4  # factor activations and loadings, whose scale is arbitrary


def asset(name: str) -> str:
    """The text of a file shipped in engine/analysis/assets (package data, so a wheel carries it)."""
    return resources.files("engine.analysis").joinpath("assets", name).read_text(encoding="utf-8")


def decimals(values, places: int = DECIMALS) -> list:
    """An array as nested lists of floats rounded to `places` decimals (short in JSON)."""
    return np.round(np.asarray(values, dtype=np.float64), places).tolist()


def significant(values, digits: int = SIGNIFICANT) -> list:
    """An array as nested lists, rounded to `digits` significant digits of its largest |value|."""
    values = np.asarray(values, dtype=np.float64)
    largest = float(np.abs(values).max()) if values.size else 0.0
    if largest == 0:
        return values.tolist()
    places = digits - 1 - int(np.floor(np.log10(largest)))
    return np.round(values, places).tolist()


def lower_triangles(attention: np.ndarray) -> str:
    """float16 [L, H, N, N] -> base64 of the float16 values with key <= query, row by row (query q
    holds keys 0..q, N (N + 1) / 2 values per head), little-endian, heads in (layer, head) order."""
    N = attention.shape[-1]
    query, key = np.tril_indices(N)  # row-major: (0,0), (1,0), (1,1), (2,0), ...
    triangles = np.ascontiguousarray(attention[..., query, key], dtype="<f2")  # [L, H, N(N+1)/2]
    return base64.b64encode(triangles.tobytes()).decode("ascii")


def lens_label(hook_name: str) -> str:
    """'blocks.0.hook_resid_pre' -> 'embeddings'; 'blocks.3.hook_resid_post' -> 'block 3'."""
    match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", hook_name)
    if match is None:
        return hook_name
    return "embeddings" if match[2] == "pre" else f"block {match[1]}"


def saliency_methods(result) -> list[str]:
    """The result's saliency methods in the page's order (SALIENCY_ORDER first, then any others)."""
    return [m for m in SALIENCY_ORDER if m in result.saliency] + [m for m in result.saliency if m not in SALIENCY_ORDER]


def report_data(result) -> dict:
    """The JSON-ready data the page draws (see report.js for how each field is used).

    Indices are those of the Explanation: tokens 0..N-1, generated token g at P + g, lens reading r
    (0 = the embeddings, r = after block r - 1), factor set s (each layer alone, then all of them).
    """
    c = result.config
    P, N = result.prompt_length, len(result.token_ids)
    methods = saliency_methods(result)
    shown_ids = {int(i) for i in result.lens_top_ids.ravel()} | {int(i) for i in result.lens_targets}
    return {
        "format": "gpt2-engine report 1",
        "model": result.model,
        "config": c,
        "prompt": result.prompt,
        "tokens": list(result.tokens),
        "tokenIds": [int(i) for i in result.token_ids],
        "promptLength": P,
        "finishReason": result.finish_reason,
        "saliency": {
            "of": result.of,
            "methods": [
                {"name": m, "label": SALIENCY_LABELS.get(m, m), "scores": decimals(result.saliency[m])} for m in methods
            ],
            "targetValues": decimals(result.target_values),
            "igSteps": result.ig_steps,
            "igSum": decimals(result.ig_sum) if result.ig_steps else None,
            "igDifference": decimals(result.ig_difference) if result.ig_steps else None,
            "erasureDrops": significant(result.erasure_drops) if result.erasure_drops.size else None,
        },
        "lens": {
            "layers": [lens_label(name) for name in result.lens_layers],
            "topIds": result.lens_top_ids.tolist(),
            "topProbs": decimals(result.lens_top_probs),
            "targets": result.lens_targets.tolist(),
            "targetRanks": result.lens_target_ranks.tolist(),
            "targetProbs": decimals(result.lens_target_probs),
        },
        "pieces": {str(i): result.pieces[i] for i in sorted(shown_ids)},
        "attention": {
            "layers": c["n_layer"],
            "heads": c["n_head"],
            "tokens": N,
            "float16": lower_triangles(result.attention),
        },
        "factors": [
            {
                "layers": layers,
                "activations": significant(result.factor_activations[s]),
                "topNeurons": result.factor_top_neurons[s].tolist(),
                "topLoadings": significant(result.factor_top_loadings[s]),
                "error": round(float(result.factor_errors[s]), 4),
            }
            for s, layers in enumerate(result.factor_layers)
        ],
    }


def script_json(value) -> str:
    """JSON that is safe inside <script type="application/json">: '<', '>', '&' (and the two JS
    line separators) as \\u escapes, so no string in it can close the element or open a comment."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def page_title(result) -> str:
    prompt = " ".join(result.prompt.split())
    return f"{prompt[:60]}{'…' if len(prompt) > 60 else ''} · gpt2-engine explain"


def render_html(result) -> str:
    """The whole page for an Explanation, as one string (UTF-8 when written)."""
    parts = {
        "title": html.escape(page_title(result)),
        "css": asset("report.css"),
        "js": asset("report.js"),
        "data": script_json(report_data(result)),
    }
    # One pass over the template: text put in is never searched again for markers.
    return re.sub(r"<!--@(\w+)-->", lambda m: parts[m[1]], asset("report.html"))


def write_html(result, path) -> Path:
    """Write the page to `path`, atomically (a failure leaves no partial file)."""
    page = render_html(result).encode("utf-8")
    return write_atomically(path, lambda out: out.write(page))


def notebook_html(result, height: int = 720) -> str:
    """The page inside an <iframe srcdoc>, for Jupyter: its CSS and ids cannot clash with the
    notebook's, and it fetches nothing. The page grows the iframe to its own height."""
    return (
        f'<iframe srcdoc="{html.escape(render_html(result), quote=True)}" '
        f'title="{html.escape(page_title(result), quote=True)}" '
        f'style="width: 100%; height: {int(height)}px; border: 1px solid #d8dde5; border-radius: 8px">'
        f"</iframe>"
    )
