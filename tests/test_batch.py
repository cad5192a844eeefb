"""`gpt2 batch` and engine.batch on this machine: outputs identical byte for byte with 1 and 2 workers,
scores equal to model.score, seeded sampling that follows the row's id, bad rows recorded, resuming
after a crash, refusals that leave the output untouched. (Ray: tests/test_batch_ray.py.)"""

import fcntl
import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from batch_helpers import (
    ENV,
    GENERATE_FLAGS,
    PROMPTS,
    broken_model,
    gpt2_batch,
    prompt_rows,
    read_lines,
    strict_json,
    tempest_rows,
    write_rows,
)
from conftest import REPO
from hardening_helpers import file_size_limit
from hardening_helpers import gpt2 as limited_gpt2
from test_cli import assert_user_error

from engine import InputError, OutputError, batch
from engine.batch.rows import LINE_PEAK_FACTOR, ROW_OVERHEAD, held_bytes, json_line, read_rows, row_seed
from engine.generation import GenerationOptions

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread while the module runs (conftest.py)


@pytest.fixture(scope="module")
def score_rows():
    return tempest_rows()


@pytest.fixture(scope="module")
def generate_rows():
    return prompt_rows()


def test_scores_equal_model_score(tiny_model, score_rows, tmp_path):
    write_rows(tmp_path / "in.jsonl", score_rows)
    summary = batch.score(
        tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=tiny_model, context=128, stride=64, logprobs=True
    )
    assert (summary.rows, summary.written, summary.failed, summary.done_before) == (30, 30, 0, 0)
    lines = read_lines(tmp_path / "out.jsonl")
    assert [line["id"] for line in lines] == [row["id"] for row in score_rows]
    for row, line in zip(score_rows, lines):
        options = {"context": row.get("context", 128), "stride": row.get("stride", 64), "bos": row.get("bos", False)}
        s = tiny_model.score(row["text"], **options)
        assert (line["tokens"], line["total_nll"], line["mean_nll"]) == (s.count, s.total_nll, s.mean_nll)
        assert line["perplexity"] == s.perplexity
        if row.get("logprobs", True):
            assert line["token_ids"] == s.token_ids.tolist()
            expected = [float(lp) if ok else None for lp, ok in zip(s.logprobs, s.scored)]
            assert line["logprobs"] == expected  # exactly: a float32 survives the JSON round trip
        else:
            assert "logprobs" not in line
    assert summary.tokens == sum(line["tokens"] for line in lines)


def test_one_worker_and_two_workers_write_the_same_bytes(
    tiny_model, tiny_model_dir, score_rows, generate_rows, tmp_path
):
    write_rows(tmp_path / "texts.jsonl", score_rows)
    write_rows(tmp_path / "prompts.jsonl", generate_rows)
    outputs = {}
    for workers in (1, 2):
        for kind, rows, flags in (("score", "texts", ("--context", 128)), ("generate", "prompts", GENERATE_FLAGS)):
            out = tmp_path / f"{kind}-{workers}.jsonl"
            model = ("--model", tiny_model_dir)
            result = gpt2_batch(kind, tmp_path / f"{rows}.jsonl", out, *model, "--workers", workers, *flags)
            assert result.returncode == 0, result.stderr
            assert result.stderr == ""  # no progress bar when stderr is not a terminal
            n = len(score_rows if kind == "score" else generate_rows)
            assert result.stdout.startswith(f"{out}: {n} of {n} rows ({n} now, 0 before); ")
            outputs[kind, workers] = out.read_bytes()
    assert outputs["score", 1] == outputs["score", 2]
    assert outputs["generate", 1] == outputs["generate", 2]
    # The Python function, given a loaded model (its workers load the same directory), writes them too.
    batch.generate(
        tmp_path / "prompts.jsonl", tmp_path / "in-process.jsonl", model=tiny_model, max_new_tokens=20, temperature=0.9
    )
    assert (tmp_path / "in-process.jsonl").read_bytes() == outputs["generate", 1]

    lines = [strict_json(line) for line in outputs["generate", 1].decode().splitlines()]
    assert [line["id"] for line in lines] == [row["id"] for row in generate_rows]
    assert all("error" not in line for line in lines)
    assert lines[5]["finish_reason"] in ("length", "eos") and "score" in lines[5]  # beam search
    assert "seed" not in lines[1] and "seed" not in lines[5]  # greedy rows
    assert lines[4]["seed"] == 7  # the row's own seed
    assert "\n" not in lines[3]["text"]
    assert len(lines[2]["token_ids"]) <= 12


def test_sampling_follows_the_row_id_not_its_position(tiny_model, tmp_path):
    rows = [{"id": i, "prompt": "ROMEO:"} for i in ("a", "b", 1, "1", 1.0)]
    write_rows(tmp_path / "in.jsonl", rows)
    write_rows(tmp_path / "shuffled.jsonl", [{"id": "x", "prompt": "ROMEO:"}, *rows[::-1]])
    options = {"model": tiny_model, "max_new_tokens": 16, "temperature": 1.0}
    batch.generate(tmp_path / "in.jsonl", tmp_path / "out.jsonl", **options)
    batch.generate(tmp_path / "shuffled.jsonl", tmp_path / "shuffled-out.jsonl", **options)
    batch.generate(tmp_path / "in.jsonl", tmp_path / "seed-1.jsonl", seed=1, **options)
    by_id = {json.dumps(line["id"]): line for line in read_lines(tmp_path / "out.jsonl")}
    shuffled = {json.dumps(line["id"]): line for line in read_lines(tmp_path / "shuffled-out.jsonl")}
    assert len(by_id) == 5  # "1", 1 and 1.0 are three ids
    for key, line in by_id.items():
        assert shuffled[key] == line  # same id, other position: the same text
        # The seed is the documented derivation, and model.generate with it repeats the row alone.
        canonical = json.dumps([0, line["id"]], ensure_ascii=False, separators=(",", ":"))
        assert line["seed"] == int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")
        alone = tiny_model.generate("ROMEO:", max_new_tokens=16, temperature=1.0, seed=line["seed"])
        assert line["text"] == alone.text and line["token_ids"] == alone.token_ids
    assert len({line["text"] for line in by_id.values()}) > 1  # different ids, different streams
    other = {json.dumps(line["id"]): line["text"] for line in read_lines(tmp_path / "seed-1.jsonl")}
    assert any(other[key] != line["text"] for key, line in by_id.items())  # the job seed counts too
    assert row_seed(0, "é") == row_seed(0, "é") != row_seed(0, "e")


BAD_LINES = [
    ('{"id": 1, "prompt": "ROMEO:"}', None),
    ('{"id": 2, "prompt": "ROMEO:"', "invalid JSON: Expecting ',' delimiter"),
    ('["id", 3]', "a row must be a JSON object, got an array"),
    ('{"prompt": "ROMEO:"}', 'the row has no "id"'),
    ('{"id": null, "prompt": "ROMEO:"}', "the id must be a string or a number, got null"),
    ('{"id": 1, "prompt": "KING:"}', "duplicate id 1: line 1 has it too"),
    ('{"id": 7}', 'the row has no "prompt"'),
    ('{"id": 8, "prompt": "a", "temprature": 1}', "unknown field 'temprature'"),
    ('{"id": 9, "prompt": "a", "temperature": -1}', "temperature must be a number >= 0"),
    ('{"id": 10, "prompt": "a", "max_new_tokens": 300}', "max_new_tokens=300 would pass the context of 256 tokens"),
    ('{"id": 11, "prompt": "a", "bos": "yes"}', 'bos must be true or false, got "yes"'),
    ('{"id": 12, "prompt": "a", "top_p": NaN}', "invalid JSON: NaN is not JSON"),
    ('{"id": 13, "id": 14, "prompt": "a"}', "invalid JSON: the key 'id' is given twice"),
    ('{"id": 15, "prompt": ["a", "b"]}', "prompt must be a string or a list of token ids, got an array"),
    ('{"id": 16, "prompt": ""}', "the prompt is empty"),
    ('{"id": 17, "prompt": [50257]}', "token id 50257 is out of range"),
    ('{"id": 18, "prompt": "a", "num_return_sequences": 2}', "unknown field 'num_return_sequences'"),
    ('{"id": 20, "prompt": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid JSON: nested too deeply"),
    ('{"id": "last", "prompt": "PROSPERO:"}', None),
]


def test_bad_rows_get_an_error_line_and_the_job_goes_on(tiny_model_dir, tmp_path):
    lines = [text for text, _ in BAD_LINES]
    data = ("\n".join(lines[:5]) + "\n\n   \n" + "\n".join(lines[5:]) + "\n").encode()  # blank lines: not rows
    data += b'{"id": 19, "prompt": "\xff"}\n'  # not UTF-8
    (tmp_path / "in.jsonl").write_bytes(data)
    for extra in ((), ("--workers", 2)):
        out = tmp_path / f"out{len(extra)}.jsonl"
        result = gpt2_batch("generate", tmp_path / "in.jsonl", out, "--model", tiny_model_dir, "-n", 5, *extra)
        assert result.returncode == 1, result.stderr
        expected_failures = sum(1 for _, error in BAD_LINES if error) + 1
        assert f"gpt2: {expected_failures} of {len(BAD_LINES) + 1} rows failed" in result.stderr
        assert "first: line 2: invalid JSON" in result.stderr and "Traceback" not in result.stderr
        records = read_lines(out)
        assert len(records) == len(BAD_LINES) + 1
        for (_, error), record in zip(BAD_LINES, records):
            if error is None:
                assert "error" not in record and record["text"], record
            else:
                assert error in record["error"], (record, error)
        assert records[-1]["error"] == "not valid UTF-8 (byte 0xff at offset 22)"
        assert [r["line"] for r in records if "line" in r][:4] == [2, 3, 4, 5]
        assert records[5]["line"] == 8  # line numbers count the blank lines
        assert records[5]["id"] == 1 and records[4]["id"] is None and records[1]["id"] is None
    assert (tmp_path / "out0.jsonl").read_bytes() == (tmp_path / "out2.jsonl").read_bytes()


def test_resume_after_a_crash_leaves_no_duplicate_and_no_gap(tiny_model, tiny_model_dir, tmp_path):
    rows = [{"id": i, "prompt": PROMPTS[i % len(PROMPTS)]} for i in range(40)]
    write_rows(tmp_path / "in.jsonl", rows)
    options = {"max_new_tokens": 80, "stop_at_eos": False, "temperature": 1.0}
    batch.generate(tmp_path / "in.jsonl", tmp_path / "whole.jsonl", model=tiny_model, **options)  # uninterrupted
    whole = (tmp_path / "whole.jsonl").read_bytes()
    out = tmp_path / "out.jsonl"
    flags = ("--model", tiny_model_dir, "--max-new-tokens", 80, "--ignore-eos")
    job = [sys.executable, "-m", "engine", "batch", "generate", tmp_path / "in.jsonl", out, *flags]
    # A crash (SIGKILL) of a job with 2 worker processes, then Ctrl-C (SIGINT) of one with 1 worker.
    for how, workers in ((signal.SIGKILL, 2), (signal.SIGINT, 1)):
        process = subprocess.Popen(
            [*map(str, job), "--workers", str(workers)],
            cwd=REPO,
            env=os.environ | ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        start = len(out.read_bytes().splitlines()) if out.exists() else 0
        deadline = time.monotonic() + 300
        while not (out.exists() and len(out.read_bytes().splitlines()) >= start + 4):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        workers_running = children(process.pid)  # with 2 workers: also multiprocessing's resource tracker
        spawned = sum("spawn_main" in Path(f"/proc/{pid}/cmdline").read_text() for pid in workers_running)
        assert spawned == workers  # one worker is a process too (never the driver itself)
        process.send_signal(how)
        stdout, stderr = process.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while any(map(alive, workers_running)):  # killed or interrupted, the driver leaves no worker behind
            assert time.monotonic() < deadline, workers_running
            time.sleep(0.1)
        if how == signal.SIGINT:
            assert process.returncode == 130, stderr
            assert "gpt2: interrupted:" in stderr and "run the same command again to resume" in stderr
            assert "Traceback" not in stderr
        written = out.read_bytes()
        assert 0 < len(written.splitlines()) < len(rows), "the job was not stopped part-way"
        assert whole.startswith(written)  # whole lines, in order, the same bytes as the uninterrupted run
        if how == signal.SIGKILL:
            with open(out, "ab") as file:  # and a write cut short by the crash
                file.write(b'{"id":39,"text":"torn')
    resumed = subprocess.run(
        [*map(str, job), "--workers", "2"], capture_output=True, text=True, cwd=REPO, env=os.environ | ENV
    )
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == whole  # no duplicate, no gap, the same bytes
    again = subprocess.run([*map(str, job), "--json"], capture_output=True, text=True, cwd=REPO, env=os.environ | ENV)
    summary = json.loads(again.stdout)  # nothing left to do: nothing is written
    assert (summary["written"], summary["done_before"], summary["rows"]) == (0, len(rows), len(rows))
    assert out.read_bytes() == whole


def children(pid: int) -> list[int]:
    ps = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line) for line in ps.stdout.split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended (its parent has not collected it yet)


def test_limit_then_the_rest(tiny_model, score_rows, tmp_path):
    write_rows(tmp_path / "in.jsonl", score_rows)
    first = batch.score(tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=tiny_model, limit=7)
    assert (first.rows, first.written) == (7, 7)
    rest = batch.score(tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=tiny_model)
    assert (rest.rows, rest.done_before, rest.written) == (30, 7, 23)
    batch.score(tmp_path / "in.jsonl", tmp_path / "whole.jsonl", model=tiny_model)
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


def test_dry_run_checks_and_writes_nothing(tiny_model_dir, tmp_path):
    (tmp_path / "in.jsonl").write_text(
        '{"id": 1, "text": "To be, or not to be"}\n{"id": 2, "text": "x"}\n{"id": 3, "text": "a b", "stride": 0}\n'
    )
    result = gpt2_batch("score", tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--model", tiny_model_dir, "--dry-run")
    assert result.returncode == 1
    assert not (tmp_path / "out.jsonl").exists()
    assert "3 rows, 2 of them with an error" in result.stdout
    assert "line 2: the text is 1 token long: scoring needs at least 2" in result.stdout
    assert "line 3: stride must be an integer from 1 to" in result.stdout
    as_json = gpt2_batch(
        "score", tmp_path / "in.jsonl", tmp_path / "out.jsonl", "-m", tiny_model_dir, "--dry-run", "--json", "--bos"
    )
    summary = json.loads(as_json.stdout)
    assert summary["errors"] == [{"id": 3, "line": 3, "error": summary["errors"][0]["error"]}]  # bos: "x" is 2 tokens
    assert as_json.returncode == 1 and not (tmp_path / "out.jsonl").exists()


def test_usage_errors_exit_2_and_leave_the_output_untouched(tiny_model_dir, tmp_path):
    rows = tmp_path / "in.jsonl"
    write_rows(rows, [{"id": i, "text": "To be, or not to be"} for i in range(3)])
    other = tmp_path / "other.jsonl"
    other.write_text('{"id":"not-this-input","tokens":2}\n')
    model = ("--model", tiny_model_dir)
    assert_user_error(gpt2_batch("score", rows, rows, *model), "the output is the input file")
    assert_user_error(gpt2_batch("score", rows, other, *model), 'line 1 is the output of id "not-this-input"')
    assert other.read_text() == '{"id":"not-this-input","tokens":2}\n'
    assert_user_error(gpt2_batch("score", tmp_path / "none.jsonl", tmp_path / "o.jsonl", *model), "no such file")
    assert_user_error(gpt2_batch("score", rows, tmp_path / "no" / "o.jsonl", *model), "does not exist")
    assert_user_error(gpt2_batch("score", rows, tmp_path, *model), "the output is a directory")
    assert_user_error(gpt2_batch("score", rows, tmp_path / "o.jsonl", *model, "--context", 1000), "--context must be")
    assert_user_error(gpt2_batch("score", rows, tmp_path / "o.jsonl", *model, "--workers", 0), "--workers must be")
    assert_user_error(gpt2_batch("score", rows, tmp_path / "o.jsonl", *model, "--threads", 0), "--threads must be")
    cores = f"--threads must be an integer from 1 to {os.cpu_count()} (the cores available), got 1000"
    assert_user_error(gpt2_batch("score", rows, tmp_path / "o.jsonl", *model, "--threads", 1000, "-w", 2), cores)
    assert_user_error(gpt2_batch("generate", rows, tmp_path / "o.jsonl", *model, "-t", -1), "--temperature must be")
    assert_user_error(gpt2_batch("generate", rows, tmp_path / "o.jsonl", *model, "--seed", -1), "--seed must be")
    assert not (tmp_path / "o.jsonl").exists()
    lines = tmp_path / "longer.jsonl"  # an output with more lines than the input has rows
    lines.write_text("".join(f'{{"id":{i},"tokens":2}}\n' for i in range(5)))
    assert_user_error(gpt2_batch("score", rows, lines, *model), "has 5 lines but")
    junk = tmp_path / "junk.jsonl"
    junk.write_text('not json\n{"id":0}\n')
    assert_user_error(gpt2_batch("score", rows, junk, *model), "line 1 is not a line gpt2 batch writes")
    assert junk.read_text() == 'not json\n{"id":0}\n'


def test_a_model_the_workers_cannot_load_is_a_usage_error(tiny_model_dir, tmp_path):
    write_rows(tmp_path / "in.jsonl", [{"id": i, "text": "To be, or not to be"} for i in range(8)])
    broken = broken_model(tiny_model_dir, tmp_path / "broken")
    result = gpt2_batch("score", tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--model", broken, "--workers", 2)
    assert_user_error(result, "model.safetensors")
    assert (tmp_path / "out.jsonl").read_bytes() == b""  # created empty, nothing written: a rerun starts afresh


def test_a_failed_write_stops_the_job_at_a_whole_line_and_the_rerun_finishes(tiny_model, score_rows, tmp_path):
    write_rows(tmp_path / "in.jsonl", score_rows)
    batch.score(tmp_path / "in.jsonl", tmp_path / "whole.jsonl", model=tiny_model, logprobs=True)
    whole = (tmp_path / "whole.jsonl").read_bytes()
    out = tmp_path / "out.jsonl"
    with file_size_limit(len(whole) // 2), pytest.raises(OutputError, match="cannot write the output"):
        batch.score(tmp_path / "in.jsonl", out, model=tiny_model, logprobs=True)  # as if the disk were full
    written = out.read_bytes()
    assert 0 < len(written) <= len(whole) // 2 and written.endswith(b"\n")  # the part of a line: cut off
    assert whole.startswith(written)
    summary = batch.score(tmp_path / "in.jsonl", out, model=tiny_model, logprobs=True)
    assert summary.done_before == len(written.splitlines()) and out.read_bytes() == whole


def test_rows_beyond_memory_are_refused_before_they_are_held(tmp_path):
    rows = [{"id": i, "text": "To be, or not to be"} for i in range(30)]
    write_rows(tmp_path / "in.jsonl", rows)
    held = [ROW_OVERHEAD + held_bytes(row["id"]) + held_bytes({"text": row["text"]}) for row in rows]
    assert len(list(read_rows(tmp_path / "in.jsonl", memory=sum(held) + 100 * LINE_PEAK_FACTOR))) == 30
    # The 12th row would pass the budget: refused, with its line number, before the job holds it.
    budget = sum(held[:11]) + held[11] // 2
    with pytest.raises(InputError, match=r"in.jsonl: line 12: the rows up to here need more than"):
        list(read_rows(tmp_path / "in.jsonl", memory=budget))
    # A line whose parsing would not fit is not even read: one of 2 kB with 10 kB to spare.
    write_rows(tmp_path / "long.jsonl", [{"id": 0, "text": "x"}, {"id": 1, "text": "x" * 2000}])
    with pytest.raises(InputError, match=r"long.jsonl: line 2: .* than the 10 kB of memory"):
        list(read_rows(tmp_path / "long.jsonl", memory=10_000))


def test_a_line_longer_than_memory_allows_is_a_usage_error(tiny_model_dir, tmp_path):
    """A 64 GB line (a sparse file) under the fuzzers' 2 GB address-space limit: refused, not read."""
    with open(tmp_path / "huge.jsonl", "wb") as file:
        file.write(b'{"id": 1, "text": "')
        file.truncate(64 << 30)
    result = limited_gpt2("batch", "score", tmp_path / "huge.jsonl", tmp_path / "out.jsonl", "-m", tiny_model_dir)
    assert_user_error(result, "huge.jsonl: line 1: the rows up to here need more than", "split the input")
    assert (tmp_path / "out.jsonl").exists() is False


def test_output_lines_are_always_json():
    assert json_line({"id": 1, "x": float("nan"), "y": [1.5, float("-inf")]}) == '{"id":1,"x":null,"y":[1.5,null]}'
    assert json_line({"id": "é"}) == '{"id":"é"}'


def on_a_terminal(*args) -> tuple[int, str, str]:
    """`gpt2 batch ...` with stderr on a pseudo-terminal: (exit status, stdout, what the terminal showed)."""
    terminal, stderr = os.openpty()
    fcntl.ioctl(stderr, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 x 120, as a window has
    env = os.environ | ENV | {"TQDM_MININTERVAL": "0"}  # every update drawn: the bar is erased at the end
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "batch", *map(str, args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    os.close(stderr)
    shown = b""
    while True:
        try:
            data = os.read(terminal, 4096)
        except OSError:  # EIO: the command closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(terminal)
    stdout = process.stdout.read()
    return process.wait(timeout=60), stdout, shown.decode("utf-8", "replace")


def test_progress_bar_on_a_terminal_and_not_with_json(tiny_model_dir, tmp_path):
    write_rows(tmp_path / "in.jsonl", [{"id": i, "text": "To be, or not to be"} for i in range(9)])
    status, stdout, shown = on_a_terminal("score", tmp_path / "in.jsonl", tmp_path / "out.jsonl", "-m", tiny_model_dir)
    assert status == 0 and "9 of 9 rows" in stdout
    assert re.search(r"batch score: +\d+%\|.*\| [1-9]/9 \[.*row/s, [\d,]+ tok/s\]", shown), shown
    status, stdout, shown = on_a_terminal(
        "score", tmp_path / "in.jsonl", tmp_path / "json.jsonl", "-m", tiny_model_dir, "--json"
    )
    assert status == 0 and json.loads(stdout)["written"] == 9
    assert shown == ""


def test_the_engine_never_imports_ray():
    code = "import sys, engine, engine.cli, engine.batch; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, env=os.environ | ENV).returncode == 0


def test_row_seeds_are_64_bit_and_distinct():
    seeds = {row_seed(0, i) for i in range(1000)} | {row_seed(0, str(i)) for i in range(1000)}
    assert len(seeds) == 2000 and max(seeds) < 2**64
    assert GenerationOptions(seed=max(seeds)).checked().seed == max(seeds)  # a seed the engine takes


def docs_page() -> str:
    return (REPO / "docs" / "batch.md").read_text()


def test_the_docs_examples_run(tiny_model_dir, tmp_path, monkeypatch):
    """docs/batch.md: the first bash block (Ray included) and the Python example, in a scratch folder."""
    shared = str(tiny_model_dir.parent.parent)
    commands = re.findall(r"```bash\n(.+?)\n```", docs_page(), flags=re.S)[0]
    for line in commands.splitlines():
        line = line.replace("../shared", shared).replace("gpt2 batch", f"{sys.executable} -m engine batch")
        env = os.environ | ENV
        env.pop("RAY_ADDRESS", None)
        result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=tmp_path, env=env)
        assert result.returncode == 0, (line, result.stderr)
    assert len((tmp_path / "scores.jsonl").read_text().splitlines()) == 2
    python = re.findall(r"```python\n(.+?)\n```", docs_page(), flags=re.S)
    assert len(python) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(python[0].replace("../shared", shared), "docs/batch.md", "exec"), {})


def test_the_docs_list_every_flag():
    from engine.cli import build_parser

    table = docs_page().split("\n## The flags", 1)[1]
    kinds = build_parser()._subparsers._group_actions[0].choices["batch"]._subparsers._group_actions[0].choices
    for kind in ("generate", "score"):
        for action in kinds[kind]._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}" in table, (kind, flag)
