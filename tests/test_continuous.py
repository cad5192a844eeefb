"""The continuous batch (engine/generation/continuous.py): rows that join and leave a running batch
get exactly what `model.generate` gives each prompt alone (tokens, log-probabilities, text, finish
reason), through every change of the cache's layout: rows joining right-aligned, a longer prompt
moving the batch right, the common padding taken out when room runs short, slots reused.

Each schedule runs twice: with the engine's kernels (a row's logits must not depend on the rows
beside it), and with the matrix products done one row at a time, which isolates the batch's own
bookkeeping from the kernels' arithmetic.
"""

import numpy as np
import pytest

import kernels
from engine import InputError
from engine.generation.continuous import ContinuousBatch
from engine.generation.options import GenerationOptions

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread while the module runs (conftest.py)


PROMPTS = [
    "ROMEO:",
    "JULIET: O Romeo, Romeo, wherefore art thou",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "KING",
]


@pytest.fixture(params=["engine kernels", "row by row"])
def products(request, monkeypatch):
    """The matrix products as the engine does them, or one row at a time (each row's arithmetic
    then cannot depend on the others)."""
    if request.param == "row by row":
        linear, matmul_transposed = kernels.linear, kernels.matmul_transposed
        monkeypatch.setattr(
            kernels, "linear", lambda x, w, b: np.concatenate([linear(x[i : i + 1], w, b) for i in range(len(x))])
        )
        monkeypatch.setattr(
            kernels,
            "matmul_transposed",
            lambda x, t: np.concatenate([matmul_transposed(x[i : i + 1], t) for i in range(len(x))]),
        )
    return request.param


def alone(model, prompt, rows, options):
    """What model.generate gives the prompt alone: a list of `rows` results."""
    o = dict(options)
    if rows > 1:
        o["num_return_sequences"] = rows
    result = model.generate(prompt, **o)
    return result if isinstance(result, list) else [result]


def run_schedule(model, jobs, max_rows, watch=None):
    """jobs: (join step, prompt ids, rows, options dict). Runs them through one batch, each added
    at its step (or as soon as there is room after it); returns each job's results. `watch(batch)`
    is called after every step."""
    batch = ContinuousBatch(model, max_rows)
    pending = sorted(range(len(jobs)), key=lambda k: jobs[k][0])
    added = {}
    step = 0
    while pending or batch.rows or batch.joining:
        while pending and jobs[pending[0]][0] <= step and batch.room >= jobs[pending[0]][2]:
            k = pending.pop(0)
            _, prompt, rows, options = jobs[k]
            added[k] = batch.add(prompt, GenerationOptions(**options).checked(), rows)
        batch.step()
        if watch is not None:
            watch(batch)
        step += 1
        assert step < 2000
    return [[seq.result() for seq in added[k].sequences] for k in range(len(jobs))]


def check_alone(model, jobs, results):
    for (_, prompt, rows, options), got in zip(jobs, results):
        expected = alone(model, prompt, rows, options)
        assert [r.token_ids for r in got] == [r.token_ids for r in expected], (prompt, options)
        assert [r.logprobs for r in got] == [r.logprobs for r in expected], (prompt, options)
        assert [r.text for r in got] == [r.text for r in expected]
        assert [r.finish_reason for r in got] == [r.finish_reason for r in expected]


def test_rows_joining_and_leaving_get_what_each_gets_alone(tiny_model, products):
    encode = tiny_model.tokenizer.encode
    jobs = [
        (0, encode(PROMPTS[0]), 1, dict(max_new_tokens=30)),
        (0, encode(PROMPTS[1]), 1, dict(max_new_tokens=12)),
        (3, encode(PROMPTS[2]), 2, dict(max_new_tokens=40, temperature=0.9, seed=3)),
        (3, encode(PROMPTS[3]), 2, dict(max_new_tokens=25, temperature=1.0, seed=7, top_p=0.9, top_k=50)),
        (5, encode(PROMPTS[0]), 2, dict(max_new_tokens=20, temperature=0.8, seed=1, repetition_penalty=1.3)),
        (9, encode(PROMPTS[1]), 1, dict(max_new_tokens=15, presence_penalty=0.5, frequency_penalty=0.7)),
        (9, encode(PROMPTS[2]), 1, dict(max_new_tokens=15, logit_bias={198: -100.0, 13: 5.0})),
        (10, encode(PROMPTS[3]), 1, dict(max_new_tokens=30, stop=["\n"], min_new_tokens=3)),
        (10, encode(PROMPTS[0]), 1, dict(max_new_tokens=30, stop_token_ids=[11, 13])),
    ]
    sizes = []
    results = run_schedule(tiny_model, jobs, max_rows=6, watch=lambda batch: sizes.append(batch.rows))
    check_alone(tiny_model, jobs, results)
    assert max(sizes) == 6  # the batch was full at times: jobs waited for room and took freed slots
    assert any(r.finish_reason == "stop" for job in results for r in job)  # some rows ended early


def test_a_longer_prompt_moves_the_batch_right(tiny_model, products):
    encode = tiny_model.tokenizer.encode
    long_prompt = encode(" ".join(PROMPTS))  # > 30 tokens
    jobs = [(0, encode("KING"), 1, dict(max_new_tokens=20)), (2, long_prompt, 1, dict(max_new_tokens=10))]
    paddings = []
    results = run_schedule(
        tiny_model, jobs, max_rows=2, watch=lambda b: paddings.append(b.cache.left_padding[: b.rows].tolist())
    )
    check_alone(tiny_model, jobs, results)
    # After the long prompt joined, the first row sat behind padding: the long prompt, less the 3
    # tokens (1 prompt + 2 new) the first row had then.
    assert [len(long_prompt) - 3, 0] in paddings


def test_out_of_room_the_common_padding_is_taken_out(tiny_model, products):
    """A long prompt and a short one with many tokens to go, then a third row after the long one
    has left: the short row's padding (which every row then has) must go to make room."""
    text = tiny_model.tokenizer.encode(" ".join(PROMPTS) * 10)
    jobs = [
        (0, text[:200], 1, dict(max_new_tokens=20)),
        (0, text[:5], 1, dict(max_new_tokens=250, stop_at_eos=False)),
        (150, text[:10], 1, dict(max_new_tokens=200, stop_at_eos=False)),
    ]
    lengths = []
    results = run_schedule(tiny_model, jobs, max_rows=3, watch=lambda b: lengths.append(b.cache.length))
    check_alone(tiny_model, jobs, results)
    drops = [a - b for a, b in zip(lengths, lengths[1:]) if b < a and b > 0]
    assert drops, "the batch was never laid out again"
    assert max(lengths) <= 2 * tiny_model.config.n_positions


def test_finished_rows_leave_at_once_and_cancelled_ones_at_the_next_step(tiny_model):
    encode = tiny_model.tokenizer.encode
    batch = ContinuousBatch(tiny_model, 4)
    short = batch.add(encode("ROMEO:"), GenerationOptions(max_new_tokens=2).checked())
    long = batch.add(encode("KING"), GenerationOptions(max_new_tokens=40, stop_at_eos=False).checked(), rows=2)
    assert (batch.rows, batch.room) == (0, 1)  # waiting to join, but their rows are counted
    batch.step()
    assert batch.rows == 3
    batch.step()
    assert short.finished and batch.rows == 2  # the short job's row left in the step that finished it
    other = batch.add(encode("JULIET:"), GenerationOptions(max_new_tokens=40, stop_at_eos=False).checked())
    batch.step()
    assert batch.rows == 3
    batch.cancel(long)
    assert batch.step() == [other]
    assert batch.rows == 1 and long.finished
    assert [len(seq.token_ids) for seq in long.sequences] == [3, 3]  # as they were when cancelled
    while batch.rows:
        batch.step()
    assert (
        other.sequences[0].result()
        == alone(tiny_model, encode("JULIET:"), 1, dict(max_new_tokens=40, stop_at_eos=False))[0]
    )


def test_top_alternatives_of_each_token(tiny_model):
    batch = ContinuousBatch(tiny_model, 2)
    options = GenerationOptions(max_new_tokens=8, temperature=1.0, seed=5).checked()
    job = batch.add(tiny_model.tokenizer.encode("ROMEO:"), options, rows=2, top_logprobs=3)
    while batch.rows or batch.joining:
        batch.step()
    for seq, alternatives in zip(job.sequences, job.alternatives):
        assert len(alternatives) == len(seq.token_ids) == 8
        for token, logprob, (ids, values) in zip(seq.token_ids, seq.logprobs, alternatives):
            assert ids.shape == values.shape == (3,)
            assert list(values) == sorted(values, reverse=True)
            if token in ids.tolist():
                assert values[ids.tolist().index(token)] == np.float32(logprob)
            else:
                assert logprob <= values[-1]


def test_add_refuses_what_it_cannot_run(tiny_model):
    batch = ContinuousBatch(tiny_model, 2)
    prompt = tiny_model.tokenizer.encode("ROMEO:")
    with pytest.raises(InputError, match="beam search"):
        batch.add(prompt, GenerationOptions(num_beams=2).checked())
    with pytest.raises(InputError, match=r"rows must be from 1 to the room left in the batch \(2\), got 3"):
        batch.add(prompt, GenerationOptions().checked(), rows=3)
    with pytest.raises(InputError, match="would pass the context of 256 tokens"):
        batch.add(prompt, GenerationOptions(max_new_tokens=300).checked())
    with pytest.raises(InputError, match="max_rows must be an integer >= 1"):
        ContinuousBatch(tiny_model, 0)
    assert batch.room == 2 and not batch.joining
