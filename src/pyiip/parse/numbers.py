"""Numbers from requests, parsed with bounds before any arithmetic sees them.

Every protocol parser reads its numbers here. The length of the text is
checked first (``int()`` refuses more than 4300 digits with a ValueError, and
a 309-digit integer overflows the float divisions of the geometry), then the
value against a range inside which the arithmetic that follows stays exact
and finite. Floats must be finite. A number out of its range is a 400 that
names the field: the reply says why, and the log gets one line, no traceback.

The ranges, and why:

* every number: at most ``MAX_TEXT`` characters (a float's repr needs 24);
* pixel coordinates and sizes (IIIF regions and sizes), tile, level and tier
  indices (DeepZoom, Zoomify): 0 to ``MAX_PIXELS`` = 2**53 - 1, the largest
  integer a float64 (and a JavaScript viewer) holds exactly. Regions are
  cropped to the image with integer arithmetic and sizes checked against the
  limits, so no ratio or rounding of the geometry overflows; a region that
  only extends past the image stays a cropped 200, as IIIF wants, and a tile
  beyond the grid a 404;
* IIP integers (WID, HEI, JTL, TIL, PFL resolution, QLT, LYR, MINMAX channel):
  a C ``int``, as iipsrv reads them with ``atoi``; each command then applies
  its own rule (WID/HEI below 0 mean "unset", QLT is clamped to 0..100...);
* IIIF percentages (``pct:``): 0 to ``MAX_PERCENT`` = 10^6, ten thousand
  times the full extent, beyond any output the size limits allow;
* angles (IIIF rotation 0..360; IIP ROT and the SHD angles -360..360): one turn;
* display parameters, see ``iip``: GAM 0..100 and CNT 0..1000 (VisiOmatic's
  controls send GAM 0.2..2 and CNT 0..10), MINMAX values within the float32
  range iipsrv-astro keeps them in, CTW coefficients within +-10^6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pyiip.errors import BadRequest

MAX_TEXT = 64
MAX_PIXELS = 2**53 - 1
MAX_PERCENT = 1e6
C_INT = (-(2**31), 2**31 - 1)
PIXELS = (0, MAX_PIXELS)


def _text(name: str, text: str) -> str:
    if len(text) > MAX_TEXT:
        raise BadRequest(f"{name} is not a number of at most {MAX_TEXT} characters")
    return text


# ``int | float``, not float: compiled (mypyc), a float parameter turns an int bound into a float,
# and the message would print 2147483647 as 2.14748e+09.
def _check_range(name: str, value: int | float, low: int | float, high: int | float) -> None:
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {_shown(low)} and {_shown(high)}")


def _shown(bound: int | float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def integer(name: str, text: str, low: int, high: int) -> int:
    """The integer ``text`` holds, within [low, high]; else a 400 naming ``name``."""
    try:
        value = int(_text(name, text))
    except ValueError:
        raise BadRequest(f"{name} needs an integer, got {text[:40]!r}") from None
    _check_range(name, value, low, high)
    return value


def real(name: str, text: str, low: float = -math.inf, high: float = math.inf) -> float:
    """The finite float ``text`` holds, within [low, high]; else a 400 naming ``name``."""
    try:
        value = float(_text(name, text))
    except ValueError:
        raise BadRequest(f"{name} needs a number, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name} needs a finite number")
    _check_range(name, value, low, high)
    return value


def indices(names: Sequence[str], texts: Sequence[str]) -> list[int]:
    """Tile, level or tier indices of a tile path, each 0 to MAX_PIXELS; ``names`` name them in a 400."""
    return [integer(name, text, *PIXELS) for name, text in zip(names, texts, strict=True)]
