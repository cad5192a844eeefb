"""Explain a generation: one result with everything the "look inside" analyses say about it.

    result = model.explain("ROMEO:", max_new_tokens=20)
    result.save("romeo.npz");  result = Explanation.load("romeo.npz")

The prompt is continued by `model.generate`, then the prompt + generated tokens (N of them) are
run through the model once with the intermediates captured. By causality that run computes, at
every position, exactly what generation computed there token by token: position t sees tokens
0..t only, whether they come at once or one step at a time (the last generated token, which
generation never fed back, is included too). From it come:

- saliency: for each generated token g (at index P + g, P = prompt length), the scores of the
  tokens before it for f = log p(token) (or p) at position P + g - 1, per method
  (`engine.saliency`): saliency[method] float32 [G, N], row g summing to 1 over columns < P + g;
- the logit lens (`engine.lens`): top-k tokens per reading and position, and the rank of the
  token that came next;
- attention probabilities [n_layer, n_head, N, N];
- neuron factors (`engine.factors`) of each layer's MLP, and of all layers side by side.

Everything is plain arrays and strings, for a page or a plot to take. Size: the attention is
stored in float16 (3 significant digits, plenty for a heatmap; 2 n_layer n_head N^2 bytes, 0.26 MB
for the 124M shape and N = 30); every other array grows with N, G, k or the number of factors, not
with the vocabulary or the MLP width (only each factor's top neurons are kept). The file is an
.npz (compressed) whose entry "metadata" holds the JSON of the non-array fields.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..base.checks import check_integer, check_sequence
from ..base.errors import InputError
from ..base.files import write_atomically
from ..base.progress import progress_bar
from ..capture import run_with_cache
from ..generation import make_search, run, single_sequence
from ..generation.prompts import prompt_token_ids
from .backward import check_of, target_forward
from .factors import DEFAULT_FACTORS, DEFAULT_ITERATIONS, check_factor_options, factorise
from .lens import check_top_k, lens_names, logit_lens
from .saliency import DEFAULT_STEPS, METHODS, attribute_all, check_method, check_steps

FORMAT = "gpt2-engine explain"
FORMAT_VERSION = 1
TOP_NEURONS = 10  # neurons kept per factor


@dataclass
class Explanation:
    """The result of `explain`. N tokens (prompt + generated), P in the prompt, G = N - P generated,
    R = n_layer + 1 lens readings, k lens candidates, S factor sets, F factors, n = TOP_NEURONS."""

    # What was run
    model: str  # where the weights came from
    config: dict  # n_layer, n_head, n_embd, n_positions, vocab_size, mlp_width
    prompt: str
    token_ids: np.ndarray  # int64 [N]
    tokens: list[str]  # [N] each token's text (U+FFFD where a token holds part of a character)
    prompt_length: int  # P
    finish_reason: str | None  # from generation: "length", "eos", ...; None without generation
    # Saliency of each generated token
    of: str  # "logprob" or "prob": the f that is attributed
    saliency: dict[str, np.ndarray]  # method -> float32 [G, N]
    target_values: np.ndarray  # float32 [G]: f of each generated token where it was predicted
    ig_steps: int | None  # integrated gradients: steps, and completeness per generated token:
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
    # Attention
    attention: np.ndarray  # float16 [n_layer, n_head, N, N] (query, key); zero above the diagonal
    # Neuron factors, per set of layers: each layer alone, then all of them side by side
    factor_layers: list[list[int]]  # [S]
    factor_activations: np.ndarray  # float32 [S, F, N]
    factor_top_neurons: np.ndarray  # int64 [S, F, n, 2]: (layer, neuron), largest loading first
    factor_top_loadings: np.ndarray  # float32 [S, F, n]
    factor_errors: np.ndarray  # float32 [S]: relative reconstruction error of each factorisation
    # The text of every token id that appears above (tokens and lens candidates)
    pieces: dict[int, str] = field(default_factory=dict)

    @property
    def generated(self) -> int:
        return len(self.token_ids) - self.prompt_length

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    # ------------------------------------------------------------------------------------------
    # One file: arrays in an .npz, the rest as JSON in its "metadata" entry

    def save(self, path) -> Path:
        """Write the result to `path` (an .npz; the name is kept as given). Atomic: a failure
        leaves no partial file."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        metadata: dict = {"format": FORMAT, "version": FORMAT_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            elif f.name == "saliency":
                arrays |= {f"saliency.{method}": scores for method, scores in value.items()}
                metadata["saliency_methods"] = list(value)
            elif f.name == "pieces":
                metadata["pieces"] = {str(i): piece for i, piece in value.items()}
            else:
                metadata[f.name] = value
        arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
        return write_atomically(path, lambda out: np.savez_compressed(out, **arrays))  # type: ignore[arg-type]

    @classmethod
    def load(cls, path) -> Explanation:
        """Read a file written by `save`."""
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
            if metadata.get("format") != FORMAT:
                raise ValueError
        except (KeyError, ValueError, UnicodeDecodeError, AttributeError):
            raise InputError(f"{path}: not an explain result (no gpt2-engine metadata)") from None
        if metadata.get("version") != FORMAT_VERSION:
            raise InputError(
                f"{path}: explain format version {metadata.get('version')}, this engine reads {FORMAT_VERSION}"
            )
        try:
            methods = metadata.pop("saliency_methods")
            values = {name: arrays[name] for name in arrays if not name.startswith("saliency.")}
            values["saliency"] = {m: arrays[f"saliency.{m}"] for m in methods}
            values["pieces"] = {int(i): piece for i, piece in metadata.pop("pieces").items()}
            del metadata["format"], metadata["version"]
            return cls(**metadata, **values)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(f"{path}: an incomplete explain result ({type(error).__name__}: {error})") from None

    # ------------------------------------------------------------------------------------------
    # Reading it

    def top_salient(self, g: int, method: str = "grad_x_input", n: int = 3) -> list[tuple[int, float]]:
        """(index, score) of the n input tokens that mattered most for generated token g."""
        scores = self.saliency[method][g]
        best = np.argsort(-scores, kind="stable")[:n]
        return [(int(i), float(scores[i])) for i in best]

    def summary(self) -> str:
        """A few lines for a terminal: the text, and per generated token its rank in the logit lens
        (after the embeddings, then after each block) and its most salient inputs."""
        P = self.prompt_length
        lines = [
            f"prompt ({P} tokens): {self.prompt!r}",
            f"generated ({self.generated} tokens, {self.finish_reason}): {''.join(self.tokens[P:])!r}",
        ]
        method = next((m for m in ("grad_x_input", *self.saliency) if m in self.saliency), None)
        if method is not None and self.generated:
            lines.append(
                f"per generated token: its rank in the logit lens (after the embeddings, then each block) "
                f"and the earlier tokens that mattered most ({method}, of {self.of}):"
            )
            for g in range(self.generated):
                best = ", ".join(f"{self.tokens[i]!r} {s:.2f}" for i, s in self.top_salient(g, method))
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
    # Showing it: a self-contained HTML page (engine.report), matplotlib figures (engine.plots)

    def to_html(self) -> str:
        """The explorable page (saliency, neuron factors, logit lens, attention) as one HTML string."""
        from .report import render_html

        return render_html(self)

    def save_html(self, path) -> Path:
        """Write the explorable page to `path`: one file, inline CSS and JavaScript, nothing fetched."""
        from .report import write_html

        return write_html(self, path)

    def _repr_html_(self) -> str:
        """Jupyter shows the page in an iframe (srcdoc): no network, no clash with the notebook's CSS."""
        from .report import notebook_html

        return notebook_html(self)

    def plot_saliency(self, token: int = -1, method: str | None = None, ax=None):
        """Bars: each earlier token's score for generated token `token` (an index into the generated
        tokens; -1 = the last). A matplotlib Figure (needs matplotlib: pip install gpt2-engine[plot])."""
        from .plots import plot_saliency

        return plot_saliency(self, token, method, ax=ax)

    def plot_rankings(self, ax=None):
        """The rank of each generated token at every layer (the logit lens; 1 = top), as a matplotlib Figure."""
        from .plots import plot_rankings

        return plot_rankings(self, ax=ax)

    def plot_factors(self, layers=None):
        """One sparkline per neuron factor over the tokens, for the factor set of `layers` (a layer,
        or None: all layers side by side), as a matplotlib Figure."""
        from .plots import plot_factors

        return plot_factors(self, layers)

    def plot_attention(self, layer: int = 0, head: int = 0, ax=None):
        """The query x key attention of one layer and head (head=None: the mean of the heads), as a matplotlib Figure."""
        from .plots import plot_attention

        return plot_attention(self, layer, head, ax=ax)

    def to_dict(self) -> dict:
        """Everything as JSON-ready Python values (arrays as nested lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif f.name == "saliency":
                value = {m: s.tolist() for m, s in value.items()}
            elif f.name == "pieces":
                value = {str(i): p for i, p in value.items()}
            out[f.name] = value
        return out


def token_texts(tokenizer, ids) -> list[str]:
    """Each token's own text (`Tokenizer.pieces`); without a tokenizer, the id in angle brackets."""
    if tokenizer is None:
        return [f"<{int(i)}>" for i in ids]
    return tokenizer.pieces(ids)


def explain(
    model,
    prompt,
    max_new_tokens: int = 20,
    *,
    methods=METHODS,
    of: str = "logprob",
    steps: int = DEFAULT_STEPS,
    top_k: int = 5,
    factors: int = DEFAULT_FACTORS,
    seed: int = 0,
    iterations: int = DEFAULT_ITERATIONS,
    progress: bool | None = None,
    **generation_options,
) -> Explanation:
    """Continue `prompt` (text or token ids) by up to max_new_tokens tokens with `model.generate`
    (generation_options go to it), then analyse the whole sequence; see the module docstring.

    methods: saliency methods (any of engine.saliency.METHODS, or none); of: "logprob" or "prob"; steps:
    integrated-gradients steps; top_k: lens candidates; factors, seed, iterations: the NMF.
    max_new_tokens=0 analyses the prompt alone (no saliency rows). progress: a bar on stderr
    (default: when stderr is a terminal).
    """
    methods = [check_method(m) for m in (methods.split(",") if isinstance(methods, str) else methods)]
    check_of(of)
    if "integrated_gradients" in methods:
        steps = check_steps(steps)
    factors, iterations = check_factor_options(factors, iterations)
    top_k = check_top_k(top_k, model.config.vocab_size)
    max_new_tokens = check_integer("max_new_tokens", max_new_tokens, 0)
    # The prompt as generation reads it (with bos=True, <|endoftext|> first: the sequence analysed
    # is the one the generator saw).
    bos = generation_options.get("bos", False)
    prompts, single = prompt_token_ids(model, prompt, bos)
    if not single:
        raise InputError(f"explain takes one prompt (text or token ids), got a batch of {len(prompts)}")
    prompt_ids = prompts[0]

    finish_reason = None
    new_ids: list[int] = []
    if max_new_tokens > 0:
        options = {**generation_options, "max_new_tokens": max_new_tokens, "bos": False}  # BOS is in prompt_ids
        search, _ = make_search(model, prompt_ids, options)
        single_sequence(search, True, "explain")
        result = run(search)[0]
        new_ids, finish_reason = result.token_ids, result.finish_reason
    ids = check_sequence(prompt_ids + new_ids, model.config.vocab_size, model.config.n_positions)  # int64 [N]
    N, P, c = len(ids), len(prompt_ids), model.config

    # One captured pass: the lens readings, the attention and the MLP activations.
    names = lens_names(c.n_layer) + [f"blocks.{i}.attn.hook_pattern" for i in range(c.n_layer)]
    names += [f"blocks.{i}.mlp.hook_post" for i in range(c.n_layer)]
    logits, cache = run_with_cache(model, ids, names=names)  # [N, V]
    G = N - P
    predicted_at = np.arange(P - 1, N - 1)  # [G]: generated token P + g is predicted at P + g - 1
    target_values = np.array(
        [target_forward(logits[i : i + 1], int(ids[i + 1]), of)[0][0] for i in predicted_at], dtype=np.float32
    )  # [G]
    del logits

    lens = logit_lens(model, ids, top_k=top_k, cache=cache)
    attention = np.stack([cache["pattern", i] for i in range(c.n_layer)]).astype(np.float16)  # [L, H, N, N]

    layer_sets = [[i] for i in range(c.n_layer)] + ([list(range(c.n_layer))] if c.n_layer > 1 else [])
    mlp = np.stack([cache["post", i] for i in range(c.n_layer)])  # [L, N, I]
    found = [factorise(mlp[layers], layers, factors, seed=seed, iterations=iterations) for layers in layer_sets]
    n_top = min(TOP_NEURONS, c.mlp_width)
    top = [[f.top_neurons(k, n_top) for k in range(len(f.activations))] for f in found]
    del cache, mlp

    saliency = {m: np.zeros((G, N), dtype=np.float32) for m in methods}
    ig_sum, ig_difference = np.zeros(G, dtype=np.float32), np.zeros(G, dtype=np.float32)
    erasure_drops = np.zeros((G if "erasure" in methods else 0, N), dtype=np.float32)
    with progress_bar(G if methods else 0, progress, unit="token", desc="saliency") as bar:
        for g in range(G if methods else 0):
            results = attribute_all(model, ids, int(ids[P + g]), P + g - 1, methods, of, steps)
            for m, r in results.items():
                saliency[m][g] = r.scores
            if "integrated_gradients" in results:
                done = results["integrated_gradients"].completeness or {}
                ig_sum[g], ig_difference[g] = done["sum_of_attributions"], done["output_difference"]
            if "erasure" in results:
                erasure_drops[g] = results["erasure"].attributions
            bar.update(1)

    shown = set(ids.tolist()) | set(lens.top_ids.ravel().tolist()) | set(lens.targets.tolist())
    pieces = dict(zip(sorted(shown), token_texts(model.tokenizer, sorted(shown))))
    return Explanation(
        model=str(model.source),
        prompt=prompt
        if isinstance(prompt, str)
        else "".join(token_texts(model.tokenizer, prompt_ids[int(bool(bos)) :])),
        config={
            "n_layer": c.n_layer,
            "n_head": c.n_head,
            "n_embd": c.n_embd,
            "n_positions": c.n_positions,
            "vocab_size": c.vocab_size,
            "mlp_width": c.mlp_width,
        },
        token_ids=ids,
        tokens=[pieces[i] for i in ids.tolist()],
        prompt_length=P,
        finish_reason=finish_reason,
        of=of,
        saliency=saliency,
        target_values=target_values,
        ig_steps=steps if "integrated_gradients" in methods else None,
        ig_sum=ig_sum,
        ig_difference=ig_difference,
        erasure_drops=erasure_drops,
        lens_layers=lens.layers,
        lens_top_ids=lens.top_ids,
        lens_top_probs=lens.top_probs,
        lens_targets=lens.targets,
        lens_target_ranks=lens.target_ranks,
        lens_target_probs=lens.target_probs,
        attention=attention,
        factor_layers=layer_sets,
        factor_activations=np.stack([f.activations for f in found]),
        factor_top_neurons=np.array([[[(layer, n) for layer, n, _ in t] for t in s] for s in top], dtype=np.int64),
        factor_top_loadings=np.array([[[w for _, _, w in t] for t in s] for s in top], dtype=np.float32),
        factor_errors=np.array([f.relative_error for f in found], dtype=np.float32),
        pieces=pieces,
    )
