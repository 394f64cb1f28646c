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

from pyiip.config import Settings
from pyiip.errors import BadRequest, NotFound, NotImplementedFeature
from pyiip.model import ImageRequest, Region
from pyiip.parse.iiif import RegionSpec, SizeSpec
from pyiip.read.source import ImageInfo, LevelInfo


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


# level_scales by id() of an info's levels, kept with the levels themselves (so a reused id is told
# apart, and only the small level tuples stay alive, not the infos' metadata): an open image keeps its
# info, and every tile request of it would otherwise redo these divisions.
_SCALES: dict[int, tuple[tuple[LevelInfo, ...], tuple[int | None, ...]]] = {}
_SCALES_KEPT = 4096


def level_scales(info: ImageInfo) -> tuple[int | None, ...]:
    """``level_scale`` of every stored level, computed once per info."""
    levels = info.levels
    kept = _SCALES.get(id(levels))
    if kept is not None and kept[0] is levels:
        return kept[1]
    if len(_SCALES) >= _SCALES_KEPT:
        _SCALES.clear()
    scales = tuple([level_scale(info, level) for level in range(len(levels))])
    _SCALES[id(levels)] = (levels, scales)
    return scales


def scale_factors(info: ImageInfo) -> list[int]:
    """Distinct exact scale factors of the stored levels, smallest first."""
    return sorted({s for s in level_scales(info) if s is not None})


def grid_region(info: ImageInfo, x: int, y: int, w: int, h: int, out_w: int, out_h: int) -> Region:
    """The full-resolution rectangle (x, y, w, h) shown at out_w x out_h, in the coarsest exact level grid.

    A level of scale s serves the request when the rectangle starts on its
    grid and the output is exactly the rectangle's pixels at that level.
    """
    scales = level_scales(info)
    levels = info.levels
    width, height = levels[0].width, levels[0].height
    for level in range(len(scales) - 1, 0, -1):
        scale = scales[level]
        if scale is None or x % scale or y % scale:
            continue
        if out_w != -(-w // scale) or out_h != -(-h // scale):
            continue
        if (x + w != width and w % scale) or (y + h != height and h % scale):
            continue
        lv = levels[level]
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


@dataclass(frozen=True, slots=True)
class Limits:
    """Server-imposed output limits: maxWidth/maxHeight from MAX_CVT, maxArea from it and the memory budget."""

    width: int | None
    height: int | None
    area: int | None

    @classmethod
    def from_settings(cls, settings: Settings, area: int) -> Limits:
        """MAX_CVT's sides, and ``area``: the largest output the image renders within MAX_REQUEST_MEMORY
        (``process.budget``), so that nothing inside the limits is refused for memory."""
        side = settings.max_output_side
        if side is None:
            # Upscaling needs a declared limit (IIIF 3 section 5.7): the memory budget is the real one.
            return cls(None, None, area)
        return cls(side, side, min(side * side, area))

    def allows(self, width: int, height: int) -> bool:
        return (
            (self.width is None or width <= self.width)
            and (self.height is None or height <= self.height)
            and (self.area is None or width * height <= self.area)
        )

    def fit(self, width: int, height: int, upscale: bool) -> tuple[int, int]:
        """The largest size of this aspect ratio within the limits (IIIF ``max`` and ``^max``)."""
        scale = math.inf if upscale else 1.0
        if self.width is not None:
            scale = min(scale, self.width / width)
        if self.height is not None:
            scale = min(scale, self.height / height)
        if self.area is not None:
            scale = min(scale, math.sqrt(self.area / (width * height)))
        if scale == math.inf or scale == 1.0:
            return width, height
        rounded = max(1, round(width * scale)), max(1, round(height * scale))
        if self.allows(*rounded):
            return rounded
        return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def region_rect(spec: RegionSpec, width: int, height: int) -> tuple[int, int, int, int]:
    """Full-resolution (x, y, w, h), cropped at the image edges; 400 when nothing is left."""
    if spec.kind == "full":
        return 0, 0, width, height
    if spec.kind == "square":
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side
    fx, fy, fw, fh = spec.values
    if spec.kind == "pct":
        x, y = round(fx * width / 100), round(fy * height / 100)
        x1, y1 = round((fx + fw) * width / 100), round((fy + fh) * height / 100)
        w, h = max(1, x1 - x), max(1, y1 - y)
    else:
        x, y, w, h = int(fx), int(fy), int(fw), int(fh)
    if x >= width or y >= height:
        raise BadRequest("region lies outside the image")
    return x, y, min(w, width - x), min(h, height - y)


def output_size(
    spec: SizeSpec, rw: int, rh: int, limits: Limits, version: int, allow_upscaling: bool
) -> tuple[int, int]:
    """Output pixels before rotation, checked against upscaling rules and the advertised limits."""
    if spec.kind == "max":
        width, height = limits.fit(rw, rh, upscale=spec.upscale)
    elif spec.kind == "w":
        width, height = spec.width, max(1, round(rh * spec.width / rw))
    elif spec.kind == "h":
        width, height = max(1, round(rw * spec.height / rh)), spec.height
    elif spec.kind == "pct":
        width, height = round(rw * spec.percent / 100), round(rh * spec.percent / 100)
    elif spec.kind == "wh":
        width, height = spec.width, spec.height
    else:  # "fit": !w,h keeps the aspect ratio inside the box
        scale = min(spec.width / rw, spec.height / rh)
        if scale > 1 and version >= 3 and not spec.upscale:
            # The official validator (size_noup) and the IIIF reference server answer 400
            # here rather than clamping to the region: a box larger than the region asks
            # for an enlargement, which IIIF 3 allows only with ^.
            raise BadRequest("upscaling needs the ^ size prefix in IIIF 3")
        if not (spec.upscale or (version < 3 and allow_upscaling)):
            scale = min(scale, 1.0)  # v2 without sizeAboveFull never enlarges
        width = min(spec.width, max(1, round(rw * scale)))
        height = min(spec.height, max(1, round(rh * scale)))
    if width < 1 or height < 1:
        raise BadRequest("the requested size is less than one pixel")
    if width > rw or height > rh:
        if version >= 3 and not spec.upscale:
            raise BadRequest("upscaling needs the ^ size prefix in IIIF 3")
        if not allow_upscaling:
            if spec.upscale:
                raise NotImplementedFeature("upscaling is disabled on this server (ALLOW_UPSCALING=0)")
            raise BadRequest("upscaling is disabled on this server (ALLOW_UPSCALING=0)")
    if not limits.allows(width, height):
        raise BadRequest(f"size {width}x{height} exceeds the server limits (maxWidth/maxHeight/maxArea)")
    return width, height


def resolution_level(info: ImageInfo, res: int) -> int:
    """IIP's resolution number (0 = the smallest level) as a level index (0 = full size)."""
    count = len(info.levels)
    if not 0 <= res < count:
        raise BadRequest(f"resolution {res} out of range 0-{count - 1}")
    return count - 1 - res


def tile_region(info: ImageInfo, res: int, index: int) -> Region:
    """IIP's tile ``index`` (row by row) of resolution ``res``: that tile's rectangle on its stored level."""
    level = resolution_level(info, res)
    lv = info.levels[level]
    count = lv.tiles_across * lv.tiles_down
    if not 0 <= index < count:
        raise NotFound("tile index out of range")
    x, y, w, h = lv.tile_rect(index % lv.tiles_across, index // lv.tiles_across)
    return Region(x, y, w, h, level)


def fitted_region(
    info: ImageInfo,
    fractions: tuple[float, float, float, float] | None,
    width: int,
    height: int,
    settings: Settings,
) -> tuple[Region, tuple[int, int]]:
    """IIP's RGN fractions in full-resolution pixels, and WID/HEI fitted, then capped by MAX_CVT and upscaling."""
    full_w, full_h = info.width, info.height
    rx, ry, rw, rh = fractions or (0.0, 0.0, 1.0, 1.0)
    x = min(full_w - 1, int(rx * full_w))
    y = min(full_h - 1, int(ry * full_h))
    w = max(1, min(full_w - x, round(rw * full_w)))
    h = max(1, min(full_h - y, round(rh * full_h)))
    if width and height:
        scale = min(width / w, height / h)
    elif width:
        scale = width / w
    elif height:
        scale = height / h
    else:
        scale = 1.0
    if not settings.allow_upscaling:
        scale = min(scale, 1.0)
    limit = settings.max_output_side
    if limit is not None:
        scale = min(scale, limit / w, limit / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return Region(x, y, w, h), size
