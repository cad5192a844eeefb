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
from pathlib import Path

import tiktoken

from ..base.checks import integer_array, shown
from ..base.errors import InputError, TokenizerError
from ..base.files import decode_utf8, read_bytes, read_json, regular_file

BPE_FILE = Path(__file__).parent.parent / "data" / "gpt2.tiktoken"
BPE_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# The same vocabulary in Hugging Face's spelling.
VOCAB_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
MERGES_TXT_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

END_OF_TEXT = "<|endoftext|>"
TOKENIZER_FILE_LIMIT = 64 << 20  # bytes, for vocab.json and merges.txt (GPT-2's: 1.0 MB and 0.46 MB)
# GPT-2's pre-tokenizer: contractions, letters, digits, other symbols, whitespace. A space stays
# attached to the word after it. (tiktoken's spelling, with possessive quantifiers.)
SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


class Tokenizer:
    """Text <-> token ids. `<|endoftext|>` in text encodes to its special id, as Hugging Face does.

    Its ids are 0 to n_vocab - 1, every one of them decodable. A model's embedding may have more
    rows than that (nanoGPT pads GPT-2's 50257 to 50304): generation never picks those ids.
    """

    def __init__(self, encoding: tiktoken.Encoding):
        self.encoding = encoding
        # 50256 for GPT-2; None for a vocabulary without it
        self.eot_token = (
            encoding.encode_single_token(END_OF_TEXT) if END_OF_TEXT in encoding.special_tokens_set else None
        )
        self.n_vocab = encoding.n_vocab

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        """str -> list of token ids. With allow_special=False, `<|endoftext|>` is encoded as plain text.
        Text that is not valid Unicode (a lone surrogate, such as invalid UTF-8 decoded with
        "surrogateescape") is refused: tiktoken would silently encode U+FFFD in its place."""
        if not isinstance(text, str):
            raise InputError(f"the text must be a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InputError(f"the text is not valid Unicode ({error.reason} at character {error.start})") from None
        if allow_special:
            return self.encoding.encode(text, allowed_special="all")
        return self.encoding.encode_ordinary(text)

    def decode(self, ids) -> str:
        """Token ids -> str. Bytes that are not valid UTF-8 on their own become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids) -> bytes:
        return self.encoding.decode_bytes(self.checked_ids(ids))

    def token_bytes(self, ids) -> list[bytes]:
        """The bytes of each token on its own (a token can hold part of a UTF-8 character)."""
        return [self.encoding.decode_single_token_bytes(i) for i in self.checked_ids(ids)]

    def pieces(self, ids, errors: str = "replace") -> list[str]:
        """Each token's own text, for display: bytes that are not a whole UTF-8 character on their
        own become U+FFFD (errors="replace") or \\x escapes (errors="backslashreplace")."""
        return [piece.decode("utf-8", errors=errors) for piece in self.token_bytes(ids)]

    def checked_ids(self, ids) -> list[int]:
        """ids ([T] integers, each a token of this tokenizer) as a list of ints, or an InputError."""
        array = integer_array(ids, "token ids")
        if array.ndim != 1:
            raise InputError(f"token ids must be a [T] sequence, got shape {array.shape}")
        if array.size and (array.min() < 0 or array.max() >= self.n_vocab):
            bad = int(array.min() if array.min() < 0 else array.max())
            raise InputError(f"token id {bad} is not a token of the tokenizer (ids 0 to {self.n_vocab - 1})")
        return array.tolist()


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
    in merges.txt; the two agree when ids grow with the merge order, as they do for GPT-2. Checked,
    and so is everything tiktoken would otherwise fail on, or panic on, later: vocab.json must map
    each token (spelled in GPT-2's byte alphabet) to a distinct integer id, the ids must be 0 to
    N - 1, and every one of the 256 bytes must be a token of its own.
    """
    vocab = check_vocab(vocab_json, read_json(vocab_json, TokenizerError, TOKENIZER_FILE_LIMIT))
    merged_ids = merge_ids(merges_txt, read_bytes(merges_txt, TokenizerError, TOKENIZER_FILE_LIMIT), vocab)
    if any(a >= b for a, b in zip(merged_ids, merged_ids[1:])):
        raise TokenizerError(
            f"{vocab_json}: token ids do not grow with the merge order of merges.txt, which tiktoken needs"
        )
    byte_of = _byte_alphabet()
    ranks = {bytes(byte_of[ch] for ch in token): i for token, i in vocab.items() if token != END_OF_TEXT}
    special = {END_OF_TEXT: vocab[END_OF_TEXT]} if END_OF_TEXT in vocab else {}
    return _make_tokenizer(f"hf:{vocab_json.parent}", ranks, special)


def check_vocab(path: Path, vocab) -> dict[str, int]:
    """vocab.json's {token: id}, checked (see `tokenizer_from_hf_files`), or a TokenizerError naming
    the file and the token at fault."""
    if not isinstance(vocab, dict) or not vocab:
        raise TokenizerError(f"{path}: must hold a JSON object of token -> id")
    byte_of = _byte_alphabet()
    owner: dict[int, str] = {}
    for token, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise TokenizerError(f"{path}: token {shown(token)} has id {shown(i)}, not an integer >= 0")
        if i in owner:
            raise TokenizerError(f"{path}: tokens {shown(owner[i])} and {shown(token)} have the same id {i}")
        owner[i] = token
        if token != END_OF_TEXT and (not token or any(ch not in byte_of for ch in token)):
            raise TokenizerError(f"{path}: token {shown(token)} is not spelled in GPT-2's byte alphabet")
    if max(owner) != len(owner) - 1:
        missing = next(i for i in range(len(owner)) if i not in owner)
        raise TokenizerError(f"{path}: the ids must be 0 to {len(owner) - 1} with none missing; {missing} is missing")
    lacking = [ch for ch in byte_of if ch not in vocab]
    if lacking:
        raise TokenizerError(
            f"{path}: byte 0x{byte_of[lacking[0]]:02x} ({shown(lacking[0])}) is not a token, "
            "and every byte must be one (a byte-level BPE can meet any byte)"
        )
    return vocab


def merge_ids(path: Path, data: bytes, vocab: dict[str, int]) -> list[int]:
    """The id of the token each line of merges.txt makes, in order, or a TokenizerError naming the line."""
    text = decode_utf8(data, path, TokenizerError)
    merged = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line or line.startswith("#version"):
            continue
        pair = line.split(" ")
        if len(pair) != 2 or not all(pair):
            raise TokenizerError(f"{path}: line {number} is not two tokens separated by one space: {shown(line)}")
        for token in (*pair, pair[0] + pair[1]):
            if token not in vocab:
                raise TokenizerError(f"{path}: line {number} names {shown(token)}, which is not in vocab.json")
        merged.append(vocab[pair[0] + pair[1]])
    return merged


def load_tokenizer(model_dir: str | Path | None = None, vocab_size: int | None = None) -> Tokenizer:
    """The tokenizer for a model directory: its own vocab.json + merges.txt if they are not GPT-2's,
    else the shipped GPT-2 encoding. Checks that every token id fits the model's `vocab_size`."""
    tokenizer = gpt2_tokenizer()
    if model_dir is not None:
        vocab_json, merges_txt = Path(model_dir) / "vocab.json", Path(model_dir) / "merges.txt"
        if regular_file(vocab_json, TokenizerError) and regular_file(merges_txt, TokenizerError):
            standard = (
                _sha256(read_bytes(vocab_json, TokenizerError, TOKENIZER_FILE_LIMIT)) == VOCAB_JSON_SHA256
                and _sha256(read_bytes(merges_txt, TokenizerError, TOKENIZER_FILE_LIMIT)) == MERGES_TXT_SHA256
            )
            if not standard:
                tokenizer = tokenizer_from_hf_files(vocab_json, merges_txt)
    if vocab_size is not None and tokenizer.n_vocab > vocab_size:
        raise TokenizerError(
            f"{model_dir}: the tokenizer has {tokenizer.n_vocab} tokens but config.json says vocab_size={vocab_size}"
        )
    return tokenizer


def check_tokenizer_fits(tokenizer: Tokenizer, config, model_dir) -> None:
    """A model whose embedding has more rows than the tokenizer has tokens loads (generation never
    picks the padding ids), but its end-of-text and start ids must be tokens the tokenizer knows:
    a sequence could never end at an id generation never picks, nor a prompt start with one that
    cannot be decoded."""
    for name, i in (("bos_token_id", config.bos_token_id), *(("eos_token_id", e) for e in config.eos_token_ids)):
        if i >= tokenizer.n_vocab:
            raise TokenizerError(
                f"{model_dir}: config.json's {name}={i} is not a token of the tokenizer, "
                f"which has {tokenizer.n_vocab} (ids 0 to {tokenizer.n_vocab - 1})"
            )
