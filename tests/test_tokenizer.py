"""The shipped tokenizer against Hugging Face's GPT-2 tokenizer and the published check values."""

import pytest
from conftest import shared_path

from engine import TokenizerError
from engine.state.tokenizer import BPE_FILE, gpt2_tokenizer, load_tokenizer, tokenizer_from_hf_files

TEXTS = [
    "Hello, world!",
    "Ondřej Čertík was born in",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand  double  spaces",
    "I'm sure they've said we'll go, don't you? It's 'quoted'.",
    "Numbers: 3.14159, 1,000,000 and 2024-11-25",
    "Emoji 👍🏽 and 中文 and العربية and ñ",
    "<|endoftext|>a new document<|endoftext|>",
    "   \n  ",
    "ROMEO:\nBut, soft! what light through yonder window breaks?",
]


def test_published_check_values():
    """The values in ../shared/tokenizer/README.md (and tiktoken's own tests)."""
    tok = gpt2_tokenizer()
    assert tok.encode("Hello, world!") == [15496, 11, 995, 0]
    assert tok.encode("Ondřej Čertík was born in") == [
        46,
        358,
        129,
        247,
        68,
        73,
        34754,
        234,
        861,
        8836,
        74,
        373,
        4642,
        287,
    ]
    assert tok.eot_token == 50256 and tok.n_vocab == 50257


@pytest.mark.parametrize("text", TEXTS)
def test_same_ids_as_hugging_face(tiny_model_dir, text):
    from transformers import GPT2TokenizerFast

    hf = GPT2TokenizerFast.from_pretrained(str(tiny_model_dir))
    ours = gpt2_tokenizer()
    assert ours.encode(text) == hf.encode(text)
    assert ours.decode(ours.encode(text)) == text


def test_end_of_text_is_special_unless_disallowed():
    tok = gpt2_tokenizer()
    assert tok.encode("<|endoftext|>") == [50256]
    assert 50256 not in tok.encode("<|endoftext|>", allow_special=False)


def test_hf_files_give_the_shipped_ranks():
    folder = shared_path("tokenizer")
    built = tokenizer_from_hf_files(folder / "encoder.json", folder / "vocab.bpe")
    shipped = gpt2_tokenizer()
    for text in TEXTS:
        assert built.encode(text) == shipped.encode(text)
    assert built.n_vocab == shipped.n_vocab


def test_model_directory_with_its_own_vocabulary(tmp_path):
    """A directory whose vocab.json/merges.txt are not GPT-2's gets a tokenizer built from them."""
    import json

    # A toy vocabulary: the 256 byte characters, then two merges.
    from engine.state.tokenizer import _byte_alphabet

    chars = sorted(_byte_alphabet(), key=lambda ch: _byte_alphabet()[ch])
    vocab = {ch: i for i, ch in enumerate(chars)}
    vocab |= {"ab": 256, "abc": 257, "<|endoftext|>": 258}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\nab c\n")
    tok = load_tokenizer(tmp_path, vocab_size=259)
    assert tok.encode("abcab") == [257, 256]
    assert tok.encode("<|endoftext|>") == [258]
    with pytest.raises(TokenizerError, match="vocab_size=100"):
        load_tokenizer(tmp_path, vocab_size=100)


def test_damaged_bpe_file_is_caught(tmp_path, monkeypatch):
    import engine.state.tokenizer as module

    damaged = tmp_path / "gpt2.tiktoken"
    data = BPE_FILE.read_bytes()
    damaged.write_bytes(data.replace(b" 1000\n", b" 1001\n", 1))
    monkeypatch.setattr(module, "BPE_FILE", damaged)
    module.gpt2_tokenizer.cache_clear()
    try:
        with pytest.raises(TokenizerError, match="SHA256 mismatch"):
            module.gpt2_tokenizer()
    finally:
        module.gpt2_tokenizer.cache_clear()


def test_model_uses_shipped_tokenizer_for_standard_files(tiny_model_dir):
    # The tiny model's vocab.json + merges.txt are GPT-2's own: no second tokenizer is built.
    assert load_tokenizer(tiny_model_dir, 50257).encoding.name == "gpt2"
