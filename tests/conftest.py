"""Shared fixtures: the reference (Hugging Face transformers), synthetic checkpoints, ../shared.

Tests that read ../shared (the tiny Shakespeare model, the corpora, the tokenizer files) skip with a
reason when it is absent, except under CI (CI=true), where its absence is a failure.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent

# The property-based tests (tests/test_fuzz_*.py, tests/test_properties.py) run with the "ci"
# profile by default: a fixed seed (derandomize), few examples, no example database, so `pytest`
# takes the same few minutes and finds the same things every time. HYPOTHESIS_PROFILE=long runs
# many more random examples and keeps what fails in .hypothesis/ for the next run (docs/errors.md).
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
SHARED = REPO.parent / "shared"
TINY_MODEL = SHARED / "models" / "shakespeare-gpt2-tiny"


def tolerance(reference: np.ndarray) -> float:
    """The parity bound of the core issue: 1e-4 * max(1, max|reference|)."""
    return 1e-4 * max(1.0, float(np.abs(reference).max()))


def shared_path(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing, and CI=true requires ../shared")
        pytest.skip(f"{path} is absent (../shared is not beside the repository)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return shared_path("models/shakespeare-gpt2-tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from engine import GPT2

    return GPT2.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """make(name, config, **write_options) -> directory of a synthetic checkpoint, made once per session."""
    from engine.state.synthetic import write_checkpoint

    made = {}

    def make(name, config, **options):
        if name not in made:
            made[name] = write_checkpoint(tmp_path_factory.mktemp(name), config, **options)
        return made[name]

    return make


@pytest.fixture(scope="session")
def small_dir(synthetic):
    """A small synthetic model (2 layers, odd head size 24) with the real vocabulary."""
    from engine.base.config import GPT2Config

    return synthetic("small", GPT2Config(n_layer=2, n_head=4, n_embd=96, n_positions=128))


# The explain result the report tests share (tests/test_report*.py): the tiny model, 20 new tokens. Its
# prompt carries "</script>", "<!--" and other HTML to prove that the page escapes its data.
REPORT_PROMPT = 'ROMEO: </script><!-- <b>"Is" the day & so young?'


@pytest.fixture(scope="session")
def tiny_explanation(tiny_model):
    return tiny_model.explain(REPORT_PROMPT, max_new_tokens=20, steps=10, progress=False)


@pytest.fixture(scope="session")
def explained_124M(synthetic):
    """explain on the 124M shape (synthetic weights), 10 prompt + 20 generated tokens, no saliency
    (each method costs 1 to 50 backward passes per token), 20 NMF iterations: for the tests of what the result and its
    page weigh (tests/test_explain.py, tests/test_report.py)."""
    from engine import GPT2
    from engine.state.synthetic import preset_config

    model = GPT2.from_pretrained(synthetic("gpt2-124M-full", preset_config("gpt2")))  # shared with test_parity
    prompt = [464, 3290, 286, 262, 1578, 286, 3576, 318, 257, 1295]  # 10 tokens
    return model.explain(prompt, max_new_tokens=20, methods=[], iterations=20, progress=False)  # sizes do not
    # depend on the NMF's iterations either
