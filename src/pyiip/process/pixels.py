"""Raw samples at FITS pixels: what IIP's VAL and VisiOmatic v3's VAL and PFL read.

A FITS pixel (x, y) counts from 1 with y up; the raster holds FITS row NAXIS2
at its top (pyiip convert and STIFF flip it so), so the pixel is raster
column x - 1, row height - y of full resolution. Points are read grouped by
stored tile, one read each, so a long profile reads each tile it crosses
once and never a bounding box. Samples come back as they are stored (a
float32 cube holds the FITS values themselves) and become JSON numbers
unchanged, NaN as null.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pyiip.read.source import ImageSource

Value = float | int | None


def line(x1: int, y1: int, x2: int, y2: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of a segment, both ends included (Bresenham): one per step along the longer axis, the
    other coordinate rounded to the nearest, halves away from the start, as skimage.draw.line, which
    the VisiOmatic v3 server uses, steps them."""
    dx, dy = x2 - x1, y2 - y1
    steps = max(abs(dx), abs(dy))
    if steps == 0:
        return np.array([x1]), np.array([y1])
    t = np.arange(steps + 1, dtype=np.int64)
    if abs(dx) >= abs(dy):
        return x1 + np.sign(dx) * t, y1 + np.sign(dy) * ((2 * t * abs(dy) + steps) // (2 * steps))
    return x1 + np.sign(dx) * ((2 * t * abs(dx) + steps) // (2 * steps)), y1 + np.sign(dy) * t


def samples(source: ImageSource, xs: np.ndarray, ys: np.ndarray) -> list[list[Value] | None]:
    """Every channel's sample at each FITS pixel (xs[i], ys[i]), None for a pixel outside the image."""
    info = source.info
    cols, rows = np.asarray(xs, np.int64) - 1, info.height - np.asarray(ys, np.int64)
    inside = (cols >= 0) & (cols < info.width) & (rows >= 0) & (rows < info.height)
    out: list[list[Value] | None] = [None] * cols.size
    found = np.flatnonzero(inside)
    if not found.size:
        return out
    level = info.levels[0]
    tiles = (rows[found] // level.tile_height) * level.tiles_across + cols[found] // level.tile_width
    order = np.argsort(tiles, kind="stable")
    _keys, starts = np.unique(tiles[order], return_index=True)
    for group in np.split(found[order], starts[1:]):
        c, r = cols[group], rows[group]
        x0, y0 = int(c.min()), int(r.min())
        block = source.read(0, x0, y0, int(c.max()) - x0 + 1, int(r.max()) - y0 + 1)
        for index, pixel in zip(group.tolist(), block[r - y0, c - x0], strict=True):
            out[index] = json_values(pixel)
    return out


def json_values(pixel: np.ndarray) -> list[Value]:
    """One pixel's samples as JSON numbers: floats and integers unchanged, NaN and infinities as null."""
    if pixel.dtype.kind == "b":
        pixel = pixel.astype(np.uint8)
    if pixel.dtype.kind != "f":
        return list(pixel.tolist())
    return [v if np.isfinite(v) else None for v in pixel.tolist()]


def pick(values: list[Value] | None, channels: Sequence[int], count: int) -> list[Value]:
    """The samples of the 1-based ``channels`` (all of them when none is named); null for a channel the
    image lacks or a pixel outside it."""
    wanted = channels or range(1, count + 1)
    return [values[c - 1] if values is not None and 1 <= c <= count else None for c in wanted]
