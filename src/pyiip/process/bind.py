"""Bind a request to an image's pyramid: tile grids onto stored levels, and the level a render reads.

Protocols describe pixels in their own terms (IIP tile indices, IIIF regions,
DeepZoom and Zoomify ideal levels); this module maps them onto the levels the
file stores and, for the renderer, chooses once which level and rectangle to
read (``bind``). The renderer executes the ``Bound`` it is given and chooses
nothing again.

Tile protocols think in ideal levels of scale 2^k whose sizes are
ceil(W / 2^k); pyramids store levels whose sizes are usually floor(W / 2^k).
Pixel grids of both start at the origin, so a rectangle that lies inside
the stored level is read from it exactly (and can go out as the stored JPEG
tile); only a rectangle that reaches the extra ceil column or row, or a
level finer than none stored, is rendered from full-resolution coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyiip.errors import BadRequest
from pyiip.model import ImageRequest, Region
from pyiip.read.source import ImageInfo


def level_scale(info: ImageInfo, level: int) -> int | None:
    """The integer factor by which ``level`` divides the full size, or None if it is not an exact one."""
    if level == 0:
        return 1
    lv = info.levels[level]
    scale = max(1, round(info.width / lv.width))
    for full, size in ((info.width, lv.width), (info.height, lv.height)):
        if size not in (full // scale, -(-full // scale)):
            return None
    return scale


def scale_factors(info: ImageInfo) -> list[int]:
    """Distinct exact scale factors of the stored levels, smallest first."""
    found = {level_scale(info, level) for level in range(len(info.levels))}
    return sorted(s for s in found if s is not None)


def grid_region(info: ImageInfo, x: int, y: int, w: int, h: int, out_w: int, out_h: int) -> Region:
    """The full-resolution rectangle (x, y, w, h) shown at out_w x out_h, in the coarsest exact level grid.

    A level of scale s serves the request when the rectangle starts on its
    grid and the output is exactly the rectangle's pixels at that level.
    """
    width, height = info.width, info.height
    for level in range(len(info.levels) - 1, 0, -1):
        scale = level_scale(info, level)
        if scale is None or x % scale or y % scale:
            continue
        if out_w != -(-w // scale) or out_h != -(-h // scale):
            continue
        if (x + w != width and w % scale) or (y + h != height and h % scale):
            continue
        lv = info.levels[level]
        lx, ly = x // scale, y // scale
        if lx + out_w <= lv.width and ly + out_h <= lv.height:
            return Region(lx, ly, out_w, out_h, level)
    return Region(x, y, w, h, 0)


def ideal_tile(
    info: ImageInfo, scale: int, tile: int, col: int, row: int, *, ceil: bool = True
) -> tuple[tuple[int, int, int, int], tuple[int, int]] | None:
    """Full-resolution rectangle and output size of tile (col, row) of the ideal level of ``scale``.

    The ideal level is ceil(W / scale) x ceil(H / scale) (DeepZoom), or floor
    (Zoomify viewers, as TIFF pyramids); None when the tile lies outside it.
    """
    if ceil:
        level_w, level_h = -(-info.width // scale), -(-info.height // scale)
    else:
        level_w, level_h = max(1, info.width // scale), max(1, info.height // scale)
    lx, ly = col * tile, row * tile
    if col < 0 or row < 0 or lx >= level_w or ly >= level_h:
        return None
    out_w, out_h = min(tile, level_w - lx), min(tile, level_h - ly)
    x, y = lx * scale, ly * scale
    return (x, y, min(out_w * scale, info.width - x), min(out_h * scale, info.height - y)), (out_w, out_h)


def tile_request_region(
    info: ImageInfo, scale: int, tile: int, col: int, row: int, *, ceil: bool = True
) -> tuple[Region, tuple[int, int]] | None:
    """``ideal_tile`` mapped onto the stored levels by ``grid_region``."""
    found = ideal_tile(info, scale, tile, col, row, ceil=ceil)
    if found is None:
        return None
    (x, y, w, h), (out_w, out_h) = found
    return grid_region(info, x, y, w, h, out_w, out_h), (out_w, out_h)


@dataclass(frozen=True, slots=True)
class Plan:
    """Which stored level and rectangle of it to read to produce the requested output."""

    level: int
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True, slots=True)
class Bound:
    """A request bound to one image's pyramid: what the renderer executes."""

    request: ImageRequest
    plan: Plan


def bind(info: ImageInfo, request: ImageRequest) -> Bound:
    """``request`` with the level and rectangle it reads (``plan``), checked against ``info``."""
    return Bound(request, plan(info, request.region, request.size))


def plan(info: ImageInfo, region: Region, size: tuple[int, int]) -> Plan:
    """Pick the smallest level that still has at least the output's resolution."""
    levels = info.levels
    if not 0 <= region.level < len(levels):
        raise BadRequest("resolution out of range")
    base = levels[region.level]
    if region.w <= 0 or region.h <= 0 or region.x < 0 or region.y < 0:
        raise BadRequest("empty region")
    if region.x + region.w > base.width or region.y + region.h > base.height:
        raise BadRequest("region outside the image")
    out_w, out_h = size
    chosen = region.level
    for index in range(region.level + 1, len(levels)):
        lv = levels[index]
        sx, sy = lv.width / base.width, lv.height / base.height
        if region.w * sx < out_w or region.h * sy < out_h:
            break
        chosen = index
    if chosen == region.level:
        return Plan(chosen, region.x, region.y, region.w, region.h)
    lv = levels[chosen]
    sx, sy = lv.width / base.width, lv.height / base.height
    if round(region.w * sx) == out_w and round(region.h * sy) == out_h:
        # The level holds the output at its own scale: read exactly that many pixels (at most
        # half a pixel of that level off) instead of one more, which would mean a resampling.
        x0 = min(max(0, round(region.x * sx)), lv.width - out_w)
        y0 = min(max(0, round(region.y * sy)), lv.height - out_h)
        if x0 >= 0 and y0 >= 0:
            return Plan(chosen, x0, y0, out_w, out_h)
    x0, y0 = math.floor(region.x * sx), math.floor(region.y * sy)
    x1 = min(lv.width, max(x0 + 1, math.ceil((region.x + region.w) * sx - 1e-9)))
    y1 = min(lv.height, max(y0 + 1, math.ceil((region.y + region.h) * sy - 1e-9)))
    return Plan(chosen, x0, y0, x1 - x0, y1 - y0)
