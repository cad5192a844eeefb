"""The explain report in a real browser: Debian's Chromium (/usr/bin/chromium), driven by Playwright.

No browser is downloaded: Playwright launches the system Chromium (`.ci/run` installs it with
apt-get). Outside CI a missing browser skips these tests with the reason; under CI=true it fails
them. Every page is opened from a file:// URL with every other request blocked and recorded, and
each test asserts that none was attempted and that the console stayed free of errors.

What is checked: the shading of every method (magnitude methods in one hue, signed methods on a
diverging support/against scale with its legend and readout) and of the contrast picker; the WCAG
contrast of every rendered token against its background, in every state of every view, in the
light and the dark scheme; the keyboard path; the factor, attention and lens pickers; the linked
views (a token selected in one view shows in the others); a 100-token page's layout; a narrow touch
screen; the page of several inputs with shared factors; the notebook iframe. Screenshots go to
tests/artifacts/ (ignored by git) for people to look at.
"""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from browser import CHROMIUM, launch
from conftest import REPO

ARTIFACTS = REPO / "tests" / "artifacts"
COLOURS = {  # report.css: the shading colours of each scheme
    "light": {"saliency": (234, 88, 12), "support": (33, 102, 172), "against": (178, 24, 43), "heat": (37, 99, 235)},
    "dark": {"saliency": (249, 115, 22), "support": (103, 169, 207), "against": (239, 108, 88), "heat": (96, 165, 250)},
}
SALIENCY_RGB, HEAT_RGB = COLOURS["light"]["saliency"], COLOURS["light"]["heat"]
SIGNED = ("erasure", "integrated_gradients")


def missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true requires the browser tests to run (bash .ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is not installed (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Python Playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def report_path(tiny_explanation, tmp_path_factory):
    return tiny_explanation.save_html(tmp_path_factory.mktemp("report") / "report.html")


class Page:
    """A fresh page on the report, recording console errors and every non-file request (blocked)."""

    def __init__(self, browser, url, width=1100, height=900, touch=False, scheme="light"):
        # Reduced motion: the page then skips its colour transitions, so computed colours are final at once.
        self.context = browser.new_context(
            viewport={"width": width, "height": height},
            device_scale_factor=1,
            reduced_motion="reduce",
            has_touch=touch,
            is_mobile=touch,
            color_scheme=scheme,
        )
        self.errors, self.requests = [], []
        self.context.route("**/*", self.route)
        self.page = self.context.new_page()
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("dialog", lambda dialog: self.errors.append(f"dialog: {dialog.message}") or dialog.dismiss())
        self.page.goto(url)

    def route(self, route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            self.requests.append(route.request.url)
            route.abort()

    def check_clean(self):
        assert self.errors == [], self.errors
        assert self.requests == [], self.requests

    def close(self):
        self.check_clean()
        self.context.close()


@pytest.fixture
def page(browser, report_path):
    opened = Page(browser, report_path.as_uri())
    yield opened.page
    opened.close()


def open_result(browser, result, tmp_path, name="report.html", page_options=None, **options):
    """A Page on the report of result (page_options: the report's own, such as attention=)."""
    return Page(browser, result.save_html(tmp_path / name, **(page_options or {})).as_uri(), **options)


def wait_until_true(page, expression: str, seconds: float = 10.0) -> None:
    """Poll `expression` from outside the page. Playwright's wait_for_function evaluates its predicate
    inside the page with eval, which the page's Content-Security-Policy (no 'unsafe-eval') refuses."""
    for _ in range(int(seconds / 0.05)):
        if page.evaluate(expression):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"still false after {seconds} s: {expression}")


def alpha_of(colour: str) -> float:
    """The alpha of a computed 'rgba(r, g, b, a)' ('rgb(...)' is opaque; 'transparent' is rgba(0,0,0,0))."""
    values = colour[colour.index("(") + 1 : -1].split(",")
    return float(values[3]) if len(values) == 4 else 1.0


def rgb_of(colour: str) -> tuple:
    return tuple(int(float(v)) for v in colour[colour.index("(") + 1 : -1].split(",")[:3])


def label(text: str) -> str:
    """A token as labels show it: line breaks and tabs as symbols, a token of spaces as ␣."""
    shown = text.replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")
    return shown.replace(" ", "␣") if not text.strip() else shown


def shown_text(result, i: int) -> str:
    """Token i as the running text shows it: its bytes when it is part of a character; ↵ for each
    line break (the break itself follows, outside the token), ⇥ for a tab, ␣ in a token of spaces."""
    hex_bytes = result.piece_bytes.get(int(result.token_ids[i]))
    if hex_bytes:
        return "".join(f"\\x{b}" for b in hex_bytes.split())
    return label(result.tokens[i])


READ_SALIENCY = """() => [...document.querySelectorAll('#saliency-tokens .tok')].map(n => ({
    score: n.dataset.score === undefined ? null : Number(n.dataset.score),
    value: n.dataset.value === undefined ? null : Number(n.dataset.value),
    sign: n.dataset.sign || null,
    background: getComputedStyle(n).backgroundColor,
    target: n.classList.contains('target'),
}))"""


def check_saliency_shading(page, result, method, g, foil=None, scheme="light"):
    """Every token before new token g holds its score; a magnitude method shades it in one hue by
    score / largest score, a signed method in the support or against hue by |value| / largest |value|."""
    P = result.prompt_length
    signed = result.signed(method)
    if foil is None:
        scores = result.saliency[method][g]
        values = signed[g] if signed is not None else None
    else:
        scores = result.contrast_saliency[method][g, foil]
        values = result.contrast_signed[method][g, foil] if signed is not None else None
    # The page carries float16 (3 significant digits).
    scores = scores.astype(np.float16).astype(np.float64)
    values = values.astype(np.float16).astype(np.float64) if values is not None else None
    shown = page.evaluate(READ_SALIENCY)
    colours = COLOURS[scheme]
    largest = np.abs(values[: P + g]).max() if values is not None else scores[: P + g].max()
    for i, token in enumerate(shown):
        if i < P + g:
            assert token["score"] == pytest.approx(scores[i], rel=1e-6, abs=1e-12), (method, g, i)
            if values is None:
                assert rgb_of(token["background"]) == colours["saliency"] and token["sign"] is None
                expected = scores[i] / largest
            else:
                v = values[i]
                assert token["value"] == pytest.approx(v, rel=1e-6, abs=1e-12), (method, g, i)
                assert token["sign"] == ("support" if v > 0 else "against" if v < 0 else "none")
                if v:
                    assert rgb_of(token["background"]) == colours["support" if v > 0 else "against"], (method, g, i)
                expected = abs(v) / largest
            assert alpha_of(token["background"]) == pytest.approx(expected, abs=0.005), (method, g, i)
        else:  # the new token itself (marked as the target) and the tokens after it: no score
            assert token["score"] is None and token["target"] == (i == P + g), (method, g, i)
            assert i == P + g or alpha_of(token["background"]) == 0, (method, g, i)


def test_page_loads_whole_without_errors_or_requests(browser, report_path, tiny_explanation):
    opened = Page(browser, report_path.as_uri())
    page, result = opened.page, tiny_explanation
    from engine.analysis.report import page_title

    assert page.title() == page_title([result])  # the "</script><!--" in the prompt came through as text
    texts = page.evaluate("() => [...document.querySelectorAll('#saliency-tokens .tok')].map(n => n.textContent)")
    assert texts == [shown_text(result, i) for i in range(len(result.tokens))]
    assert page.locator("#saliency-methods input").count() == 4
    assert page.locator("#factor-texts .tok").count() == len(result.tokens)
    assert page.locator("#lens-scroll td[data-r]").count() == len(result.lens_layers) * len(result.tokens)
    assert page.locator("#input-picker-box").is_hidden()  # one input: no input picker
    opened.close()


def test_hovering_a_new_token_shades_the_earlier_tokens_by_their_scores(page, tiny_explanation):
    result, P = tiny_explanation, tiny_explanation.prompt_length
    labels = {
        "grad_x_input": "Gradient × input",
        "integrated_gradients": "Integrated gradients",
        "erasure": "Erasure",
        "gradient": "Gradient",
    }
    # As loaded: the last new token is pinned, with grad_x_input.
    check_saliency_shading(page, result, "grad_x_input", result.generated - 1)
    for method, label in labels.items():
        page.get_by_label(label, exact=True).check()
        for g in (0, 7, result.generated - 1):
            page.locator(f"#saliency-tokens [data-generated='{g}']").hover()
            check_saliency_shading(page, result, method, g)
    # Leaving the token returns to the pinned one; a click (a tap) pins another.
    page.mouse.move(0, 0)
    check_saliency_shading(page, result, "gradient", result.generated - 1)
    page.locator("#saliency-tokens [data-generated='3']").click()
    page.mouse.move(0, 0)
    check_saliency_shading(page, result, "gradient", 3)
    readout = page.locator("#saliency-readout").text_content()
    assert f"(position {P + 3})" in readout and "Most salient" in readout


def test_signed_methods_use_a_diverging_scale(page, tiny_explanation):
    """Erasure and integrated gradients can lower the token's log-probability: their tokens are
    shaded by sign (support / against) with a diverging legend, and the readout says so; the
    magnitude methods keep one hue and say that they are magnitudes."""
    result, P = tiny_explanation, tiny_explanation.prompt_length
    signs = {np.sign(v) for m in SIGNED for v in result.signed(m)[:, :P].ravel()}
    assert {-1, 1} <= signs  # this result has both: the test can tell the two hues apart
    for method, label in [("erasure", "Erasure"), ("integrated_gradients", "Integrated gradients")]:
        page.get_by_label(label, exact=True).check()
        for g in (2, 11, result.generated - 1):
            page.locator(f"#saliency-tokens [data-generated='{g}']").click()
            check_saliency_shading(page, result, method, g)
            readout = page.locator("#saliency-readout").text_content()
            assert f"Signed ({label})" in readout and "Most support" in readout and "most against" in readout
            legend = page.locator("#saliency-legend").text_content()
            assert "against" in legend and "support" in legend and "−" in legend and "+" in legend
            # The most supportive token is named with its position and value.
            values = result.signed(method)[g].astype(np.float16).astype(np.float64)
            best = int(np.argmax(values[: P + g]))
            assert f"({best}" in readout.split("Most support:")[1]
        ramp = page.evaluate("getComputedStyle(document.querySelector('#saliency-legend .ramp')).backgroundImage")
        assert "rgb(178, 24, 43)" in ramp and "rgb(33, 102, 172)" in ramp
    for label in ("Gradient × input", "Gradient"):
        page.get_by_label(label, exact=True).check()
        readout = page.locator("#saliency-readout").text_content()
        assert f"Magnitude only ({label})" in readout and "Most salient" in readout
        assert "magnitude" in page.locator("#saliency-legend").text_content()
        signs = page.evaluate("[...document.querySelectorAll('#saliency-tokens .tok[data-sign]')].length")
        assert signs == 0


def test_the_contrast_picker_shows_why_this_token_rather_than_another(page, tiny_explanation):
    result = tiny_explanation
    pieces = result.pieces
    for method, name in [("grad_x_input", "Gradient × input"), ("erasure", "Erasure")]:
        page.get_by_label(name, exact=True).check()
        for g, j in ((4, 0), (15, 1)):
            page.locator(f"#saliency-tokens [data-generated='{g}']").click()
            options = page.evaluate("[...document.querySelectorAll('#saliency-foil option')].map(o => o.textContent)")
            assert len(options) == 3 and options[0].startswith("—")
            for k, foil in enumerate(result.contrast_ids[g]):
                assert options[k + 1].startswith(label(pieces[int(foil)]))
            page.select_option("#saliency-foil", str(j))
            check_saliency_shading(page, result, method, g, foil=j)
            readout = page.locator("#saliency-readout").text_content()
            difference = round(float(result.target_values[g]), 5) - round(float(result.contrast_values[g, j]), 5)
            assert "Rather than" in readout and f"= {difference:.3f}".replace("-", "−") in readout
            page.select_option("#saliency-foil", "-1")
            check_saliency_shading(page, result, method, g)


def test_saliency_works_from_the_keyboard(page, tiny_explanation):
    result, G = tiny_explanation, tiny_explanation.generated
    for _ in range(40):  # Tab from the top until a new token has focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('generated')"):
            break
    focused = lambda: page.evaluate("Number(document.activeElement.dataset.generated)")  # noqa: E731
    assert focused() == G - 1  # the one tab stop of the text: the pinned token
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # a visible focus style
    page.keyboard.press("ArrowLeft")
    assert focused() == G - 2
    check_saliency_shading(page, result, "grad_x_input", G - 2)
    page.keyboard.press("Home")
    assert focused() == 0
    check_saliency_shading(page, result, "grad_x_input", 0)
    page.keyboard.press("ArrowRight")
    assert focused() == 1 and page.evaluate("document.activeElement.getAttribute('aria-pressed')") == "true"
    # The method switch: a radio group, arrow keys move the choice.
    page.locator("#saliency-methods input:checked").focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.querySelector('#saliency-methods input:checked').value") == "integrated_gradients"
    check_saliency_shading(page, result, "integrated_gradients", 1)


READ_FACTORS = """() => ({
    tokens: [...document.querySelectorAll('#factor-texts .tok')].map(n => [Number(n.dataset.factor), Number(n.dataset.value)]),
    lines: [...document.querySelectorAll('#factor-list svg polyline')].map(l => l.getAttribute('points')),
})"""


def test_factor_pickers_recolour_the_tokens(page, tiny_explanation):
    result = tiny_explanation
    for s in (0, len(result.factor_layers) - 1, 2):
        page.select_option("#factor-layers", str(s))
        acts = result.factor_activations[s].astype(np.float64)  # [F, N]
        peaks = acts.max(1)
        drawn = page.evaluate(READ_FACTORS)
        # All factors: each token in its dominant factor, as strong as that factor is there.
        dominant = acts.argmax(0)
        assert [f for f, _ in drawn["tokens"]] == dominant.tolist(), s
        np.testing.assert_allclose(
            [v for _, v in drawn["tokens"]], acts[dominant, np.arange(acts.shape[1])] / peaks[dominant], atol=2e-3
        )
        # A sparkline per factor, each scaled to its peak.
        assert len(drawn["lines"]) == len(acts)
        for f, points in enumerate(drawn["lines"]):
            heights = [1 - float(point.split(",")[1]) for point in points.split()]
            np.testing.assert_allclose(heights, acts[f] / peaks[f], atol=2e-3)
        # One factor: every token shaded by that factor alone.
        for f in (1, len(acts) - 1):
            page.locator(f"#factor-list label[data-factor='{f}']").click()
            drawn = page.evaluate(READ_FACTORS)
            assert {factor for factor, _ in drawn["tokens"]} == {f}
            np.testing.assert_allclose([v for _, v in drawn["tokens"]], acts[f] / peaks[f], atol=2e-3)
            assert f"Factor {f + 1} fires most on" in page.locator("#factor-readout").text_content()
        page.locator("#factor-list label[data-factor='-1']").click()


def check_heatmap(page, pattern, base=(255, 255, 255), heat=HEAT_RGB):
    """Every cell at or below the diagonal is the heat colour over the paper at the attention value."""
    N = pattern.shape[0]
    pixels = page.evaluate(
        """(N) => {
        const c = document.getElementById('attention-map'), d = c.dataset, ctx = c.getContext('2d'), out = [];
        for (let q = 0; q < N; q++) for (let k = 0; k <= q; k++) {
            const x = Number(d.left) + (k + 0.5) * Number(d.cell), y = Number(d.top) + (q + 0.5) * Number(d.cell);
            out.push([...ctx.getImageData(Math.floor(x), Math.floor(y), 1, 1).data].slice(0, 3));
        }
        return out;
    }""",
        N,
    )
    query, key = np.tril_indices(N)
    values = pattern[query, key].astype(np.float64)[:, None]  # [cells, 1]
    expected = np.array(base) + values * (np.array(heat) - np.array(base))  # alpha blending over the paper
    assert np.abs(np.array(pixels) - expected).max() <= 2.5


def test_layer_and_head_pickers_redraw_the_attention_map(page, tiny_explanation):
    attention = tiny_explanation.attention.astype(np.float32)  # [L, H, N, N]
    canvas = page.locator("#attention-map")
    check_heatmap(page, attention[0, 0])
    for layer, head in [(0, 3), (2, 1), (3, 2)]:
        page.select_option("#attention-layer", label=str(layer))
        page.select_option("#attention-head", label=str(head))
        assert (canvas.get_attribute("data-layer"), canvas.get_attribute("data-head")) == (str(layer), str(head))
        assert f"layer {layer}, head {head}" in canvas.get_attribute("aria-label")
        check_heatmap(page, attention[layer, head])
    page.locator("#head-next").click()  # the stepper: head 2 -> 3
    check_heatmap(page, attention[3, 3])
    page.select_option("#attention-head", label="mean of heads")
    check_heatmap(page, attention[3].mean(0))
    # The keyboard reads a cell: focus puts the cursor on the last query, first key; arrows move it.
    canvas.focus()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowRight")
    N = attention.shape[-1]
    readout = page.locator("#attention-readout").text_content()
    assert f"(query {N - 2})" in readout and "(key 1)" in readout
    assert f"{attention[3, :, N - 2, 1].mean():.3f}" in readout


def test_a_page_with_chosen_heads_or_means_only(browser, tiny_explanation, tmp_path):
    """A page that carries some layers and heads offers just those; one with each layer's mean
    offers the mean; one without attention says so instead of drawing a map."""
    attention = tiny_explanation.attention.astype(np.float32)
    opened = open_result(
        browser, tiny_explanation, tmp_path, page_options={"attention_layers": [2, 3], "attention_heads": [1]}
    )
    page = opened.page
    assert page.evaluate("[...document.querySelectorAll('#attention-layer option')].map(o => o.textContent)") == [
        "2",
        "3",
    ]
    assert page.evaluate("[...document.querySelectorAll('#attention-head option')].map(o => o.textContent)") == ["1"]
    check_heatmap(page, attention[2, 1])
    page.select_option("#attention-layer", label="3")
    check_heatmap(page, attention[3, 1])
    opened.close()
    opened = open_result(browser, tiny_explanation, tmp_path, "mean.html", {"attention": "mean"})
    opened.page.select_option("#attention-layer", label="1")
    check_heatmap(opened.page, attention[1].mean(0).astype(np.float16).astype(np.float32))
    opened.close()
    opened = open_result(browser, tiny_explanation, tmp_path, "none.html", {"attention": "none"})
    assert opened.page.locator("#attention-map-box").is_hidden()
    assert "This page carries no attention" in opened.page.locator("#attention-note").text_content()
    opened.close()


def test_logit_lens_grid_and_ranks(page, tiny_explanation):
    result = tiny_explanation
    R, N = result.lens_top_ids.shape[:2]
    cells = page.evaluate("""() => [...document.querySelectorAll('#lens-scroll td[data-r]')].map(td => ({
        r: Number(td.dataset.r), c: Number(td.dataset.c), text: td.firstChild.textContent,
        p: td.querySelector('.p').textContent, hit: td.classList.contains('hit'),
        alpha: getComputedStyle(td).backgroundColor }))""")
    assert len(cells) == R * N
    for cell in cells:
        r, t = cell["r"], cell["c"]
        top, p = int(result.lens_top_ids[r, t, 0]), float(result.lens_top_probs[r, t, 0])
        assert cell["text"] == label(result.pieces[top])
        assert alpha_of(cell["alpha"]) == pytest.approx(p, abs=0.005)
        assert cell["hit"] == (t < N - 1 and top == result.lens_targets[t])
        # A probability never reads 0 when it is not: 2 significant digits down to 0.0001%.
        assert cell["p"] != "0.0%" and re.fullmatch(r"(<0\.0001|[0-9.]+)%", cell["p"])
        if p > 0:
            assert float(cell["p"].strip("<%")) > 0
            if p >= 1e-6:  # 2 significant digits of a probability the page holds to 3
                assert float(cell["p"].strip("%")) == pytest.approx(100 * p, rel=0.06)
    P = result.prompt_length
    ranks = page.evaluate(
        """() => [...document.querySelectorAll('#ranks-scroll td[data-r]')].map(td => Number(td.dataset.rank))"""
    )
    np.testing.assert_array_equal(np.reshape(ranks, (R, -1)), result.lens_target_ranks[:, P - 1 : N - 1])
    # Keyboard: the grid has one tab stop; arrows move the focused cell, whose top-k fills the readout.
    page.locator("#lens-scroll td[data-r='0'][data-c='0']").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("[document.activeElement.dataset.r, document.activeElement.dataset.c]") == ["1", "1"]
    assert page.locator("#lens-readout").text_content().startswith("At ")


def test_linked_views_follow_the_selected_token(page, tiny_explanation):
    """Selecting a token in one view highlights its lens column (scrolled into view), its attention
    row and its factor activations; selecting a new token anywhere pins it in the saliency view."""
    result, P = tiny_explanation, tiny_explanation.prompt_length
    selected = """() => ({
        lens: [...document.querySelectorAll('#lens-scroll thead th.selected')].map(th => Number(th.dataset.c)),
        cells: document.querySelectorAll('#lens-scroll td.selected').length,
        row: document.getElementById('attention-map').dataset.row,
        linked: [...document.querySelectorAll('#saliency-tokens .tok.linked')].map(n => Number(n.dataset.index)),
        factorLinked: [...document.querySelectorAll('#factor-texts .tok.linked')].map(n => Number(n.dataset.index)),
        pinned: Number(document.querySelector('#saliency-tokens [aria-pressed="true"]').dataset.index),
        markers: [...document.querySelectorAll('#factor-list line.marker')].map(l => [l.getAttribute('visibility'), l.getAttribute('x1')]),
    })"""
    # A prompt token, from the factor view.
    t = 4
    page.locator(f"#factor-texts .tok[data-index='{t}']").click()
    state = page.evaluate(selected)
    R = len(result.lens_layers)
    assert state["lens"] == [t] and state["cells"] == R + 1 and state["row"] == str(t)
    assert state["linked"] == [t] and state["factorLinked"] == [t]
    assert state["markers"] and all(m == ["visible", str(t)] for m in state["markers"])
    readout = page.locator("#factor-readout").text_content()
    s = len(result.factor_layers) - 1
    strongest = int(np.argmax(result.factor_activations[s][:, t]))
    assert f"({t})" in readout and f"factor {strongest + 1} " in readout
    # A new token, from the lens: the saliency view pins it.
    t = P + 6
    page.locator(f"#lens-scroll td[data-r='2'][data-c='{t}']").click()
    state = page.evaluate(selected)
    assert state["lens"] == [t] and state["row"] == str(t) and state["pinned"] == t and state["factorLinked"] == [t]
    check_saliency_shading(page, result, "grad_x_input", 6)
    # A row of the attention map.
    q = P + 2
    box = page.evaluate(
        "(() => { const d = document.getElementById('attention-map').dataset; return [+d.left, +d.top, +d.cell]; })()"
    )
    page.locator("#attention-map").click(position={"x": box[0] + 0.5 * box[2], "y": box[1] + (q + 0.5) * box[2]})
    state = page.evaluate(selected)
    assert state["lens"] == [q] and state["row"] == str(q) and state["pinned"] == q
    # From the saliency view.
    page.locator("#saliency-tokens [data-generated='10']").click()
    assert page.evaluate(selected)["lens"] == [P + 10]


def test_narrow_touch_screen_has_no_horizontal_overflow(browser, report_path, tiny_explanation):
    opened = Page(browser, report_path.as_uri(), width=375, height=812, touch=True)
    page = opened.page
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], widths
    # Wide content scrolls inside its own box, not the page.
    boxes = page.evaluate("""() => [...document.querySelectorAll('.card')].map(c => c.getBoundingClientRect().right)""")
    assert max(boxes) <= 375
    assert page.evaluate("document.getElementById('attention-map-box').getBoundingClientRect().right") <= 375
    # The attention map keeps its labels: cells stay large enough for them, and the map scrolls in its box.
    canvas = page.evaluate(
        "(() => { const d = document.getElementById('attention-map').dataset; return [d.labels, +d.cell]; })()"
    )
    assert canvas[0] == "all" and canvas[1] >= 9
    # A tap on a new token pins it, as a click does.
    page.locator("#saliency-tokens [data-generated='5']").tap()
    check_saliency_shading(page, tiny_explanation, "grad_x_input", 5)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "report-narrow.png", full_page=True)
    opened.close()


# ----------------------------------------------------------------------------------------------
# Contrast: WCAG AA (4.5:1) for every token on every shade, in both colour schemes

CONTRASTS = """(selector) => {
    const parse = (c) => { const v = c.match(/[\\d.]+/g).map(Number); return v.length === 4 ? v : [...v, 1]; };
    const channel = (v) => { const c = v / 255; return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    const luminance = (rgb) => 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2]);
    const ratio = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
    function background(node) {  // the colour behind a node: its own and its ancestors' backgrounds, blended
        const layers = [];
        for (let n = node; n; n = n.parentElement) {
            const c = parse(getComputedStyle(n).backgroundColor);
            if (c[3] > 0) layers.push(c);
            if (c[3] >= 1) break;
        }
        let rgb = [255, 255, 255];
        for (const c of layers.reverse()) rgb = rgb.map((b, i) => b + c[3] * (c[i] - b));
        return rgb;
    }
    const out = [];
    for (const node of document.querySelectorAll(selector)) {
        if (!node.textContent.trim() || node.offsetParent === null) continue;
        const bg = background(node), fg = parse(getComputedStyle(node).color);
        const text = fg[3] < 1 ? bg.map((b, i) => b + fg[3] * (fg[i] - b)) : fg.slice(0, 3);
        out.push([node.textContent.slice(0, 20), ratio(text, bg)]);
    }
    return out;
}"""

EVERYTHING = (
    ".tok, .tok .mark, .tok .bytes, table.grid td, table.grid th, .tokname, .readout, .readout span, .legend, "
    ".help, .note, .facts dt, .facts dd, .factor-row .name, .factor-row .fires, .segmented label, select, h1, h2, h3"
)

# Every state of the views, in the page itself: each method, each new token pinned, each foil; each
# factor set with all factors and with each factor alone; every lens and rank cell is always there.
EVERY_STATE = """(check) => {
    const results = [];
    const collect = (selector) => results.push(...check(selector));
    const methods = [...document.querySelectorAll('#saliency-methods input')];
    const tokens = [...document.querySelectorAll('#saliency-tokens .tok.generated')];
    const foil = document.getElementById('saliency-foil');
    for (const method of methods) {
        method.click();
        for (const token of tokens) {
            token.click();
            for (const option of [...foil.options]) {
                foil.value = option.value;
                foil.dispatchEvent(new Event('change'));
                collect('#saliency-tokens .tok, #saliency .readout, #saliency .readout span, #saliency .legend');
            }
        }
    }
    const layers = document.getElementById('factor-layers');
    for (const option of [...layers.options]) {
        layers.value = option.value;
        layers.dispatchEvent(new Event('change'));
        for (const row of [...document.querySelectorAll('#factor-list input')]) {
            row.click();
            collect('#factor-texts .tok, #factors .readout, #factors .readout span, #factor-list .name, #factor-list .fires');
        }
    }
    collect(EVERYTHING);
    return results;
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_token_reads_at_4_5_to_1_on_every_shade(
    browser, tiny_explanation, tiny_explanation_text, tmp_path, scheme
):
    worst = {}
    for name, result in (("report", tiny_explanation), ("text", tiny_explanation_text)):
        opened = open_result(browser, result, tmp_path, f"{name}.html", scheme=scheme)
        page = opened.page
        checked = page.evaluate(
            f"(() => {{ const EVERYTHING = {EVERYTHING!r}; const check = {CONTRASTS}; return ({EVERY_STATE})(check); }})()"
        )
        assert len(checked) > 2000
        failing = [(text, round(ratio, 2)) for text, ratio in checked if ratio < 4.5]
        assert failing == [], (scheme, name, sorted(set(failing))[:20])
        worst[name] = min(ratio for _, ratio in checked)
        if scheme == "dark":  # the page follows the scheme: a dark ground, light ink
            ground = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert max(rgb_of(ground)) < 40
        opened.close()
    print(f"\n{scheme}: the lowest contrast of any text is {min(worst.values()):.2f}:1")


def test_the_page_redraws_when_the_scheme_changes(browser, report_path, tiny_explanation):
    """A system that switches to dark while the page is open: the shades and their text colours are
    drawn again for the dark scheme, and still read at 4.5:1."""
    opened = Page(browser, report_path.as_uri(), scheme="light")
    page = opened.page
    page.locator("#saliency-tokens [data-generated='5']").click()
    assert page.evaluate("document.documentElement.dataset.scheme") == "light"
    page.emulate_media(color_scheme="dark")
    wait_until_true(page, "document.documentElement.dataset.scheme === 'dark'")  # redrawn
    check_saliency_shading(page, tiny_explanation, "grad_x_input", 5, scheme="dark")
    cells = page.evaluate(
        "[...document.querySelectorAll('#lens-scroll td[data-r]')].map(td => getComputedStyle(td).backgroundColor)"
    )
    assert {rgb_of(c) for c in cells if alpha_of(c) > 0} == {COLOURS["dark"]["heat"]}
    failing = [(t, r) for t, r in page.evaluate(f"({CONTRASTS})", EVERYTHING) if r < 4.5]
    assert failing == []
    check_heatmap(
        page, tiny_explanation.attention[0, 0].astype(np.float32), base=(0x16, 0x1B, 0x22), heat=COLOURS["dark"]["heat"]
    )
    opened.close()


# ----------------------------------------------------------------------------------------------
# Readout details, long pages, several inputs


def test_whitespace_bytes_and_small_probabilities_read_clearly(browser, tiny_explanation_text, tmp_path):
    """Whitespace tokens are visible marks everywhere (␣, ↵, ⇥) without underlines under them; a
    piece of an emoji shows its bytes and names the character; the most salient tokens carry their
    positions."""
    result = tiny_explanation_text
    opened = open_result(browser, result, tmp_path)
    page = opened.page
    P = result.prompt_length
    texts = page.evaluate("() => [...document.querySelectorAll('#saliency-tokens .tok')].map(n => n.textContent)")
    assert texts == [shown_text(result, i) for i in range(len(result.tokens))]
    assert any("⇥" in t for t in texts) and any(set(t) == {"␣"} for t in texts) and any("↵" in t for t in texts)
    # Whitespace tokens that are new get no underline (the stray dashes under ↵ lines).
    shadows = page.evaluate("""() => [...document.querySelectorAll('#saliency-tokens .tok.generated.ws')]
        .filter(n => n.getAttribute('aria-pressed') !== 'true').map(n => getComputedStyle(n).boxShadow)""")
    assert shadows and set(shadows) == {"none"}
    # The emoji's pieces: their bytes, and the character they spell in the title and readouts.
    parts = [i for i, t in enumerate(result.token_ids.tolist()) if t in result.piece_bytes]
    assert len(parts) == 3
    for i in parts:
        assert texts[i].startswith("\\x") and "�" not in texts[i]
        title = page.locator(f"#saliency-tokens .tok[data-index='{i}']").get_attribute("title")
        assert "🦜" in title and f"tokens {parts[0]}–{parts[-1]}" in title
    page.locator(f"#lens-scroll td[data-r='0'][data-c='{parts[1]}']").focus()
    readout = page.locator("#lens-readout").text_content()
    assert re.search(r"\(\d+, part of “ ?🦜”\)", readout), readout
    lens_headers = page.evaluate(
        "[...document.querySelectorAll('#lens-scroll thead th[data-c]')].map(th => th.textContent)"
    )
    assert lens_headers == texts
    # Positions in "most salient", which tell apart tokens that look alike (two ↵ here).
    page.locator(f"#saliency-tokens [data-generated='{result.generated - 1}']").click()
    readout = page.locator("#saliency-readout").text_content()
    named = re.findall(r"\((\d+)(?:,[^)]*)?\) [0-9.]+", readout.split("Most salient:")[1])
    scores = result.saliency["grad_x_input"][-1].astype(np.float16)
    assert [int(i) for i in named] == list(np.argsort(-scores[: len(result.tokens) - 1], kind="stable")[:3])
    # No percentage reads 0.0%.
    percents = page.evaluate("[...document.querySelectorAll('#lens-scroll .p')].map(n => n.textContent)")
    assert percents and not [p for p in percents if re.fullmatch(r"0(\.0+)?%", p)]
    assert P > 0
    opened.close()


def test_a_prompt_alone_has_no_method_buttons(browser, tiny_model, tmp_path):
    result = tiny_model.explain("ROMEO: Is the day so young?", max_new_tokens=0, progress=False)
    opened = open_result(browser, result, tmp_path)
    page = opened.page
    assert page.locator("#saliency-methods").is_hidden() and page.locator("#foil-box").is_hidden()
    assert "nothing to attribute" in page.locator("#saliency-readout").text_content()
    assert page.locator("#saliency-tokens .tok.generated").count() == 0
    opened.close()


def test_a_100_token_page_keeps_text_and_sparklines_in_view(browser, tiny_explanation_100, tmp_path):
    """At 100 new tokens the coloured text and the sparklines sit side by side, so both are on
    screen together wherever the reader is in the text; the lens scrolls to the selected token."""
    result = tiny_explanation_100
    opened = open_result(browser, result, tmp_path, width=1100, height=900)
    page = opened.page
    in_view = """(selector) => { const r = document.querySelector(selector).getBoundingClientRect();
        return r.top >= 0 && r.bottom <= window.innerHeight && r.width > 0; }"""
    last = len(result.tokens) - 1
    page.click("nav a[href='#factors']")  # the reader goes to the factor view
    for token in (0, last // 2, last):  # and reads through its text, which scrolls in its own box
        selector = f"#factor-texts .tok[data-index='{token}']"
        page.evaluate("(s) => document.querySelector(s).scrollIntoView({block: 'nearest'})", selector)
        assert page.evaluate(in_view, selector)
        for f in (0, 4, 9):  # the sparklines of the first, a middle and the last factor
            assert page.evaluate(in_view, f"#factor-list svg[data-factor='{f}']"), (token, f)
    side = page.evaluate("""() => [document.getElementById('factor-texts').getBoundingClientRect(),
        document.getElementById('factor-side').getBoundingClientRect()].map(r => [r.left, r.right, r.top])""")
    assert side[0][1] <= side[1][0]  # the text to the left of the factor list, not above it
    # The lens scrolls sideways to the selected token (a click in the factor text selects it).
    box = "#lens-scroll"
    for token in (last - 3, 40, 2):
        page.locator(f"#factor-texts .tok[data-index='{token}']").click()
        column = page.evaluate(
            """([box, t]) => { const b = document.querySelector(box), th = b.querySelector(`thead th[data-c='${t}']`),
            sticky = b.querySelector('th.row').offsetWidth;
            return [th.classList.contains('selected'), th.offsetLeft - b.scrollLeft, th.offsetLeft + th.offsetWidth - b.scrollLeft, b.clientWidth, sticky]; }""",
            [box, token],
        )
        selected, left, right, width, sticky = column
        assert selected and left >= sticky - 1 and right <= width + 1, (token, column)
    # The attention map at 100 tokens: small cells, every few tokens labelled, nothing spills the page.
    canvas = page.evaluate(
        "(() => { const d = document.getElementById('attention-map').dataset; return [d.labels, +d.cell]; })()"
    )
    assert canvas[0].startswith("every") or canvas[1] >= 9
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "report-100.png", full_page=True)
    opened.close()
    narrow = open_result(browser, result, tmp_path, "narrow.html", width=375, height=812, touch=True)
    labels, cell = narrow.page.evaluate(
        "(() => { const d = document.getElementById('attention-map').dataset; return [d.labels, +d.cell]; })()"
    )
    assert labels in ("all", "every 2", "every 3") and cell >= 3  # labelled, the map scrolls in its box
    widths = narrow.page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1]
    narrow.close()


def test_several_inputs_share_the_factor_colours(browser, tiny_model, tmp_path):
    """explain over several prompts: every input's tokens coloured by the shared factors (one scale
    for all), an input picker that switches the other views, and a click in another input's text
    that switches to it."""
    results = tiny_model.explain(
        ["ROMEO: What light", "JULIET: O Romeo, Romeo"], max_new_tokens=4, steps=4, factors=4, progress=False
    )
    opened = Page(browser, results.save_html(tmp_path / "two.html").as_uri())
    page = opened.page
    assert page.locator("#input-picker-box").is_visible()
    s = len(results[0].factor_layers) - 1
    acts = [r.factor_activations[s].astype(np.float64) for r in results]
    peaks = np.maximum(acts[0].max(1), acts[1].max(1))  # each factor's peak over both inputs
    drawn = page.evaluate("""() => [...document.querySelectorAll('#factor-texts .tok')].map(n =>
        [Number(n.dataset.input), Number(n.dataset.factor), Number(n.dataset.value)])""")
    for k, a in enumerate(acts):
        mine = [(f, v) for i, f, v in drawn if i == k]
        dominant = a.argmax(0)
        assert [f for f, _ in mine] == dominant.tolist()
        np.testing.assert_allclose(
            [v for _, v in mine], a[dominant, np.arange(a.shape[1])] / peaks[dominant], atol=2e-3
        )
    assert "fitted over the 2 inputs" in page.locator("#factor-note").text_content()
    page.select_option("#input-picker", "1")
    texts = page.evaluate("() => [...document.querySelectorAll('#saliency-tokens .tok')].map(n => n.textContent)")
    assert texts == [shown_text(results[1], i) for i in range(len(results[1].tokens))]
    assert page.locator("#lens-scroll thead th[data-c]").count() == len(results[1].tokens)
    page.locator("#factor-texts .tok[data-input='0'][data-index='2']").click()
    assert page.evaluate("document.getElementById('input-picker').value") == "0"
    assert page.evaluate(
        "[...document.querySelectorAll('#lens-scroll thead th.selected')].map(th => th.dataset.c)"
    ) == ["2"]
    opened.close()


def test_notebook_iframe_renders_the_page(browser, tiny_explanation):
    opened = Page(browser, "about:blank")
    opened.page.set_content(f"<!DOCTYPE html><body>{tiny_explanation._repr_html_()}</body>")
    frame = opened.page.frame_locator("iframe")
    assert frame.locator("#saliency-tokens .tok").count() == len(tiny_explanation.tokens)
    height = opened.page.evaluate("document.querySelector('iframe').getBoundingClientRect().height")
    assert height > 1500  # the page grew its frame to its own height (720 px before)
    opened.close()


def test_screenshot_is_written(browser, report_path, tiny_explanation):
    opened = Page(browser, report_path.as_uri(), width=1100, height=900)
    page = opened.page
    page.locator(f"#saliency-tokens [data-generated='{tiny_explanation.generated // 2}']").hover()
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "report.png"
    page.screenshot(path=path, full_page=True)
    opened.close()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 50_000
    print(f"\nscreenshot: {path}")


def test_ci_installs_the_browser_before_the_tests():
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    install = next(i for i, line in enumerate(lines) if "apt-get install" in line and " chromium" in line)
    tests = next(i for i, line in enumerate(lines) if "python -m pytest" in line)
    assert install < tests and "DEBIAN_FRONTEND=noninteractive" in lines[install] and " -y " in lines[install]
