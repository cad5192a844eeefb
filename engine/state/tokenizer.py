"""GPT-2's byte-pair encoding, through tiktoken, entirely offline.

The BPE ranks ship inside the package (`engine/data/gpt2.tiktoken`, OpenAI's file, also tiktoken's
`r50k_base`) and are checked against their SHA256 each time they are read, so a damaged install is
caught instead of silently tokenizing differently. Nothing is downloaded.

A model directory may carry its own `vocab.json` + `merges.txt` (Hugging Face's names for GPT-2's
`encoder.json` + `vocab.bpe`). When they are the standard GPT-2 files the shipped ranks are used; when
they differ, the ranks are built from them instead, so a model with its own vocabulary gets its own
tokenizer.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from pathlib import Path

import tiktoken

from ..base.errors import TokenizerError

BPE_FILE = Path(__file__).parent.parent / "data" / "gpt2.tiktoken"
BPE_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# The same vocabulary in Hugging Face's spelling.
VOCAB_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
MERGES_TXT_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

END_OF_TEXT = "<|endoftext|>"
# GPT-2's pre-tokenizer: contractions, letters, digits, other symbols, whitespace. A space stays
# attached to the word after it. (tiktoken's spelling, with possessive quantifiers.)
SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


class Tokenizer:
    """Text <-> token ids. `<|endoftext|>` in text encodes to its special id, as Hugging Face does."""

    def __init__(self, encoding: tiktoken.Encoding):
        self.encoding = encoding
        self.eot_token = encoding.eot_token  # 50256 for GPT-2
        self.n_vocab = encoding.n_vocab

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        """str -> list of token ids. With allow_special=False, `<|endoftext|>` is encoded as plain text."""
        if allow_special:
            return self.encoding.encode(text, allowed_special="all")
        return self.encoding.encode_ordinary(text)

    def decode(self, ids) -> str:
        """Token ids -> str. Bytes that are not valid UTF-8 on their own become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids) -> bytes:
        return self.encoding.decode_bytes([int(i) for i in ids])

    def token_bytes(self, ids) -> list[bytes]:
        """The bytes of each token on its own (a token can hold part of a UTF-8 character)."""
        return [self.encoding.decode_single_token_bytes(int(i)) for i in ids]

    def pieces(self, ids, errors: str = "replace") -> list[str]:
        """Each token's own text, for display: bytes that are not a whole UTF-8 character on their
        own become U+FFFD (errors="replace") or \\x escapes (errors="backslashreplace")."""
        return [piece.decode("utf-8", errors=errors) for piece in self.token_bytes(ids)]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.cache
def gpt2_tokenizer() -> Tokenizer:
    """The standard GPT-2 tokenizer, from the BPE file shipped with the package (hash-checked)."""
    try:
        data = BPE_FILE.read_bytes()
    except OSError as error:
        raise TokenizerError(
            f"{BPE_FILE}: cannot read the shipped GPT-2 BPE file ({error}); reinstall gpt2-engine"
        ) from None
    if _sha256(data) != BPE_SHA256:
        raise TokenizerError(
            f"{BPE_FILE}: SHA256 mismatch, the shipped GPT-2 BPE file is damaged; reinstall gpt2-engine"
        )
    ranks = {}
    for line in data.splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return _make_tokenizer("gpt2", ranks, {END_OF_TEXT: len(ranks)})


def _make_tokenizer(name: str, ranks: dict[bytes, int], special: dict[str, int]) -> Tokenizer:
    encoding = tiktoken.Encoding(name, pat_str=SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens=special)
    return Tokenizer(encoding)


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's reversible byte -> printable character map, inverted: character -> byte.

    Printable Latin-1 characters (other than space) stand for their own byte; the remaining 68
    bytes are given the characters U+0100, U+0101, ... in byte order.
    """
    printable = [b for b in range(256) if chr(b).isprintable() and b != ord(" ")]
    others = [b for b in range(256) if b not in printable]
    alphabet = {chr(b): b for b in printable}
    alphabet |= {chr(256 + n): b for n, b in enumerate(others)}
    return alphabet


def tokenizer_from_hf_files(vocab_json: Path, merges_txt: Path) -> Tokenizer:
    """Build the tokenizer of a Hugging Face `vocab.json` + `merges.txt` pair.

    tiktoken merges the pair whose merged token has the lowest id, Hugging Face the pair listed first
    in merges.txt; the two agree when ids grow with the merge order, as they do for GPT-2. Checked.
    """
    byte_of = _byte_alphabet()  # character -> byte

    def to_bytes(piece: str) -> bytes:
        return bytes(byte_of[ch] for ch in piece)

    try:
        vocab = json.loads(vocab_json.read_text(encoding="utf-8"))
        ranks = {to_bytes(token): int(i) for token, i in vocab.items() if token != END_OF_TEXT}
        merged_ids = []
        for line in merges_txt.read_text(encoding="utf-8").split("\n"):
            if line and not line.startswith("#version"):
                first, second = line.split(" ")
                merged_ids.append(vocab[first + second])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, ValueError, AttributeError) as error:
        raise TokenizerError(
            f"{vocab_json.parent}: cannot build a tokenizer from vocab.json + merges.txt ({error!r})"
        ) from None
    if any(a >= b for a, b in zip(merged_ids, merged_ids[1:])):
        raise TokenizerError(
            f"{vocab_json}: token ids do not grow with the merge order of merges.txt, which tiktoken needs"
        )
    special = {END_OF_TEXT: vocab[END_OF_TEXT]} if END_OF_TEXT in vocab else {}
    return _make_tokenizer(f"hf:{vocab_json.parent}", ranks, special)


def load_tokenizer(model_dir: str | Path | None = None, vocab_size: int | None = None) -> Tokenizer:
    """The tokenizer for a model directory: its own vocab.json + merges.txt if they are not GPT-2's,
    else the shipped GPT-2 encoding. Checks that every token id fits the model's `vocab_size`."""
    tokenizer = gpt2_tokenizer()
    if model_dir is not None:
        vocab_json, merges_txt = Path(model_dir) / "vocab.json", Path(model_dir) / "merges.txt"
        if vocab_json.is_file() and merges_txt.is_file():
            standard = (
                _sha256(vocab_json.read_bytes()) == VOCAB_JSON_SHA256
                and _sha256(merges_txt.read_bytes()) == MERGES_TXT_SHA256
            )
            if not standard:
                tokenizer = tokenizer_from_hf_files(vocab_json, merges_txt)
    if vocab_size is not None and tokenizer.n_vocab > vocab_size:
        raise TokenizerError(
            f"{model_dir}: the tokenizer has {tokenizer.n_vocab} tokens but config.json says vocab_size={vocab_size}"
        )
    return tokenizer
