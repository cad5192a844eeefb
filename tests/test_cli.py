"""The `gpt2` command: info, tokenize, generate; user errors exit 2 with one line and no traceback."""

import json
import os
import subprocess
import sys

from conftest import REPO


def gpt2(*args, stdin=None, env=None):
    """Run the command as a user would (a fresh process); returns the CompletedProcess."""
    full_env = os.environ | {"HF_HUB_OFFLINE": "1"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=full_env,
        timeout=300,
    )


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpt2: error:"), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_info(tiny_model_dir):
    result = gpt2("info", tiny_model_dir, "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert (facts["n_layer"], facts["n_head"], facts["n_embd"], facts["n_ctx"]) == (4, 4, 128, 256)
    assert facts["parameters"] == 7_259_008  # the model card's count
    assert facts["stored_dtypes"] == {"F32": 52}
    assert facts["file_bytes"] == (tiny_model_dir / "model.safetensors").stat().st_size
    text = gpt2("info", tiny_model_dir).stdout
    assert "7,259,008" in text and "4 layers" in text


def test_tokenize():
    result = gpt2("tokenize", "Hello, world!", "--json")
    assert json.loads(result.stdout) == {"ids": [15496, 11, 995, 0], "pieces": ["Hello", ",", " world", "!"]}


def test_generate_greedy_matches_the_api(tiny_model_dir, tiny_model):
    result = gpt2(
        "generate", "ROMEO:", "--model", tiny_model_dir, "--max-new-tokens", "12", "--temperature", "0", "--json"
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    expected = tiny_model.generate("ROMEO:", max_new_tokens=12, temperature=0)
    assert out["token_ids"] == expected.token_ids and out["text"] == expected.text
    assert len(out["token_ids"]) == 12 and out["finish_reason"] == "length"


def test_generate_reads_the_prompt_from_stdin(tiny_model_dir):
    a = gpt2("generate", "--model", tiny_model_dir, "-n", "5", "--seed", "1", "--json", stdin="KING:")
    b = gpt2("generate", "KING:", "--model", tiny_model_dir, "-n", "5", "--seed", "1", "--json")
    assert a.returncode == 0 and json.loads(a.stdout) == json.loads(b.stdout)


def test_bad_model_directory(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert_user_error(gpt2("info", tmp_path), "model.safetensors")


def test_unknown_model():
    assert_user_error(gpt2("generate", "hi", "--model", "gpt3"), "unknown model 'gpt3'")


def test_model_not_downloaded_offline(tmp_path):
    result = gpt2("info", "gpt2-xl", env={"HF_HUB_CACHE": str(tmp_path)})
    assert_user_error(result, "gpt2-xl", str(tmp_path), "local model directory")


def test_prompt_too_long_for_the_context(tiny_model_dir):
    assert_user_error(gpt2("generate", "word " * 300, "--model", tiny_model_dir), "context of 256 tokens")
