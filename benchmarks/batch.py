"""Throughput of `gpt2 batch score` on the held-out corpus, split into rows (one per paragraph), with 1
and 2 local workers and on Ray; and what Ray costs.

    flock /tmp/gpt2-cpu.lock python -m benchmarks.batch [--model DIR] [--rounds 3] [--json FILE]

Each run is the command a user types (`python -m engine batch score IN OUT --json ...`, a fresh
process, into a fresh output file), timed from start to exit. Every configuration runs twice per
round: on every row, and with `--limit 1` (one row: the cost of starting up, loading the model,
and for Ray starting the actors). The rounds alternate the configurations; the table gives medians.

    end to end   rows / wall time of the whole run, start-up included
    steady       (rows - 1) / (time of the whole run - time of the one-row run): the rate once running
    start-up     time of the one-row run

Configurations: `local 1` (one worker process), `local 2` (two worker
processes), `Ray 2 (running)` (two Ray Data actors on a Ray instance started once by this script
with 2 CPUs, joined with --ray ADDRESS, as on a cluster that is already up), and `Ray 2 (started)`
(--ray alone: a Ray instance started by the command for the job and stopped at its end). Every
worker computes with 1 thread. The script checks that all configurations write the same bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO.parent / "shared" / "models" / "shakespeare-gpt2-tiny"
CORPUS = REPO.parent / "shared" / "corpora" / "heldout_tempest.txt"


def corpus_rows(path: Path) -> list[dict]:
    paragraphs = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    return [{"id": i, "text": p} for i, p in enumerate(paragraphs)]


def run(rows_file: Path, out: Path, model: str, backend: list[str], limit: int | None) -> tuple[float, dict]:
    """One command, timed: (wall seconds, its --json summary)."""
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "engine", "batch", "score", str(rows_file), str(out), "--model", model]
    command += backend + ["--json"] + (["--limit", str(limit)] if limit else [])
    env = os.environ | {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)  # `--ray` alone starts a Ray of its own
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return wall, json.loads(result.stdout)


def start_ray() -> tuple[str, float]:
    """A Ray instance with 2 CPUs in this process (its workers import this checkout's engine)."""
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    return context.address_info["address"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the measurements to this file")
    args = parser.parse_args()

    import ray

    address, ray_start = start_ray()
    configs = {
        "local 1": ["--workers", "1"],
        "local 2": ["--workers", "2"],
        "Ray 2 (running)": ["--workers", "2", "--ray", address],
        "Ray 2 (started)": ["--workers", "2", "--ray"],
    }
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        rows_file = Path(folder) / "tempest.jsonl"
        rows = corpus_rows(CORPUS)
        rows_file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        times: dict[str, dict[str, list[float]]] = {name: {"full": [], "one": []} for name in configs}
        outputs, summaries = {}, {}
        for round_number in range(args.rounds):
            for name, backend in configs.items():
                out = Path(folder) / f"{name}.jsonl"
                wall, summary = run(rows_file, out, args.model, backend, None)
                times[name]["full"].append(wall)
                outputs[name], summaries[name] = out.read_bytes(), summary
                wall_one, _ = run(rows_file, out, args.model, backend, 1)
                times[name]["one"].append(wall_one)
                print(f"round {round_number + 1} {name}: {wall:.2f} s all rows, {wall_one:.2f} s one row", flush=True)
    ray.shutdown()
    load_after = os.getloadavg()

    reference = outputs["local 1"]
    identical = {name: data == reference for name, data in outputs.items()}
    n_rows, n_tokens = summaries["local 1"]["rows"], summaries["local 1"]["tokens"]
    results = []
    for name in configs:
        full, one = statistics.median(times[name]["full"]), statistics.median(times[name]["one"])
        results.append(
            {
                "config": name,
                "wall_s": full,
                "startup_s": one,
                "rows_per_s": n_rows / full,
                "tokens_per_s": n_tokens / full,
                "steady_rows_per_s": (n_rows - 1) / (full - one),
                "steady_tokens_per_s": n_tokens / (full - one),
                "identical": identical[name],
            }
        )
    print()
    print(
        f"{n_rows} rows ({n_tokens:,} tokens scored), model {Path(args.model).name}, {os.cpu_count()} cores, "
        f"1 thread per worker, medians of {args.rounds} rounds; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; Ray {ray.__version__} start-up (ray.init, 2 CPUs): {ray_start:.1f} s"
    )
    print()
    print(
        "| configuration | wall s | rows/s | tokens/s | start-up s (1 row) | steady rows/s | steady tokens/s | same bytes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['config']} | {r['wall_s']:.1f} | {r['rows_per_s']:.0f} | {r['tokens_per_s']:,.0f} | "
            f"{r['startup_s']:.1f} | {r['steady_rows_per_s']:.0f} | {r['steady_tokens_per_s']:,.0f} | "
            f"{'yes' if r['identical'] else 'NO'} |"
        )
    if args.json:
        record = {
            "rows": n_rows,
            "tokens": n_tokens,
            "model": args.model,
            "rounds": args.rounds,
            "cores": os.cpu_count(),
            "load_before": load_before,
            "load_after": load_after,
            "ray_version": ray.__version__,
            "ray_init_s": ray_start,
            "times": times,
            "results": results,
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    if not all(identical.values()):
        raise SystemExit("the configurations wrote different bytes")


if __name__ == "__main__":
    main()
