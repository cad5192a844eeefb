"""README.md stays true: its set-up commands are the ones CI runs."""

import re

from conftest import REPO


def set_up_commands():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_opens_with_the_two_set_up_commands():
    install_and_run, install_and_test = set_up_commands()[:2]
    assert install_and_run.startswith("python -m pip install -e . && gpt2 generate")
    assert install_and_test == 'python -m pip install -e ".[test]" && python -m pytest'


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert set_up_commands()[1] in ci.splitlines()


def test_test_extra_pins_torch_exactly():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject
    assert re.search(r'"torch[<>~!]', pyproject) is None
