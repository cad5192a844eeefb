"""The progress bar of long jobs (scoring a corpus, explaining a generation): tqdm on stderr."""

from __future__ import annotations

import sys


def progress_bar(total: int, progress: bool | None, *, unit: str, desc: str, show_above: int = 1):
    """A tqdm bar on stderr for `total` units. progress None: shown when stderr is a terminal and
    there are more than `show_above` units (a single batch would only flash a bar)."""
    from tqdm import tqdm

    if progress is None:
        progress = sys.stderr.isatty() and total > show_above
    return tqdm(total=total, unit=unit, desc=desc, disable=not progress, leave=False)
