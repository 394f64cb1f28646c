"""Checks of the tool commands' option values, so a mistake is one readable line and exit status 2.

argparse's own ``type=int`` or ``choices`` would print its usage block and, for values libvips
later refuses (a tile of 0), GLib CRITICAL lines; these checks name the option and the rule.
"""

from __future__ import annotations

from collections.abc import Iterable

TILE_MIN, TILE_MAX, TILE_STEP = 16, 4096, 16
QUALITY_MIN, QUALITY_MAX = 1, 100


class OptionError(ValueError):
    """A mistake on the command line; the message names the option (the command exits 2)."""


def integer(option: str, text: str | int, low: int, high: int, step: int = 1) -> int:
    """``text`` as an integer in [low, high] and a multiple of ``step``."""
    rule = f"an integer from {low} to {high}" + (f", a multiple of {step}" if step > 1 else "")
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise OptionError(f"{option} must be {rule}, not {text!r}") from None
    if not low <= value <= high or value % step:
        raise OptionError(f"{option} must be {rule}, not {value}")
    return value


def tile(text: str | int) -> int:
    """A tile edge: TIFF wants multiples of 16, and beyond 4096 a tile is a strip of the whole image."""
    return integer("--tile", text, TILE_MIN, TILE_MAX, TILE_STEP)


def quality(text: str | int) -> int:
    return integer("--quality", text, QUALITY_MIN, QUALITY_MAX)


def choice(option: str, text: str, choices: Iterable[str]) -> str:
    """``text`` (case-insensitive) if it is one of ``choices``."""
    allowed = tuple(choices)
    value = text.strip().lower()
    if value not in allowed:
        raise OptionError(f"{option} must be one of {', '.join(allowed)}, not {text!r}")
    return value
