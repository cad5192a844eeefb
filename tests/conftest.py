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


@pytest.fixture(scope="module")
def one_thread():
    """One thread for Numba, BLAS and torch while a module runs (`pytestmark =
    pytest.mark.usefixtures("one_thread")`): the arithmetic batch workers and servers use by default,
    and much faster on a 2-core machine shared with other work (parallel kernels on a tiny model
    mostly wait)."""
    import torch

    from engine import get_threads, set_threads

    before, torch_before = get_threads(), torch.get_num_threads()
    set_threads(1)
    torch.set_num_threads(1)
    yield
    set_threads(before)
    torch.set_num_threads(torch_before)


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


@pytest.fixture(scope="session")
def explained_124M_256(synthetic):
    """explain on the 124M shape, 10 prompt tokens and a given continuation of 246 (teacher forcing:
    no decoding loop), no saliency, 20 NMF iterations: for the size of a long page."""
    from engine import GPT2
    from engine.state.synthetic import preset_config

    model = GPT2.from_pretrained(synthetic("gpt2-124M-full", preset_config("gpt2")))
    prompt = [464, 3290, 286, 262, 1578, 286, 3576, 318, 257, 1295]
    continuation = np.random.default_rng(1).integers(0, 50000, 246).tolist()
    return model.explain(prompt, continuation=continuation, methods=[], iterations=20, progress=False)


def with_saliency_stand_ins(result):
    """The result with saliency arrays of the right shapes and all their digits, in place of the
    ones left out to save time (each method costs 1 to 50 backward passes per token): every
    method's scores [G, N] and contrast scores [G, J, N], each row summing to 1 over the tokens
    before its new token; erasure's and integrated gradients' signed values, and their contrasts."""
    import dataclasses

    from engine.analysis.saliency import METHODS, SIGNED

    G, N, P = result.generated, len(result.token_ids), result.prompt_length
    J = result.contrast_ids.shape[1]
    rng = np.random.default_rng(0)
    before = np.arange(N)[None, :] < (P + np.arange(G))[:, None]  # [G, N]

    def scores(*shape):  # [G, ..., N]
        raw = rng.random((*shape, N), dtype=np.float32) * before.reshape(G, *[1] * (len(shape) - 1), N)
        return (raw / raw.sum(-1, keepdims=True)).astype(np.float32)

    def signed(*shape):
        return rng.standard_normal((*shape, N), dtype=np.float32) * before.reshape(G, *[1] * (len(shape) - 1), N)

    values = rng.standard_normal(G, dtype=np.float32)
    return dataclasses.replace(
        result,
        saliency={m: scores(G) for m in METHODS},
        ig_steps=50,
        ig_sum=values,
        ig_difference=values,
        erasure_drops=signed(G),
        ig_contributions=signed(G),
        contrast_saliency={m: scores(G, J) for m in METHODS},
        contrast_signed={m: signed(G, J) for m in SIGNED},
    )


@pytest.fixture(scope="session")
def tiny_explanation_100(tiny_model):
    """The tiny model, 100 new tokens: a long page for the layout tests and long figures. The two
    gradient methods only (one backward pass per token and target): erasure's cost grows with the
    cube of the length (28 s here), and the layout does not depend on the method."""
    return tiny_model.explain(
        "ROMEO:", max_new_tokens=100, methods=["grad_x_input", "gradient"], progress=False, stop_at_eos=False
    )


@pytest.fixture(scope="session")
def tiny_explanation_text(tiny_model):
    """A given continuation full of whitespace (newlines, a tab, runs of spaces), after a prompt with
    an emoji the tokenizer splits into byte pieces: for the readout and contrast tests of the page."""
    return tiny_model.explain(
        "A parrot 🦜 said:\t", continuation="\n\n   [Enter ROMEO]\n", steps=5, factors=4, progress=False
    )
