"""Shared by the batch tests (tests/test_batch.py, tests/test_batch_ray.py): the rows, running the
command, reading its output."""

import json
import os
import subprocess
import sys

from conftest import REPO, shared_path

ENV = {"HF_HUB_OFFLINE": "1", "GPT2_ENGINE_THREADS": "1", "PYTHONPATH": str(REPO)}
PROMPTS = ["ROMEO:", "JULIET:", "KING HENRY:", "First Citizen:", "O, ", "MIRANDA:\nWhat", "The ", "PROSPERO:"]
GENERATE_FLAGS = ("--max-new-tokens", 20, "--temperature", 0.9)


def gpt2_batch(*args):
    """`gpt2 batch ...` in a fresh process, as a user runs it (stdin, stdout and stderr not terminals)."""
    return subprocess.run(
        [sys.executable, "-m", "engine", "batch", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ | ENV,
        timeout=600,
    )


def write_rows(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def strict_json(line: str) -> dict:
    """A line parsed as JSON proper: NaN, Infinity and -Infinity are refused."""

    def refuse(name):
        raise AssertionError(f"{name} in an output line")

    return json.loads(line, parse_constant=refuse)


def read_lines(path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [strict_json(line) for line in data.decode("utf-8").splitlines()]


def tempest_rows() -> list[dict]:
    """Rows to score: the first 30 paragraphs of the held-out Tempest, ids alternating numbers and
    strings, a few with options of their own."""
    text = shared_path("corpora/heldout_tempest.txt").read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 20][:30]
    rows = [{"id": f"p{i}" if i % 2 else i, "text": p} for i, p in enumerate(paragraphs)]
    rows[3]["stride"] = 16
    rows[4] |= {"context": 64, "bos": True}
    rows[5]["logprobs"] = False
    return rows


def prompt_rows() -> list[dict]:
    """Rows to generate from: 20 prompts, several with options of their own."""
    rows = [{"id": f"g{i}", "prompt": PROMPTS[i % len(PROMPTS)]} for i in range(20)]
    rows[1] |= {"temperature": 0}
    rows[2] |= {"top_k": 5, "max_new_tokens": 12}
    rows[3] |= {"stop": ["\n"], "top_p": 0.9}
    rows[4] |= {"seed": 7}
    rows[5] |= {"num_beams": 2, "temperature": 0, "max_new_tokens": 8}
    rows[6] |= {"repetition_penalty": 1.3, "stop_token_ids": [198]}
    rows[7]["prompt"] = [464, 3290, 286]  # token ids
    rows[8] |= {"id": 12}  # a number
    return rows


def broken_model(model_dir, folder):
    """A copy of a model whose config and tokenizer read fine (the driver checks rows with them) but
    whose weights are cut short: only a worker, loading the weights, finds out."""
    import shutil

    folder.mkdir()
    for name in ("config.json", "vocab.json", "merges.txt"):
        shutil.copy(model_dir / name, folder / name)
    (folder / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes()[:100_000])
    return folder
