"""Debian's Chromium, driven by Playwright: how the browser tests and the screenshots in docs/ start it.

Playwright launches the system browser (/usr/bin/chromium, Debian's `chromium` package, which
`.ci/run` installs); `playwright install` is never run and no browser is downloaded. The flags keep
a headless Chromium from reaching for the network on its own (component updates, sync, field
trials), which this machine's closed network would refuse.
"""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch(playwright):
    """A headless Chromium browser from a started `sync_playwright()`."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
