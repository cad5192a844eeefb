"""docs/generation.md: its examples run and check themselves, and its table of options lists every
option of model.generate() and every flag of `gpt2 generate`."""

import dataclasses
import os
import re
import subprocess

import pytest
from conftest import REPO

from engine.cli import build_parser
from engine.generation import GenerationOptions

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread while the module runs (conftest.py)


def section() -> str:
    return (REPO / "docs" / "generation.md").read_text()


def test_the_python_examples_run_and_check_themselves(tiny_model_dir, monkeypatch):
    blocks = re.findall(r"```python\n(.+?)\n```", section(), flags=re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(REPO)  # the examples name ../shared/models/shakespeare-gpt2-tiny
    namespace = {}
    for block in blocks:
        exec(compile(block, "docs/generation.md", "exec"), namespace)  # each example asserts its own results


def test_the_command_examples_run(tiny_model_dir):
    commands = re.findall(r"```bash\n(.+?)\n```", section().split("\n## The command", 1)[1], flags=re.S)[0]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "GPT2_ENGINE_THREADS": "1", "PYTHONPATH": str(REPO)}
    for line in commands.splitlines():
        result = subprocess.run(
            ["bash", "-c", line.replace("gpt2 generate", "python -m engine generate")],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=300,
        )
        assert result.returncode == 0 and result.stdout.strip(), (line, result.stderr)


def test_the_options_table_lists_every_option_and_flag():
    table = section().split("\n## The options beside Hugging Face and R", 1)[1]
    for option in dataclasses.fields(GenerationOptions):
        assert f"`{option.name}" in table, option.name
    generate = build_parser()._subparsers._group_actions[0].choices["generate"]
    for action in generate._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in ("--help", "--json"):
                assert f"`{flag}" in table, flag
