"""Fuzzing the files of a model directory (Hypothesis): generated and mutated config.json,
safetensors headers and bodies, vocab.json / merges.txt and shard indexes.

The property, for every directory: `GPT2.from_pretrained` either loads a model that then runs
(a forward pass and a short generation, which may still refuse NaN weights with a GPT2Error), or
raises a GPT2Error whose message is one line; no other exception, and memory bounded (the process
runs under an address-space ceiling, so a size that escaped its check fails here as a MemoryError).

The directories are small (2 layers, width 8, an own vocabulary of 259 tokens) so that a mutated
byte often lands in a header, and each example costs milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
from hardening_helpers import assert_one_line, edge_scalars, examples, memory_ceiling
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from engine import GPT2, GPT2Config, GPT2Error
from engine.state.synthetic import write_checkpoint
from engine.state.tokenizer import _byte_alphabet

CONFIG = GPT2Config(n_layer=2, n_head=2, n_embd=8, n_positions=8, vocab_size=259, bos_token_id=258, eos_token_id=258)
FIELDS = [
    "vocab_size",
    "n_positions",
    "n_ctx",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
    "layer_norm_epsilon",
    "activation_function",
    "scale_attn_weights",
    "scale_attn_by_inverse_layer_idx",
    "tie_word_embeddings",
    "bos_token_id",
    "eos_token_id",
    "model_type",
    "add_cross_attention",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
]
# The numbers at the edges of their types, and their neighbours.
EDGE_INTS = [
    0,
    1,
    2,
    7,
    8,
    16,
    258,
    259,
    -1,
    2**31 - 1,
    2**31,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    10**30,
    -(10**30),
    10**300,
]
EDGE_FLOATS = [0.0, -0.0, 1e-5, 1e-45, 1e-50, 1e39, 1e308, float("inf"), float("-inf"), float("nan"), 0.5, 8.0]


def json_values():
    """Any JSON value, with numbers at the edges of their types and strings the fields expect."""
    scalars = st.one_of(
        edge_scalars(EDGE_INTS, EDGE_FLOATS),
        st.sampled_from(["gelu_new", "gelu_pytorch_tanh", "gpt2", "true", "false", "8", "", "1e5"]),
        st.text(max_size=8),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=6,
    )


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def own_vocabulary() -> dict[str, int]:
    alphabet = _byte_alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet, key=alphabet.get))}
    return vocab | {"ab": 256, "abc": 257, "<|endoftext|>": 258}


MERGES = "#version: 0.2\na b\nab c\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One good directory, in both layouts (one file, and two shards with an index)."""
    single = write_checkpoint(tmp_path_factory.mktemp("single"), CONFIG, seed=1)
    sharded = write_checkpoint(tmp_path_factory.mktemp("sharded"), CONFIG, seed=1, shards=2)
    for directory in (single, sharded):
        (directory / "vocab.json").write_text(json.dumps(own_vocabulary()))
        (directory / "merges.txt").write_text(MERGES)
    return {"single": single, "sharded": sharded}


def loads_or_refuses(directory) -> str:
    """The property: a model that runs, or one GPT2Error line; nothing else. The outcome (and the
    kind of refusal) is a Hypothesis event: `pytest --hypothesis-show-statistics` counts them."""
    try:
        model = GPT2.from_pretrained(directory)
    except GPT2Error as error:
        assert_one_line(error)
        record(f"refused: {type(error).__name__}")
        return "refused"
    try:
        model([1, 2, 3])
        model.generate([1, 2], max_new_tokens=2, temperature=0)
    except GPT2Error as error:  # e.g. weights that are NaN after a mutation
        assert_one_line(error)
        record(f"loads, then refuses: {type(error).__name__}")
        return "runs, refuses"
    record("loads and runs")
    return "runs"


def record(outcome: str) -> None:
    with contextlib.suppress(InvalidArgument):  # outside a Hypothesis test there is nothing to count
        event(outcome)


@pytest.fixture
def work(tmp_path_factory):
    """work(base directory): a fresh copy of it for one example, removed afterwards."""

    @contextlib.contextmanager
    def copy(source):
        target = Path(tempfile.mkdtemp(prefix="fuzz-", dir=tmp_path_factory.getbasetemp())) / "model"
        shutil.copytree(source, target)
        try:
            yield target
        finally:
            shutil.rmtree(target.parent)

    return copy


@examples(150)
@given(changes=st.dictionaries(st.sampled_from(FIELDS), json_values(), min_size=1, max_size=4))
def test_config_json_fields(base, work, changes):
    with work(base["single"]) as directory:
        path = directory / "config.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | changes))
        with memory_ceiling():
            loads_or_refuses(directory)


@examples(40)
@given(
    text=st.one_of(
        json_values().map(json.dumps),
        st.integers(1, 200_000).map(nested),
        st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
        st.sampled_from(["", "{", "NaN", '{"n_layer": 1e999}', '{"n_layer": ' + "9" * 5000 + "}", "\ufeff{}"]),
    )
)
def test_config_json_text(base, work, text):
    with work(base["single"]) as directory:
        (directory / "config.json").write_text(text, encoding="utf-8", errors="surrogateescape")
        with memory_ceiling():
            loads_or_refuses(directory)


def safetensors_parts(path):
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def header_mutations():
    """A change to one tensor's entry of the header (or to the header as a whole)."""
    entry_changes = st.one_of(
        st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "F16", "BF16", "F64", "I8", "U8", "BOOL", "X", ""])}),
        st.fixed_dictionaries(
            {"shape": st.lists(st.sampled_from([0, 1, 2, 8, 16, 259, 10**6, 2**32, 2**63 - 1, -1]), max_size=3)}
        ),
        st.fixed_dictionaries(
            {"data_offsets": st.lists(st.sampled_from([0, 4, 32, 10**6, 2**63 - 1, -1]), min_size=0, max_size=3)}
        ),
        st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets"]), json_values(), min_size=1),
    )
    return st.tuples(st.integers(0, 10**6), entry_changes, st.sampled_from(["change", "delete", "rename", "duplicate"]))


@examples(120)
@given(
    mutations=st.lists(header_mutations(), min_size=1, max_size=3),
    length_delta=st.sampled_from([0, 0, 0, -1, 1, 10**6, -(10**6), 2**62]),
)
def test_safetensors_headers(base, work, mutations, length_delta):
    with work(base["single"]) as directory:
        path = directory / "model.safetensors"
        header, body = safetensors_parts(path)
        names = sorted(n for n in header if n != "__metadata__")
        for index, change, how in mutations:
            name = names[index % len(names)]
            if name not in header:
                continue
            if how == "delete":
                del header[name]
            elif how == "rename":
                header["transformer." + name] = header.pop(name)
            elif how == "duplicate":
                header["transformer." + name] = dict(header[name])
            else:
                header[name] = header[name] | change
        raw = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", max(0, len(raw) + length_delta) % 2**64) + raw + body)
        with memory_ceiling():
            loads_or_refuses(directory)


@examples(120)
@given(
    edits=st.lists(
        st.tuples(
            st.floats(0, 1, exclude_max=True),
            st.sampled_from(["flip", "zero", "ff", "nan", "cut", "grow"]),
            st.integers(1, 64),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_safetensors_bytes(base, work, edits):
    """Mutated bytes anywhere in the file: the length prefix, the JSON header, the tensor data."""
    with work(base["single"]) as directory:
        path = directory / "model.safetensors"
        data = bytearray(path.read_bytes())
        header_end = 8 + struct.unpack("<Q", data[:8])[0]
        for where, how, n in edits:
            at = int(where * header_end * 1.2) if how != "nan" else int(where * len(data))  # mostly the header
            at = min(at, len(data) - 1)
            if how == "flip":
                data[at] ^= 1 << (n % 8)
            elif how == "zero":
                data[at : at + n] = bytes(len(data[at : at + n]))
            elif how == "ff":
                data[at : at + n] = b"\xff" * len(data[at : at + n])
            elif how == "nan":  # a NaN float32 in the data
                at = max(header_end, at - at % 4)
                data[at : at + 4] = struct.pack("<f", float("nan"))
            elif how == "cut":
                del data[len(data) - n * 97 :]
            else:
                data += bytes(n)
        path.write_bytes(bytes(data))
        with memory_ceiling():
            loads_or_refuses(directory)


def vocab_changes():
    tokens = st.one_of(st.sampled_from(["a", "ab", "abc", "z", "<|endoftext|>", "Ġ", "", "xyz"]), st.text(max_size=3))
    return st.lists(st.tuples(tokens, st.one_of(json_values(), st.just("delete"))), min_size=1, max_size=4)


@examples(120)
@given(
    changes=vocab_changes(),
    merges=st.one_of(
        st.just(MERGES),
        st.lists(
            st.sampled_from(["a b", "ab c", "b a", "a  b", "a", "x y", "a b c", "", "#version: 0.2", "\u0100 a"]),
            max_size=5,
        ).map("\n".join),
        st.text(max_size=40),
    ),
    whole=st.one_of(st.none(), json_values(), st.integers(1, 100_000).map(nested)),
)
def test_vocab_and_merges(base, work, changes, merges, whole):
    with work(base["single"]) as directory:
        vocab: object = own_vocabulary()
        for token, value in changes:
            if value == "delete":
                vocab.pop(token, None)  # type: ignore[union-attr]
            else:
                vocab[token] = value  # type: ignore[index]
        if whole is not None:
            vocab = whole
        (directory / "vocab.json").write_text(vocab if isinstance(vocab, str) else json.dumps(vocab))
        (directory / "merges.txt").write_text(merges, encoding="utf-8", errors="surrogateescape")
        with memory_ceiling():
            if loads_or_refuses(directory).startswith("runs"):
                tokenizer = GPT2.from_pretrained(directory).tokenizer
                text = "abcab zz <|endoftext|> é"
                assert tokenizer.decode(tokenizer.encode(text)) == text  # a tokenizer that loads round-trips


@examples(80)
@given(
    changes=st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.one_of(
                json_values(),
                st.sampled_from(
                    [
                        "../model.safetensors",
                        "/etc/passwd",
                        "/dev/zero",
                        ".",
                        "..",
                        "",
                        "config.json",
                        "model.safetensors.index.json",
                        "a/../../b",
                        "missing.safetensors",
                        "x\x00y",
                    ]
                ),
            ),
        ),
        max_size=3,
    ),
    whole=st.one_of(st.none(), json_values(), st.integers(1, 100_000).map(nested)),
)
def test_shard_index(base, work, changes, whole):
    with work(base["sharded"]) as directory:
        path = directory / "model.safetensors.index.json"
        index = json.loads(path.read_text())
        names = sorted(index["weight_map"])
        for at, shard in changes:
            index["weight_map"][names[at % len(names)]] = shard
        text = json.dumps(index if whole is None else whole) if not isinstance(whole, str) else whole
        path.write_text(text)
        with memory_ceiling():
            loads_or_refuses(directory)


def test_the_base_directories_load(base):
    """The fuzzers start from directories that load and run."""
    assert loads_or_refuses(base["single"]) == "runs" and loads_or_refuses(base["sharded"]) == "runs"
