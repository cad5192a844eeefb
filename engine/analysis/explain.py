"""Explain a generation: one result with everything the "look inside" analyses say about it.

    result = model.explain("ROMEO:", max_new_tokens=20)                   # greedy, as generate
    result = model.explain("ROMEO:", temperature=0.9, seed=1)             # the same sample every time
    result = model.explain("ROMEO:", continuation=" Is the day so young?")  # a given text, as if generated
    results = model.explain(["ROMEO:", "JULIET:"], max_new_tokens=20)     # one factorisation over both
    result.save("romeo.npz");  result = Explanation.load("romeo.npz")

The prompt is continued by `model.generate` (every keyword argument that `explain` does not take
goes to it, `seed` and `temperature` included, and they mean what they mean there), or by the
tokens of `continuation` (teacher forcing: "why would the model say this?"). Then the prompt + new
tokens (N of them) are run through the model once with the intermediates captured. By causality
that run computes, at every position, exactly what generation computed there token by token:
position t sees tokens 0..t only, whether they come at once or one step at a time (the last
generated token, which generation never fed back, is included too). From it come:

- saliency: for each new token g (at index P + g, P = prompt length), the scores of the tokens
  before it for f = log p(token) (or p) at position P + g - 1, per method (`engine.analysis.saliency`):
  saliency[method] float32 [G, N], row g summing to 1 over columns < P + g; for the signed methods
  (erasure, integrated gradients) also the signed value of each token (> 0: it supported the token);
- contrast: at each of those positions, the `alternatives` likeliest other tokens (foils B) and
  the saliency of f(token) - f(B): why this token rather than B;
- the logit lens (`engine.analysis.lens`): top-k tokens per reading and position, and the rank of the
  token that came next;
- attention probabilities [layers, heads, N, N] (all, the chosen layers and heads, each layer's mean
  over its heads, or none);
- neuron factors (`engine.analysis.factors`) of each layer's MLP, and of all layers side by side.
  Given several prompts, each factorisation is fitted once over the tokens of all of them, so a
  factor means the same group of neurons in every result.

Everything is plain arrays and strings, for a page or a plot to take. Size: the attention is
stored in float16 (3 significant digits, plenty for a heatmap; 2 layers heads N^2 bytes, 0.26 MB
for the 124M shape and N = 30); every other array grows with N, G, k or the number of factors, not
with the vocabulary or the MLP width (only each factor's top neurons are kept). The file is an
.npz (compressed) whose entry "metadata" holds the JSON of the non-array fields; format version 2
(version 1 files, from before the contrast and the sampling settings, still load).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..base.checks import as_integer, check_integer, check_sequence, is_integer
from ..base.errors import InputError
from ..base.files import write_atomically
from ..base.numeric import top_sorted
from ..base.progress import progress_bar
from ..capture import run_with_cache
from ..generation import make_search, options_from, run, single_sequence
from ..generation.prompts import prompt_token_ids
from .backward import check_of, target_forward
from .factors import DEFAULT_FACTORS, DEFAULT_ITERATIONS, check_factor_options, factorise
from .lens import check_top_k, lens_names, logit_lens
from .saliency import DEFAULT_STEPS, METHODS, SIGNED, attribute_targets, check_method, check_steps, contrast

FORMAT = "gpt2-engine explain"
FORMAT_VERSION = 2  # 2: contrast, signed integrated gradients, sampling settings, attention choice, several inputs
TOP_NEURONS = 10  # neurons kept per factor
DEFAULT_MAX_NEW_TOKENS = 20
DEFAULT_ALTERNATIVES = 2  # foils per new token for contrastive saliency
MAX_ALTERNATIVES = 20
ATTENTION_CHOICES = ("all", "mean", "none")
METHOD_DICTS = ("saliency", "contrast_saliency", "contrast_signed")  # fields that map method -> array
# The generation settings a result records (the rest of GenerationOptions make several sequences).
RECORDED_OPTIONS = (
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "min_new_tokens",
    "seed",
    "stop",
    "stop_token_ids",
    "stop_at_eos",
    "bos",
)


def empty(*shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


@dataclass
class Explanation:
    """The result of `explain` for one input. N tokens (prompt + new), P in the prompt, G = N - P
    new (generated or given), R = n_layer + 1 lens readings, k lens candidates, J foils per new
    token, S factor sets, F factors, n = TOP_NEURONS."""

    # What was run
    model: str  # where the weights came from
    config: dict  # n_layer, n_head, n_embd, n_positions, vocab_size, mlp_width
    prompt: str
    token_ids: np.ndarray  # int64 [N]
    tokens: list[str]  # [N] each token's text (U+FFFD where a token holds part of a character: piece_bytes)
    prompt_length: int  # P
    finish_reason: str | None  # from generation: "length", "eos", ...; None without generation
    # Saliency of each new token
    of: str  # "logprob" or "prob": the f that is attributed
    saliency: dict[str, np.ndarray]  # method -> float32 [G, N]
    target_values: np.ndarray  # float32 [G]: f of each new token where it was predicted
    ig_steps: int | None  # integrated gradients: steps, and completeness per new token:
    ig_sum: np.ndarray  # float32 [G]: the sum of the attributions
    ig_difference: np.ndarray  # float32 [G]: f(input) - f(baseline), which that sum should equal
    erasure_drops: np.ndarray  # float32 [G, N]: signed f(input) - f(token erased); empty without erasure
    # Logit lens
    lens_layers: list[str]  # [R] the residual-stream readings (hook names)
    lens_top_ids: np.ndarray  # int64 [R, N, k]
    lens_top_probs: np.ndarray  # float32 [R, N, k]
    lens_targets: np.ndarray  # int64 [N]: token N+1 of each position (last: the model's top choice)
    lens_target_ranks: np.ndarray  # int64 [R, N], 1 = top
    lens_target_probs: np.ndarray  # float32 [R, N]
    # Attention of the layers and heads kept (attention_layers, attention_heads below)
    attention: np.ndarray  # float16 [layers, heads (1 if attention_mean), N, N] (query, key); 0 above the diagonal
    # Neuron factors, per set of layers: each layer alone, then all of them side by side
    factor_layers: list[list[int]]  # [S]
    factor_activations: np.ndarray  # float32 [S, F, N]
    factor_top_neurons: np.ndarray  # int64 [S, F, n, 2]: (layer, neuron), largest loading first
    factor_top_loadings: np.ndarray  # float32 [S, F, n]
    factor_errors: np.ndarray  # float32 [S]: relative reconstruction error of each factorisation
    # The text of every token id that appears above (tokens, lens candidates and foils)
    pieces: dict[int, str] = field(default_factory=dict)
    # Format 2. How the new tokens came: generated with these settings (GenerationOptions' names;
    # the seed actually used), or given (teacher forcing); None for both without new tokens.
    generation: dict | None = None
    continuation_given: bool = False
    # Signed integrated gradients: each token's attribution summed over the embedding, [G, N]
    # (they add up to ig_sum); empty [0, N] without integrated gradients (or from a version 1 file).
    ig_contributions: np.ndarray = field(default_factory=lambda: empty(0, 0))
    # Contrast: J foils per new token, the likeliest other tokens where it was predicted
    contrast_ids: np.ndarray = field(default_factory=lambda: empty(0, 0, dtype=np.int64))  # int64 [G, J]
    contrast_values: np.ndarray = field(default_factory=lambda: empty(0, 0))  # float32 [G, J]: f of each foil
    contrast_saliency: dict[str, np.ndarray] = field(default_factory=dict)  # method -> float32 [G, J, N]
    contrast_signed: dict[str, np.ndarray] = field(default_factory=dict)  # signed method -> float32 [G, J, N]
    # Which attention was kept: these layers, these heads of each (attention_mean: their mean only)
    attention_layers: list[int] | None = None  # None: every layer (filled in)
    attention_heads: list[int] | None = None  # None: every head (filled in)
    attention_mean: bool = False
    # The factorisation: its seed, and the inputs it was fitted over (this one is factor_input of them)
    factor_seed: int = 0
    factor_inputs: int = 1
    factor_input: int = 0
    # Hex bytes of the pieces that are not whole UTF-8 characters on their own ("f0 9f")
    piece_bytes: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.attention_layers is None:
            self.attention_layers = list(range(self.attention.shape[0]))
        if self.attention_heads is None:
            self.attention_heads = list(range(self.attention.shape[1]))

    @property
    def generated(self) -> int:
        """G: the new tokens after the prompt (generated, or given with continuation=)."""
        return len(self.token_ids) - self.prompt_length

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    def signed(self, method: str) -> np.ndarray | None:
        """float32 [G, N]: the signed attribution of a signed method (erasure, integrated gradients)
        if this result has it, else None."""
        values = {"erasure": self.erasure_drops, "integrated_gradients": self.ig_contributions}.get(method)
        return values if values is not None and values.size and method in self.saliency else None

    # ------------------------------------------------------------------------------------------
    # One file: arrays in an .npz, the rest as JSON in its "metadata" entry

    def parts(self, prefix: str = "") -> tuple[dict[str, np.ndarray], dict]:
        """(arrays by name, JSON-ready metadata) of this result; array names start with prefix."""
        arrays: dict[str, np.ndarray] = {}
        metadata: dict = {"methods": {}}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[prefix + f.name] = value
            elif f.name in METHOD_DICTS:
                arrays |= {f"{prefix}{f.name}.{method}": scores for method, scores in value.items()}
                metadata["methods"][f.name] = list(value)
            elif f.name in ("pieces", "piece_bytes"):
                metadata[f.name] = {str(i): piece for i, piece in value.items()}
            else:
                metadata[f.name] = value
        return arrays, metadata

    @classmethod
    def from_parts(cls, arrays: dict[str, np.ndarray], metadata: dict, prefix: str = "") -> Explanation:
        values: dict[str, Any] = {name[len(prefix) :]: a for name, a in arrays.items() if name.startswith(prefix)}
        methods = metadata.pop("methods")
        for name in METHOD_DICTS:
            values[name] = {m: values.pop(f"{name}.{m}") for m in methods.get(name, [])}
        for name in ("pieces", "piece_bytes"):
            if name in metadata:
                metadata[name] = {int(i): piece for i, piece in metadata[name].items()}
        return cls(**metadata, **values)

    def save(self, path) -> Path:
        """Write the result to `path` (an .npz; the name is kept as given). Atomic: a failure
        leaves no partial file."""
        return save_results([self], path)

    def npz_bytes(self) -> bytes:
        """The file `save` writes, as bytes."""
        return npz_bytes([self])

    @classmethod
    def load(cls, path) -> Explanation:
        """Read a file written by `save` (format 2, or 1)."""
        results = load_results(path)
        if len(results) != 1:
            raise InputError(
                f"{path}: holds {len(results)} explanations (explain over several prompts): read it with Explanations.load"
            )
        return results[0]

    # ------------------------------------------------------------------------------------------
    # Reading it

    def top_salient(self, g: int, method: str = "grad_x_input", n: int = 3) -> list[tuple[int, float]]:
        """(index, score) of the n input tokens that mattered most for new token g."""
        scores = self.saliency[method][g]
        best = np.argsort(-scores, kind="stable")[:n]
        return [(int(i), float(scores[i])) for i in best]

    def summary(self) -> str:
        """A few lines for a terminal: the text, and per new token its rank in the logit lens
        (after the embeddings, then after each block) and its most salient inputs (position, score)."""
        P = self.prompt_length
        how = "given" if self.continuation_given else "generated"
        ending = "teacher forcing" if self.continuation_given else self.finish_reason
        lines = [
            f"prompt ({P} tokens): {self.prompt!r}",
            f"{how} ({self.generated} tokens, {ending}): {''.join(self.tokens[P:])!r}",
        ]
        method = next((m for m in ("grad_x_input", *self.saliency) if m in self.saliency), None)
        if method is not None and self.generated:
            lines.append(
                f"per {how} token: its rank in the logit lens (after the embeddings, then each block) "
                f"and the earlier tokens that mattered most (position, {method} of {self.of}):"
            )
            for g in range(self.generated):
                best = ", ".join(f"{self.tokens[i]!r}@{i} {s:.2f}" for i, s in self.top_salient(g, method))
                ranks = ",".join(str(r) for r in self.lens_target_ranks[:, P + g - 1])  # embeddings .. last block
                lines.append(f"  {P + g:>5} {self.tokens[P + g]!r:<14} {ranks:<{3 * len(self.lens_layers)}}  <- {best}")
        if self.ig_steps is not None and self.generated:
            gap = np.abs(self.ig_sum - self.ig_difference)
            lines.append(
                f"integrated gradients ({self.ig_steps} steps): worst completeness gap {gap.max():.2e} "
                f"(|sum of attributions - output difference|, largest |difference| {np.abs(self.ig_difference).max():.3f})"
            )
        return "\n".join(lines)

    # ------------------------------------------------------------------------------------------
    # Showing it: a self-contained HTML page (report.py), matplotlib figures (plots.py)

    def to_html(self, **page_options) -> str:
        """The explorable page (saliency, neuron factors, logit lens, attention) as one HTML string.
        page_options: attention ("auto", "all", "mean", "none"), attention_layers, attention_heads
        (see `engine.analysis.report.render_html`)."""
        from .report import render_html

        return render_html([self], **page_options)

    def save_html(self, path, **page_options) -> Path:
        """Write the explorable page to `path`: one file, inline CSS and JavaScript, nothing fetched."""
        from .report import write_html

        return write_html([self], path, **page_options)

    def _repr_html_(self) -> str:
        """Jupyter shows the page in an iframe (srcdoc): no network, no clash with the notebook's CSS."""
        from .report import notebook_html

        return notebook_html([self])

    def plot_saliency(self, token: int = -1, method: str | None = None, ax=None, foil: int | None = None):
        """Bars: each earlier token's score for new token `token` (an index into the new tokens;
        -1 = the last); signed methods show their signed values. foil: j, to show the contrast with
        the j-th alternative (contrast_ids[token, j]). A matplotlib Figure (pip install gpt2-engine[plot])."""
        from .plots import plot_saliency

        return plot_saliency(self, token, method, ax=ax, foil=foil)

    def plot_rankings(self, ax=None):
        """The rank of each new token at every layer (the logit lens; 1 = top), as a matplotlib Figure."""
        from .plots import plot_rankings

        return plot_rankings(self, ax=ax)

    def plot_factors(self, layers=None):
        """One sparkline per neuron factor over the tokens, for the factor set of `layers` (a layer,
        or None: all layers side by side), as a matplotlib Figure."""
        from .plots import plot_factors

        return plot_factors(self, layers)

    def plot_attention(self, layer: int = 0, head: int | None = 0, ax=None):
        """The query x key attention of one layer and head (head=None: the mean of the heads kept), as a matplotlib Figure."""
        from .plots import plot_attention

        return plot_attention(self, layer, head, ax=ax)

    def to_dict(self) -> dict:
        """Everything as JSON-ready Python values (arrays as nested lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif f.name in METHOD_DICTS:
                value = {m: s.tolist() for m, s in value.items()}
            elif f.name in ("pieces", "piece_bytes"):
                value = {str(i): p for i, p in value.items()}
            out[f.name] = value
        return out


class Explanations(list):
    """The results of `explain` over several prompts: a list of Explanation, one per prompt, whose
    neuron factors come from one factorisation over the tokens of all of them. Saves as one file,
    shows as one page (an input picker; the factor view shows every input)."""

    def save(self, path) -> Path:
        return save_results(list(self), path)

    def npz_bytes(self) -> bytes:
        return npz_bytes(list(self))

    @classmethod
    def load(cls, path) -> Explanations:
        """Read a file written by `save` (or by `Explanation.save`: a list of one)."""
        return cls(load_results(path))

    def summary(self) -> str:
        return "\n\n".join(f"input {i + 1} of {len(self)}\n{r.summary()}" for i, r in enumerate(self))

    def to_html(self, **page_options) -> str:
        from .report import render_html

        return render_html(list(self), **page_options)

    def save_html(self, path, **page_options) -> Path:
        from .report import write_html

        return write_html(list(self), path, **page_options)

    def _repr_html_(self) -> str:
        from .report import notebook_html

        return notebook_html(list(self))


# ----------------------------------------------------------------------------------------------
# The file: one .npz for one result or several


def npz_bytes(results: list[Explanation]) -> bytes:
    """The .npz of results: arrays named "{i}/{field}", and "metadata", the JSON of the rest."""
    import io

    arrays: dict[str, np.ndarray] = {}
    items = []
    for i, result in enumerate(results):
        a, metadata = result.parts(f"{i}/")
        arrays |= a
        items.append(metadata)
    header = {"format": FORMAT, "version": FORMAT_VERSION, "explanations": items}
    try:
        encoded = json.dumps(header, allow_nan=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError) as error:  # a lone surrogate or a NaN in a string/number field
        raise InputError(f"this result cannot be saved as JSON metadata ({error})") from None
    arrays["metadata"] = np.frombuffer(encoded, dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def save_results(results: list[Explanation], path) -> Path:
    data = npz_bytes(results)
    return write_atomically(path, lambda out: out.write(data))


def load_results(path) -> list[Explanation]:
    """The results in a file written by `save` (format version 2 or 1)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError as error:
        raise InputError(f"{path}: cannot read the file ({error.strerror})") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not an explain result file") from None
    except Exception:  # not a zip, a truncated zip, a pickle, ...: numpy and zipfile raise many kinds
        raise InputError(f"{path}: not an explain result (not a readable .npz file)") from None
    try:
        metadata = json.loads(arrays.pop("metadata").tobytes().decode("utf-8"))
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise ValueError
    except (KeyError, ValueError, UnicodeDecodeError, AttributeError):
        raise InputError(f"{path}: not an explain result (no gpt2-engine metadata)") from None
    version = metadata.get("version")
    if version not in (1, FORMAT_VERSION):
        raise InputError(
            f"{path}: explain format version {version}, this engine reads versions 1 and {FORMAT_VERSION}"
            + (
                ": it was written by a newer gpt2-engine"
                if isinstance(version, int) and version > FORMAT_VERSION
                else ""
            )
        )
    try:
        if version == 1:
            return [from_version_1(arrays, metadata)]
        return [Explanation.from_parts(arrays, item, f"{i}/") for i, item in enumerate(metadata["explanations"])]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputError(f"{path}: an incomplete explain result ({type(error).__name__}: {error})") from None


def from_version_1(arrays: dict, metadata: dict) -> Explanation:
    """A version 1 file: one result, no contrast, no signed integrated gradients, no sampling
    settings (its `seed` was the factorisation's), every layer and head of attention."""
    methods = metadata.pop("saliency_methods")
    values = {name: arrays[name] for name in arrays if not name.startswith("saliency.")}
    values["saliency"] = {m: arrays[f"saliency.{m}"] for m in methods}
    values["pieces"] = {int(i): piece for i, piece in metadata.pop("pieces").items()}
    del metadata["format"], metadata["version"]
    N = len(values["token_ids"])
    return Explanation(**metadata, **values, ig_contributions=empty(0, N))


# ----------------------------------------------------------------------------------------------
# explain


def token_texts(tokenizer, ids) -> list[str]:
    """Each token's own text (`Tokenizer.pieces`); without a tokenizer, the id in angle brackets."""
    if tokenizer is None:
        return [f"<{int(i)}>" for i in ids]
    return tokenizer.pieces(ids)


def partial_bytes(tokenizer, ids) -> dict[int, str]:
    """id -> its bytes in hex ("f0 9f"), for the ids whose bytes are not whole UTF-8 characters."""
    if tokenizer is None:
        return {}
    out = {}
    for i, data in zip(ids, tokenizer.token_bytes(ids)):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            out[int(i)] = data.hex(" ")
    return out


def check_text(text, what: str) -> None:
    """A str that can be written as UTF-8: no lone surrogates (which undecodable bytes in argv
    become, and which no file could hold)."""
    if isinstance(text, str):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InputError(
                f"{what} is not valid text: it holds the lone surrogate U+{ord(text[error.start]):04X} "
                f"at offset {error.start} (undecodable bytes?)"
            ) from None


def check_attention_choice(attention, layers, heads, n_layer: int, n_head: int) -> tuple[list[int], list[int], bool]:
    """(layers kept, heads kept, mean only) from explain's attention options."""
    if attention is True:
        attention = "all"
    if attention is None or attention is False:
        attention = "none"
    if attention not in ATTENTION_CHOICES:
        raise InputError(f"attention must be one of {', '.join(ATTENTION_CHOICES)}, got {attention!r}")
    if attention == "none":
        return [], [], False
    return (
        check_indices(layers, n_layer, "attention_layers", "layer"),
        check_indices(heads, n_head, "attention_heads", "head"),
        attention == "mean",
    )


def check_indices(chosen, count: int, name: str, what: str) -> list[int]:
    """None (all of 0..count-1) or distinct integers in range, in the order given."""
    if chosen is None:
        return list(range(count))
    if is_integer(chosen):
        chosen = [chosen]
    if isinstance(chosen, str) or not hasattr(chosen, "__iter__"):
        raise InputError(f"{name} must be a list of {what} numbers, got {chosen!r}")
    out = [as_integer(i, name) for i in chosen]
    if not out:
        raise InputError(f"{name} must name at least one {what} (attention='none' leaves attention out)")
    for i in out:
        if not 0 <= i < count:
            raise InputError(f"{name}: {what} {i} is out of range: the model has {what}s 0 to {count - 1}")
    if len(set(out)) != len(out):
        raise InputError(f"{name} must be distinct, got {out}")
    return out


def keep_attention(pattern: np.ndarray, layers: list[int], heads: list[int], mean: bool) -> np.ndarray:
    """[L, H, N, N] float32 -> float16 [layers, heads or 1, N, N]."""
    N = pattern.shape[-1]
    if not layers:
        return np.zeros((0, 0, N, N), dtype=np.float16)
    kept = pattern[np.ix_(layers, heads)]  # [layers, heads, N, N]
    if mean:
        kept = kept.mean(1, keepdims=True)
    return kept.astype(np.float16)


def explain(
    model,
    prompt,
    max_new_tokens: int | None = None,
    *,
    continuation=None,
    methods=METHODS,
    of: str = "logprob",
    steps: int = DEFAULT_STEPS,
    alternatives: int = DEFAULT_ALTERNATIVES,
    lens_top_k: int = 5,
    attention="all",
    attention_layers=None,
    attention_heads=None,
    factors: int = DEFAULT_FACTORS,
    factor_seed: int = 0,
    iterations: int = DEFAULT_ITERATIONS,
    progress: bool | None = None,
    **generation_options,
) -> Explanation | Explanations:
    """Continue `prompt` (text or token ids) by up to max_new_tokens tokens (default 20) with
    `model.generate` (generation_options go to it: temperature, top_k, top_p, seed, stop, bos, ...),
    or take `continuation` (text or token ids) as the new tokens; then analyse the whole sequence
    (see the module docstring). A list of prompts (strings, or lists of token ids) gives an
    `Explanations`, one result per prompt (continuation: then one per prompt, or None), with the
    neuron factors fitted once over all of them.

    methods: saliency methods (any of engine.analysis.saliency.METHODS, or none); of: "logprob" or
    "prob"; steps: integrated-gradients steps; alternatives: foils per new token for contrastive
    saliency (0: none); lens_top_k: lens candidates; attention: "all", "mean" (each layer's mean
    over its heads) or "none", of attention_layers and attention_heads (default: all); factors,
    factor_seed, iterations: the NMF. max_new_tokens=0 analyses the prompt alone. progress: a bar
    on stderr (default: when stderr is a terminal). Every argument is checked before any work.
    """
    c = model.config
    methods = [check_method(m) for m in (methods.split(",") if isinstance(methods, str) else methods)]
    check_of(of)
    if "integrated_gradients" in methods:
        steps = check_steps(steps)
    factors, iterations = check_factor_options(factors, iterations)
    factor_seed = check_integer("factor_seed", factor_seed, 0)
    lens_top_k = check_top_k(lens_top_k, c.vocab_size, "lens_top_k")
    alternatives = check_integer("alternatives", alternatives, 0, min(MAX_ALTERNATIVES, c.vocab_size - 1))
    kept_layers, kept_heads, mean = check_attention_choice(
        attention, attention_layers, attention_heads, c.n_layer, c.n_head
    )

    # The prompts as generation reads them (with bos=True, <|endoftext|> first: the sequence
    # analysed is the one the generator saw), and the new tokens' source.
    several = isinstance(prompt, (list, tuple)) and bool(prompt) and not all(is_integer(x) for x in prompt)
    for i, p in enumerate(prompt if several else [prompt]):
        check_text(p, f"prompt {i}" if several else "the prompt")
    bos = generation_options.get("bos", False)
    prompts, single = prompt_token_ids(model, prompt, bos)
    if continuation is not None:
        continuations = given_continuations(model, continuation, len(prompts), several)
        if max_new_tokens is not None or set(generation_options) - {"bos"}:
            extra = sorted(set(generation_options) - {"bos"}) + (
                ["max_new_tokens"] if max_new_tokens is not None else []
            )
            raise InputError(f"continuation= gives the new tokens, so nothing is generated: drop {', '.join(extra)}")
        settings = None
    else:
        max_new_tokens = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
        max_new_tokens = check_integer("max_new_tokens", max_new_tokens, 0)
        settings = checked_generation(generation_options, max_new_tokens)

    # Generate (or take) each input's new tokens: all of them before the long computation.
    sequences = []
    for i, prompt_ids in enumerate(prompts):
        finish_reason = None
        if continuation is not None:
            new_ids = continuations[i]
            check_fits(model, prompt_ids, new_ids)
        elif settings is not None and settings["max_new_tokens"] > 0:
            search, _ = make_search(model, prompt_ids, {**settings, "bos": False})  # BOS is in prompt_ids
            single_sequence(search, True, "explain")
            result = run(search)[0]
            new_ids, finish_reason = result.token_ids, result.finish_reason
        else:
            new_ids = []
        ids = check_sequence(prompt_ids + new_ids, c.vocab_size, c.n_positions)  # int64 [N]
        sequences.append((ids, len(prompt_ids), finish_reason))

    # One captured pass per input: the lens readings, the attention and the MLP activations.
    names = lens_names(c.n_layer) + [f"blocks.{i}.attn.hook_pattern" for i in range(c.n_layer)]
    names += [f"blocks.{i}.mlp.hook_post" for i in range(c.n_layer)]
    analysed, mlps = [], []
    for ids, P, finish_reason in sequences:
        logits, cache = run_with_cache(model, ids, names=names)  # [N, V]
        predicted_at = np.arange(P - 1, len(ids) - 1)  # [G]: new token P + g is predicted at P + g - 1
        targets = ids[P:]
        target_values = np.array(
            [target_forward(logits[i : i + 1], int(t), of)[0][0] for i, t in zip(predicted_at, targets)],
            dtype=np.float32,
        )  # [G]
        foils = np.zeros((len(targets), alternatives), dtype=np.int64)  # [G, J]: the likeliest others
        if alternatives and len(targets):
            best, _ = top_sorted(logits[predicted_at], alternatives + 1)  # [G, J + 1]
            for g, (row, t) in enumerate(zip(best, targets)):
                foils[g] = [i for i in row if i != t][:alternatives]
        foil_values = np.array(
            [target_forward(logits[i : i + 1], foils[g], of)[0][0] for g, i in enumerate(predicted_at)],
            dtype=np.float32,
        ).reshape(len(targets), alternatives)  # [G, J]
        del logits
        lens = logit_lens(model, ids, top_k=lens_top_k, cache=cache)
        pattern = np.stack([cache["pattern", i] for i in range(c.n_layer)])  # [L, H, N, N]
        kept = keep_attention(pattern, kept_layers, kept_heads, mean)
        del pattern
        mlps.append(np.stack([cache["post", i] for i in range(c.n_layer)]))  # [L, N, I]
        del cache
        analysed.append((ids, P, finish_reason, target_values, foils, foil_values, lens, kept))

    # Neuron factors: each layer set factorised once over the tokens of every input side by side.
    layer_sets = [[i] for i in range(c.n_layer)] + ([list(range(c.n_layer))] if c.n_layer > 1 else [])
    lengths = [len(ids) for ids, *_ in analysed]
    found = []
    for layers in layer_sets:
        stacked = np.concatenate([mlp[layers] for mlp in mlps], axis=1)  # [len(layers), sum of N, I]
        found.append(factorise(stacked, layers, factors, seed=factor_seed, iterations=iterations))
    del mlps
    n_top = min(TOP_NEURONS, c.mlp_width)
    top = [[f.top_neurons(k, n_top) for k in range(len(f.activations))] for f in found]
    top_neurons = np.array([[[(layer, n) for layer, n, _ in t] for t in s] for s in top], dtype=np.int64)
    top_loadings = np.array([[[w for _, _, w in t] for t in s] for s in top], dtype=np.float32)
    splits = np.cumsum(lengths)[:-1]
    activations = [np.split(f.activations, splits, axis=1) for f in found]  # [S][inputs] -> [F, N_i]

    total = sum(len(ids) - P for ids, P, *_ in analysed) if methods else 0
    results = []
    with progress_bar(total, progress, unit="token", desc="saliency") as bar:
        for i, (ids, P, finish_reason, target_values, foils, foil_values, lens, kept) in enumerate(analysed):
            sal = saliency_of(model, ids, P, foils, methods, of, steps, bar)
            shown = set(ids.tolist()) | set(lens.top_ids.ravel().tolist()) | set(lens.targets.tolist())
            shown |= set(foils.ravel().tolist())
            pieces = dict(zip(sorted(shown), token_texts(model.tokenizer, sorted(shown))))
            text = prompt[i] if several else prompt
            results.append(
                Explanation(
                    model=str(model.source),
                    prompt=text
                    if isinstance(text, str)
                    else "".join(token_texts(model.tokenizer, prompts[i][int(bool(bos)) :])),
                    config={
                        "n_layer": c.n_layer,
                        "n_head": c.n_head,
                        "n_embd": c.n_embd,
                        "n_positions": c.n_positions,
                        "vocab_size": c.vocab_size,
                        "mlp_width": c.mlp_width,
                    },
                    token_ids=ids,
                    tokens=[pieces[t] for t in ids.tolist()],
                    prompt_length=P,
                    finish_reason=finish_reason,
                    of=of,
                    target_values=target_values,
                    ig_steps=steps if "integrated_gradients" in methods else None,
                    lens_layers=lens.layers,
                    lens_top_ids=lens.top_ids,
                    lens_top_probs=lens.top_probs,
                    lens_targets=lens.targets,
                    lens_target_ranks=lens.target_ranks,
                    lens_target_probs=lens.target_probs,
                    attention=kept,
                    attention_layers=kept_layers,
                    attention_heads=kept_heads,
                    attention_mean=mean,
                    factor_layers=layer_sets,
                    factor_activations=np.stack([a[i] for a in activations]),
                    factor_top_neurons=top_neurons,
                    factor_top_loadings=top_loadings,
                    factor_errors=np.array([f.relative_error for f in found], dtype=np.float32),
                    factor_seed=factor_seed,
                    factor_inputs=len(analysed),
                    factor_input=i,
                    pieces=pieces,
                    piece_bytes=partial_bytes(model.tokenizer, sorted(shown)),
                    generation=settings if finish_reason is not None else None,
                    continuation_given=continuation is not None and len(ids) > P,
                    contrast_ids=foils,
                    contrast_values=foil_values,
                    **sal,
                )
            )
    return Explanations(results) if several else results[0]


def saliency_of(model, ids, P: int, foils: np.ndarray, methods, of: str, steps: int, bar) -> dict:
    """The saliency fields of one input: every method for each new token and its foils."""
    N, G, J = len(ids), len(ids) - P, foils.shape[1]
    saliency = {m: empty(G, N) for m in methods}
    contrast_saliency = {m: empty(G, J, N) for m in methods}
    contrast_signed = {m: empty(G, J, N) for m in methods if m in SIGNED}
    ig_sum, ig_difference = empty(G), empty(G)
    erasure_drops = empty(G if "erasure" in methods else 0, N)
    ig_contributions = empty(G if "integrated_gradients" in methods else 0, N)
    for g in range(G if methods else 0):
        targets = [int(ids[P + g]), *foils[g].tolist()]
        found = attribute_targets(
            model, ids, targets, P + g - 1, methods, of, steps
        )  # [1 + J] of method -> Attribution
        for m, r in found[0].items():
            saliency[m][g] = r.scores
            for j, other in enumerate(found[1:]):
                difference = contrast(r, other[m])
                contrast_saliency[m][g, j] = difference.scores
                if m in contrast_signed:
                    contrast_signed[m][g, j] = difference.signed
        if "integrated_gradients" in found[0]:
            r = found[0]["integrated_gradients"]
            done = r.completeness or {}
            ig_sum[g], ig_difference[g] = done["sum_of_attributions"], done["output_difference"]
            ig_contributions[g] = r.signed
        if "erasure" in found[0]:
            erasure_drops[g] = found[0]["erasure"].attributions
        bar.update(1)
    return {
        "saliency": saliency,
        "ig_sum": ig_sum,
        "ig_difference": ig_difference,
        "erasure_drops": erasure_drops,
        "ig_contributions": ig_contributions,
        "contrast_saliency": contrast_saliency if J else {},
        "contrast_signed": contrast_signed if J else {},
    }


def checked_generation(options: dict, max_new_tokens: int) -> dict:
    """The generation options, checked (a missing seed drawn now, so the result records it), as
    the dict of settings a result keeps."""
    o = options_from({**options, "max_new_tokens": max(1, max_new_tokens)}).checked()
    if o.num_return_sequences != 1 or o.num_beams != 1:
        raise InputError("explain makes one sequence per prompt (no num_return_sequences > 1, no beams)")
    settings = {name: getattr(o, name) for name in RECORDED_OPTIONS}
    settings["max_new_tokens"] = max_new_tokens
    if not o.sampling and options.get("seed") is None:
        settings["seed"] = None  # greedy: no seed was asked for, and none plays a part
    settings["stop"], settings["stop_token_ids"] = list(o.stop), list(o.stop_token_ids)
    return settings


def given_continuations(model, continuation, n_prompts: int, several: bool) -> list[list[int]]:
    """continuation= as token ids per prompt: a text or token ids (one prompt), or a list of them."""
    if several:
        if not isinstance(continuation, (list, tuple)) or len(continuation) != n_prompts:
            raise InputError(f"with {n_prompts} prompts, continuation must be a list of {n_prompts} texts or id lists")
        items = list(continuation)
    else:
        items = [continuation]
    out = []
    for i, item in enumerate(items):
        what = f"continuation {i}" if several else "the continuation"
        check_text(item, what)
        if isinstance(item, str):
            if model.tokenizer is None:
                raise InputError("this model has no tokenizer: pass the continuation as token ids")
            ids = model.tokenizer.encode(item)
        elif isinstance(item, (list, tuple, np.ndarray)) and all(is_integer(x) for x in item):
            ids = [int(x) for x in item]
        else:
            raise InputError(f"{what} must be a string or token ids, got {type(item).__name__}")
        if not ids:
            raise InputError(f"{what} is empty: give the text whose tokens to analyse")
        bad = [x for x in ids if not 0 <= x < model.config.vocab_size]
        if bad:
            raise InputError(f"{what}: token id {bad[0]} is out of range for vocab_size {model.config.vocab_size}")
        out.append(ids)
    return out


def check_fits(model, prompt_ids: list[int], new_ids: list[int]) -> None:
    n = model.config.n_positions
    if len(prompt_ids) + len(new_ids) > n:
        raise InputError(
            f"the prompt ({len(prompt_ids)} tokens) and the continuation ({len(new_ids)} tokens) pass "
            f"the model's context of {n} tokens"
        )
