"""Explorables: an `Explanation` (or several, `Explanations`) as one self-contained HTML page.

    html = render_html([result])                 # a str: the whole page
    write_html([result], "report.html")          # the same, written atomically
    gpt2 explain "ROMEO:" --model DIR --max-new-tokens 20 --html report.html
    gpt2 report romeo.npz --html report.html     # a saved result

The page has four views of what the model did, linked by the token a reader selects: input
saliency (hover, tap or focus a new token to shade the tokens before it by their scores; signed
methods on a diverging scale; a second picker for "rather than" another token), neuron factors
(tokens coloured by their dominant factor, a sparkline per factor, every input of a shared
factorisation), the logit lens (the top token of every layer at every position, and each token's
rank across layers) and attention (a query x key heatmap per layer and head). Selecting a token in
one view highlights its column in the lens, its row in the attention map and its factor
activations. It is one file: the CSS and JavaScript (engine/analysis/assets/report.css, report.js)
are inlined and nothing is fetched, so it opens from disk, in a mail attachment or in a notebook's
iframe. It follows the reader's light or dark colour scheme, and picks every token's text colour
for its shade so that text keeps a WCAG AA contrast (4.5:1) on every shade.

The data rides in a <script type="application/json"> element, as JSON in which every "<", ">" and
"&" is written as a \\u escape: no token text can end that element ("</script>") or open a comment
("<!--"), and the page reads the exact strings back with JSON.parse. The page never puts data into
innerHTML; token texts become text nodes.

Size. The large arrays travel as base64 of little-endian float16 (3 significant digits, 2.67
characters a value): attention's lower triangles (key <= query) of each layer and head kept,
2 layers heads N (N + 1) / 2 bytes x 4/3; the saliency rows, each only over the tokens before its
new token. Attention grows with the square of the length (all 144 heads of the 124M shape at 256
tokens would be 12.6 MB), so by default (attention="auto") the page keeps every stored head while
they fit ATTENTION_BUDGET, else each layer's mean over its heads, else none, and says so; "all",
"mean", "none" and attention_layers / attention_heads choose. Lens probabilities are written with 3
significant digits (so that small ones keep their size), factor activations with 4.
"""

from __future__ import annotations

import base64
import html
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np

from ..base.errors import InputError
from ..base.files import write_atomically

SALIENCY_ORDER = ("grad_x_input", "integrated_gradients", "erasure", "gradient")  # the page's method switch
SALIENCY_LABELS = {
    "grad_x_input": "Gradient × input",
    "integrated_gradients": "Integrated gradients",
    "erasure": "Erasure",
    "gradient": "Gradient",
}
DECIMALS = 5  # probabilities, all in [0, 1]
SIGNIFICANT = 4  # factor activations and loadings, whose scale is arbitrary
ATTENTION_BUDGET = 2_000_000  # bytes of attention a page carries by default (attention="auto")
PAGE_ATTENTION = ("auto", "all", "mean", "none")


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


def probabilities(values, digits: int = 3) -> list:
    """Probabilities as nested lists, each to `digits` significant digits: small ones keep their
    size (a fixed number of decimals would make 6.45e-5 into 6e-5, or into 0)."""
    values = np.asarray(values, dtype=np.float64)
    return np.vectorize(lambda x: float(f"{x:.{digits}g}"), otypes=[np.float64])(values).tolist() if values.size else []


def float16_base64(values) -> str:
    """Values as base64 of little-endian float16, in C order."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f2").tobytes()).decode("ascii")


def lower_triangles(attention: np.ndarray) -> str:
    """float16 [L, H, N, N] -> base64 of the float16 values with key <= query, row by row (query q
    holds keys 0..q, N (N + 1) / 2 values per head), little-endian, heads in (layer, head) order."""
    N = attention.shape[-1]
    query, key = np.tril_indices(N)  # row-major: (0,0), (1,0), (1,1), (2,0), ...
    return float16_base64(attention[..., query, key])  # [L, H, N(N+1)/2]


def attention_page_bytes(layers: int, heads: int, N: int) -> int:
    """What `lower_triangles` of [layers, heads, N, N] weighs in the page (base64 characters)."""
    return 4 * -(-(2 * layers * heads * N * (N + 1) // 2) // 3)


def saliency_rows(values: np.ndarray, P: int) -> str:
    """float32 [G, N] or [G, J, N] -> base64 float16 of each row g (for each j) over its columns
    0 .. P + g - 1 only (the tokens before new token g; the rest are 0), rows one after another."""
    G = values.shape[0]
    parts = [values[g, ..., : P + g].reshape(-1, P + g) for g in range(G)]  # [1 or J, P + g]
    flat = np.concatenate([p.ravel() for p in parts]) if parts else np.zeros(0, np.float32)
    return float16_base64(flat)


def lens_label(hook_name: str) -> str:
    """'blocks.0.hook_resid_pre' -> 'embeddings'; 'blocks.3.hook_resid_post' -> 'block 3'."""
    match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", hook_name)
    if match is None:
        return hook_name
    return "embeddings" if match[2] == "pre" else f"block {match[1]}"


def saliency_methods(result) -> list[str]:
    """The result's saliency methods in the page's order (SALIENCY_ORDER first, then any others)."""
    return [m for m in SALIENCY_ORDER if m in result.saliency] + [m for m in result.saliency if m not in SALIENCY_ORDER]


def as_results(results) -> list:
    """An Explanation or a list of them -> a non-empty list whose factors are one factorisation."""
    results = list(results) if isinstance(results, (list, tuple)) else [results]
    if not results:
        raise InputError("a page needs at least one explain result")
    for r in results[1:]:
        if r.config != results[0].config or r.factor_layers != results[0].factor_layers:
            raise InputError("the results on one page must come from one explain call (one model, one factorisation)")
    return results


def page_attention(results, attention="auto", layers=None, heads=None) -> tuple[list, dict]:
    """Which attention the page carries: (per result, float16 [l, h, N, N]; a description).

    Chosen among what the results store: layers (default: every stored one), heads (default: every
    stored one); attention "all" keeps them, "mean" each layer's mean over them, "none" nothing, and
    "auto" the first of those three that fits ATTENTION_BUDGET (the page says what it left out)."""
    if attention not in PAGE_ATTENTION:
        raise InputError(f"attention must be one of {', '.join(PAGE_ATTENTION)}, got {attention!r}")
    first = results[0]
    stored_layers, stored_heads, stored_mean = first.attention_layers, first.attention_heads, first.attention_mean
    every = len(stored_heads) if not stored_mean else 1
    layers = stored_layers if layers is None else [int(x) for x in layers]
    missing = [x for x in layers if x not in stored_layers]
    if missing:
        raise InputError(f"attention of layer {missing[0]} is not in this result (it has layers {stored_layers})")
    if heads is not None:
        heads = [int(h) for h in heads]
        if stored_mean:
            raise InputError("this result holds only each layer's mean over its heads: it cannot pick heads")
        missing = [h for h in heads if h not in stored_heads]
        if missing:
            raise InputError(f"attention of head {missing[0]} is not in this result (it has heads {stored_heads})")
    heads = (stored_heads if heads is None else heads) if not stored_mean else stored_heads
    lengths = [len(r.token_ids) for r in results]
    size = {
        "all": sum(attention_page_bytes(len(layers), every if stored_mean else len(heads), N) for N in lengths),
        "mean": sum(attention_page_bytes(len(layers), 1, N) for N in lengths),
        "none": 0,
    }
    chosen = attention
    if attention == "auto":
        chosen = next(choice for choice in ("all", "mean", "none") if size[choice] <= ATTENTION_BUDGET)
    if not layers:
        chosen = "none"
    note = None
    if attention == "auto" and chosen != "all":
        heads_text = "every head" if not stored_mean else "the heads' means"
        note = (
            f"To keep this page small, it carries {'each layer’s mean over its heads' if chosen == 'mean' else 'no attention'}: "
            f"{heads_text} of {len(layers)} layers for {' + '.join(map(str, lengths))} tokens would add "
            f"{size['all'] / 1e6:.1f} MB. Choose with gpt2 report RESULT.npz --attention all (or mean, "
            f"--attention-layers, --attention-heads), or attention=... in Python."
        )
    arrays = []
    for r in results:
        rows = [stored_layers.index(x) for x in layers]
        kept = r.attention[rows] if rows else r.attention[:0]
        if not stored_mean:
            kept = kept[:, [stored_heads.index(h) for h in heads]]
        if chosen == "mean" and kept.shape[1] > 1:
            kept = kept.astype(np.float32).mean(1, keepdims=True).astype(np.float16)
        if chosen == "none":
            kept = kept[:0]
        arrays.append(kept)
    description = {
        "layers": layers if chosen != "none" else [],
        "heads": heads,
        "mean": chosen == "mean" or stored_mean,
        "note": note,
    }
    return arrays, description


def input_data(result, attention: np.ndarray) -> dict:
    """The page's data for one input (see report.js for how each field is used)."""
    P, N = result.prompt_length, len(result.token_ids)
    methods = []
    for m in saliency_methods(result):
        signed = result.signed(m)
        entry = {
            "name": m,
            "label": SALIENCY_LABELS.get(m, m),
            "signed": signed is not None,
            "scores": saliency_rows(result.saliency[m], P),
            "values": saliency_rows(signed, P) if signed is not None else None,
            "contrastScores": saliency_rows(result.contrast_saliency[m], P) if m in result.contrast_saliency else None,
            "contrastValues": saliency_rows(result.contrast_signed[m], P)
            if signed is not None and m in result.contrast_signed
            else None,
        }
        methods.append(entry)
    has_contrast = result.contrast_ids.size > 0 and bool(result.contrast_saliency)
    return {
        "prompt": result.prompt,
        "tokens": list(result.tokens),
        "tokenIds": [int(i) for i in result.token_ids],
        "promptLength": P,
        "finishReason": result.finish_reason,
        "given": bool(result.continuation_given),
        "generation": result.generation,
        "saliency": {
            "of": result.of,
            "methods": methods,
            "targetValues": decimals(result.target_values),
            "igSteps": result.ig_steps,
            "igSum": decimals(result.ig_sum) if result.ig_steps else None,
            "igDifference": decimals(result.ig_difference) if result.ig_steps else None,
            "foils": result.contrast_ids.tolist() if has_contrast else None,
            "foilValues": decimals(result.contrast_values) if has_contrast else None,
        },
        "lens": {
            "layers": [lens_label(name) for name in result.lens_layers],
            "topIds": result.lens_top_ids.tolist(),
            "topProbs": probabilities(result.lens_top_probs),
            "targets": result.lens_targets.tolist(),
            "targetRanks": result.lens_target_ranks.tolist(),
            "targetProbs": probabilities(result.lens_target_probs),
        },
        "attention": {"tokens": N, "float16": lower_triangles(attention)},
    }


def report_data(results, attention="auto", attention_layers=None, attention_heads=None) -> dict:
    """The JSON-ready data the page draws, for one result or the results of one explain call.

    Indices are those of each Explanation: tokens 0..N-1, new token g at P + g, lens reading r
    (0 = the embeddings, r = after block r - 1), factor set s (each layer alone, then all of them).
    """
    results = as_results(results)
    first = results[0]
    kept, chosen = page_attention(results, attention, attention_layers, attention_heads)
    shown = set()
    for r in results:
        shown |= {int(i) for i in r.token_ids} | {int(i) for i in r.lens_top_ids.ravel()}
        shown |= {int(i) for i in r.lens_targets} | {int(i) for i in r.contrast_ids.ravel()}
    pieces: dict[int, str] = {}
    piece_bytes: dict[int, str] = {}
    for r in results:
        pieces |= r.pieces
        piece_bytes |= r.piece_bytes
    return {
        "format": "gpt2-engine report 2",
        "model": first.model,
        "config": first.config,
        "inputs": [input_data(r, a) for r, a in zip(results, kept)],
        "pieces": {str(i): pieces[i] for i in sorted(shown)},
        "pieceBytes": {str(i): piece_bytes[i] for i in sorted(shown) if i in piece_bytes},
        "attention": {
            "layerCount": first.config["n_layer"],
            "headCount": first.config["n_head"],
            "layers": chosen["layers"],
            "heads": chosen["heads"],
            "mean": chosen["mean"],
            "note": chosen["note"],
        },
        "factorInputs": len(results),
        "factors": [
            {
                "layers": layers,
                "activations": [significant(r.factor_activations[s]) for r in results],
                "topNeurons": first.factor_top_neurons[s].tolist(),
                "topLoadings": significant(first.factor_top_loadings[s]),
                "error": round(float(first.factor_errors[s]), 4),
            }
            for s, layers in enumerate(first.factor_layers)
        ],
    }


def script_json(value) -> str:
    """JSON that is safe inside <script type="application/json">: '<', '>', '&' (and the two JS
    line separators) as \\u escapes, so no string in it can close the element or open a comment."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def page_title(results) -> str:
    results = as_results(results)
    prompt = " ".join(results[0].prompt.split())
    more = f" (+{len(results) - 1} more)" if len(results) > 1 else ""
    return f"{prompt[:60]}{'…' if len(prompt) > 60 else ''}{more} · gpt2-engine explain"


def render_html(results, **page_options) -> str:
    """The whole page for an Explanation or a list of them, as one string (UTF-8 when written).
    page_options: attention ("auto", "all", "mean", "none"), attention_layers, attention_heads."""
    parts = {
        "title": html.escape(page_title(results)),
        "css": asset("report.css"),
        "js": asset("report.js"),
        "data": script_json(report_data(results, **page_options)),
    }
    # One pass over the template: text put in is never searched again for markers.
    return re.sub(r"<!--@(\w+)-->", lambda m: parts[m[1]], asset("report.html"))


def page_bytes(results, **page_options) -> bytes:
    """The page as UTF-8 bytes; an InputError if some text in it is not valid text."""
    try:
        return render_html(results, **page_options).encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate in a prompt made before explain checked it
        raise InputError(f"the page cannot be written: its text is not valid UTF-8 ({error.reason})") from None


def write_html(results, path, **page_options) -> Path:
    """Write the page to `path`, atomically (a failure leaves no partial file)."""
    page = page_bytes(results, **page_options)
    return write_atomically(path, lambda out: out.write(page))


def notebook_html(results, height: int = 720) -> str:
    """The page inside an <iframe srcdoc>, for Jupyter: its CSS and ids cannot clash with the
    notebook's, and it fetches nothing. The page grows the iframe to its own height."""
    return (
        f'<iframe srcdoc="{html.escape(render_html(results), quote=True)}" '
        f'title="{html.escape(page_title(results), quote=True)}" '
        f'style="width: 100%; height: {int(height)}px; border: 1px solid #d8dde5; border-radius: 8px">'
        f"</iframe>"
    )
