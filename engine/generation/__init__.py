"""Text generation: continue prompts one token at a time through the KV cache.

    result = model.generate("ROMEO:", max_new_tokens=40, temperature=0.8, top_p=0.95, seed=1)
    result.text, result.token_ids, result.finish_reason, result.logprobs
    for piece in model.stream("ROMEO:", seed=1): print(piece, end="", flush=True)

The prompts are processed in one forward pass that fills the cache (several prompts of different
lengths are left-padded to one batch), then every row costs one step of one token. Each step:

    logits [B, V] -> processors (processors.py, Hugging Face's order) -> next token per row
    (greedy, a seeded draw, or beam search) -> stopping checks -> the next step on the new tokens.

Rows that finish leave the batch (their cache rows are dropped), so the others do not wait.

Greedy by default (temperature 0), as Hugging Face's generate(); temperature > 0 samples. (The
`gpt2 generate` command samples at temperature 1 by default, as R's gpt2() does.)

Stopping: the end-of-text token (unless stop_at_eos=False), any of `stop_token_ids`, any of the
`stop` strings appearing in the new text (even across tokens, or in the middle of one), or
`max_new_tokens`. `finish_reason` says which: "eos", "stop" (a stop id or string) or "length".

Sampling: row r, sample j of its prompt, draws from its own generator, seeded with
SeedSequence([seed, j]); so a prompt's samples do not depend on the other prompts of the batch,
and the first of n samples is the single sample with the same seed.

Log-probabilities: `logprobs[i]` is log p(token i) under the model itself, the log-softmax of the
raw logits at that step, before any processor (temperature, top-k, top-p, penalties); the same
numbers `model.score` gives for those tokens. This is what OpenAI-style APIs report, and it does
not change with the sampling settings.

The modules, in the order a generation goes through them:

    options.py        GenerationOptions (checked once) and GenerationResult
    prompts.py        prompts -> checked token ids; the prefill pass into a fresh KV cache
    processors.py     logits processors (penalties, temperature, top-k, top-p) and the token choice
    text.py           the text as tokens arrive, and stop strings
    token_search.py   greedy decoding and sampling (TokenSearch)
    beam_search.py    beam search (BeamSearch)
    api.py            generate(): check everything, build the search, run it
    stream.py         stream(): the text of one prompt, piece by piece

Legend: B = rows in the batch, P = prompts, L = longest prompt, V = vocab_size, K = beams per
prompt, C = candidates per prompt in a beam step, M = max_new_tokens.
"""

from .api import generate, make_search, run, single_sequence
from .options import FINISH_REASONS, GenerationOptions, GenerationResult, options_from
from .stream import GenerationStream, stream

__all__ = [
    "FINISH_REASONS",
    "GenerationOptions",
    "GenerationResult",
    "GenerationStream",
    "generate",
    "make_search",
    "options_from",
    "run",
    "single_sequence",
    "stream",
]
