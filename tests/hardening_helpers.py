"""What the hardening tests and the fuzzers share: running the command as a real process under a
memory limit, dropping root's right to read any file, and small model directories to break."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from conftest import REPO

MEMORY_LIMIT = 2 << 30  # bytes of address space for each command run (the tiny model needs ~1 GB)
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def limit_memory() -> None:  # preexec_fn: runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def limit_memory_and_drop_root_reading() -> None:
    """preexec_fn: the memory limit, and (as root) no reading of files whose mode forbids it, so
    that `chmod 000` makes a file unreadable for the command as it does for any other user."""
    limit_memory()
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def gpt2(*args, stdin=None, env=None, cwd=None, preexec_fn=limit_memory, timeout=300, **popen):
    """Run `python -m engine ARGS` as a user would, under the memory limit. Arguments may be str or
    bytes (bytes reach argv as they are, invalid UTF-8 included). Returns the CompletedProcess,
    stdout and stderr as text (undecodable bytes escaped)."""
    full_env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "GPT2_ENGINE_THREADS": "1"} | (env or {})
    argv = [sys.executable, "-m", "engine", *(a if isinstance(a, bytes) else str(a) for a in args)]
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} | popen
    result = subprocess.run(
        argv, input=stdin, cwd=cwd or REPO, env=full_env, timeout=timeout, preexec_fn=preexec_fn, **kwargs
    )
    result.stdout = (result.stdout or b"").decode("utf-8", "backslashreplace")
    result.stderr = (result.stderr or b"").decode("utf-8", "backslashreplace")
    return result


def assert_user_error(result, *fragments):
    """Exit status 2, nothing on stdout, one line `gpt2: error: ...` on stderr holding each fragment."""
    assert result.returncode == 2, result
    assert result.stdout == "", result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpt2: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def copy_model(source: Path, destination: Path) -> Path:
    """A writable copy of a model directory (the files, not links), to break."""
    destination.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            (destination / path.name).write_bytes(path.read_bytes())
    return destination


def edit_json(path: Path, **fields) -> None:
    path.write_text(json.dumps(json.loads(path.read_text()) | fields))


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """RLIMIT_FSIZE in this process (Python ignores SIGXFSZ, so a write past it fails with EFBIG,
    as on a full disk), put back afterwards."""
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)


# ----------------------------------------------------------------------------------------------
# The fuzzers' budget and bounds


PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
LONG_FACTOR = 25  # HYPOTHESIS_PROFILE=long runs this many times the examples of the CI profile


def examples(ci: int):
    """@settings for a property: `ci` examples in the CI profile (its seed fixed), LONG_FACTOR times
    as many random ones in the long profile (tests/conftest.py registers both)."""
    from hypothesis import settings

    return settings(max_examples=ci if PROFILE == "ci" else ci * LONG_FACTOR)


def mapped_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def memory_ceiling(extra: int = 2 << 30):
    """An address-space limit on this process while a fuzzer runs in it: what is mapped now plus
    `extra`. A size that escaped its check then ends in a MemoryError (a failure the fuzzer
    reports) instead of taking the machine's memory; the engine's own checks see the limit too."""
    old = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (mapped_bytes() + extra, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def assert_one_line(error: BaseException) -> None:
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message, repr(message)


def edge_scalars(ints, floats):
    """None, booleans, integers and floats, with these values at the edges of their types often."""
    from hypothesis import strategies as st

    return st.one_of(
        st.none(), st.booleans(), st.sampled_from(ints), st.integers(), st.sampled_from(floats), st.floats()
    )
