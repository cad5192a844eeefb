"""`gpt2 generate` as a user runs it (a fresh process each time): options, output forms, every
user error (exit status 2, one line, no traceback), and Ctrl-C."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO
from test_cli import assert_user_error
from test_hub import fake_hub_cache

from engine import cli
from engine.base.config import GPT2Config
from engine.state.synthetic import write_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread while the module runs (conftest.py)


def gpt2(*args, stdin=None, env=None, **popen):
    """Run the command in a fresh process, with one thread (faster on a loaded machine)."""
    full_env = os.environ | {"HF_HUB_OFFLINE": "1", "GPT2_ENGINE_THREADS": "1"} | (env or {})
    feed = {"input": stdin} if isinstance(stdin, (str, bytes)) else {"stdin": stdin}  # data, or a file
    return subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        capture_output=True,
        cwd=REPO,
        env=full_env,
        timeout=300,
        **feed,
        **popen,
    )


def as_text(result):
    """A CompletedProcess run in binary mode, with stdout and stderr decoded."""
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


def json_lines(result):
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_options_reach_the_api(tiny_model_dir, tiny_model):
    args = [
        "generate",
        "KING:",
        "-m",
        tiny_model_dir,
        "-n",
        "20",
        "--seed",
        "4",
        "-t",
        "0.8",
        "--top-k",
        "40",
        "--top-p",
        "0.9",
        "--repetition-penalty",
        "1.2",
        "--no-repeat-ngram-size",
        "3",
        "--stop",
        "\n\n",
        "--stop",
        "lord",
        "--json",
    ]
    (out,) = json_lines(gpt2(*args, text=True))
    expected = tiny_model.generate(
        "KING:",
        max_new_tokens=20,
        seed=4,
        temperature=0.8,
        top_k=40,
        top_p=0.9,
        repetition_penalty=1.2,
        no_repeat_ngram_size=3,
        stop=["\n\n", "lord"],
    )
    assert out == expected.to_dict()


def test_batch_size_gives_that_many_samples(tiny_model_dir, tiny_model):
    lines = json_lines(
        gpt2("generate", "ROMEO:", "-m", tiny_model_dir, "-n", "8", "--seed", "2", "-b", "3", "--json", text=True)
    )
    expected = tiny_model.generate("ROMEO:", max_new_tokens=8, temperature=1.0, seed=2, num_return_sequences=3)
    assert lines == [r.to_dict() for r in expected]
    plain = gpt2("generate", "ROMEO:", "-m", tiny_model_dir, "-n", "8", "--seed", "2", "-b", "3", text=True)
    assert plain.stdout.count("--- ") == 3 and plain.stdout.count("ROMEO:") == 3
    assert ("ROMEO:" + expected[1].text) in plain.stdout


def test_beams(tiny_model_dir, tiny_model):
    lines = json_lines(
        gpt2(
            "generate",
            "ROMEO:",
            "-m",
            tiny_model_dir,
            "-n",
            "10",
            "--num-beams",
            "3",
            "-b",
            "2",
            "--length-penalty",
            "0.5",
            "--early-stopping",
            "never",
            "--stop-id",
            "198",
            "--json",
            text=True,
        )
    )
    expected = tiny_model.generate(
        "ROMEO:",
        max_new_tokens=10,
        num_beams=3,
        num_return_sequences=2,
        length_penalty=0.5,
        early_stopping="never",
        stop_token_ids=[198],
    )
    assert lines == [r.to_dict() for r in expected] and "score" in lines[0]


def test_streamed_and_plain_output_are_the_same(tiny_model_dir, tiny_model):
    args = ["generate", "ROMEO:", "-m", tiny_model_dir, "-n", "30", "--seed", "7", "--stop", "\n\n"]
    streamed, plain = gpt2(*args, "--stream"), gpt2(*args, "--no-stream")
    assert streamed.returncode == plain.returncode == 0
    assert streamed.stdout == plain.stdout  # bytes: prompt + text + newline
    expected = tiny_model.generate("ROMEO:", max_new_tokens=30, temperature=1.0, seed=7, stop="\n\n")  # the default
    assert streamed.stdout.decode() == "ROMEO:" + expected.text + "\n"


def test_unicode_prompt_from_stdin_and_argument(tiny_model_dir):
    prompt = "Señor 👍🏽 ñ"
    a = gpt2("generate", "-m", tiny_model_dir, "-n", "5", "-t", "0", "--json", stdin=prompt.encode())
    b = gpt2("generate", prompt, "-m", tiny_model_dir, "-n", "5", "-t", "0", "--json")
    assert a.returncode == 0 and json.loads(a.stdout) == json.loads(b.stdout)


def test_empty_prompt_with_bos_and_ignore_eos(tiny_model_dir, tiny_model):
    (out,) = json_lines(
        gpt2("generate", "", "--bos", "--ignore-eos", "-m", tiny_model_dir, "-n", "6", "-t", "0", "--json", text=True)
    )
    assert (
        out["token_ids"] == tiny_model.generate([50256], max_new_tokens=6, temperature=0, stop_at_eos=False).token_ids
    )


def test_r_style_model_names(tmp_path):
    fake_hub_cache(tmp_path, "openai-community/gpt2-medium")
    result = gpt2("info", "355M", "--json", env={"HF_HUB_CACHE": str(tmp_path)}, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_embd"] == 16  # the fake checkpoint's width
    assert_user_error(
        gpt2("info", "1558M", env={"HF_HUB_CACHE": str(tmp_path)}, text=True), "model 'gpt2-xl' is not downloaded"
    )


# ----------------------------------------------------------------------------------------------
# User errors: exit status 2, one line naming the problem


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--model", "gpt3"], ["unknown model 'gpt3'", "124M"]),
        (["--temperature", "-0.1"], ["--temperature must be a number >= 0", "-0.1"]),
        (["--top-p", "0"], ["--top-p must be in (0, 1]", "0.0"]),
        (["--top-p", "1.5"], ["--top-p must be in (0, 1]", "1.5"]),
        (["--top-k", "0"], ["--top-k must be an integer >= 1", "got 0"]),
        (["--max-new-tokens", "0"], ["--max-new-tokens must be an integer >= 1"]),
        (["--max-new-tokens", "300"], ["--max-new-tokens=300 would pass the context of 256 tokens", "at most 253"]),
        (["--repetition-penalty", "0"], ["--repetition-penalty must be a number > 0"]),
        (["--seed", "-3"], ["--seed must be an integer >= 0"]),
        (["--batch-size", "0"], ["--batch-size must be an integer >= 1"]),
        (["--batch-size", "2", "-t", "0"], ["--batch-size > 1 needs sampling (--temperature > 0)"]),
        (["--num-beams", "2", "-t", "0.7"], ["beam search is deterministic", "--temperature"]),
        (["--num-beams", "2", "--top-k", "5"], ["--top-k applies to sampling"]),
        (["--num-beams", "2", "-b", "3"], ["--batch-size=3 is more than --num-beams=2"]),
        (["-t", "0", "--top-p", "0.5"], ["--top-p applies to sampling: give --temperature > 0"]),
        (["--stop", ""], ["--stop must be non-empty strings"]),
        (["--stop-id", "60000"], ["--stop-id: token id 60000 is out of range"]),
        (["--threads", "0"], ["threads must be an integer from 1"]),
    ],
)
def test_bad_options(tiny_model_dir, args, fragments):
    assert_user_error(gpt2("generate", "ROMEO:", "-m", tiny_model_dir, *args, text=True), *fragments)


def test_prompt_longer_than_the_context(tiny_model_dir):
    assert_user_error(
        gpt2("generate", " word" * 300, "-m", tiny_model_dir, text=True),
        "the prompt has 300 tokens, more than the model's context of 256 tokens",
    )


def test_empty_prompt_without_bos(tiny_model_dir):
    assert_user_error(gpt2("generate", "", "-m", tiny_model_dir, text=True), "the prompt is empty", "--bos")
    assert_user_error(gpt2("generate", "-m", tiny_model_dir, stdin="", text=True), "the prompt is empty")


def test_unreadable_stdin(tiny_model_dir, tmp_path):
    assert_user_error(
        as_text(gpt2("generate", "-m", tiny_model_dir, stdin=b"KING \xff\xfe")),
        "the prompt on stdin: not valid UTF-8 (byte 0xff at offset 5)",
    )
    with open(tmp_path / "write-only", "wb") as write_only:  # a descriptor that cannot be read
        assert_user_error(
            gpt2("generate", "-m", tiny_model_dir, stdin=write_only, text=True),
            "cannot read the prompt from stdin",
            "Bad file descriptor",
        )
    closed = gpt2("generate", "-m", tiny_model_dir, stdin=None, preexec_fn=lambda: os.close(0), text=True)
    assert_user_error(closed, "cannot read the prompt from stdin (it is closed)")


# ----------------------------------------------------------------------------------------------
# Ctrl-C


@pytest.fixture(scope="module")
def long_context_dir(tmp_path_factory):
    """A synthetic model with a 1024-token context: a long generation that Ctrl-C can interrupt. Wide
    enough (~5 ms a token) that 1000 tokens outlast a test process starved of CPU by other work
    (with 64 wide, the generation once finished before the signal arrived)."""
    config = GPT2Config(n_layer=4, n_head=4, n_embd=256, n_positions=1024)
    return write_checkpoint(tmp_path_factory.mktemp("long-context"), config, seed=3)


def test_ctrl_c_while_streaming_stops_cleanly_and_keeps_the_text(long_context_dir):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "GPT2_ENGINE_THREADS": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine",
            "generate",
            "Hello",
            "-m",
            str(long_context_dir),
            "-n",
            "1000",
            "--ignore-eos",
            "--seed",
            "1",
            "--stream",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    first = process.stdout.read(12)  # the prompt and the first pieces: generation is under way
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=120)
    out = (first + rest).decode()
    assert process.returncode == 130
    assert err.decode() == "gpt2: interrupted\n"
    assert out.startswith("Hello") and out.endswith("\n") and len(out) > len("Hello\n")


class InterruptedModel:
    """The tiny model, but Ctrl-C arrives during its (after + 1)-th forward pass."""

    def __init__(self, model, after):
        self.model, self.after, self.calls = model, after, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.model(*args, **kwargs)


@pytest.mark.parametrize("extra", [["--json"], ["--no-stream"], ["--stream"], ["--num-beams", "2", "--json"]])
def test_ctrl_c_prints_what_was_generated(tiny_model, tiny_model_dir, monkeypatch, capsys, extra):
    monkeypatch.setattr(cli.generate, "load_model", lambda name, dtype=None: InterruptedModel(tiny_model, after=5))
    status = cli.main(["generate", "ROMEO:", "-m", str(tiny_model_dir), "-n", "40", "-t", "0", *extra])
    out, err = capsys.readouterr()
    assert status == 130 and err == "gpt2: interrupted\n"
    expected = tiny_model.generate("ROMEO:", max_new_tokens=40, temperature=0)
    if "--num-beams" in extra:  # the best running beam so far, 5 tokens
        (line,) = out.splitlines()
        assert json.loads(line)["finish_reason"] == "interrupted" and len(json.loads(line)["token_ids"]) == 5
    elif "--json" in extra:
        result = json.loads(out)  # the prefill and 4 steps ran: 5 tokens
        assert result["finish_reason"] == "interrupted" and result["token_ids"] == expected.token_ids[:5]
        assert result["text"] == tiny_model.tokenizer.decode(expected.token_ids[:5])
    else:
        assert out == "ROMEO:" + tiny_model.tokenizer.decode(expected.token_ids[:5]) + "\n"
