"""Make the screenshots of an explain report in docs/, in Debian's Chromium.

    gpt2 explain "ROMEO: Is the day so young?" --model ../shared/models/shakespeare-gpt2-tiny \
        --max-new-tokens 20 --html romeo.html
    python tests/screenshot.py romeo.html      # writes docs/report.png and docs/report-lens-attention.png

The first picture is the header, the saliency view (with one generated token pinned) and the neuron
factors; the second the logit lens and the attention map (one chosen layer and head). Both are
quantised to 256 colours, which keeps them small without visible loss on a page of flat colours.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="an HTML report written by gpt2 explain --html")
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs")
    parser.add_argument("--token", type=int, default=3, help="the generated token to pin in the saliency view")
    parser.add_argument("--layer", default="1", help="attention layer shown")
    parser.add_argument("--head", default="2", help="attention head shown")
    parser.add_argument("--width", type=int, default=1000)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        context = browser.new_context(
            viewport={"width": args.width, "height": 900}, device_scale_factor=1, reduced_motion="reduce"
        )
        context.route(
            "**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort()
        )
        page = context.new_page()
        page.goto(args.report.resolve().as_uri())
        page.locator(f"#saliency-tokens [data-generated='{args.token}']").click()
        page.select_option("#attention-layer", args.layer)
        page.select_option("#attention-head", args.head)
        page.locator("#attention-map").focus()
        page.keyboard.press("ArrowUp")  # put the map's cursor on a cell, so its readout shows a value
        page.mouse.move(0, 0)
        page.evaluate("document.activeElement.blur()")
        shots = {"report.png": ("top", "#factors"), "report-lens-attention.png": ("#lens", "#attention")}
        for name, (first, last) in shots.items():
            png = page.screenshot(clip=clip_between(page, first, last, args.width), full_page=True)
            save_small(png, args.out_dir / name)
            print(f"wrote {args.out_dir / name} ({(args.out_dir / name).stat().st_size:,} bytes)")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
