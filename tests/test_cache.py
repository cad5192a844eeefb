"""The KV cache: in-place filling, limits, and clear errors instead of wrapping or garbage."""

import os

import numpy as np
import pytest

from engine import GPT2, InputError


@pytest.fixture(scope="module")
def model(small_dir):
    return GPT2.from_pretrained(small_dir)


def test_cache_is_filled_in_place_and_not_reallocated(model):
    cache = model.new_cache(batch_size=1)
    keys, values = cache.keys, cache.values
    model(np.arange(5), cache=cache)
    model(np.arange(1), cache=cache)
    assert cache.length == 6 and cache.keys is keys and cache.values is values
    assert cache.keys.dtype == np.float32
    assert np.abs(cache.keys[:, :, :, :6]).sum() > 0 and not cache.keys[:, :, :, 6:].any()


def test_cache_reports_the_slots_it_holds(model):
    cache = model.new_cache(batch_size=2, max_length=10)
    assert cache.keys.shape == (model.config.n_layer, 2, model.config.n_head, 10, model.config.head_dim)


def test_passing_the_context_is_an_error_not_a_wrap(model):
    n_ctx = model.config.n_ctx
    cache = model.new_cache(batch_size=1)
    model(np.zeros(n_ctx - 1, dtype=np.int64), cache=cache)
    model([0], cache=cache)  # exactly n_ctx: fine
    with pytest.raises(InputError, match=f"context of n_positions={n_ctx}|room for 0 more"):
        model([0], cache=cache)
    with pytest.raises(InputError, match=f"exceed the model's context of n_positions={n_ctx}"):
        model(np.zeros(n_ctx + 1, dtype=np.int64))


def test_cache_smaller_than_the_request(model):
    cache = model.new_cache(batch_size=1, max_length=4)
    with pytest.raises(InputError, match="room for 4 more tokens"):
        model(np.arange(5), cache=cache)
    assert cache.length == 0


def test_batch_size_must_match_the_cache(model):
    cache = model.new_cache(batch_size=2)
    with pytest.raises(InputError, match="cache holds 2 rows but the ids have 1"):
        model(np.arange(3), cache=cache)


@pytest.mark.parametrize(
    "ids,message",
    [
        ([50257], "token id 50257 is out of range"),
        ([-1], "token id -1 is out of range"),
        ([], "non-empty"),
        ([[1.5]], "must be integers"),
        (np.zeros((1, 1, 1), dtype=np.int64), "non-empty"),
    ],
)
def test_bad_ids(model, ids, message):
    with pytest.raises(InputError, match=message):
        model(ids)


def test_logits_to_keep_range(model):
    with pytest.raises(InputError, match="logits_to_keep"):
        model(np.arange(3), logits_to_keep=4)


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the resident size from /proc (Linux)")
def test_a_cache_costs_memory_only_for_the_slots_written():
    """A cache sized for the whole context (124M shape, batch 8: 604 MB) holding 16 tokens costs
    about the pages those tokens touch (12 layers x 8 rows x 12 heads x 2 x one 4 KiB page = 9.4 MB),
    not 2 MiB per head as it did on huge pages."""
    from engine.state.kv_cache import KVCache

    before = resident_bytes()
    cache = KVCache(12, 8, 12, 64, 1024)
    full = cache.keys.nbytes + cache.values.nbytes
    k = np.ones((8, 12, 16, 64), dtype=np.float32)
    for layer in range(12):
        cache.write(layer, k, k)
    cache.advance(16)
    grown = resident_bytes() - before
    assert cache.keys.dtype == np.float32 and full == 12 * 8 * 12 * 1024 * 64 * 4 * 2
    assert grown < 40 * 1024 * 1024, (
        f"writing 16 tokens made {grown / 2**20:.0f} MB resident of the {full / 2**20:.0f} MB cache"
    )
    assert (cache.keys[:, :, :, :16] == 1).all() and not cache.keys[:, :, :, 16:].any()  # and the rest reads as zeros
