"""Issue 17: no input reaches a traceback, an unbounded allocation or a clobbered file.

One test (or a few) per case of the issue, in its order: output paths that are not files (1),
sizes checked before they are allocated (2), writing output (3), tokenizer and config files of the
wrong type or structure (4), a vocabulary larger than the tokenizer (5), numbers at the edges of
their types (6), the Python API's errors (8), and messages that must say what is wrong (9).
(Case 7, `explain`'s late failures, is tested beside `explain`.) Commands run as real processes
under a memory limit (tests/hardening_helpers.py), so that a size that escapes its check ends
in a MemoryError here instead of the machine's out-of-memory killer.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import warnings

import numpy as np
import pytest
from hardening_helpers import (
    assert_user_error,
    copy_model,
    edit_json,
    file_size_limit,
    gpt2,
    limit_memory_and_drop_root_reading,
)

from engine import GPT2, GPT2Config, GPT2Error, InputError
from engine.base.files import write_atomically
from engine.state.synthetic import random_parameters, write_checkpoint

SMALL = GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32)


@pytest.fixture
def small(tmp_path):
    return write_checkpoint(tmp_path / "small", SMALL, seed=1)


def is_root() -> bool:
    return os.geteuid() == 0


# ----------------------------------------------------------------------------------------------
# 1. An output path that is a device node or a FIFO is refused, before any work, and survives.


@pytest.mark.skipif(not is_root(), reason="mknod needs root (CAP_MKNOD)")
def test_a_device_node_is_never_replaced(tmp_path):
    node = tmp_path / "mynull"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers: harmless to write
    with pytest.raises(GPT2Error, match="mynull: is a character device; only a regular file"):
        write_atomically(node, lambda out: out.write(b"PK zip"))
    assert stat.S_ISCHR(node.lstat().st_mode)


def test_a_fifo_is_refused_before_explain_computes_anything(tmp_path, tiny_model_dir):
    fifo = tmp_path / "out.npz"
    os.mkfifo(fifo)
    result = gpt2("explain", "ROMEO:", "--model", tiny_model_dir, "-n", "1", "--methods", "gradient", "-o", fifo)
    assert_user_error(result, "out.npz: is a named pipe (FIFO)")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_link_to_a_file_is_followed_and_kept(tmp_path):
    target = tmp_path / "target.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    write_atomically(link, lambda out: out.write(b"new"))
    assert link.is_symlink() and target.read_bytes() == b"new"


# ----------------------------------------------------------------------------------------------
# 2. Sizes from files and flags are checked before anything proportional to them is allocated.


def test_a_huge_n_layer_is_refused_before_its_parameter_list_is_built(small):
    edit_json(small / "config.json", n_layer=10**9)
    assert_user_error(gpt2("info", small), "config.json describes", "n_layer=1000000000", "bytes can hold")


def test_a_huge_batch_size_is_refused_naming_the_flag(tiny_model_dir):
    for size in ("1000000", "10000000000000000000000"):
        result = gpt2("generate", "hi", "--model", tiny_model_dir, "--batch-size", size, "-n", "3")
        assert_user_error(result, f"--batch-size={size}", "of memory")


def test_huge_num_beams_is_refused_naming_the_flag(tiny_model_dir):
    result = gpt2("generate", "hi", "--model", tiny_model_dir, "--num-beams", "99999999999999999999999", "-n", "3")
    assert_user_error(result, "--num-beams=99999999999999999999999", "of memory")


def test_a_text_file_larger_than_memory_allows_is_refused_while_it_is_read(tmp_path, tiny_model_dir):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(200 << 20)  # 200 MB of NUL bytes (a sparse file): valid UTF-8, far beyond the limit
    result = gpt2("perplexity", big, "--model", tiny_model_dir)
    assert_user_error(result, "big.txt: more than", "of text, more than memory allows to score")


def test_a_cache_beyond_memory_is_an_input_error(tiny_model):
    with pytest.raises(InputError, match=r"batch_size=1000000000000.*of memory"):
        tiny_model.new_cache(10**12)


# ----------------------------------------------------------------------------------------------
# 3. Writing output: one line and exit 2, or a quiet end for a closed pipe; never half a file.


def test_an_existing_directory_as_output_is_refused_before_the_work(tmp_path, tiny_model_dir):
    (tmp_path / "out").mkdir()
    result = gpt2(
        "explain", "hi", "--model", tiny_model_dir, "-n", "1", "--methods", "gradient", "-o", tmp_path / "out"
    )
    assert_user_error(result, "out: is a directory")


def test_a_full_disk_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "result.npz"
    path.write_bytes(b"the old result")
    with (
        file_size_limit(1 << 16),
        pytest.raises(GPT2Error, match=r"result\.npz: cannot write the file \(File too large\)"),
    ):
        write_atomically(path, lambda out: out.write(b"x" * (1 << 20)))
    assert path.read_bytes() == b"the old result"
    assert os.listdir(tmp_path) == ["result.npz"]  # no temporary file left behind


def test_a_name_too_long_for_the_file_system(tmp_path):
    with pytest.raises(GPT2Error, match=r"the file name is 300 bytes long, more than the \d+"):
        write_atomically(tmp_path / ("a" * 300), lambda out: out.write(b"x"))
    # and a name that fits, but not with a temporary suffix of the old kind, works
    assert write_atomically(tmp_path / ("b" * 250), lambda out: out.write(b"x")).read_bytes() == b"x"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_stdout_on_a_full_device(tmp_path):
    with open("/dev/full", "wb") as full:
        result = gpt2("tokenize", "Hello, world!", stdout=full)
    assert result.returncode == 2
    assert result.stderr == "gpt2: error: cannot write to stdout (No space left on device)\n"


def test_a_closed_stdout_is_refused_before_any_work():
    result = gpt2("tokenize", "Hello", preexec_fn=lambda: os.close(1), stdout=None)
    assert result.returncode == 2
    assert result.stderr.startswith("gpt2: error: stdout is closed") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["tokenize", "word " * 5000],
        ["generate", "ROMEO:", "-n", "30", "--seed", "1", "--stream"],
        ["generate", "ROMEO:", "-n", "30", "--seed", "1", "--json"],
        ["score", "To be, or not to be"],
    ],
)
def test_a_reader_that_went_away_ends_the_command_quietly(tiny_model_dir, args):
    """`gpt2 ... | head -c 10`: the pipe is closed before the command writes. Exit 141, as a shell
    reports a Unix tool that SIGPIPE ended, and nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    model = ["--model", tiny_model_dir] if args[0] != "tokenize" else []
    try:
        result = gpt2(*args, *model, stdout=write_end)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")


# ----------------------------------------------------------------------------------------------
# 4. Tokenizer and config files of the wrong type or structure: one line naming file and field.


def own_vocabulary(directory):
    """A model directory's own small vocabulary (the 256 bytes, two merges, <|endoftext|>)."""
    from engine.state.tokenizer import _byte_alphabet

    alphabet = _byte_alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet, key=alphabet.get))}
    vocab |= {"ab": 256, "abc": 257, "<|endoftext|>": 258}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\na b\nab c\n")
    return vocab


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda v: v.update({"ab": None}), "token 'ab' has id None, not an integer"),
        (lambda v: v.update({"ab": 1.5}), "token 'ab' has id 1.5, not an integer"),
        (lambda v: v.update({"ab": "256"}), "token 'ab' has id '256', not an integer"),
        (lambda v: v.update({"ab": 5}), "have the same id 5"),
        (lambda v: v.update({"abc": 900}), "the ids must be 0 to 258 with none missing; 257 is missing"),
        (lambda v: v.update({"xy": v.pop("z")}), "byte 0x7a ('z') is not a token"),
    ],
)
def test_bad_ids_in_vocab_json(tmp_path, change, message):
    from engine.state.tokenizer import load_tokenizer

    vocab = own_vocabulary(tmp_path)
    change(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(GPT2Error, match=re.escape(message)):
        load_tokenizer(tmp_path, vocab_size=50257).encode("abcab")


@pytest.mark.parametrize("name", ["config.json", "vocab.json", "merges.txt"])
def test_unreadable_files_of_the_model_directory(tmp_path, tiny_model_dir, name):
    directory = copy_model(tiny_model_dir, tmp_path / "model")
    (directory / name).chmod(0)
    result = gpt2("info", directory, preexec_fn=limit_memory_and_drop_root_reading)
    assert_user_error(result, f"{name}: cannot read the file (Permission denied)")


@pytest.mark.parametrize("name", ["config.json", "vocab.json", "model.safetensors.index.json"])
def test_deeply_nested_json(tmp_path, name):
    directory = write_checkpoint(tmp_path / "m", SMALL, shards=2 if "index" in name else 1)
    if name == "vocab.json":
        own_vocabulary(directory)
    (directory / name).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GPT2Error, match=f"{name}: .*nested too deeply"):
        GPT2.from_pretrained(directory)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"n_layer": 1.0}, "n_layer must be a positive integer, got 1.0"),
        ({"n_head": True}, "n_head must be a positive integer, got True"),
        ({"n_inner": True}, "n_inner must be a positive integer or null, got True"),
        ({"layer_norm_epsilon": True}, "layer_norm_epsilon must be a positive number"),
        ({"scale_attn_weights": "false"}, "scale_attn_weights must be true or false (a JSON boolean), got 'false'"),
        ({"tie_word_embeddings": "true"}, "tie_word_embeddings must be true or false"),
        ({"add_cross_attention": "false"}, "add_cross_attention must be true or false"),
        ({"layer_norm_epsilon": math.inf}, "layer_norm_epsilon must be a positive number that float32 can hold"),
        ({"layer_norm_epsilon": 1e39}, "layer_norm_epsilon must be a positive number that float32 can hold"),
        ({"eos_token_id": 10**6}, "eos_token_id must be a token id from 0 to vocab_size - 1 = 50256"),
        ({"bos_token_id": "50256"}, "bos_token_id must be a token id"),
        ({"activation_function": ["gelu_new"]}, "activation_function ['gelu_new'] is not supported"),
    ],
)
def test_config_fields_of_the_wrong_type_or_range(small, fields, message):
    edit_json(small / "config.json", **fields)  # json.dumps writes inf as Infinity, as some tools do
    with pytest.raises(GPT2Error, match=r"config\.json: " + re.escape(message)):
        GPT2.from_pretrained(small)


def test_config_json_that_is_not_an_object(small):
    (small / "config.json").write_text("[1, 2]")
    with pytest.raises(GPT2Error, match=r"config\.json: must hold a JSON object"):
        GPT2.from_pretrained(small)


def test_a_list_of_end_of_text_ids_as_the_schema_allows(tiny_model_dir, tiny_model, tmp_path):
    """Hugging Face's GPT2Config types eos_token_id as int | list[int]: every id in the list ends a
    sequence. The second id here is a token the greedy continuation reaches after a few others."""
    plain = tiny_model.generate("ROMEO:", max_new_tokens=30, temperature=0).token_ids
    stop_at = next(i for i in range(3, 30) if plain[i] not in plain[:i])
    directory = copy_model(tiny_model_dir, tmp_path / "model")
    edit_json(directory / "config.json", eos_token_id=[50256, plain[stop_at]])
    model = GPT2.from_pretrained(directory)
    assert model.config.eos_token_ids == (50256, plain[stop_at])
    result = model.generate("ROMEO:", max_new_tokens=30, temperature=0)
    assert result.finish_reason == "eos" and result.token_ids == plain[: stop_at + 1]
    assert json.loads(json.dumps(model.config.to_dict()))["eos_token_id"] == [50256, plain[stop_at]]


def test_the_schema_aliases_of_the_sizes(small):
    config = json.loads((small / "config.json").read_text())
    for name, alias in (("n_embd", "hidden_size"), ("n_layer", "num_hidden_layers"), ("n_head", "num_attention_heads")):
        config[alias] = config.pop(name)
    config["max_position_embeddings"] = config.pop("n_positions")
    del config["n_ctx"]
    (small / "config.json").write_text(json.dumps(config))
    assert GPT2.from_pretrained(small).config == SMALL


# ----------------------------------------------------------------------------------------------
# 5. An embedding with more rows than the tokenizer has tokens (nanoGPT's 50304).


@pytest.fixture(scope="module")
def padded_vocabulary(tmp_path_factory):
    """nanoGPT's layout: vocab_size 50304 and the GPT-2 tokenizer (50257). The padding rows are
    made the most likely next tokens (10 x the row of the real favourite), so that a generation
    that could pick them would."""
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=64, vocab_size=50304)
    params = random_parameters(config, seed=2)
    directory = write_checkpoint(tmp_path_factory.mktemp("padded"), config, params=params)
    prompt = GPT2.from_pretrained(directory).tokenizer.encode("ROMEO:")
    favourite = int(np.argmax(GPT2.from_pretrained(directory)(prompt)[-1, :50257]))
    params["wte.weight"][50257:] = 10 * params["wte.weight"][favourite]
    return write_checkpoint(directory, config, params=params)


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 0},
        {"temperature": 1.0, "seed": 3},
        {"temperature": 5.0, "top_k": 60000, "seed": 4},
        {"num_beams": 3},
    ],
)
def test_padding_ids_are_never_generated(padded_vocabulary, options):
    model = GPT2.from_pretrained(padded_vocabulary)
    assert int(np.argmax(model(model.tokenizer.encode("ROMEO:"))[-1])) >= 50257  # the trap is set
    result = model.generate("ROMEO:", max_new_tokens=20, **options)
    assert all(i < 50257 for i in result.token_ids) and len(result.token_ids) > 0


def test_an_end_id_the_tokenizer_does_not_have_is_refused_at_load(padded_vocabulary, tmp_path):
    directory = copy_model(padded_vocabulary, tmp_path / "model")
    edit_json(directory / "config.json", eos_token_id=50300)
    with pytest.raises(GPT2Error, match=r"eos_token_id=50300 is not a token of the tokenizer, which has 50257"):
        GPT2.from_pretrained(directory)


# ----------------------------------------------------------------------------------------------
# 6. Numbers at the edges of their types.


def test_a_top_k_beyond_any_integer_keeps_every_token(tiny_model):
    every = tiny_model.generate("ROMEO:", max_new_tokens=8, temperature=1.0, seed=7)
    huge = tiny_model.generate("ROMEO:", max_new_tokens=8, temperature=1.0, seed=7, top_k=10**30)
    assert huge.token_ids == every.token_ids


def test_a_huge_length_penalty_is_refused(tiny_model_dir):
    result = gpt2("generate", "hi", "--model", tiny_model_dir, "--num-beams", "2", "--length-penalty", "1e300")
    assert_user_error(result, "--length-penalty must be a number from -10 to 10, got 1e+300")


def test_a_temperature_too_small_for_float32_samples_the_greedy_choice(tiny_model):
    greedy = tiny_model.generate("ROMEO:", max_new_tokens=10, temperature=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings either
        for t in (1e-30, 1e-45, 1e-300):
            assert tiny_model.generate("ROMEO:", max_new_tokens=10, temperature=t, seed=1).token_ids == greedy.token_ids


def test_a_repetition_penalty_at_float32_edges_gives_no_nan(tiny_model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for penalty in (1e-45, 1e-300, 1e300):
            r = tiny_model.generate("ROMEO:", max_new_tokens=5, temperature=1.0, repetition_penalty=penalty, seed=1)
            assert len(r.token_ids) > 0 and all(math.isfinite(lp) for lp in r.logprobs)


@pytest.fixture
def nan_weights(small):
    params = random_parameters(SMALL, seed=1)
    params["h.0.mlp.c_fc.weight"][3, 5] = np.nan
    return write_checkpoint(small, SMALL, params=params)


@pytest.mark.parametrize("options", [{"temperature": 0}, {"temperature": 1.0, "seed": 1}, {"num_beams": 2}])
def test_nan_weights_are_an_error_not_nan_text(nan_weights, options):
    model = GPT2.from_pretrained(nan_weights)
    with pytest.raises(GPT2Error, match="logits for new token 1 are not finite"):
        model.generate([464, 3290], max_new_tokens=3, **options)
    with pytest.raises(GPT2Error, match="are not finite"):
        model.score([464, 3290, 286])


def test_nan_weights_on_the_command_line(nan_weights):
    assert_user_error(gpt2("generate", "The", "--model", nan_weights, "-n", "3", "--json"), "not finite")
    assert_user_error(gpt2("score", "The cat sat", "--model", nan_weights, "--json"), "not finite")


def reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def test_an_infinite_perplexity_is_null_in_json(small):
    params = random_parameters(SMALL, seed=1)
    params["wte.weight"] *= 3000  # logits thousands apart: log-probabilities far below -709
    write_checkpoint(small, SMALL, params=params)
    result = gpt2("perplexity", "-", "--model", small, "--json", stdin=b"The cat sat on the mat. " * 4)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout, parse_constant=reject_constant)
    assert facts["perplexity"] is None and facts["mean_nll"] > 709 and facts["files"][0]["perplexity"] is None


# ----------------------------------------------------------------------------------------------
# 8. The Python API raises InputError, not what NumPy, tiktoken or os raise.


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m(np.zeros((0, 5), dtype=np.int64)),  # an empty batch
        lambda m: m([[1, 2], [3]]),  # ragged rows
        lambda m: m([[1, 2]], left_padding=["a"]),
        lambda m: m.new_cache(1.5),
        lambda m: m.new_cache("2"),
        lambda m: m.new_cache(2, left_padding=[1, "x"]),
        lambda m: m([1, 2], cache="not a cache"),
        lambda m: m.tokenizer.decode([50257]),
        lambda m: m.tokenizer.decode([-1]),
        lambda m: m.tokenizer.decode(["a"]),
        lambda m: m.tokenizer.decode([[1, 2]]),
        lambda m: m.tokenizer.encode(b"bytes"),
        lambda m: m.generate("hi", max_new_tokens=2, capture=5),
        lambda m: m.score([[1, 2], [3]]),
    ],
)
def test_api_arguments_give_input_errors(tiny_model, call):
    with pytest.raises(InputError):
        call(tiny_model)


def test_a_cache_from_a_model_of_another_shape(tiny_model, small):
    other = GPT2.from_pretrained(small)
    with pytest.raises(InputError, match="the cache was made for a model of another shape"):
        tiny_model(np.array([1, 2]), cache=other.new_cache(1))


@pytest.mark.parametrize("name", [None, "", 3, b"gpt2"])
def test_from_pretrained_of_something_that_is_not_a_name(name):
    with pytest.raises(InputError, match="the model must be a directory path or a published name"):
        GPT2.from_pretrained(name)


def test_generating_text_with_a_lone_surrogate_is_refused_as_scoring_does(tiny_model):
    with pytest.raises(InputError, match="not valid Unicode"):
        tiny_model.generate("ROMEO\udc80", max_new_tokens=2)


# ----------------------------------------------------------------------------------------------
# 9. Messages that say what is wrong.


def test_unreadable_weights_are_not_reported_as_missing(tmp_path, tiny_model_dir):
    directory = copy_model(tiny_model_dir, tmp_path / "model")
    (directory / "model.safetensors").chmod(0)
    result = gpt2("info", directory, preexec_fn=limit_memory_and_drop_root_reading)
    assert_user_error(result, "model.safetensors: cannot read the file (Permission denied)")
    assert "No such file" not in result.stderr


def test_a_dangling_link_or_a_directory_named_like_the_weights(small):
    (small / "model.safetensors").unlink()
    (small / "model.safetensors").symlink_to(small / "gone.safetensors")
    assert_user_error(gpt2("info", small), "model.safetensors: is a symbolic link to", "which does not exist")
    (small / "model.safetensors").unlink()
    (small / "model.safetensors").mkdir()
    assert_user_error(gpt2("info", small), "model.safetensors: is a directory, not a file")


def test_a_fifo_in_the_model_directory_is_refused_not_waited_on(small):
    (small / "config.json").unlink()
    os.mkfifo(small / "config.json")  # reading it would wait for a writer for ever
    assert_user_error(gpt2("info", small, timeout=60), "config.json: is a named pipe (FIFO), not a file")


def test_a_symlink_loop_is_not_an_unknown_model(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert_user_error(gpt2("info", "loop", cwd=tmp_path), "loop: is a symbolic link that loops")


def test_score_with_stdin_closed(tiny_model_dir):
    result = gpt2("score", "--model", tiny_model_dir, stdin=None, preexec_fn=lambda: os.close(0))
    assert_user_error(result, "-: cannot read the file (stdin is closed)")


def test_ctrl_c_while_loading_says_interrupted(monkeypatch, capsys):
    from engine import cli

    def interrupted(name, dtype=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.info, "load_model", interrupted)
    assert cli.main(["info", "anything"]) == 130
    assert capsys.readouterr().err == "gpt2: interrupted\n"


def test_tokenize_refuses_invalid_utf8_as_generate_does():
    assert_user_error(gpt2("tokenize", b"caf\xe9"), "TEXT: not valid UTF-8 (byte 0xe9 at offset 3)")


# ----------------------------------------------------------------------------------------------
# Found by the fuzzers (and while reading the code for them), beyond the list.


def test_ragged_ids_for_the_captures_and_the_analyses(tiny_model):
    for call in (
        lambda: tiny_model.run_with_cache([[1, 2], [3]]),
        lambda: tiny_model.run_with_hooks([[1, 2], [3]]),
        lambda: tiny_model.logit_lens([[1, 2], [3]]),
    ):
        with pytest.raises(InputError, match="rows of equal length"):
            call()


def test_stop_strings_given_as_an_empty_array(tiny_model):
    result = tiny_model.generate("ROMEO:", max_new_tokens=3, stop=np.array([], dtype=str))
    assert len(result.token_ids) == 3
    with pytest.raises(InputError, match="stop must be non-empty strings"):
        tiny_model.generate("ROMEO:", max_new_tokens=3, stop=np.array([1, 2]))


def test_a_batch_holding_a_0_d_array(tiny_model):
    with pytest.raises(InputError, match="the prompt must be a string"):
        tiny_model.generate([np.array(0), None], max_new_tokens=2)


def test_error_messages_about_arrays_stay_on_one_line(tiny_model):
    with pytest.raises(InputError) as caught:
        tiny_model.run_with_cache([1, 2], names=[(None, np.array([[0], [0]]))])
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError) as caught:
        tiny_model.run_with_hooks([1, 2], fwd_hooks=[np.zeros((3, 1))])
    assert "\n" not in str(caught.value)


def test_a_vocabulary_without_end_of_text(tmp_path):
    from engine.state.tokenizer import load_tokenizer

    vocab = own_vocabulary(tmp_path)
    del vocab["<|endoftext|>"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = load_tokenizer(tmp_path, vocab_size=300)
    assert tokenizer.eot_token is None and tokenizer.decode(tokenizer.encode("abc")) == "abc"


def test_a_shard_outside_the_model_directory_is_not_read(tmp_path):
    directory = write_checkpoint(tmp_path / "m", SMALL, shards=2)
    (directory / "model-00002-of-00002.safetensors").rename(tmp_path / "outside.safetensors")
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    index["weight_map"] = {
        name: "../outside.safetensors" if shard.startswith("model-00002") else shard
        for name, shard in index["weight_map"].items()
    }
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(GPT2Error, match=r"'\.\./outside\.safetensors', not a file name inside the model directory"):
        GPT2.from_pretrained(directory)


def test_options_that_rule_out_every_token(tmp_path):
    """A vocabulary of 259 tokens and no_repeat_ngram_size=1: after 259 new tokens none is left."""
    config = GPT2Config(
        n_layer=1, n_head=2, n_embd=8, n_positions=400, vocab_size=259, bos_token_id=258, eos_token_id=258
    )
    directory = write_checkpoint(tmp_path / "m", config, seed=1)
    own_vocabulary(directory)
    model = GPT2.from_pretrained(directory)
    for options in ({"temperature": 0}, {"temperature": 1.0, "seed": 1}):
        with pytest.raises(InputError, match="the options rule out every token"):
            model.generate([1], max_new_tokens=300, no_repeat_ngram_size=1, stop_at_eos=False, **options)


def test_the_errors_page_states_the_limits_of_the_code():
    """docs/errors.md's tables say what the code does: its limits, exit statuses and fuzzers."""
    from conftest import REPO

    from engine.base.config import CONFIG_JSON_LIMIT
    from engine.cli import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USER_ERROR
    from engine.cli.common import MEMORY_PER_TEXT_BYTE
    from engine.generation.options import MAX_LENGTH_PENALTY
    from engine.state.loader import INDEX_JSON_LIMIT
    from engine.state.tokenizer import TOKENIZER_FILE_LIMIT

    page = (REPO / "docs" / "errors.md").read_text()
    assert f"| config.json | {CONFIG_JSON_LIMIT >> 20} MiB |" in page
    assert INDEX_JSON_LIMIT == TOKENIZER_FILE_LIMIT
    assert f"| vocab.json, merges.txt, model.safetensors.index.json | {TOKENIZER_FILE_LIMIT >> 20} MiB each |" in page
    assert f"from -{MAX_LENGTH_PENALTY} to {MAX_LENGTH_PENALTY}" in page
    assert f"{MEMORY_PER_TEXT_BYTE} bytes of memory per byte" in page
    for status in (EXIT_USER_ERROR, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE):
        assert f"\n| {status} | " in page
    for name in re.findall(r"`(tests/test_\w+\.py)`", page):
        assert (REPO / name).exists(), name
