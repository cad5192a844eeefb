"""The R package r/gpt2engine: R CMD INSTALL into a temporary library, its testthat suite against the
tiny model (through reticulate, on this repository's engine in this Python), R CMD check, and the R
sessions shown in docs/r.md, whose output must be the one shown (`python tests/test_r_package.py`
rewrites it from what R prints, after a change that moves the last digits).

R, reticulate and testthat come from Debian (r-base-core, r-cran-reticulate, r-cran-testthat; CRAN
cannot be reached), which `.ci/run` installs when they are missing. Outside CI their absence skips
these tests with the reason; under CI=true it fails them, as a missing ../shared does.

The suite runs with RETICULATE_PYTHON = this Python and this repository first on PYTHONPATH, so it
tests this checkout's engine, not whichever copy is pip-installed. It must run, not skip: every
skip is counted as a failure here (the model and the engine are given to it).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, shared_path

PACKAGE = REPO / "r" / "gpt2engine"
DOC = REPO / "docs" / "r.md"
TIMEOUT = 600  # seconds per R command; the whole file takes about half a minute


def missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true requires the R tests to run (bash .ci/run installs R from Debian)")
    pytest.skip(reason)


def run(command, cwd, env):
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    return done.returncode, done.stdout + done.stderr


def r_environment(library: Path, missing=missing) -> dict:
    """The environment of every R command: the tiny model, this Python, this engine, one thread; the
    package installed into `library`."""
    if shutil.which("Rscript") is None:
        missing("R is not installed (Debian packages r-base-core, r-cran-reticulate, r-cran-testthat)")
    code, out = run(
        ["Rscript", "-e", 'cat(setdiff(c("reticulate", "testthat"), rownames(installed.packages())))'], REPO, os.environ
    )
    if code != 0 or out.strip():
        missing(f"R packages missing: {out.strip()} (Debian packages r-cran-reticulate, r-cran-testthat)")
    env = dict(os.environ)
    env.update(
        {
            "R_LIBS": str(library),
            "RETICULATE_PYTHON": sys.executable,
            "GPT2ENGINE_REPO": str(REPO),
            "PYTHONPATH": os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
            "GPT2ENGINE_TEST_MODEL": str(shared_path("models/shakespeare-gpt2-tiny")),
            "GPT2_ENGINE_THREADS": "1",
            "_R_CHECK_FUTURE_FILE_TIMESTAMPS_": "FALSE",  # it asks a time server: no network here
        }
    )
    code, out = run(["R", "CMD", "INSTALL", "-l", str(library), str(PACKAGE)], library.parent, env)
    assert code == 0, f"R CMD INSTALL failed:\n{out}"
    return env


@pytest.fixture(scope="module")
def r_env(tmp_path_factory):
    return r_environment(tmp_path_factory.mktemp("rlib"))


SUMMARY = re.compile(r"RESULT tests=(\d+) passed=(\d+) failed=(\d+) skipped=(\d+) errors=(\d+) warnings=(\d+)")


def test_testthat_suite(r_env):
    script = """
    library(testthat)
    results <- as.data.frame(test_dir("tests/testthat", package = "gpt2engine", load_package = "installed",
                                      reporter = "summary", stop_on_failure = FALSE))
    cat(sprintf("\\nRESULT tests=%d passed=%d failed=%d skipped=%d errors=%d warnings=%d\\n", nrow(results),
                sum(results$passed), sum(results$failed), sum(results$skipped), sum(results$error),
                sum(results$warning)))
    """
    code, out = run(["Rscript", "-e", script], PACKAGE, r_env)
    found = SUMMARY.search(out)
    assert code == 0 and found, f"the testthat suite did not finish:\n{out}"
    tests, passed, failed, skipped, errors, warnings = map(int, found.groups())
    assert (failed, errors, warnings, skipped) == (0, 0, 0, 0), f"testthat:\n{out}"
    assert tests >= 20 and passed >= 150, f"fewer tests ran than the suite holds:\n{out}"


def test_r_cmd_check(r_env, tmp_path):
    """R CMD check --no-manual on the built package: no ERROR, no WARNING (and no NOTE seen so far).
    --no-tests: the suite has just run above, against the same installed code."""
    code, out = run(["R", "CMD", "build", "--no-build-vignettes", str(PACKAGE)], tmp_path, r_env)
    assert code == 0, f"R CMD build failed:\n{out}"
    tarball = next(tmp_path.glob("gpt2engine_*.tar.gz"))
    code, out = run(["R", "CMD", "check", "--no-manual", "--no-tests", tarball.name], tmp_path, r_env)
    status = re.search(r"^Status: (.*)$", out, re.MULTILINE)
    problems = [line for line in out.splitlines() if re.search(r"\.\.\. (ERROR|WARNING)$", line)]
    assert code == 0 and status and not problems, f"R CMD check:\n{out}"
    assert "ERROR" not in status.group(1) and "WARNING" not in status.group(1), out


def r_sessions(page: str) -> list[str]:
    """The R sessions of a page: its ```r blocks that begin with a prompt ("> ")."""
    return [block for block in re.findall(r"```r\n(.*?)```", page, re.DOTALL) if block.startswith("> ")]


def session_output(session: str, env) -> str:
    """Run a session's commands (its "> " and "+ " lines) in a new R, from the repository's root (where
    the page's ../shared paths point), and give the transcript as R prints it."""
    script = "".join(line[2:] + "\n" for line in session.splitlines() if line.startswith(("> ", "+ ")))
    done = subprocess.run(
        ["R", "--quiet", "--no-save"], input=script, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, f"R failed:\n{done.stdout}{done.stderr}"
    return done.stdout.removesuffix("> \n")


@pytest.mark.parametrize("index", range(len(r_sessions(DOC.read_text()))))
def test_docs_r_sessions_print_what_the_page_shows(r_env, index):
    session = r_sessions(DOC.read_text())[index]
    assert session_output(session, r_env) == session


def test_ci_installs_r_before_the_tests():
    ci = (REPO / ".ci" / "run").read_text()
    install = ci.index("r-base-core r-cran-reticulate r-cran-testthat")
    assert ci.rindex("apt-get install", 0, install) < install < ci.index("python -m pytest")


def regenerate_docs() -> None:
    """Rewrite docs/r.md's sessions with what R prints today: `python tests/test_r_package.py`."""
    import tempfile

    def refuse(reason: str):
        raise SystemExit(reason)

    with tempfile.TemporaryDirectory() as temporary:
        library = Path(temporary) / "rlib"
        library.mkdir()
        env = r_environment(library, refuse)
        page = DOC.read_text()
        for session in r_sessions(page):
            page = page.replace(session, session_output(session, env), 1)
        DOC.write_text(page)


if __name__ == "__main__":
    regenerate_docs()
