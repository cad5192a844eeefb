"""`gpt2 batch` on Ray: a Ray instance started here (2 CPUs) writes, byte for byte, the output the
local backends write (tests/test_batch.py shows 1 and 2 local workers agree). Ray is in the test
extra: under CI=true this test runs, it never skips."""

import json
import logging
import os
import subprocess
import sys

import pytest
from batch_helpers import ENV, GENERATE_FLAGS, broken_model, prompt_rows, read_lines, tempest_rows, write_rows
from conftest import REPO

from engine import GPT2Error, batch

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread while the module runs (conftest.py)


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance with 2 CPUs for this module; its address, for a second process to join."""
    if os.environ.get("CI") == "true":
        import ray  # the test extra installs it: missing under CI is a failure, not a skip
    else:
        ray = pytest.importorskip("ray")
    before = os.environ.get("PYTHONPATH")
    # The instance's worker processes inherit this environment: they import this checkout's engine.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), before) if p)
    try:
        context = ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        yield context.address_info["address"]
    finally:
        ray.shutdown()
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def test_ray_writes_the_bytes_of_the_local_backends(ray_address, tiny_model, tiny_model_dir, tmp_path):
    score_rows, generate_rows = tempest_rows(), prompt_rows()
    write_rows(tmp_path / "texts.jsonl", score_rows)
    rows = [*generate_rows, {"id": "g3", "prompt": "a duplicate id"}, {"id": "bad", "prompt": "x", "top_p": 2}]
    write_rows(tmp_path / "prompts.jsonl", rows)
    generate = {"max_new_tokens": 20, "temperature": 0.9}

    # Local, one worker process (1 thread): the reference.
    batch.score(tmp_path / "texts.jsonl", tmp_path / "score-local.jsonl", model=tiny_model, context=128)
    batch.generate(tmp_path / "prompts.jsonl", tmp_path / "generate-local.jsonl", model=tiny_model, **generate)

    # Ray Data, 2 actors, through the Python function (the Ray this process started).
    summary = batch.score(
        tmp_path / "texts.jsonl", tmp_path / "score-ray.jsonl", model=tiny_model_dir, context=128, ray=True, workers=2
    )
    assert (summary.written, summary.failed) == (len(score_rows), 0)
    assert (tmp_path / "score-ray.jsonl").read_bytes() == (tmp_path / "score-local.jsonl").read_bytes()

    # The command in another process, joining the instance by its address, as on a cluster.
    out = tmp_path / "generate-ray.jsonl"
    command = ["generate", tmp_path / "prompts.jsonl", out, "--model", tiny_model_dir, *GENERATE_FLAGS, "--workers", 2]
    result = subprocess.run(
        [sys.executable, "-m", "engine", "batch", *map(str, command), "--ray", ray_address, "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ | ENV,
        timeout=600,
    )
    assert result.returncode == 1, result.stderr  # the two bad rows
    assert "gpt2: 2 of 22 rows failed" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(result.stdout)["written"] == len(rows)
    assert out.read_bytes() == (tmp_path / "generate-local.jsonl").read_bytes()
    lines = read_lines(out)
    assert [line["id"] for line in lines] == [row["id"] for row in rows]
    assert "duplicate id" in lines[-2]["error"] and "top_p must be in (0, 1]" in lines[-1]["error"]


def test_ray_address_from_the_environment_resumes_a_local_job(ray_address, tiny_model, tiny_model_dir, tmp_path):
    score_rows = tempest_rows()
    write_rows(tmp_path / "texts.jsonl", score_rows)
    batch.score(tmp_path / "texts.jsonl", tmp_path / "whole.jsonl", model=tiny_model)
    batch.score(tmp_path / "texts.jsonl", tmp_path / "out.jsonl", model=tiny_model, limit=11)  # stopped part-way
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "batch",
            "score",
            *map(str, (tmp_path / "texts.jsonl", tmp_path / "out.jsonl")),
        ]
        + ["--model", str(tiny_model_dir), "--ray", "--workers", "2", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ | ENV | {"RAY_ADDRESS": ray_address},  # --ray alone: the cluster RAY_ADDRESS names
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["done_before"], summary["written"]) == (11, len(score_rows) - 11)
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


def test_a_model_the_actors_cannot_load_is_a_usage_error(ray_address, tiny_model_dir, tmp_path):
    write_rows(tmp_path / "in.jsonl", [{"id": i, "text": "To be, or not to be"} for i in range(4)])
    broken = broken_model(tiny_model_dir, tmp_path / "broken")
    with pytest.raises(GPT2Error, match="a Ray worker failed: .*model.safetensors"):
        batch.score(tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=broken, ray=True, workers=2)
