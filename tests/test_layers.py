"""The layers of docs/architecture.md hold: import-linter's contracts in pyproject.toml pass on the
code, and fail on a copy of it with an upward import or an import cycle put in."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO


def lint_imports(root) -> subprocess.CompletedProcess:
    """import-linter on the packages under `root`, with the project's contracts."""
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    env = os.environ | {"PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", command, "--config", str(root / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=300,
    )


def test_the_code_keeps_every_contract():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.fixture
def copy_of_the_code(tmp_path):
    for name in ("engine", "kernels"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(path, statement: str) -> None:
    text = path.read_text()
    marker = "from __future__ import annotations\n"
    assert marker in text
    path.write_text(text.replace(marker, marker + statement + "\n", 1))


def test_an_upward_import_breaks_the_layers(copy_of_the_code):
    add_import(copy_of_the_code / "engine" / "model.py", "from .gpt2 import GPT2  # noqa")  # the facade, from below
    result = lint_imports(copy_of_the_code)
    assert result.returncode != 0
    assert "engine: imports point down the layers BROKEN" in result.stdout
    assert "engine.model -> engine.gpt2" in result.stdout


def test_a_cycle_between_siblings_breaks_a_contract(copy_of_the_code):
    # text.py is below api.py (api -> token_search -> text); text importing api closes a circle
    add_import(copy_of_the_code / "engine" / "generation" / "text.py", "from . import api  # noqa")
    result = lint_imports(copy_of_the_code)
    assert result.returncode != 0
    assert "no import cycles between sibling modules BROKEN" in result.stdout


def test_kernels_may_not_import_the_engine(copy_of_the_code):
    path = copy_of_the_code / "kernels" / "linear.py"
    path.write_text(
        path.read_text().replace("import numba\n", "import numba\n\nimport engine.base.errors  # noqa\n", 1)
    )
    result = lint_imports(copy_of_the_code)
    assert result.returncode != 0
    assert "kernels: below the engine, never importing it BROKEN" in result.stdout
