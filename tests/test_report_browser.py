"""The explain report in a real browser: Debian's Chromium (/usr/bin/chromium), driven by Playwright.

No browser is downloaded: Playwright launches the system Chromium (`.ci/run` installs it with
apt-get). Outside CI a missing browser skips these tests with the reason; under CI=true it fails
them. Every page is opened from a file:// URL with every other request blocked and recorded, and
each test asserts that none was attempted and that the console stayed free of errors.

A screenshot of the report is written to tests/artifacts/ (ignored by git) for people to look at.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from browser import CHROMIUM, launch
from conftest import REPO

ARTIFACTS = REPO / "tests" / "artifacts"
SALIENCY_RGB = (234, 88, 12)  # --saliency in report.css
HEAT_RGB = (37, 99, 235)  # --heat


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

    def __init__(self, browser, url, width=1100, height=900, touch=False):
        # Reduced motion: the page then skips its colour transitions, so computed colours are final at once.
        self.context = browser.new_context(
            viewport={"width": width, "height": height},
            device_scale_factor=1,
            reduced_motion="reduce",
            has_touch=touch,
            is_mobile=touch,
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


def alpha_of(colour: str) -> float:
    """The alpha of a computed 'rgba(r, g, b, a)' ('rgb(...)' is opaque; 'transparent' is rgba(0,0,0,0))."""
    values = colour[colour.index("(") + 1 : -1].split(",")
    return float(values[3]) if len(values) == 4 else 1.0


def rgb_of(colour: str) -> tuple:
    return tuple(int(float(v)) for v in colour[colour.index("(") + 1 : -1].split(",")[:3])


READ_SALIENCY = """() => [...document.querySelectorAll('#saliency-tokens .tok')].map(n => ({
    score: n.dataset.score === undefined ? null : Number(n.dataset.score),
    background: getComputedStyle(n).backgroundColor,
    target: n.classList.contains('target'),
}))"""


def check_saliency_shading(page, result, method, g):
    """Every token before generated token g holds its score and is shaded by score / largest score."""
    P = result.prompt_length
    expected = result.saliency[method][g]
    shown = page.evaluate(READ_SALIENCY)
    largest = expected[: P + g].max()
    for i, token in enumerate(shown):
        if i < P + g:
            assert token["score"] == pytest.approx(float(expected[i]), abs=6e-6), (method, g, i)
            assert rgb_of(token["background"]) == SALIENCY_RGB
            assert alpha_of(token["background"]) == pytest.approx(expected[i] / largest, abs=0.005), (method, g, i)
        else:  # the generated token itself (marked as the target) and the tokens after it: no score
            assert token["score"] is None and token["target"] == (i == P + g), (method, g, i)
            assert i == P + g or alpha_of(token["background"]) == 0, (method, g, i)


def test_page_loads_whole_without_errors_or_requests(browser, report_path, tiny_explanation):
    opened = Page(browser, report_path.as_uri())
    page, result = opened.page, tiny_explanation
    from engine.analysis.report import page_title

    assert page.title() == page_title(result)  # the "</script><!--" in the prompt came through as text
    texts = page.evaluate("""() => [...document.querySelectorAll('#saliency-tokens .tok')]
        .map(n => n.textContent.replaceAll('↵', '\\n'))""")
    assert texts == result.tokens
    assert page.locator("#saliency-methods input").count() == 4
    assert page.locator("#factor-tokens .tok").count() == len(result.tokens)
    assert page.locator("#lens-scroll td[data-r]").count() == len(result.lens_layers) * len(result.tokens)
    opened.close()


def test_hovering_a_generated_token_shades_the_earlier_tokens_by_their_scores(page, tiny_explanation):
    result, P = tiny_explanation, tiny_explanation.prompt_length
    labels = {
        "grad_x_input": "Gradient × input",
        "integrated_gradients": "Integrated gradients",
        "erasure": "Erasure",
        "gradient": "Gradient",
    }
    # As loaded: the last generated token is pinned, with grad_x_input.
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
    assert f"(token {P + 3})" in readout and "Most salient" in readout


def test_saliency_works_from_the_keyboard(page, tiny_explanation):
    result, G = tiny_explanation, tiny_explanation.generated
    for _ in range(40):  # Tab from the top until a generated token has focus
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
    tokens: [...document.querySelectorAll('#factor-tokens .tok')].map(n => [Number(n.dataset.factor), Number(n.dataset.value)]),
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


def cell_colour(page, q, k):
    """The canvas pixel at the centre of cell (query q, key k)."""
    return page.evaluate(
        """([q, k]) => {
        const c = document.getElementById('attention-map'), d = c.dataset;
        const x = Number(d.left) + (k + 0.5) * Number(d.cell), y = Number(d.top) + (q + 0.5) * Number(d.cell);
        return [...c.getContext('2d').getImageData(Math.floor(x), Math.floor(y), 1, 1).data].slice(0, 3);
    }""",
        [q, k],
    )


def check_heatmap(page, pattern):
    """Every cell at or below the diagonal is the heat colour over white at the attention value."""
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
    expected = 255 + values * (np.array(HEAT_RGB) - 255)  # alpha blending over white
    assert np.abs(np.array(pixels) - expected).max() <= 2.5


def test_layer_and_head_pickers_redraw_the_attention_map(page, tiny_explanation):
    attention = tiny_explanation.attention.astype(np.float32)  # [L, H, N, N]
    canvas = page.locator("#attention-map")
    check_heatmap(page, attention[0, 0])
    for layer, head in [(0, 3), (2, 1), (3, 2)]:
        page.select_option("#attention-layer", str(layer))
        page.select_option("#attention-head", str(head))
        assert (canvas.get_attribute("data-layer"), canvas.get_attribute("data-head")) == (str(layer), str(head))
        assert f"layer {layer}, head {head}" in canvas.get_attribute("aria-label")
        check_heatmap(page, attention[layer, head])
    page.locator("#head-next").click()  # the stepper: head 2 -> 3
    check_heatmap(page, attention[3, 3])
    page.select_option("#attention-head", "-1")  # the mean of the heads
    check_heatmap(page, attention[3].mean(0))
    # The keyboard reads a cell: focus puts the cursor on the last query, first key; arrows move it.
    canvas.focus()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowRight")
    N = attention.shape[-1]
    readout = page.locator("#attention-readout").text_content()
    assert f"(query {N - 2})" in readout and "(key 1)" in readout
    assert f"{attention[3, :, N - 2, 1].mean():.3f}" in readout


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
        label = result.pieces[top].replace("\n", "↵")
        assert cell["text"] == (label.replace(" ", "␣") if not label.strip() else label)
        assert alpha_of(cell["alpha"]) == pytest.approx(p, abs=0.005)
        assert cell["hit"] == (t < N - 1 and top == result.lens_targets[t])
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


def test_narrow_touch_screen_has_no_horizontal_overflow(browser, report_path, tiny_explanation):
    opened = Page(browser, report_path.as_uri(), width=375, height=812, touch=True)
    widths = opened.page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], widths
    # Wide content scrolls inside its own box, not the page.
    boxes = opened.page.evaluate(
        """() => [...document.querySelectorAll('.card')].map(c => c.getBoundingClientRect().right)"""
    )
    assert max(boxes) <= 375
    canvas = opened.page.evaluate("document.getElementById('attention-map').getBoundingClientRect().right")
    assert canvas <= 375
    # A tap on a generated token pins it, as a click does.
    opened.page.locator("#saliency-tokens [data-generated='5']").tap()
    check_saliency_shading(opened.page, tiny_explanation, "grad_x_input", 5)
    ARTIFACTS.mkdir(exist_ok=True)
    opened.page.screenshot(path=ARTIFACTS / "report-narrow.png", full_page=True)
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
