"""The CMP colour maps of iipsrv, as exact piecewise formulas over whole arrays.

The branch order follows the reference definitions (iip-protocol-and-astro.md §4.3):
the first condition that holds wins, and a value matching none of them (exactly 1
for hot/cold, or NaN) takes the final branch, as the C if/else chains do. These
functions are the exact path; process.py samples them to build its lookup tables.
"""

from __future__ import annotations

import numpy as np

#: Names that switch colour mapping on; anything else (e.g. VisiOmatic's "grey") leaves it off.
NAMES = ("jet", "hot", "cold", "red", "green", "blue")


def _hot(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    conds = [v > 1.0, v <= 0.0, v < 1.0 / 3.0, v < 2.0 / 3.0, v < 1.0]
    r = np.select(conds, [1.0, 0.0, 3.0 * v, 1.0, 1.0], 1.0)
    g = np.select(conds, [1.0, 0.0, 0.0, 3.0 * v - 1.0, 1.0], 1.0)
    b = np.select(conds, [1.0, 0.0, 0.0, 0.0, 3.0 * v - 2.0], 1.0)
    return r, g, b


def _cold(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = _hot(v)
    return b, g, r  # cold is hot with red and blue swapped, branch for branch


def _jet(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    conds = [v < 0.0, v < 1.0 / 8.0, v < 3.0 / 8.0, v < 5.0 / 8.0, v < 7.0 / 8.0, v < 1.0]
    r = np.select(conds, [0.0, 0.0, 0.0, 4.0 * v - 1.5, 1.0, 4.5 - 4.0 * v], 0.5)
    g = np.select(conds, [0.0, 0.0, 4.0 * v - 0.5, 1.0, 3.5 - 4.0 * v, 0.0], 0.0)
    b = np.select(conds, [0.0, 4.0 * v + 0.5, 1.0, 2.5 - 4.0 * v, 0.0, 0.0], 0.0)
    return r, g, b


def apply(name: str, v: np.ndarray) -> np.ndarray:
    """Map values ``v`` (any shape, float64) to RGB in 0..1, shape ``v.shape + (3,)``.

    hot, cold and jet use the exact piecewise formulas; red, green and blue put the
    value itself into one channel (upstream iipsrv; the astro fork leaves them
    unimplemented). Values outside 0..1 are not clamped here: the final contrast
    step clamps, exactly as iipsrv does.
    """
    v = np.asarray(v, dtype=np.float64)
    if name == "hot":
        rgb = _hot(v)
    elif name == "cold":
        rgb = _cold(v)
    elif name == "jet":
        rgb = _jet(v)
    elif name in ("red", "green", "blue"):
        zero = np.zeros_like(v)
        rgb = tuple(v if c == name else zero for c in ("red", "green", "blue"))
    else:
        raise ValueError(f"unknown colormap {name!r}")
    return np.stack(rgb, axis=-1)
