"""Make the screenshots of explain reports in docs/, in Debian's Chromium.

    gpt2 explain "ROMEO: What light through yonder window breaks?" \
        --model ../shared/models/shakespeare-gpt2-tiny --max-new-tokens 20 --html romeo.html
    gpt2 explain "ROMEO: What light" "JULIET: O Romeo" \
        --continuation " through yonder window breaks?" --continuation ", Romeo! wherefore art thou Romeo?" \
        --model ../shared/models/shakespeare-gpt2-tiny --html two.html
    python tests/screenshot.py romeo.html two.html --token 15

writes, from the first page: docs/report.png (the header and the saliency view, one new token
pinned), docs/report-lens-attention.png (the logit lens and the attention map, with that token
selected: its lens column and attention row), docs/report-contrast-dark.png (the saliency view in
the dark scheme, erasure, signed, rather than the likeliest other token); from the second:
docs/report-factors-inputs.png (two prompts coloured by one factorisation). Each is quantised to
256 colours, which keeps it small without visible loss on a page of flat colours.
"""

import argparse
import sys
from pathlib import Path

from browser import launch

REPO = Path(__file__).resolve().parent.parent


def clip_between(page, first: str, last: str, width: int) -> dict:
    """The page area (document coordinates) from the top of element `first` ("top": the page's top)
    to the bottom of element `last`."""
    top, bottom = page.evaluate(
        """([first, last]) => {
        const edge = (selector, side) => document.querySelector(selector).getBoundingClientRect()[side] + window.scrollY;
        return [first === "top" ? 0 : edge(first, "top") - 12, edge(last, "bottom") + 12];
    }""",
        [first, last],
    )
    return {"x": 0, "y": top, "width": width, "height": bottom - top}


def save_small(png: bytes, path: Path) -> None:
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def shoot(page, name: str, first: str, last: str, width: int, out_dir: Path) -> None:
    png = page.screenshot(clip=clip_between(page, first, last, width), full_page=True)
    save_small(png, out_dir / name)
    print(f"wrote {out_dir / name} ({(out_dir / name).stat().st_size:,} bytes)")


def open_page(browser, path: Path, width: int, scheme: str):
    context = browser.new_context(
        viewport={"width": width, "height": 900}, device_scale_factor=1, reduced_motion="reduce", color_scheme=scheme
    )
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort())
    page = context.new_page()
    page.goto(path.resolve().as_uri())
    return context, page


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="an HTML report written by gpt2 explain --html")
    parser.add_argument("inputs", type=Path, help="a report of two prompts (explain over several prompts)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs")
    parser.add_argument("--token", type=int, default=3, help="the new token to pin in the saliency view")
    parser.add_argument("--layer", default="1", help="attention layer shown")
    parser.add_argument("--head", default="2", help="attention head shown")
    parser.add_argument("--width", type=int, default=1000)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        context, page = open_page(browser, args.report, args.width, "light")
        page.locator(f"#saliency-tokens [data-generated='{args.token}']").click()
        page.select_option("#attention-layer", label=args.layer)
        page.select_option("#attention-head", label=args.head)
        page.locator("#attention-map").focus()
        page.keyboard.press("ArrowUp")  # put the map's cursor on a cell, so its readout shows a value
        page.mouse.move(0, 0)
        page.evaluate("document.activeElement.blur()")
        shoot(page, "report.png", "top", "#saliency", args.width, args.out_dir)
        shoot(page, "report-lens-attention.png", "#lens", "#attention", args.width, args.out_dir)
        context.close()

        context, page = open_page(browser, args.report, args.width, "dark")
        page.get_by_label("Erasure", exact=True).check()
        page.locator(f"#saliency-tokens [data-generated='{args.token}']").click()
        page.select_option("#saliency-foil", "0")
        page.mouse.move(0, 0)
        page.evaluate("document.activeElement.blur()")
        shoot(page, "report-contrast-dark.png", "#saliency", "#saliency", args.width, args.out_dir)
        context.close()

        context, page = open_page(browser, args.inputs, args.width, "light")
        page.locator("#factor-texts .tok[data-input='1'][data-index='4']").click()
        page.mouse.move(0, 0)
        shoot(page, "report-factors-inputs.png", "#factors", "#factors", args.width, args.out_dir)
        context.close()
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
