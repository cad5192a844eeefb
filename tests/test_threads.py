"""Threads: "auto" runs each decode step on every thread or on one, whichever is faster lately
(engine/base/threads.py, DecodeThreads), without changing any result."""

import numba
import numpy as np
import pytest

from engine import GPT2, get_threads, set_threads
from engine.base.errors import InputError
from engine.base.threads import AUTO, DecodeThreads, available_threads, threads_setting

needs_two_cores = pytest.mark.skipif(available_threads() < 2, reason="needs 2 cores to choose between")


@pytest.fixture
def auto_threads():
    before = threads_setting()
    set_threads(AUTO)
    yield
    set_threads(before)


class Clock:
    """A clock the test moves (run_steps advances it by each step's cost)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run_steps(governor, clock, cost, steps, batch_size=1):
    """Take `steps` steps, each costing cost(threads) seconds; returns the thread count of each."""
    used = []
    for _ in range(steps):
        with governor.step(batch_size):
            threads = numba.get_num_threads()
            clock.now += cost(threads)
        used.append(threads)
    return used


@needs_two_cores
def test_steps_move_to_the_faster_count_and_probe_the_other(auto_threads):
    full = get_threads()
    clock = Clock()
    governor = DecodeThreads(clock)
    quiet = {full: 0.010, 1: 0.016}.__getitem__  # all threads faster
    busy = {full: 0.060, 1: 0.022}.__getitem__  # other work holds the cores: one thread faster
    used = run_steps(governor, clock, quiet, 100)
    assert used[:2] == [full, 1]  # each count timed once
    probes = [i for i in range(2, 100) if i % DecodeThreads.PROBE_EVERY == 0]  # steps taken before a probe
    assert [i for i in range(2, 100) if used[i] == 1] == probes
    assert get_threads() == full  # restored after every step
    used = run_steps(governor, clock, busy, 100)
    assert used[-60:].count(1) >= 58  # moved to one thread, probing all now and then
    assert 1 <= used[-60:].count(full) <= 2
    used = run_steps(governor, clock, quiet, 100)  # the load ends: back within one probe interval
    assert used[-60:].count(full) >= 58


@needs_two_cores
def test_each_batch_size_is_timed_on_its_own(auto_threads):
    full = get_threads()
    clock = Clock()
    governor = DecodeThreads(clock)
    run_steps(governor, clock, {full: 0.01, 1: 0.02}.__getitem__, 10, batch_size=1)
    used = run_steps(governor, clock, {full: 0.05, 1: 0.03}.__getitem__, 10, batch_size=8)
    assert used[:2] == [full, 1] and used[2:].count(1) == 8  # batch 8's own times, not batch 1's


@needs_two_cores
def test_a_fixed_count_is_kept():
    before = threads_setting()
    set_threads(available_threads())
    try:
        clock = Clock()
        used = run_steps(DecodeThreads(clock), clock, {available_threads(): 0.05, 1: 0.01}.__getitem__, 40)
        assert used == [available_threads()] * 40
    finally:
        set_threads(before)


@needs_two_cores
def test_generation_under_auto_equals_fixed_threads(tiny_model, auto_threads):
    """Steps alternate between the counts (a probe every other step), and the tokens and their
    log-probabilities are the same bits as on a fixed count."""
    prompts = ["ROMEO:", "Now is the winter of"]
    options = dict(max_new_tokens=12, seed=3, temperature=0.9)
    model = GPT2(tiny_model.config, tiny_model.weights, tiny_model.tokenizer)
    model._decode_threads.PROBE_EVERY = 2
    auto = model.generate(prompts, **options)
    assert {threads for _, threads in model._decode_threads.times} == {get_threads(), 1}
    set_threads(1)
    fixed = model.generate(prompts, **options)
    for a, f in zip(auto, fixed, strict=True):
        assert a.token_ids == f.token_ids
        np.testing.assert_array_equal(a.logprobs, f.logprobs)


def test_the_command_line_takes_a_number_or_auto():
    import argparse

    from engine.cli.common import threads_value

    assert threads_value("2") == 2 and threads_value(" Auto ") == AUTO
    with pytest.raises(argparse.ArgumentTypeError, match="must be a whole number or 'auto', got 'lots'"):
        threads_value("lots")


def test_the_settings_say_what_is_wrong(monkeypatch):
    with pytest.raises(InputError, match="threads must be an integer from 1 to .* or 'auto', got 'fast'"):
        set_threads("fast")
    from engine.base import threads

    monkeypatch.setattr(threads, "_blas_limit", None)
    monkeypatch.setenv(threads.ENV_VAR, "many")
    before = threads_setting()
    try:
        with pytest.raises(InputError, match="GPT2_ENGINE_THREADS must be an integer or 'auto', got 'many'"):
            threads.threads_from_environment()
        monkeypatch.setenv(threads.ENV_VAR, "Auto")
        threads.threads_from_environment()
        assert threads_setting() == AUTO and get_threads() == available_threads()
    finally:
        set_threads(before)
