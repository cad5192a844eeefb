"""A row's logits do not depend on the other rows of its batch, nor on the threads.

Continuous batching (requests joining and leaving a running batch) and the batch runner (output
byte-identical whatever the partition of rows) rely on it: a decode step through the cache gives
each row exactly the logits it gets decoded alone, from its own cache. tests/test_kernels.py holds
each kernel to the same property.
"""

import numpy as np
import pytest

from engine import GPT2, get_threads, set_threads

PROMPTS = [[464, 3290, 286], [40, 1101, 257, 1332, 11], [15496, 11, 995, 0, 314, 716, 257]]  # 3, 5, 7 tokens
NEXT = [[318, 262, 257], [13, 198, 290], [1110, 1811, 11]]  # three decode steps of forced tokens per row


@pytest.fixture(scope="module")
def model(small_dir):
    return GPT2.from_pretrained(small_dir)


@pytest.fixture(params=["by size", "all parallel"])
def thresholds(request, monkeypatch):
    if request.param == "all parallel":
        import kernels.settings

        for name in (
            "PARALLEL_MIN_MULTIPLY_ADDS",
            "PARALLEL_MIN_WEIGHTS",
            "PARALLEL_MIN_ELEMENTS",
            "PARALLEL_MIN_ROWS",
        ):
            monkeypatch.setattr(kernels.settings, name, 0)
    return request.param


def decode_alone(model, prompt, steps):
    """Logits of each forced decode step of one row, from its own cache (prefilled in one call)."""
    cache = model.new_cache(1, len(prompt) + len(steps))
    model(np.array([prompt]), cache=cache)
    return [model(np.array([[token]]), cache=cache)[0, -1] for token in steps]


def test_decode_steps_give_each_row_its_logits_alone(model, thresholds):
    before = get_threads()
    try:
        set_threads(1)
        alone = [decode_alone(model, prompt, [step[b] for step in NEXT]) for b, prompt in enumerate(PROMPTS)]
        set_threads(before)
        # The batch's cache holds each row's prompt after its left padding, copied from a cache
        # prefilled alone (a prompt pass of many rows goes through BLAS, whose blocking depends on
        # the rows: only the decode steps are the subject here).
        longest = max(len(p) for p in PROMPTS)
        padding = [longest - len(p) for p in PROMPTS]
        cache = model.new_cache(len(PROMPTS), longest + len(NEXT), left_padding=padding)
        for b, prompt in enumerate(PROMPTS):
            own = model.new_cache(1, len(prompt))
            model(np.array([prompt]), cache=own)
            cache.keys[:, b, :, padding[b] : longest] = own.keys[:, 0]
            cache.values[:, b, :, padding[b] : longest] = own.values[:, 0]
        cache.advance(longest)
        for step, tokens in enumerate(NEXT):
            logits = model(np.array(tokens)[:, None], cache=cache)[:, -1]  # [3, V]
            for b in range(len(PROMPTS)):
                np.testing.assert_array_equal(logits[b], alone[b][step], err_msg=f"row {b}, step {step}")
    finally:
        set_threads(before)


def test_a_row_gives_the_same_logits_beside_any_rows(model, thresholds):
    """Rows joining and leaving: row 0's decode steps beside 0 to 7 other rows (fresh caches, one
    prompt token at a time, so every call is a decode step)."""
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, model.config.vocab_size, (8, 6))
    results = []
    for batch in (1, 2, 5, 8):
        cache = model.new_cache(batch, tokens.shape[1])
        results.append([model(tokens[:batch, t : t + 1], cache=cache)[0, -1] for t in range(tokens.shape[1])])
    for other in results[1:]:
        for t in range(tokens.shape[1]):
            np.testing.assert_array_equal(other[t], results[0][t])
