"""docs/interpretability.md, "Inside the model": the worked example on the tiny Shakespeare model says what the code
gives. Each figure quoted there is recomputed here and looked up in the section's text."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from engine.analysis.explain import Explanation
from engine.analysis.saliency import METHODS, attribute, attribute_contrast
from engine.capture import zero_heads

PROMPT = "ROMEO: What light through yonder window breaks?"
NEWLINE = 198


def section() -> str:
    page = (REPO / "docs" / "interpretability.md").read_text()
    return page.split("\n## Explorables", 1)[0]


def test_worked_example_figures(tiny_model):
    text = " ".join(section().split())  # line breaks as spaces
    model = tiny_model
    ids = model.tokenizer.encode(PROMPT)
    assert len(ids) == 11 and model.tokenizer.encode("\n") == [NEWLINE]
    _, cache = model.run_with_cache(ids)
    assert cache["blocks.0.attn.hook_pattern"].shape == (4, 11, 11) and cache.stack("resid_post").shape == (4, 11, 128)
    model.run_with_hooks(ids, fwd_hooks=[zero_heads(3, [0, 1, 2, 3])])  # the page's line runs

    lens = model.logit_lens(ids, top_k=3)
    ranks = ", ".join(str(r) for r in lens.target_ranks[:, -1])
    assert f"`'\\n'` ranks {ranks}:" in text
    first = ", ".join(f"`{model.tokenizer.decode([int(i)])!r}`" for i in lens.top_ids[0, -1])
    probs = ", ".join(f"{p:.3f}" for p in lens.top_probs[0, -1])
    assert f"{first} (p = {probs})" in text
    assert f"({lens.top_probs[1, -1, 0]:.3f} after block 0, {lens.top_probs[-1, -1, 0]:.3f} at the output)" in text

    piece = lambda i: repr(model.tokenizer.decode([ids[i]]))  # noqa: E731
    for method in ("gradient", "grad_x_input", "integrated_gradients", "erasure"):
        scores = model.saliency(ids, NEWLINE, method=method)
        best = np.argsort(-scores)[:3]
        top = [piece(i) for i in best]
        if method == "erasure":  # the page quotes its first only
            assert f"erasure `{top[0]}` {scores[best[0]]:.3f}" in text
            continue
        label = method.replace("integrated_gradients", "integrated gradients")
        quoted = re.search(rf"{label} `(.+?)`(?: [0-9.]+)?, `(.+?)`(?: [0-9.]+)?, `(.+?)`", text)
        assert quoted and list(quoted.groups()) == top, (method, top)
        if method == "grad_x_input":
            assert f"grad_x_input `{top[0]}` {scores[best[0]]:.3f}, `{top[1]}` {scores[best[1]]:.3f}" in text

    # Contrast: why '\n' rather than the runner-up.
    logits = model(ids)[-1]
    first, second = (int(i) for i in np.argsort(-logits)[:2])
    assert first == NEWLINE
    foil = model.tokenizer.decode([second])
    mine = attribute_contrast(model, ids, NEWLINE, second, method="grad_x_input")
    assert f"`'\\n'` and `{foil!r}`, {mine.value:.3f} apart in log p; why `'\\n'` rather than `{foil!r}`" in text
    best = np.argsort(-mine.scores)[:3]
    assert "grad_x_input " + ", ".join(f"`{piece(i)}` {mine.scores[i]:.3f}" for i in best) + ";" in text
    signed = attribute_contrast(model, ids, NEWLINE, second, method="integrated_gradients").signed
    best = np.argsort(-np.abs(signed))[:3]
    assert "integrated gradients, signed, " + ", ".join(f"`{piece(i)}` {signed[i]:+.2f}" for i in best) in text
    erased = attribute_contrast(model, ids, NEWLINE, second, method="erasure").signed
    question = ids.index(model.tokenizer.encode("?")[0])
    assert erased[question] < 0 and f"widen the gap ({erased[question]:.2f})".replace("-", "−") in text

    c = attribute(model, ids, NEWLINE, method="integrated_gradients").completeness
    # The sum's last digit is float32 rounding, which varies with the CPU: the quote is held to 1e-6.
    quoted_sum = re.search(r"'sum_of_attributions': ([0-9.]+)", text)
    assert quoted_sum and float(quoted_sum[1]) == pytest.approx(c["sum_of_attributions"], rel=1e-6)
    # The gap is float32 rounding: its digits vary with the CPU and kernels, its order does not.
    assert "(of the order of 1e-7 in the example above" in text and 1e-8 <= c["relative_gap"] < 1e-6

    f = model.neuron_factors(ids, layers=[2], factors=4)
    tokens = ", ".join(piece(i) for i in f.top_tokens(3, 3))
    assert f"positions of {tokens}" in text
    neurons = ", ".join(f"({layer}, {n}, {w:.2f})" for layer, n, w in f.top_neurons(3, 3))
    assert f"[{neurons}]" in text


def test_cli_output_quoted_in_the_readme_and_its_file(tiny_model_dir, tmp_path):
    text = section()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "explain",
            PROMPT,
            "--model",
            str(tiny_model_dir),
            "--max-new-tokens",
            "8",
            "--output",
            "romeo.npz",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    quoted = text.split("--output romeo.npz\n```\n\n```\n", 1)[1].split("\n```", 1)[0]
    size = re.compile(r"\([0-9,]+ bytes\)")  # the metadata holds the model's path, which differs here
    gap = re.compile(r"completeness gap ([0-9.e+-]+)")  # float32 rounding: its digits vary with the CPU
    assert all(float(g) < 1e-4 for g in gap.findall(result.stdout)) and gap.search(quoted)
    same = lambda out: gap.sub("completeness gap", size.sub("", out.strip()))  # noqa: E731
    assert same(result.stdout) == same(quoted)
    e = Explanation.load(tmp_path / "romeo.npz")
    assert e.generated == 8 and e.ig_steps == 50 and list(e.saliency) == list(METHODS)
    assert e.model == str(tiny_model_dir) and e.prompt == PROMPT
