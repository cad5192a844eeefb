"""README.md stays true: its set-up commands are the ones CI runs, its Python example runs, and it
stays a short front door whose links lead somewhere."""

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


def test_readme_is_a_short_front_door_whose_links_exist():
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode("utf-8")) <= 12_500
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not link.startswith("http")]
    assert len(local) >= 8
    for link in local:
        assert (REPO / link).exists(), link


def test_readme_python_example_runs(tiny_model_dir, tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    block = re.findall(r"```python\n(.+?)\n```", readme, flags=re.S)[0]
    page = tmp_path / "romeo.html"
    assert '"romeo.html"' in block
    monkeypatch.chdir(REPO)  # the example names ../shared
    exec(compile(block.replace('"romeo.html"', repr(str(page))), "README.md", "exec"), {})
    assert page.stat().st_size > 10_000
