"""Shared by the generation tests."""

import pytest
import torch

from engine import get_threads, set_threads


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread for Numba, BLAS and torch while a module runs: the same arithmetic, and much
    faster on a 2-core machine shared with other work (parallel kernels on a tiny model mostly wait)."""
    before, torch_before = get_threads(), torch.get_num_threads()
    set_threads(1)
    torch.set_num_threads(1)
    yield
    set_threads(before)
    torch.set_num_threads(torch_before)
