"""The scalar end of the display pipeline: GAM, INV, CMP and CNT, from normalised values to 8-bit levels.

The same formulas are evaluated two ways:

* ``Transfer.levels``: float64 on any array, exact; the reference, and the path of 8/16-bit
  tables and of settings outside ``Transfer.fast``.
* ``Transfer.grey`` and ``Transfer.colour``: float32, in place on the planes the linear stage
  made, a handful of whole-plane passes written straight into the uint8 output. Why no table
  per setting: a viewer's contrast or gamma slider sends a new setting with every tile of every
  step, and a table of 65,536 bins, checked bin by bin, cost 3 to 13 ms to build, against ~0.1
  to 0.6 ms for the formulas on a whole 256 x 256 tile (docs/performance.md, "Interactive
  display"). Colour maps, whose three channels take five passes each, go through a small table
  of the map alone (``ColourTable``: a few thousand entries, drawn by the same float32 code in
  0.1-0.3 ms, no check needed) when it costs less than drawing the tile; GAM and INV stay on the tile.

Accuracy of the float32 path. The linear stage's normalised value carries a relative error of
about 2**-21 (its scale's nudge included), which gamma multiplies; powf, the products and the
offsets add a few float32 ulps, on values of magnitude about 1 wherever the output is not
saturated (colour maps scale them by up to 4.5). Times 255 * contrast, that bounds the difference
from the float64 formula (``fast``); settings where the bound exceeds FAST_ERROR levels (a
contrast in the hundreds, gamma or contrast <= 0 or outside 1e-3..1e3, non-finite) take the
exact path. Below FAST_ERROR, the truncated level is within 1 of the exact one.

Where the formulas jump, the float32 path decides as the exact one does: jet is black below 0
(decided on the sign, which float32 normalisation keeps) and, inverted, black above max (the
linear stage sends samples above max to +inf, so 1 - v is -inf there, and values that only
rounded above 1 stay dark blue). NaN, which only a CTW mix can make (inf - inf), gives level 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pyiip.model import Display
from pyiip.process import colormaps
from pyiip.process.rgbx import pack_rgbx, unpack_rgbx

try:  # the clip ufunc itself: np.clip's Python wrapper costs more than the work on a tile
    from numpy._core.umath import clip as _clip  # type: ignore[attr-defined]  # numpy's stub omits it
except ImportError:  # pragma: no cover - other numpy layouts
    _clip = np.clip

__all__ = ["Transfer"]

_F = np.float32
#: Largest error, in grey levels, the float32 path may have before truncation (see the module docstring).
FAST_ERROR = 0.25
#: Relative error of the float32 path per unit of gamma (the normalised value's, raised to gamma), and its
#: fixed part (powf, products, offsets: a few ulps); colour maps multiply it by up to 4.5 (4v - 3.5...).
_REL_PER_GAMMA = 2.0**-20
_REL_FIXED = 2.0**-19
_COLORMAP_GAIN = 5.0
#: Bins per grey level of the colour map tables (ColourTable), and their largest size (256 KiB; 32 are kept).
_BINS = 4
_MAX_TABLE = 1 << 16
#: The colour maps that put the value into one channel, unclamped (upstream iipsrv).
_SINGLE = {"red": 0, "green": 1, "blue": 2}
#: Gamma and contrast the float32 path takes; outside, powf's exponent or the scale leave float32's range.
_FAST_RANGE = (1e-3, 1e3)


@dataclass(frozen=True, slots=True)
class Transfer:
    """The scalar part of the pipeline: GAM, INV, CMP and CNT, applied per output channel."""

    gamma: float = 1.0
    invert: bool = False
    colormap: str | None = None
    contrast: float = 1.0

    @classmethod
    def from_display(cls, display: Display) -> Transfer:
        cmap = display.colormap if display.colormap in colormaps.NAMES else None
        return cls(float(display.gamma), bool(display.invert), cmap, float(display.contrast))

    @property
    def channels(self) -> int:
        return 3 if self.colormap else 1

    @property
    def isolated_top(self) -> bool:
        """Inverted jet: max itself is dark blue, anything above it black; the linear stage must tell them apart."""
        return self.colormap == "jet" and self.invert

    def levels(self, x: np.ndarray) -> np.ndarray:
        """Exact transfer of normalised values ``x`` (float64) to uint8, shape ``x.shape + (channels,)``.

        gamma == 1 is skipped entirely, as in iipsrv, so negative values reach INV
        and CMP unclamped. NaN arising here (e.g. inf * 0) becomes 0, not iipsrv's
        undefined cast.
        """
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            if self.gamma != 1.0:
                x = np.power(np.maximum(x, 0.0), self.gamma)
            if self.invert:
                x = 1.0 - x
            x = colormaps.apply(self.colormap, x) if self.colormap else x[..., None]
            y = x * 255.0 * self.contrast
        y = np.nan_to_num(y, nan=0.0, posinf=255.0, neginf=0.0)
        np.clip(y, 0.0, 255.0, out=y)
        return y.astype(np.uint8)  # truncates, like iipsrv's (unsigned char) cast

    @property
    def fast(self) -> bool:
        """Whether ``grey`` and ``colour`` are within FAST_ERROR levels of ``levels`` for these settings."""
        g, cnt = self.gamma, self.contrast
        low, high = _FAST_RANGE
        if not (low <= g <= high and low <= cnt <= high):
            return False
        gain = _COLORMAP_GAIN if self.colormap else 1.0
        return 255.0 * cnt * (g * _REL_PER_GAMMA + _REL_FIXED) * gain <= FAST_ERROR

    def _gamma_invert(self, p: np.ndarray, then_invert: bool) -> None:
        """GAM in place, and INV (1 - v) when asked. max(v, 0) ** gamma is exp(gamma * ln v): powf costs 4x more."""
        if self.gamma != 1.0:
            np.maximum(p, _F(0), out=p)
            np.log(p, out=p)
            np.multiply(p, _F(self.gamma), out=p)
            np.exp(p, out=p)
        if then_invert and self.invert:
            np.subtract(_F(1), p, out=p)

    def grey(self, plane: np.ndarray, out: np.ndarray, mixed: bool) -> None:
        """Write the levels of float32 ``plane`` (normalised; overwritten) into uint8 (h, w) ``out``.

        ``mixed`` says the plane is a CTW mix, the only source of NaN. Call under np.errstate.
        """
        p = plane
        self._gamma_invert(p, then_invert=False)
        k = 255.0 * self.contrast
        if self.invert:  # k * (1 - v)
            np.multiply(p, _F(-k), out=p)
            np.add(p, _F(k), out=p)
        else:
            np.multiply(p, _F(k), out=p)
        _truncate(p, 255.0, out, mixed)

    def colour(self, plane: np.ndarray, mixed: bool) -> np.ndarray:
        """The colour-mapped (h, w, 3) uint8 pixels of float32 ``plane`` (normalised; overwritten).

        Through a table of the colour map at this contrast when one is cached or cheaper to build
        than drawing the tile (``_colour_table``), else drawn. Call under np.errstate.
        """
        assert self.colormap is not None
        p = plane
        self._gamma_invert(p, then_invert=True)
        k = 255.0 * self.contrast
        negative_black = self.colormap == "jet" and self.gamma == 1.0 and not self.invert
        if _table_size(self.colormap, k) <= min(p.size // 2, _MAX_TABLE):
            return unpack_rgbx(_colour_table(self.colormap, k, negative_black).lookup(p, mixed))
        out = np.empty((*p.shape, 3), np.uint8)
        _draw_colour(self.colormap, p, k, out, mixed, negative_black)
        return out


def _draw_colour(colormap: str, v: np.ndarray, k: float, out: np.ndarray, mixed: bool, negative_black: bool) -> None:
    """The levels of colour map ``colormap`` at values ``v`` (overwritten) and 255 * contrast ``k``, into ``out``."""
    if colormap == "jet":
        _jet(v, k, out, mixed, negative_black)
    elif colormap in ("hot", "cold"):
        _hot(v, k, out, mixed, colormap == "cold")
    else:
        np.multiply(v, _F(k), out=v)
        out[...] = 0
        _truncate(v, 255.0, out[..., _SINGLE[colormap]], mixed)


@dataclass(frozen=True, slots=True)
class ColourTable:
    """A colour map's packed RGBX levels at one contrast, for bins of v: floor(v * scale) + offset.

    Every level of a colour map moves by at most ``slope * k`` per unit of v (jet 4, hot and cold
    3, red, green and blue 1), so with _BINS bins per grey level a bin's entry, drawn at its
    centre by the float32 path, is within 1 / (2 * _BINS) level of the formula anywhere in it, on
    top of the float32 path's FAST_ERROR: still under one level. 0 starts a bin (jet is black
    below it, dark blue at it), values beyond the table's ends take its end entries (constant
    there), and entry 0 is black, which -inf and NaN (from a CTW mix) get.
    """

    lut: np.ndarray
    scale: float
    offset: float
    top: float

    def lookup(self, p: np.ndarray, mixed: bool) -> np.ndarray:
        """The packed pixels of values ``p`` (overwritten), (h, w) uint32."""
        np.multiply(p, _F(self.scale), out=p)
        if self.offset:
            np.floor(p, out=p)  # before the offset: -tiny * scale + offset would round up to 0's bin
            np.add(p, _F(self.offset), out=p)
        if mixed:
            np.fmax(p, _F(0), out=p)  # NaN to entry 0
            np.minimum(p, _F(self.top), out=p)
        else:
            _clip(p, _F(0), _F(self.top), out=p)
        return np.take(self.lut, p.astype(np.int32), mode="wrap")


def _table_span(colormap: str, k: float) -> tuple[float, float, float]:
    """(scale, lowest v, highest v) of ``colormap``'s table: outside lo..hi the levels are constant."""
    slope = {"jet": 4.0, "hot": 3.0, "cold": 3.0}.get(colormap, 1.0)
    if colormap == "jet":
        return slope * k * _BINS, -0.25, 1.0
    return slope * k * _BINS, 0.0, 1.0 if colormap in ("hot", "cold") else 255.0 / k


def _table_size(colormap: str, k: float) -> int:
    scale, lo, hi = _table_span(colormap, k)
    return math.ceil(hi * scale) + math.ceil(-lo * scale) + 1


@lru_cache(maxsize=32)
def _colour_table(colormap: str, k: float, negative_black: bool) -> ColourTable:
    """The table of ``colormap`` at 255 * contrast ``k``, its entries drawn at the bins' centres."""
    scale, lo, _ = _table_span(colormap, k)
    offset = math.ceil(-lo * scale)
    n = _table_size(colormap, k)
    centres = ((np.arange(n, dtype=np.float64) - offset + 0.5) / scale).astype(np.float32).reshape(n, 1)
    levels = np.empty((n, 1, 3), np.uint8)
    with np.errstate(all="ignore"):
        _draw_colour(colormap, centres, k, levels, False, negative_black)
    lut = pack_rgbx(levels.reshape(n, 3))
    lut.flags.writeable = False  # shared by every request through the cache
    return ColourTable(lut, scale, float(offset), float(n - 1))


def _truncate(p: np.ndarray, top: float, out: np.ndarray, mixed: bool) -> None:
    """out = trunc(clip(p, 0, top)), NaN giving 0 (fmax) when the plane may hold some; p is overwritten."""
    if mixed:
        np.fmax(p, _F(0), out=p)
        np.minimum(p, _F(top), out=p)
    else:
        _clip(p, _F(0), _F(top), out=p)
    np.copyto(out, p, casting="unsafe")  # truncates toward 0, like the (unsigned char) cast


def _hot(v: np.ndarray, k: float, out: np.ndarray, mixed: bool, cold: bool) -> None:
    """hot's channels are clip(3v - j, 0, 1) for j = 0, 1, 2, so level j is clip(3kv - jk, 0, min(k, 255))."""
    top = min(k, 255.0)
    np.multiply(v, _F(3 * k), out=v)
    tmp = np.empty_like(v)
    for j in (2, 1, 0):
        if j:
            np.subtract(v, _F(j * k), out=tmp)
        _truncate(tmp if j else v, top, out[:, :, 2 - j if cold else j], mixed)


def _jet(v: np.ndarray, k: float, out: np.ndarray, mixed: bool, negative_black: bool) -> None:
    """jet's channels are tents, min(4v - a, b - 4v) = 1.5 - |4v - c| for c = 3, 2, 1 (r, g, b), clipped to 0..1.

    4v is taken within -1..4 first: from 4 (v = 1) up red stays 0.5, green and blue 0; below -1
    every tent is already negative. Blue is 0 below 0, where its tent is still positive, only
    with the gamma step skipped and no inversion (``negative_black``): gamma clamps at 0 first,
    and inverted, black is 1 - v for samples above max, which the linear stage made +inf.
    """
    top = min(k, 255.0)
    u = np.multiply(v, _F(4 * k), out=v)
    nonnegative = np.greater_equal(u, _F(0)) if negative_black else None
    _clip(u, _F(-k), _F(4 * k), out=u)  # and no inf left: (1.5 - |u - c|) * 0 below stays 0
    tmp = np.empty_like(u)
    for c in range(3):
        np.subtract(u, _F((3 - c) * k), out=tmp)
        np.abs(tmp, out=tmp)
        np.subtract(_F(1.5 * k), tmp, out=tmp)
        if c == 2 and nonnegative is not None:
            np.multiply(tmp, nonnegative, out=tmp)  # a multiply: a masked store costs ten times more
        _truncate(tmp, top, out[:, :, c], mixed)
