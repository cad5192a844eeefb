"""The `GPT2` class: a model's config, weights and tokenizer, and one thin method per thing a user
does with them. Each method checks nothing it does not have to and delegates:

    forward        engine/model.py       (after the argument checks of engine/base/checks.py)
    generate       engine/generation/
    score          engine/scoring.py
    run_with_*     engine/capture.py
    saliency, ...  engine/analysis/

The tasks and analyses take this object as their `model` argument and use only its public face:
`config`, `weights`, `tokenizer`, `source`, calling it, and `new_cache`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

import kernels

from .analysis.backward import input_gradients
from .analysis.explain import Explanation, Explanations, explain
from .analysis.factors import NeuronFactors, neuron_factors
from .analysis.lens import LogitLens, logit_lens
from .analysis.saliency import saliency
from .base.checks import check_context, check_counts, check_integer, check_token_ids
from .base.config import GPT2Config
from .base.errors import InputError
from .base.threads import DecodeThreads, threads_from_environment
from .capture import run_with_cache, run_with_hooks
from .generation import GenerationStream, generate, stream
from .model import Hooks, gpt2_forward
from .scoring import Scores, score
from .state.formats import nbytes
from .state.hub import resolve_model_dir
from .state.kv_cache import KVCache
from .state.loader import check_weights_fit, is_quantized, load_state_dict
from .state.precision import DEFAULT_DTYPE, check_dtype
from .state.tokenizer import Tokenizer, check_tokenizer_fits, load_tokenizer
from .state.weights import GPT2Weights, parameter_shapes, weights_from_state_dict


class GPT2:
    """A GPT-2 language model: weights, config and tokenizer, callable on token ids.

    model = GPT2.from_pretrained("gpt2")               # or a Hugging Face layout directory
    logits = model(model.tokenizer.encode("Hello"))    # float32 [T, V]
    """

    def __init__(
        self, config: GPT2Config, weights: GPT2Weights, tokenizer: Tokenizer | None = None, source: str | None = None
    ):
        self.config = config
        self.weights = weights
        self.tokenizer = tokenizer
        self.source = source  # the directory the weights came from, if any
        self.dtype = weights.dtype()  # the precision of the matrices: float32, bfloat16, float16, int8
        self._decode_threads = DecodeThreads()  # under set_threads("auto"), one thread or all per step

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, dtype: str | None = None, local_files_only: bool = False
    ) -> GPT2:
        """Load a model directory in Hugging Face layout, or a published name ("gpt2", "gpt2-medium",
        "openai-community/gpt2-large", ...), which is looked up in the Hugging Face cache and
        downloaded there if missing (unless `local_files_only`).

        dtype: the precision the weight matrices are kept at in memory (engine/state/precision.py):
        "float32" (the default), "bfloat16", "float16" or "int8" (q8_0 blocks of 32 with a
        scale). The arithmetic is float32 at every precision. None: float32, except a directory
        written by `gpt2 quantize`, which loads as int8.
        """
        if dtype is not None:
            check_dtype(dtype)
        threads_from_environment()
        model_dir = resolve_model_dir(name_or_path, local_files_only=local_files_only)
        config = GPT2Config.from_json(model_dir / "config.json")
        if dtype is None:
            dtype = "int8" if is_quantized(model_dir) else DEFAULT_DTYPE
        check_weights_fit(model_dir, config, dtype)  # sizes against the files and memory, before anything is built
        tokenizer = load_tokenizer(model_dir, config.vocab_size)
        check_tokenizer_fits(tokenizer, config, model_dir)
        # Load (or compile) the kernels on another thread while the weights are read: start-up.
        kernels_ready = kernels.KernelWarmUp()
        try:
            state = load_state_dict(model_dir, parameter_shapes(config), config, dtype)
            weights = weights_from_state_dict(state, config)
        finally:
            kernels_ready.wait()
        return cls(config, weights, tokenizer, source=str(model_dir))

    def weight_bytes(self) -> int:
        """Bytes of memory the distinct parameters take at their precision."""
        return sum(nbytes(a) for a in {id(a): a for a in self.weights.arrays()}.values())

    def num_parameters(self) -> int:
        """Distinct parameters (the tied output layer is counted once, as Hugging Face does)."""
        arrays = {id(a): a for a in self.weights.arrays()}
        return sum(int(np.prod(a.shape)) for a in arrays.values())

    # ------------------------------------------------------------------------------------------
    # The forward pass

    def new_cache(self, batch_size: int = 1, max_length: int | None = None, left_padding=None) -> KVCache:
        """An empty KV cache for `batch_size` rows of up to `max_length` slots (default: the context,
        plus the longest padding). `left_padding[b]` is the number of padding slots row b starts with."""
        c = self.config
        if max_length is None:
            rows = check_integer("batch_size", batch_size, 1)
            pads = check_counts(left_padding, "left_padding", rows) if left_padding is not None else [0]
            max_length = c.n_positions + int(np.max(pads))
        return KVCache(c.n_layer, batch_size, c.n_head, c.head_dim, max_length, left_padding)

    def __call__(
        self, ids, cache: KVCache | None = None, *, left_padding=None, logits_to_keep=None, hooks: Hooks | None = None
    ) -> np.ndarray:
        """Logits of the next token after each position.

        ids: ints [T] or [B, T]. Returns float32 [T, V] or [B, T, V] (the last `logits_to_keep`
        positions only, when given). With `cache`, the tokens continue what the cache holds and
        their keys and values are added to it.
        """
        c = self.config
        ids, batched = check_token_ids(ids, c.vocab_size)
        B, T = ids.shape
        if left_padding is not None:
            if cache is not None:
                raise InputError("pass left_padding to new_cache(), not with a cache")
            left_padding = check_counts(left_padding, "left_padding", B, T)
        if cache is not None:
            self._check_cache(cache)
            if cache.batch_size != B:
                raise InputError(f"the cache holds {cache.batch_size} rows but the ids have {B}")
            if cache.room() < T:
                raise InputError(
                    f"the cache has room for {cache.room()} more tokens (max_length={cache.max_length}), got {T}"
                )
            check_context(cache.length + T, c.n_positions, cache.left_padding)
        else:
            check_context(T, c.n_positions, left_padding)
        if logits_to_keep is not None:
            logits_to_keep = check_integer("logits_to_keep", logits_to_keep, 1, T)
        decode_step = cache is not None and T == 1  # on the thread count that is faster now
        with self._decode_threads.step(B) if decode_step else contextlib.nullcontext():
            logits = gpt2_forward(
                self.weights, c, ids, cache=cache, left_padding=left_padding, logits_to_keep=logits_to_keep, hooks=hooks
            )
        return logits if batched else logits[0]

    forward = __call__

    def _check_cache(self, cache) -> None:
        """A cache must be one this model's `new_cache` makes: the same layers, heads and head size."""
        if not isinstance(cache, KVCache):
            raise InputError(f"cache must be a KVCache from model.new_cache(), got {type(cache).__name__}")
        c = self.config
        L, _, H, _, D = cache.keys.shape
        if (c.n_layer, c.n_head, c.head_dim) != (L, H, D):
            raise InputError(
                f"the cache was made for a model of another shape ({L} layers, {H} heads of {D}); "
                f"this one has {c.n_layer} layers, {c.n_head} heads of {c.head_dim}: make it with this model's new_cache()"
            )

    # ------------------------------------------------------------------------------------------
    # Tasks: engine/generation/, engine/scoring.py

    def generate(self, prompt, **options):
        """Continue a prompt (or a batch): a GenerationResult with text, token_ids, finish_reason and
        logprobs (a list of them for a batch); see `engine.generation.generate` for the options."""
        return generate(self, prompt, **options)

    def stream(self, prompt, **options) -> GenerationStream:
        """Continue one prompt, yielding the new text piece by piece (never splitting a character);
        see `engine.generation.stream`."""
        return stream(self, prompt, **options)

    def score(self, text_or_ids, *, bos: bool = False, **options) -> Scores:
        """Per-token log-probabilities of a text (str) or token ids, with a sliding window past the
        context: `Scores` with token_ids, float32 logprobs (NaN where unscored), count, total_nll,
        mean_nll, perplexity. Options: context, stride, batch_size, progress; see `engine.scoring.score`."""
        return score(self, text_or_ids, bos=bos, **options)

    def perplexity(self, text_or_ids, **options) -> float:
        """exp(mean negative log-likelihood per scored token) of a text: `self.score(...).perplexity`."""
        return self.score(text_or_ids, **options).perplexity

    # ------------------------------------------------------------------------------------------
    # Looking inside: engine/capture.py, engine/analysis/

    def run_with_cache(self, ids, names=None, fwd_hooks=(), **forward_options):
        """(logits, ActivationCache) of ids [T] or [B, T]: every intermediate by its TransformerLens
        name, or only `names`; `fwd_hooks` are interventions. See `engine.capture`."""
        return run_with_cache(self, ids, names=names, fwd_hooks=fwd_hooks, **forward_options)

    def run_with_hooks(self, ids, fwd_hooks=(), **forward_options) -> np.ndarray:
        """Logits with interventions, e.g. fwd_hooks=[zero_neurons(1, [5]), zero_heads(0, [2])]."""
        return run_with_hooks(self, ids, fwd_hooks=fwd_hooks, **forward_options)

    def input_gradients(self, ids, target_id, position=-1, of="logprob") -> np.ndarray:
        """float32 [T, n_embd]: d(log p or p of target_id at position)/d(token + position embeddings),
        by the NumPy backward pass of `engine.analysis.backward`."""
        return input_gradients(self, ids, target_id, position=position, of=of)

    def saliency(
        self, ids, target_id, position=-1, method="grad_x_input", of="logprob", steps=50, foil_id=None
    ) -> np.ndarray:
        """float32 [T] scores of the input tokens, summing to 1; methods gradient, grad_x_input,
        integrated_gradients, erasure; foil_id: why target_id rather than foil_id (contrastive).
        See `engine.analysis.saliency` (and `attribute`, `attribute_contrast` for the details)."""
        return saliency(self, ids, target_id, position=position, method=method, of=of, steps=steps, foil_id=foil_id)

    def logit_lens(self, ids, top_k=5, targets=None) -> LogitLens:
        """Per layer and position: top-k next tokens and the rank of a target. See `engine.analysis.lens`."""
        return logit_lens(self, ids, top_k=top_k, targets=targets)

    def neuron_factors(self, ids, layers=None, factors=10, seed=0, iterations=500) -> NeuronFactors:
        """NMF of the MLP activations over the tokens of ids. See `engine.analysis.factors`."""
        return neuron_factors(self, ids, layers=layers, factors=factors, seed=seed, iterations=iterations)

    def explain(self, prompt, max_new_tokens=None, **options) -> Explanation | Explanations:
        """Generate (20 tokens by default; or take continuation=), then gather saliency, logit lens,
        attention and neuron factors into one `Explanation` (save/load as one .npz file); a list of
        prompts gives `Explanations`. See `engine.analysis.explain`."""
        return explain(self, prompt, max_new_tokens=max_new_tokens, **options)
