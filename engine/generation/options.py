"""What a generation is asked for (GenerationOptions, checked once) and what it gives back
(GenerationResult).

Names follow Hugging Face's generate(). `checked()` validates every value and names the argument
in its error (the command line passes `spell` to name its flags instead); a missing seed becomes a
fresh random one there, so a run can always be repeated from its result.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, fields, replace

from ..base.checks import check_integer, is_finite_number, is_integer, shown
from ..base.errors import InputError

FINISH_REASONS = ("length", "stop", "eos")
# |length_penalty| at most: 1024 ** 10 and 1024 ** -10 are still float32 numbers (beam scores are
# divided by length ** length_penalty), and nothing beyond it ranks beams differently in practice.
MAX_LENGTH_PENALTY = 10


@dataclass
class GenerationResult:
    """One generated continuation.

    text: the new text only (not the prompt), without the end-of-text or stop token and cut
          before a stop string;
    token_ids: every new token id, including the end-of-text / stop token that ended it and the
          tokens that spelled a stop string;
    finish_reason: "length" (max_new_tokens reached), "eos" (end-of-text generated), "stop" (a
          stop string or stop token id), or "interrupted" (only after Ctrl-C in the command);
    logprobs: one per new token, log p(token) under the model's own distribution (log-softmax of
          the raw logits, before any processor);
    score: beam search only, the hypothesis' score as Hugging Face reports it (`sequences_scores`:
          sum of the processed log-probabilities / new tokens ** length_penalty);
    activations: with generate(capture=...) only, an `engine.capture.ActivationCache` of what the
          decode computed, position by position: the prompt and every new token but the last
          (which is never fed back), as `run_with_cache` on those tokens would give.
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: list[float] = field(default_factory=list)
    score: float | None = None
    activations: object = field(default=None, repr=False, compare=False)  # generate(capture=...) only

    def to_dict(self) -> dict:
        """The plain fields (activations are arrays, not JSON: use `self.activations`)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "activations"}
        if self.score is None:
            del d["score"]
        return d


@dataclass(frozen=True)
class GenerationOptions:
    """Every generation setting, checked by `checked()`. Names follow Hugging Face's generate()."""

    max_new_tokens: int = 50
    temperature: float = 0.0  # 0: greedy (Hugging Face's default, do_sample=False); > 0: sampling
    top_k: int | None = None  # None: no top-k
    top_p: float | None = None  # None: no top-p
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0  # OpenAI's: minus this once for a token already generated
    frequency_penalty: float = 0.0  # OpenAI's: minus this for each time a token was generated
    logit_bias: dict[int, float] | None = None  # OpenAI's: token id -> added to its logit
    no_repeat_ngram_size: int = 0
    min_new_tokens: int = 0
    seed: int | None = None  # None: a fresh random seed (checked() draws it)
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    stop_at_eos: bool = True
    num_return_sequences: int = 1  # samples (or best beams) per prompt
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False  # True, False or "never", as Hugging Face
    bos: bool = False  # put <|endoftext|> before every prompt

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def checked(self, spell=lambda name: name) -> GenerationOptions:
        """These options with every value checked (InputError naming `spell(argument)` if not)."""

        def fail(name, requirement, value):
            raise InputError(f"{spell(name)} must be {requirement}, got {shown(value)}")

        def as_tuple(name, value, is_one, requirement):  # one value, or any iterable of them
            if is_one(value):
                return (value,)
            try:
                return () if value is None else tuple(value)  # not `value or ()`: an array has no truth value
            except TypeError:
                fail(name, requirement, value)

        is_int = is_integer
        is_number = is_finite_number

        for name, low in (
            ("max_new_tokens", 1),
            ("num_return_sequences", 1),
            ("num_beams", 1),
            ("no_repeat_ngram_size", 0),
            ("min_new_tokens", 0),
        ):
            check_integer(spell(name), getattr(self, name), low)
        t = self.temperature
        if not is_number(t) or t < 0:
            fail("temperature", "a number >= 0 (0 is greedy)", t)
        if self.top_k is not None and (not is_int(self.top_k) or self.top_k < 1):
            fail("top_k", "an integer >= 1 (leave it out to keep every token)", self.top_k)
        p = self.top_p
        if p is not None and (not is_number(p) or not 0 < p <= 1):
            fail("top_p", "in (0, 1]", p)
        if not is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            fail("repetition_penalty", "a number > 0 (1 is no penalty)", self.repetition_penalty)
        for name in ("presence_penalty", "frequency_penalty"):
            if not is_number(getattr(self, name)):
                fail(name, "a finite number (0 is no penalty)", getattr(self, name))
        bias = self.logit_bias
        if bias is not None:
            if not isinstance(bias, dict) or not all(is_int(i) and i >= 0 and is_number(b) for i, b in bias.items()):
                fail("logit_bias", "a mapping of token ids (integers >= 0) to finite numbers", bias)
            bias = {int(i): float(b) for i, b in bias.items()}
        if self.seed is not None:
            check_integer(spell("seed"), self.seed, 0)
        if not is_number(self.length_penalty) or abs(self.length_penalty) > MAX_LENGTH_PENALTY:
            # length ** penalty must stay a float32 for every length a context holds
            fail("length_penalty", f"a number from -{MAX_LENGTH_PENALTY} to {MAX_LENGTH_PENALTY}", self.length_penalty)
        if self.early_stopping not in (True, False, "never"):
            fail("early_stopping", 'True, False or "never"', self.early_stopping)
        stop = as_tuple("stop", self.stop, lambda s: isinstance(s, str), "non-empty strings")
        if not all(isinstance(s, str) and s for s in stop):
            fail("stop", "non-empty strings", self.stop)
        stop_ids = as_tuple("stop_token_ids", self.stop_token_ids, is_int, "token ids (integers >= 0)")
        if not all(is_int(i) and i >= 0 for i in stop_ids):
            fail("stop_token_ids", "token ids (integers >= 0)", self.stop_token_ids)
        if self.num_beams > 1 and self.sampling:
            raise InputError(
                f"beam search is deterministic: {spell('temperature')} must be 0 with "
                f"{spell('num_beams')} > 1 (beam sampling is not supported)"
            )
        for name in ("top_k", "top_p"):
            if getattr(self, name) is not None and not self.sampling:
                if self.num_beams > 1:
                    raise InputError(
                        f"{spell(name)} applies to sampling, not to beam search ({spell('num_beams')} > 1)"
                    )
                raise InputError(
                    f"{spell(name)} applies to sampling: give {spell('temperature')} > 0 (0 is greedy decoding)"
                )
        if self.num_beams > 1:
            if self.num_return_sequences > self.num_beams:
                raise InputError(
                    f"{spell('num_return_sequences')}={self.num_return_sequences} is more than "
                    f"{spell('num_beams')}={self.num_beams}: beam search returns at most one sequence per beam"
                )
        elif self.num_return_sequences > 1 and not self.sampling:
            raise InputError(
                f"{spell('num_return_sequences')} > 1 needs sampling ({spell('temperature')} > 0): "
                "greedy decoding gives the same text every time"
            )
        seed = self.seed if self.seed is not None else secrets.randbits(64)
        return replace(
            self, stop=stop, stop_token_ids=tuple(int(i) for i in stop_ids), seed=int(seed), logit_bias=bias or None
        )

    def processor_options(self) -> dict:
        """The options of `process_scores` that shape any search (the sampling ones are apart)."""
        return {
            "logit_bias": self.logit_bias,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "min_new_tokens": self.min_new_tokens,
        }

    @property
    def uses_history(self) -> bool:
        """Whether a processor reads the sequence so far (the penalties, no_repeat_ngram_size)."""
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
            or self.no_repeat_ngram_size > 0
        )


def options_from(options: dict) -> GenerationOptions:
    known = {f.name for f in fields(GenerationOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown generation option {shown(unknown[0])} (known: {', '.join(sorted(known))})")
    return GenerationOptions(**options)


def end_token_ids(eos_token_ids: tuple[int, ...], options: GenerationOptions) -> list[int]:
    """The tokens that end a sequence: the end-of-text ids (unless stop_at_eos=False), then the stop ids."""
    ends = list(eos_token_ids) if options.stop_at_eos else []
    return ends + [i for i in options.stop_token_ids if i not in ends]
