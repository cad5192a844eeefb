"""Stopping and streaming: end-of-text, stop ids, stop strings across tokens, UTF-8-safe pieces.

Most tests drive the real generation code with a scripted stand-in for the model, whose next
token is always the next one of a given script, so the tokens (emoji split across tokens, a stop
string spread over several) are known in advance. The last tests run the tiny Shakespeare model.
"""

import numpy as np
import pytest

from engine.base.config import GPT2Config
from engine.generation import generate, stream
from engine.generation.text import IncrementalText
from engine.state.kv_cache import KVCache
from engine.state.tokenizer import gpt2_tokenizer

EOS = 50256
TOKENIZER = gpt2_tokenizer()


class ScriptedModel:
    """Stands in for GPT2 in generation: whatever the input, the logits of every row put 10 on the
    next token of `script` and 0 elsewhere (the script restarts at each prompt pass)."""

    def __init__(self, script, n_positions=128):
        self.config = GPT2Config(n_layer=1, n_head=1, n_embd=4, n_positions=n_positions)
        self.tokenizer = TOKENIZER
        self.script = list(script)
        self.position = 0

    def new_cache(self, batch_size=1, max_length=None, left_padding=None):
        return KVCache(1, batch_size, 1, 1, max_length or self.config.n_positions, left_padding)

    def __call__(self, ids, cache=None, *, left_padding=None, logits_to_keep=None, hooks=None):
        assert hooks is None  # nothing to capture in a script
        ids = np.asarray(ids)
        B, T = ids.shape
        if cache.length == 0:
            self.position = 0
        cache.advance(T)
        logits = np.zeros((B, logits_to_keep or T, self.config.vocab_size), dtype=np.float32)
        logits[:, -1, self.script[min(self.position, len(self.script) - 1)]] = 10.0
        self.position += 1
        return logits


def scripted(text_or_ids, **extra):
    ids = TOKENIZER.encode(text_or_ids) if isinstance(text_or_ids, str) else list(text_or_ids)
    return ScriptedModel(ids + [TOKENIZER.encode(" filler")[0]] * 200, **extra), ids


GREEDY = {"temperature": 0}


def test_scripted_model_replays_its_script():
    model, ids = scripted("Hello, world")
    r = generate(model, "Q", max_new_tokens=len(ids), **GREEDY)
    assert r.token_ids == ids and r.text == "Hello, world" and r.finish_reason == "length"


def test_end_of_text_stops_and_is_left_out_of_the_text():
    model, ids = scripted(TOKENIZER.encode("The end.") + [EOS] + TOKENIZER.encode(" More"))
    r = generate(model, "Q", max_new_tokens=20, **GREEDY)
    assert r.finish_reason == "eos" and r.token_ids == TOKENIZER.encode("The end.") + [EOS]
    assert r.text == "The end." and len(r.logprobs) == len(r.token_ids)
    # stop_at_eos=False: end-of-text is a token like any other
    r = generate(model, "Q", max_new_tokens=5, stop_at_eos=False, **GREEDY)
    assert r.finish_reason == "length" and r.text == "The end.<|endoftext|> More"


def test_stop_token_ids():
    model, ids = scripted("one two three four")
    three = TOKENIZER.encode(" three")[0]
    r = generate(model, "Q", max_new_tokens=20, stop_token_ids=[three], **GREEDY)
    assert r.finish_reason == "stop" and r.token_ids[-1] == three and r.text == "one two"


def test_min_new_tokens_holds_off_the_end_tokens():
    model, _ = scripted([EOS] * 10)
    assert generate(model, "Q", max_new_tokens=8, **GREEDY).token_ids == [EOS]
    # the scripted logits put everything else at 0: with EOS forbidden, greedy takes token 0 ("!")
    r = generate(model, "Q", max_new_tokens=8, min_new_tokens=3, **GREEDY)
    assert r.token_ids == [0, 0, 0, EOS] and r.finish_reason == "eos" and r.text == "!!!"


@pytest.mark.parametrize(
    "stop,text",
    [
        ("King,\nAnd", "Enter the "),  # spans four tokens: " King", ",", "\n", "And"
        ("ing", "Enter the K"),  # inside one token
        (["\nAnd", "the"], "Enter "),  # the earliest of several wins
        ("nowhere", None),
    ],
)
def test_stop_strings_cut_the_text_before_them(stop, text):
    model, ids = scripted("Enter the King,\nAnd, and the king")
    r = generate(model, "Q", max_new_tokens=len(ids), stop=stop, **GREEDY)
    if text is None:
        assert r.finish_reason == "length" and r.text == "Enter the King,\nAnd, and the king"
        return
    assert r.finish_reason == "stop" and r.text == text
    # The tokens go up to the one that completes the stop string.
    stops = [stop] if isinstance(stop, str) else stop
    assert any(s in TOKENIZER.decode(r.token_ids) for s in stops)
    assert not any(s in TOKENIZER.decode(r.token_ids[:-1]) for s in stops)


def test_stop_string_in_the_middle_of_a_multibyte_character_sequence():
    model, ids = scripted("Café 👍🏽 naïve")
    r = generate(model, "Q", max_new_tokens=len(ids), stop="👍", **GREEDY)
    assert r.text == "Café " and r.finish_reason == "stop"


UNICODE = "Café 👍🏽 naïve — 日本語, señor. Ünïcödé ✓ 🎉🎉"


def test_unicode_text_is_split_mid_character_by_its_tokens():
    pieces = TOKENIZER.token_bytes(TOKENIZER.encode(UNICODE))
    undecodable = 0
    for piece in pieces:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable >= 6  # so the test below really meets tokens that end mid-character


def test_streaming_never_splits_a_character_and_joins_to_the_text():
    model, ids = scripted(UNICODE)
    s = stream(model, "Q", max_new_tokens=len(ids), **GREEDY)
    pieces = list(s)
    assert "".join(pieces) == s.result.text == UNICODE
    assert not any("\ufffd" in p for p in pieces)
    assert len(pieces) >= 15  # streamed token by token, not all at the end
    for p in pieces:
        p.encode("utf-8")  # each piece is whole characters (a lone surrogate would raise)


@pytest.mark.parametrize("stop", ["日本語", "señor. Ü", "🎉🎉", "— 日", "naïve"])
def test_streaming_holds_back_a_possible_stop_string(stop):
    model, ids = scripted(UNICODE)
    s = stream(model, "Q", max_new_tokens=len(ids), stop=stop, **GREEDY)
    pieces = list(s)
    expected = UNICODE[: UNICODE.index(stop)]
    assert "".join(pieces) == s.result.text == expected
    assert s.result.finish_reason == "stop"
    shown = ""
    for p in pieces:
        shown += p
        assert expected.startswith(shown)  # nothing that later turned out to be the stop string


def test_streaming_shows_held_back_text_once_it_is_not_a_stop_string():
    model, ids = scripted("To be, or not to be: that is the question.")
    s = stream(model, "Q", max_new_tokens=len(ids), stop="to be, or", **GREEDY)
    pieces = list(s)
    assert "".join(pieces) == "To be, or not to be: that is the question." == s.result.text
    assert s.result.finish_reason == "length"


def test_an_unfinished_character_at_the_end_becomes_a_replacement_character():
    emoji = TOKENIZER.encode(" 👍")  # [" \xf0\x9f\x91", "\x8d"]
    model, _ = scripted(emoji)
    r = generate(model, "Q", max_new_tokens=1, **GREEDY)
    assert r.text == " \ufffd" == TOKENIZER.decode(emoji[:1])
    s = stream(model, "Q", max_new_tokens=1, **GREEDY)
    assert "".join(s) == " \ufffd"


def test_incremental_text_equals_decoding_everything_at_once():
    rng = np.random.default_rng(0)
    ids = TOKENIZER.encode(UNICODE) + rng.integers(0, 50256, 300).tolist()  # random tokens: invalid UTF-8 too
    text = IncrementalText(TOKENIZER)
    for i in ids:
        text.add(i)
    text.close()
    assert text.text == TOKENIZER.decode(ids)


class SuccessorModel(ScriptedModel):
    """Each row's next token is the successor of that row's last token (`successor` maps ids to
    ids), so rows of a batch follow their own chains, whichever rows are still running."""

    def __init__(self, successor):
        super().__init__([0])
        self.successor = successor

    def __call__(self, ids, cache=None, *, left_padding=None, logits_to_keep=None, hooks=None):
        ids = np.asarray(ids)
        B, T = ids.shape
        cache.advance(T)
        logits = np.zeros((B, logits_to_keep or T, self.config.vocab_size), dtype=np.float32)
        logits[np.arange(B), -1, [self.successor[int(i)] for i in ids[:, -1]]] = 10.0
        return logits


def chain(*texts):
    """successor map through the tokens of each text in turn: text[0] -> text[1] -> ..."""
    successor = {}
    for text in texts:
        ids = TOKENIZER.encode(text)
        successor |= dict(zip(ids, ids[1:] + ids[-1:]))
    return successor


def test_a_batch_stops_each_row_on_its_own():
    model = SuccessorModel(chain("Q alpha beta gamma delta epsilon", "Z one two three four five six"))
    stopped, running = generate(model, ["Q", "Z"], max_new_tokens=5, stop=[" gamma"], **GREEDY)
    assert (stopped.text, stopped.finish_reason) == (" alpha beta", "stop")
    assert (running.text, running.finish_reason) == (" one two three four five", "length")


# ----------------------------------------------------------------------------------------------
# The tiny model


def test_streaming_the_tiny_model_gives_generate_s_text(tiny_model):
    options = dict(max_new_tokens=60, seed=5, temperature=0.9, top_p=0.95, stop=["\n\n"])
    s = tiny_model.stream("ROMEO:", **options)
    pieces = list(s)
    expected = tiny_model.generate("ROMEO:", **options)
    assert "".join(pieces) == s.result.text == expected.text
    assert s.result.token_ids == expected.token_ids and s.result.finish_reason == expected.finish_reason
    assert "\n\n" not in expected.text


def test_stream_refuses_batches_and_beams(tiny_model):
    from engine import InputError

    with pytest.raises(InputError, match="one prompt"):
        tiny_model.stream(["a", "b"])
    with pytest.raises(InputError, match="one prompt"):
        tiny_model.stream("a", num_beams=2)
