"""`gpt2 perplexity` and `gpt2 score`, run as a user would (a fresh process each)."""

import json
import math

import numpy as np
import pytest
from conftest import shared_path
from test_cli import assert_user_error, gpt2

TEXT = "To be, or not to be: that is the question."


@pytest.fixture(scope="module")
def tempest_parts(tmp_path_factory):
    """Two files: the first 4,000 and the last 3,000 characters of the Tempest."""
    text = shared_path("corpora/heldout_tempest.txt").read_text(encoding="utf-8")
    folder = tmp_path_factory.mktemp("texts")
    (folder / "head.txt").write_text(text[:4000], encoding="utf-8")
    (folder / "tail.txt").write_text(text[-3000:], encoding="utf-8")
    return folder / "head.txt", folder / "tail.txt"


def test_perplexity_of_several_files(tiny_model_dir, tiny_model, tempest_parts):
    result = gpt2(
        "perplexity",
        *tempest_parts,
        "--model",
        tiny_model_dir,
        "--context",
        128,
        "--stride",
        32,
        "--batch-size",
        3,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    out = json.loads(result.stdout)
    assert (out["context"], out["stride"], out["bos"]) == (128, 32, False)
    for path, entry in zip(tempest_parts, out["files"]):
        s = tiny_model.score(path.read_text(encoding="utf-8"), context=128, stride=32)
        assert entry["file"] == str(path)
        assert entry["tokens"] == s.count == entry["text_tokens"] - 1
        assert entry["windows"] == len(s.windows)
        assert entry["mean_nll"] == pytest.approx(s.mean_nll, rel=1e-6)
        assert entry["perplexity"] == pytest.approx(math.exp(entry["mean_nll"]), rel=1e-12)
    # The combined figure is per token over both files, not the mean of the two perplexities.
    total = sum(entry["total_nll"] for entry in out["files"])
    tokens = sum(entry["tokens"] for entry in out["files"])
    assert out["tokens"] == tokens and out["mean_nll"] == pytest.approx(total / tokens, rel=1e-12)
    assert out["perplexity"] == pytest.approx(math.exp(total / tokens), rel=1e-12)

    plain = gpt2("perplexity", *tempest_parts, "--model", tiny_model_dir, "--context", 128, "--stride", 32)
    lines = plain.stdout.splitlines()
    assert len(lines) == 3 and lines[2].startswith("combined: ")
    assert f"perplexity {out['files'][0]['perplexity']:.2f}, mean NLL {out['files'][0]['mean_nll']:.6f}" in lines[0]
    assert f"{out['tokens']:,} scored tokens" in lines[2]


def test_perplexity_reads_stdin_and_takes_bos(tiny_model_dir, tiny_model):
    result = gpt2("perplexity", "-", "--model", tiny_model_dir, "--bos", "--json", stdin=TEXT)
    out = json.loads(result.stdout)
    s = tiny_model.score(TEXT, bos=True)
    assert out["tokens"] == s.count == len(tiny_model.tokenizer.encode(TEXT))
    assert out["mean_nll"] == pytest.approx(s.mean_nll, rel=1e-6) and out["bos"] is True


def test_score_lists_every_token(tiny_model_dir, tiny_model):
    result = gpt2("score", TEXT, "--model", tiny_model_dir, "--context", 4, "--stride", 2, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    s = tiny_model.score(TEXT, context=4, stride=2)
    assert out["token_ids"] == s.token_ids.tolist()
    assert "".join(out["pieces"]) == TEXT
    assert out["logprobs"][0] is None and out["window"][0] is None
    np.testing.assert_allclose(out["logprobs"][1:], s.logprobs[1:], rtol=1e-6)
    assert out["window"][1:] == s.window[1:].tolist()
    assert out["windows"] == [[w.begin, w.end, w.first_scored] for w in s.windows]
    assert out["tokens"] == s.count == len(s.token_ids) - 1

    table = gpt2("score", TEXT, "--model", tiny_model_dir, "--context", 4, "--stride", 2).stdout.splitlines()
    assert table[0].split() == ["pos", "id", "piece", "logprob", "window", "seen"]
    assert table[1].split() == ["0", str(s.token_ids[0]), "'To'", "-", "-", "-"]
    # token 4 (' not') is the first one window 1 ([2, 6)) adds; it sees tokens 2 and 3 before it
    assert table[5].split() == ["4", "407", "'", "not'", f"{s.logprobs[4]:.4f}", "1", "2"]
    assert table[-1] == (
        f"{s.count} of {len(s.token_ids)} tokens scored: total NLL {s.total_nll:.4f}, "
        f"mean NLL {s.mean_nll:.6f}, perplexity {s.perplexity:.2f}"
    )


def test_score_reads_stdin(tiny_model_dir):
    a = gpt2("score", "--model", tiny_model_dir, "--json", stdin=TEXT)
    b = gpt2("score", TEXT, "--model", tiny_model_dir, "--json")
    assert a.returncode == 0 and json.loads(a.stdout) == json.loads(b.stdout)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["score", "Hello"], ["1 token long", "--bos"]),
        (["score", ""], ["0 tokens long"]),
        (["score", TEXT, "--stride", 0], ["--stride must be an integer from 1 to the context (256), got 0"]),
        (["score", TEXT, "--context", 8, "--stride", 9], ["--stride", "from 1 to the context (8), got 9"]),
        (["score", TEXT, "--context", 0], ["--context must be an integer from 2 to n_positions=256, got 0"]),
        (["score", TEXT, "--context", 257], ["--context", "n_positions=256, got 257"]),
        (["score", TEXT, "--batch-size", 0], ["--batch-size must be an integer >= 1, got 0"]),
        (["perplexity", "/nonexistent/text.txt"], ["/nonexistent/text.txt: cannot read the file"]),
    ],
)
def test_bad_arguments(tiny_model_dir, args, fragments):
    assert_user_error(gpt2(*args, "--model", tiny_model_dir), *fragments)


def test_bad_files(tiny_model_dir, tmp_path):
    empty, one_token, not_utf8 = tmp_path / "empty.txt", tmp_path / "one.txt", tmp_path / "latin1.txt"
    empty.write_bytes(b"")
    one_token.write_text("Hello")
    not_utf8.write_bytes("Prospero, duc de Milan, à Naples\n".encode("latin-1"))
    good = tmp_path / "good.txt"
    good.write_text(TEXT)
    assert_user_error(gpt2("perplexity", good, empty, "--model", tiny_model_dir), f"{empty}: the file is empty")
    assert_user_error(
        gpt2("perplexity", one_token, "--model", tiny_model_dir), f"{one_token}: the text is 1 token long"
    )
    assert_user_error(
        gpt2("perplexity", not_utf8, "--model", tiny_model_dir), f"{not_utf8}: not valid UTF-8 (byte 0xe0 at offset 24)"
    )
    assert_user_error(gpt2("perplexity", tmp_path, "--model", tiny_model_dir), f"{tmp_path}: cannot read the file")
    assert_user_error(gpt2("perplexity", "-", "--model", tiny_model_dir, stdin=""), "-: the file is empty")


def test_text_argument_that_is_not_utf8(tiny_model_dir):
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run(
        [sys.executable, "-m", "engine", "score", b"caf\xe9 au lait", "--model", str(tiny_model_dir)],
        capture_output=True,
        cwd=REPO,
        timeout=300,
    )
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    assert_user_error(result, "TEXT: not valid UTF-8 (byte 0xe9 at offset 3)")
