"""A progress bar on stderr for a libvips computation, fed by libvips' own eval signals."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily by the callers
    import pyvips


@contextlib.contextmanager
def vips_bar(image: pyvips.Image, label: str, enabled: bool) -> Iterator[None]:
    """Show how far libvips is in computing ``image`` while the block (a save of it) runs."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    with tqdm(total=100, desc=label, unit="%", file=sys.stderr) as bar:
        image.set_progress(True)
        image.signal_connect("eval", lambda _image, progress: bar.update(max(0, progress.percent - bar.n)))
        yield
        bar.update(100 - bar.n)


def wanted(quiet: bool) -> bool:
    """A bar only for a person watching: not with --quiet, not into a log file or a pipe."""
    return not quiet and sys.stderr.isatty()
