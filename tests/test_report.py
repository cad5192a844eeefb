"""The explain report without a browser: what the page carries, its escaping and size (and the
attention it keeps to stay small), the CLI's --html and `gpt2 report`, the notebook rendering and
the matplotlib figures (tests/test_notebook.py runs them in a Jupyter kernel). (tests/test_report_browser.py
runs the page in Chromium.)"""

import html
import json
import os
import re
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from conftest import REPO, REPORT_PROMPT, with_saliency_stand_ins
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


def float16_rows(text: str, lengths) -> list[np.ndarray]:
    """The page's packed saliency rows: base64 float16, row after row of the given lengths."""
    import base64

    flat = np.frombuffer(base64.b64decode(text), dtype="<f2")
    assert len(flat) == sum(lengths)
    return np.split(flat, np.cumsum(lengths)[:-1])


def test_page_carries_the_explanation(tiny_explanation):
    from engine.analysis.report import lower_triangles, report_data

    result = tiny_explanation
    page = result.to_html()
    # The hostile prompt appears only escaped: as text in <title>, as \u escapes in the data.
    assert "</script><!--" not in page.split("<body>")[0] and "</script><!--" not in DATA_ELEMENT.findall(page)[0]
    assert page.count("</script>") == 2  # the data element and the code, nothing else closes a script
    assert html.escape("</script><!--") in page.split("</title>")[0]
    data = embedded_data(page)
    assert data == json.loads(json.dumps(report_data([result])))
    assert data["format"] == "gpt2-engine report 2" and data["factorInputs"] == 1
    (X,) = data["inputs"]
    assert X["prompt"] == REPORT_PROMPT and "".join(X["tokens"]) == result.text
    P, N, G = result.prompt_length, len(result.token_ids), result.generated
    assert X["promptLength"] == P and len(X["tokens"]) == N and G == 20 and not X["given"]
    assert X["generation"] == result.generation and X["generation"]["temperature"] == 0.0
    S = X["saliency"]
    assert [m["name"] for m in S["methods"]] == ["grad_x_input", "integrated_gradients", "erasure", "gradient"]
    assert [m["signed"] for m in S["methods"]] == [False, True, True, False]
    # Saliency rows: row g over the P + g tokens before new token g, as float16 (3 significant digits).
    lengths = [P + g for g in range(G)]
    for m in S["methods"]:
        for g, row in enumerate(float16_rows(m["scores"], lengths)):
            np.testing.assert_array_equal(row, result.saliency[m["name"]][g, : P + g].astype(np.float16))
        signed = result.signed(m["name"])
        assert (m["values"] is None) == (signed is None)
        if signed is not None:
            for g, row in enumerate(float16_rows(m["values"], lengths)):
                np.testing.assert_array_equal(row, signed[g, : P + g].astype(np.float16))
        contrast = float16_rows(m["contrastScores"], [n for n in lengths for _ in range(2)])
        for g in range(G):
            for j in range(2):
                expected = result.contrast_saliency[m["name"]][g, j, : P + g].astype(np.float16)
                np.testing.assert_array_equal(contrast[2 * g + j], expected)
    assert S["foils"] == result.contrast_ids.tolist()
    np.testing.assert_allclose(S["foilValues"], result.contrast_values, atol=5e-6)
    np.testing.assert_array_equal(X["lens"]["topIds"], result.lens_top_ids)
    np.testing.assert_array_equal(X["lens"]["targetRanks"], result.lens_target_ranks)
    assert X["lens"]["layers"] == ["embeddings", "block 0", "block 1", "block 2", "block 3"]
    # Attention: the float16 lower triangles, exactly (31 tokens: every head fits the budget).
    import base64

    triangles = np.frombuffer(base64.b64decode(X["attention"]["float16"]), dtype="<f2").reshape(4, 4, -1)
    query, key = np.tril_indices(N)
    np.testing.assert_array_equal(triangles, result.attention[:, :, query, key])
    assert X["attention"]["float16"] == lower_triangles(result.attention)
    assert data["attention"] == {
        "layerCount": 4, "headCount": 4, "layers": [0, 1, 2, 3], "heads": [0, 1, 2, 3], "mean": False, "note": None
    }  # fmt: skip
    assert [s["layers"] for s in data["factors"]] == result.factor_layers
    for s, factor_set in enumerate(data["factors"]):
        acts = result.factor_activations[s]
        (shown,) = factor_set["activations"]  # one input
        np.testing.assert_allclose(shown, acts, rtol=0, atol=1e-3 * np.abs(acts).max())
    assert set(map(int, data["pieces"])) >= set(result.contrast_ids.ravel().tolist())


def test_page_attention_choices(tiny_explanation):
    """The page carries what the result stores, or a part: chosen layers and heads, each layer's
    mean over its heads, or none; "auto" keeps all while they fit the budget."""
    import base64

    from engine.analysis import report
    from engine.base.errors import InputError

    result, N = tiny_explanation, len(tiny_explanation.token_ids)
    query, key = np.tril_indices(N)

    def shown(**options):
        data = report.report_data([result], **options)
        values = np.frombuffer(base64.b64decode(data["inputs"][0]["attention"]["float16"]), dtype="<f2")
        return data["attention"], values.reshape(
            len(data["attention"]["layers"]), -1, len(query)
        ) if values.size else values

    chosen, values = shown(attention_layers=[2, 0], attention_heads=[3])
    assert (chosen["layers"], chosen["heads"], chosen["mean"]) == ([2, 0], [3], False)
    np.testing.assert_array_equal(values, result.attention[np.ix_([2, 0], [3])][..., query, key])
    chosen, values = shown(attention="mean", attention_layers=[1])
    assert chosen["mean"] and chosen["layers"] == [1] and chosen["note"] is None
    mean = result.attention[1].astype(np.float32).mean(0).astype(np.float16)[query, key]
    np.testing.assert_array_equal(values[0, 0], mean)
    chosen, values = shown(attention="none")
    assert chosen["layers"] == [] and values.size == 0
    assert "This page carries no attention" in report.asset("report.js")  # what the page then says
    with pytest.raises(
        InputError, match=r"attention of layer 5 is not in this result \(it has layers \[0, 1, 2, 3\]\)"
    ):
        report.report_data([result], attention_layers=[5])
    with pytest.raises(InputError, match="attention must be one of auto, all, mean, none"):
        report.report_data([result], attention="some")
    # The budget: a smaller one makes "auto" keep the means, and say what it left out and how to get it.
    budget = report.ATTENTION_BUDGET
    try:
        report.ATTENTION_BUDGET = report.attention_page_bytes(4, 4, N) - 1
        chosen, values = shown()
        assert chosen["mean"] and values.shape == (4, 1, len(query))
        assert "each layer’s mean over its heads" in chosen["note"] and "--attention all" in chosen["note"]
        report.ATTENTION_BUDGET = report.attention_page_bytes(4, 1, N) - 1
        assert shown()[0]["layers"] == []
    finally:
        report.ATTENTION_BUDGET = budget
    assert report.attention_page_bytes(4, 4, N) == len(report.lower_triangles(result.attention))


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
    """The 124M shape (12 layers x 12 heads), a 10-token prompt and 20 generated tokens: every
    head fits, and the page stays small."""
    e = with_saliency_stand_ins(explained_124M)
    G, N = e.generated, len(e.token_ids)
    assert G == 20 and N == 30
    page = e.to_html().encode("utf-8")
    attention_bytes = 12 * 12 * (N * (N + 1) // 2) * 2 * 4 / 3  # base64 of the float16 lower triangles
    without = e.to_html(attention="none").encode("utf-8")
    print(
        f"\n124M shape, 30 tokens (20 generated): the page is {len(page):,} bytes, "
        f"of which attention {attention_bytes:,.0f}; without attention {len(without):,}"
    )
    assert embedded_data(page.decode())["attention"]["note"] is None  # all of it, nothing left out
    assert attention_bytes < len(page) < 2_000_000 and len(page) - len(without) == pytest.approx(
        attention_bytes, rel=0.01
    )
    text = " ".join((REPO / "docs" / "interpretability.md").read_text().split())
    assert (
        f"20 generated tokens it is {round(len(page) / 1000)} KB, {round(attention_bytes / 1000)} KB of it attention"
        in text
    )
    assert f"{round(len(without) / 1000)} KB without attention" in text


def test_page_for_256_tokens_on_the_124M_shape_is_under_5_MB(explained_124M_256):
    """The same shape at 256 tokens: all 144 heads would weigh 12.6 MB, so the default page keeps
    each layer's mean over its heads, says so, and stays under 5 MB."""
    e = with_saliency_stand_ins(explained_124M_256)
    N = len(e.token_ids)
    assert N == 256 and e.generated == 246
    page = e.to_html().encode("utf-8")
    full = e.to_html(attention="all").encode("utf-8")
    without = e.to_html(attention="none").encode("utf-8")
    print(
        f"\n124M shape, 256 tokens: the default page is {len(page):,} bytes (each layer's mean attention); "
        f"with every head {len(full):,}; without attention {len(without):,}"
    )
    data = embedded_data(page.decode())
    assert data["attention"]["mean"] and data["attention"]["layers"] == list(range(12))
    assert "12.6 MB" in data["attention"]["note"]
    assert len(page) < 5_000_000 < len(full) and len(without) < len(page)
    text = " ".join((REPO / "docs" / "interpretability.md").read_text().split())
    assert f"at 256 tokens the default page is {len(page) / 1e6:.1f} MB" in text
    assert f"{len(full) / 1e6:.1f} MB with every head, {len(without) / 1e6:.1f} MB without attention" in text


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
    (X,) = data["inputs"]
    assert X["prompt"] == "KING:" and len(X["tokens"]) == X["promptLength"] + 3
    assert len(data["factors"][0]["activations"][0]) == 3


def test_cli_refuses_an_html_path_in_a_missing_directory(tiny_model_dir, tmp_path):
    result = gpt2("explain", "KING:", "--model", tiny_model_dir, "--html", tmp_path / "nowhere" / "r.html")
    assert_user_error(result, "--html", "does not exist")


def test_gpt2_report_makes_the_page_of_a_saved_result(tiny_explanation, tmp_path):
    saved = tiny_explanation.save(tmp_path / "r.npz")
    out = tmp_path / "r.html"
    result = gpt2("report", saved, "--html", out)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert out.read_text(encoding="utf-8") == tiny_explanation.to_html()
    result = gpt2("report", saved, "--html", out, "--attention", "mean", "--attention-layers", "1,3")
    assert result.returncode == 0, result.stderr
    chosen = embedded_data(out.read_text(encoding="utf-8"))["attention"]
    assert chosen["layers"] == [1, 3] and chosen["mean"]
    assert_user_error(gpt2("report", tmp_path / "missing.npz", "--html", out), "missing.npz: cannot read the file")
    assert_user_error(gpt2("report", saved, "--html", tmp_path / "no" / "r.html"), "--html", "does not exist")
    assert_user_error(
        gpt2("report", saved, "--html", out, "--attention-heads", "9"), "attention of head 9 is not in this result"
    )
    bad = gpt2("report", saved, "--html", out, "--attention-layers", "1,x")
    assert bad.returncode == 2 and "expected integers separated by commas" in bad.stderr


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
    from engine.analysis.plots import figure_class

    figure_class.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"gpt2-engine\[plot\]"):
            tiny_explanation.plot_saliency()
    finally:
        figure_class.cache_clear()


def png_size(path):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path).shape[:2]


def test_plot_saliency_draws_the_scores(tiny_explanation, tmp_path):
    """Magnitude methods: bars of the scores; signed methods: bars of the signed values, blue up
    (support) and red down (against); a foil: the contrast's."""
    result, P = tiny_explanation, tiny_explanation.prompt_length
    for g, method in [(0, "grad_x_input"), (-1, "erasure"), (7, "integrated_gradients"), (2, "gradient")]:
        figure = result.plot_saliency(g, method)
        bars = [patch.get_height() for patch in figure.axes[0].patches]
        g %= result.generated
        expected = result.signed(method) if method in ("erasure", "integrated_gradients") else result.saliency[method]
        np.testing.assert_allclose(bars, expected[g][: P + g], rtol=1e-6)
        if method == "erasure":
            blue = [p.get_facecolor()[:3] for p in figure.axes[0].patches if p.get_height() > 0]
            red = [p.get_facecolor()[:3] for p in figure.axes[0].patches if p.get_height() < 0]
            assert red and all(np.allclose(c, (33 / 255, 102 / 255, 172 / 255)) for c in blue)
            assert all(np.allclose(c, (178 / 255, 24 / 255, 43 / 255)) for c in red)
            assert "(signed)" in figure.axes[0].get_title(loc="left")
        from engine.analysis.plots import token_label

        assert [t.get_text() for t in figure.axes[0].get_xticklabels()][-1] == token_label(result.tokens[P + g - 1])
    figure.savefig(tmp_path / "saliency.png")
    assert min(png_size(tmp_path / "saliency.png")) > 100
    contrast = result.plot_saliency(4, "grad_x_input", foil=1)
    bars = [patch.get_height() for patch in contrast.axes[0].patches]
    np.testing.assert_allclose(bars, result.contrast_saliency["grad_x_input"][4, 1][: P + 4], rtol=1e-6)
    assert "rather than" in contrast.axes[0].get_title(loc="left")
    from engine.base.errors import InputError

    with pytest.raises(InputError, match="index the 20 new"):
        result.plot_saliency(20)
    with pytest.raises(InputError, match="no 'nope' saliency"):
        result.plot_saliency(0, "nope")
    with pytest.raises(InputError, match="foil must index the 2 alternatives"):
        result.plot_saliency(0, foil=2)


def test_figures_of_100_tokens_wrap_or_thin_their_labels(tiny_explanation_100):
    """No figure grows past MAX_WIDTH inches: the bars and the rank columns of 100 tokens wrap onto
    panels, every value still drawn; sparklines and attention label every n-th token."""
    from engine.analysis.plots import MAX_WIDTH

    result = tiny_explanation_100
    P, N = result.prompt_length, len(result.token_ids)
    assert result.generated == 100
    figure = result.plot_saliency(-1, "grad_x_input")
    assert figure.get_size_inches()[0] <= MAX_WIDTH and len(figure.axes) > 1
    bars = [p.get_height() for ax in figure.axes for p in ax.patches]
    np.testing.assert_allclose(bars, result.saliency["grad_x_input"][-1][: N - 1], rtol=1e-6)
    figure = result.plot_rankings()
    assert figure.get_size_inches()[0] <= MAX_WIDTH and len(figure.axes) >= 4
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert sorted(texts) == sorted(str(r) for r in result.lens_target_ranks[:, P - 1 : N - 1].ravel())
    for figure in (result.plot_factors(), result.plot_attention(1, 2)):
        assert max(figure.get_size_inches()) <= MAX_WIDTH
        ticks = figure.axes[-2 if len(figure.axes) == 2 else -1].get_xticklabels()
        assert 10 < len(ticks) < N  # thinned, not dropped


def test_figures_show_themselves_in_a_notebook(tiny_explanation):
    """IPython shows an object through its _repr_png_: the figures have one, so a fresh kernel shows
    them without %matplotlib inline (tests/test_notebook.py runs a real kernel)."""
    png = tiny_explanation.plot_rankings()._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


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
