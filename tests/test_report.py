"""The explain report without a browser: what the page carries, its escaping and size, the CLI's
--html, the notebook rendering and the matplotlib figures. (tests/test_report_browser.py runs the
page in Chromium.)"""

import html
import json
import os
import re
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from conftest import REPO, REPORT_PROMPT
from test_cli import assert_user_error, gpt2

DATA_ELEMENT = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)


def embedded_data(page: str) -> dict:
    (text,) = DATA_ELEMENT.findall(page)
    return json.loads(text)


def test_script_json_cannot_end_its_element():
    from engine.analysis.report import script_json

    hostile = {"a": "</script><script>alert(1)</script>", "b": "<!-- <SCRIPT", "c": "& \u2028 \u2029 ]]>"}
    text = script_json(hostile)
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == hostile


def test_page_is_one_file_that_fetches_nothing():
    from engine.analysis.report import asset

    for name in ("report.html", "report.css", "report.js"):
        text = asset(name)
        # The only URL is the SVG namespace, a name and not a fetch.
        text = text.replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?:|url\(|@import|<link|\bsrc=|fetch\(|XMLHttpRequest|WebSocket", text), name
    for name in ("report.css", "report.js"):  # inlined into <style> / <script>: must not end them
        assert not re.search(r"</(script|style)|<!--", asset(name), re.I), name
    assert "default-src 'none'" in asset("report.html")  # and the page's CSP forbids any fetch anyway


def test_page_carries_the_explanation(tiny_explanation):
    from engine.analysis.report import lower_triangles, report_data

    result = tiny_explanation
    page = result.to_html()
    # The hostile prompt appears only escaped: as text in <title>, as \u escapes in the data.
    assert "</script><!--" not in page.split("<body>")[0] and "</script><!--" not in DATA_ELEMENT.findall(page)[0]
    assert page.count("</script>") == 2  # the data element and the code, nothing else closes a script
    assert html.escape("</script><!--") in page.split("</title>")[0]
    data = embedded_data(page)
    assert data == json.loads(json.dumps(report_data(result)))
    assert data["prompt"] == REPORT_PROMPT and "".join(data["tokens"]) == result.text
    P, N = result.prompt_length, len(result.token_ids)
    assert data["promptLength"] == P and len(data["tokens"]) == N and result.generated == 20
    for method in data["saliency"]["methods"]:
        np.testing.assert_allclose(method["scores"], result.saliency[method["name"]], atol=5e-6, rtol=0)
    assert [m["name"] for m in data["saliency"]["methods"]] == [
        "grad_x_input",
        "integrated_gradients",
        "erasure",
        "gradient",
    ]
    np.testing.assert_array_equal(data["lens"]["topIds"], result.lens_top_ids)
    np.testing.assert_array_equal(data["lens"]["targetRanks"], result.lens_target_ranks)
    assert data["lens"]["layers"] == ["embeddings", "block 0", "block 1", "block 2", "block 3"]
    # Attention: the float16 lower triangles, exactly.
    import base64

    triangles = np.frombuffer(base64.b64decode(data["attention"]["float16"]), dtype="<f2").reshape(4, 4, -1)
    query, key = np.tril_indices(N)
    np.testing.assert_array_equal(triangles, result.attention[:, :, query, key])
    assert data["attention"]["float16"] == lower_triangles(result.attention)
    assert [s["layers"] for s in data["factors"]] == result.factor_layers
    for s, factor_set in enumerate(data["factors"]):
        acts = result.factor_activations[s]
        np.testing.assert_allclose(factor_set["activations"], acts, rtol=0, atol=1e-3 * np.abs(acts).max())


def test_page_survives_a_save_and_load(tiny_explanation, tmp_path):
    from engine.analysis.explain import Explanation

    path = tiny_explanation.save(tmp_path / "result.npz")
    assert Explanation.load(path).to_html() == tiny_explanation.to_html()


def test_save_html_writes_the_page(tiny_explanation, tmp_path):
    path = tiny_explanation.save_html(tmp_path / "report.html")
    assert path.read_text(encoding="utf-8") == tiny_explanation.to_html()
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary left behind
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # a page to share, not a 0600 temporary
    from engine.base.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        tiny_explanation.save_html(tmp_path / "missing" / "report.html")


def test_page_for_20_tokens_on_the_124M_shape_is_under_2_MB(explained_124M):
    """The 124M shape (12 layers x 12 heads), a 10-token prompt and 20 generated tokens."""
    import dataclasses

    from engine.analysis.saliency import METHODS

    e = explained_124M
    G, N = e.generated, len(e.token_ids)
    assert G == 20 and N == 30
    # The result was made without saliency, to save time (each method costs 1 to 50 backward passes per
    # token); stand-ins of the same shapes, with all their digits, take its place: every method's
    # scores [G, N] summing to 1 over the tokens before each generated one, erasure's drops [G, N],
    # the completeness sums [G].
    rng = np.random.default_rng(0)
    before = np.arange(N)[None, :] < (e.prompt_length + np.arange(G))[:, None]  # [G, N]
    scores = {}
    for method in METHODS:
        raw = rng.random((G, N), dtype=np.float32) * before
        scores[method] = (raw / raw.sum(1, keepdims=True)).astype(np.float32)
    values = rng.standard_normal(G, dtype=np.float32)
    result = dataclasses.replace(
        e,
        saliency=scores,
        ig_steps=50,
        ig_sum=values,
        ig_difference=values,
        erasure_drops=rng.standard_normal((G, N), dtype=np.float32) * before,
    )
    page = result.to_html().encode("utf-8")
    attention_bytes = 12 * 12 * (N * (N + 1) // 2) * 2 * 4 / 3  # base64 of the float16 lower triangles
    print(
        f"\n124M shape, 30 tokens (20 generated): the page is {len(page):,} bytes, "
        f"of which attention {attention_bytes:,.0f}"
    )
    assert attention_bytes < len(page) < 2_000_000
    readme = " ".join((REPO / "docs" / "interpretability.md").read_text().split())
    assert (
        f"20 generated tokens it is {round(len(page) / 1000)} KB, {round(attention_bytes / 1000)} KB of it attention"
        in readme
    )


def test_notebook_rendering_is_an_iframe_of_the_page(tiny_explanation):
    shown = tiny_explanation._repr_html_()
    match = re.fullmatch(r'<iframe srcdoc="([^"]*)" title="[^"]*" style="[^"]*"></iframe>', shown)
    assert match is not None
    assert html.unescape(match[1]) == tiny_explanation.to_html()


def test_cli_writes_the_page(tiny_model_dir, tmp_path):
    out = tmp_path / "report.html"
    result = gpt2(
        "explain",
        "KING:",
        "--model",
        tiny_model_dir,
        "-n",
        "3",
        "--steps",
        "2",
        "--factors",
        "3",
        "--html",
        out,
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    data = embedded_data(out.read_text(encoding="utf-8"))
    assert data["prompt"] == "KING:" and len(data["tokens"]) == data["promptLength"] + 3
    assert len(data["factors"][0]["activations"]) == 3


def test_cli_refuses_an_html_path_in_a_missing_directory(tiny_model_dir, tmp_path):
    result = gpt2("explain", "KING:", "--model", tiny_model_dir, "--html", tmp_path / "nowhere" / "r.html")
    assert_user_error(result, "--html", "does not exist")


# ----------------------------------------------------------------------------------------------
# matplotlib figures


def test_engine_does_not_import_matplotlib():
    code = (
        "import sys, engine, engine.analysis.explain, engine.analysis.report, engine.cli; "
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_plots_without_matplotlib_say_how_to_get_it(tiny_explanation, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"gpt2-engine\[plot\]"):
        tiny_explanation.plot_saliency()


def png_size(path):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path).shape[:2]


def test_plot_saliency_draws_the_scores(tiny_explanation, tmp_path):
    result, P = tiny_explanation, tiny_explanation.prompt_length
    for g, method in [(0, "grad_x_input"), (-1, "erasure"), (7, "integrated_gradients")]:
        figure = result.plot_saliency(g, method)
        bars = [patch.get_height() for patch in figure.axes[0].patches]
        g %= result.generated
        np.testing.assert_allclose(bars, result.saliency[method][g][: P + g], rtol=1e-6)
        assert [t.get_text() for t in figure.axes[0].get_xticklabels()][-1].strip("␣") == result.tokens[
            P + g - 1
        ].strip()
    figure.savefig(tmp_path / "saliency.png")
    assert min(png_size(tmp_path / "saliency.png")) > 100
    from engine.base.errors import InputError

    with pytest.raises(InputError, match="index the 20 generated"):
        result.plot_saliency(20)
    with pytest.raises(InputError, match="no 'nope' saliency"):
        result.plot_saliency(0, "nope")


def test_plot_rankings_draws_the_lens_ranks(tiny_explanation, tmp_path):
    result, P, N = tiny_explanation, tiny_explanation.prompt_length, len(tiny_explanation.token_ids)
    figure = result.plot_rankings()
    ax = figure.axes[0]
    ranks = result.lens_target_ranks[:, P - 1 : N - 1]  # [R, 20]: where each generated token was predicted
    np.testing.assert_allclose(ax.images[0].get_array(), 1 - np.minimum(np.log10(ranks), 3) / 3)
    assert [t.get_text() for t in ax.texts] == [str(r) for r in ranks.ravel()]
    figure.savefig(tmp_path / "rankings.png")
    png_size(tmp_path / "rankings.png")


def test_plot_factors_draws_a_sparkline_per_factor(tiny_explanation, tmp_path):
    result = tiny_explanation
    for layers, s in [(None, len(result.factor_layers) - 1), (2, 2)]:
        figure = result.plot_factors(layers)
        activations = result.factor_activations[s]
        assert len(figure.axes) == len(activations)
        for ax, row in zip(figure.axes, activations):
            np.testing.assert_allclose(ax.lines[0].get_ydata(), row / row.max(), rtol=1e-6)
    figure.savefig(tmp_path / "factors.png")
    png_size(tmp_path / "factors.png")
    from engine.base.errors import InputError

    with pytest.raises(InputError, match="no neuron factors of layers"):
        result.plot_factors([0, 1])


def test_plot_attention_draws_the_pattern(tiny_explanation, tmp_path):
    result = tiny_explanation
    figure = result.plot_attention(2, 1)
    shown = figure.axes[0].images[0].get_array()
    lower = np.tril(np.ones(shown.shape, dtype=bool))
    np.testing.assert_array_equal(shown.data[lower], result.attention[2, 1].astype(np.float32)[lower])
    assert shown.mask[~lower].all() and not shown.mask[lower].any()
    mean = result.plot_attention(0, None).axes[0].images[0].get_array()
    np.testing.assert_allclose(mean.data[lower], result.attention[0].astype(np.float32).mean(0)[lower], rtol=1e-6)
    figure.savefig(tmp_path / "attention.png")
    png_size(tmp_path / "attention.png")


def test_a_wheel_ships_the_page_assets():
    """pyproject's package-data lists every data file of the package (the page's assets, the BPE
    file), so a non-editable install has them."""
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {f"{package.replace('.', '/')}/{name}" for package, names in package_data.items() for name in names}
    present = {
        str(path.relative_to(REPO))
        for folder in ("engine/data", "engine/analysis/assets")
        for path in (REPO / folder).iterdir()
        if path.is_file() and path.suffix != ".py"
    }
    assert present <= shipped
    assert {f"engine/analysis/assets/report.{kind}" for kind in ("html", "css", "js")} <= shipped
