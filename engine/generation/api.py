"""The entry points: check everything, build the search, run it."""

from __future__ import annotations

from ..base.checks import check_memory
from ..base.errors import InputError
from ..capture import StepwiseCapture
from .beam_search import BeamSearch
from .options import GenerationOptions, GenerationResult, options_from
from .prompts import check_room, prompt_token_ids
from .token_search import TokenSearch


def make_search(model, prompt, options: dict, spell=lambda name: name):
    """Check everything, then build the search (TokenSearch or BeamSearch) and say whether a
    single prompt was given."""
    o = options_from(options).checked(spell)
    if model.tokenizer is None:
        raise InputError("this model has no tokenizer, and generation decodes the new tokens to text")
    prompts, single = prompt_token_ids(model, prompt, o.bos)
    check_room(model, prompts, o.max_new_tokens, spell)
    check_token_options(model, o, spell)
    check_generation_memory(model.config, prompts, o, spell)
    search = (BeamSearch if o.num_beams > 1 else TokenSearch)(model, prompts, o)
    return search, single


def check_token_options(model, o: GenerationOptions, spell=lambda name: name) -> None:
    """The options that name token ids (stop_token_ids, logit_bias) must name ids of this model."""
    n_vocab = model.config.vocab_size
    for name, ids in (("stop_token_ids", o.stop_token_ids), ("logit_bias", o.logit_bias or ())):
        bad = [i for i in ids if i >= n_vocab]
        if bad:
            raise InputError(f"{spell(name)}: token id {bad[0]} is out of range for vocab_size {n_vocab}")


def check_generation_memory(config, prompts: list[list[int]], o, spell) -> None:
    """Refuse, before one row is built, a batch whose KV cache and per-step arrays cannot fit in
    memory, naming the option that asked for the rows. Per row: the cache (keys and values of every
    layer for every slot), its history, and a handful of [V] float32 arrays each step (logits,
    processed scores, probabilities); beam search also ranks [K * V] candidates per prompt."""
    copies, name = (o.num_beams, "num_beams") if o.num_beams > 1 else (o.num_return_sequences, "num_return_sequences")
    rows = len(prompts) * copies
    slots = max(len(p) for p in prompts) + o.max_new_tokens
    per_row = 2 * config.n_layer * config.n_embd * slots * 4 + slots * 8 + 8 * config.vocab_size * 4
    beams = len(prompts) * o.num_beams * config.vocab_size * 4 * 4 if o.num_beams > 1 else 0
    batch = f" for each of {len(prompts)} prompts" if len(prompts) > 1 else ""
    check_memory(rows * per_row + beams, f"{spell(name)}={copies}{batch} ({rows:,} rows of {slots} tokens)")


def single_sequence(search, single: bool, what: str) -> None:
    """Refuse a search that makes more than one sequence (for stream() and capture=)."""
    if not single or not isinstance(search, TokenSearch) or len(search.sequences) != 1:
        raise InputError(f"{what} takes one prompt and makes one sequence (no num_return_sequences > 1, no beams)")


def run(search) -> list[GenerationResult]:
    """Generate to the end: the results of every row (see `results()` of the search)."""
    for _ in search.steps():
        pass
    return search.results()


def generate(model, prompt, *, capture=None, **options):
    """Continue `prompt` by up to `max_new_tokens` tokens.

    prompt: a string, token ids (list of ints), or a batch: a list of strings or of token-id lists.
    Options (Hugging Face's names; see GenerationOptions and docs/generation.md):
      max_new_tokens=50, temperature=0.0 (greedy; > 0 samples), top_k=None,
      top_p=None, repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
      logit_bias=None ({token id: bias}), no_repeat_ngram_size=0, min_new_tokens=0, seed=None,
      stop=() (strings), stop_token_ids=(), stop_at_eos=True, num_return_sequences=1,
      num_beams=1, length_penalty=1.0, early_stopping=False, bos=False.
    Returns a GenerationResult for a single prompt with num_return_sequences=1, otherwise a list
    of them, prompt-major (the num_return_sequences results of prompt 0 first).
    capture: True (every intermediate) or names as `run_with_cache` takes them: the result's
      `activations` hold what the decode computed (one prompt, one sequence; attention then takes
      the NumPy reference path, which materialises the probabilities).
    """
    search, single = make_search(model, prompt, options)
    recorder = None
    if capture is not None and capture is not False:
        single_sequence(search, single, "capture=")
        recorder = StepwiseCapture(model.config, names=None if capture is True else capture)
        search.hooks = recorder.hooks
    results = run(search)
    if recorder is not None:
        results[0].activations = recorder.cache()
    return results[0] if single and len(results) == 1 else results
