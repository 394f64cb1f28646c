"""What fits MAX_REQUEST_MEMORY: outputs sized by the renderer's own memory estimate.

One memory model (``render.memory_estimate``) refuses, advertises and
shrinks, so they never disagree: IIIF's info.json advertises the largest
output area any request of the image fits in (``image_limits``), so every
size inside its limits is served; CVT asks for a size and gets the largest
of its aspect ratio that fits (``fit_budget``), as VisiOmatic's snapshot
asks for 20480 px and can only save what comes back.
"""

from __future__ import annotations

import dataclasses
import itertools

from pyiip.config import Settings
from pyiip.model import Display, ImageRequest, Region
from pyiip.process import render
from pyiip.process.bind import Limits, Plan, plan
from pyiip.read.image import OpenImage
from pyiip.read.source import ImageInfo

# Limits by (file identity, budget, MAX_CVT): a search over the model, done once per image and process.
_LIMITS: dict[tuple[object, int, int], Limits] = {}
_LIMITS_KEPT = 4096


def fit_budget(image: OpenImage, request: ImageRequest, budget: int) -> ImageRequest | None:
    """``request`` at the largest size of its aspect ratio, up to its own, whose render fits ``budget``.

    The estimate falls with the size (a smaller output reads a coarser level),
    so a bisection on the longer side finds it; None when not even one pixel fits.
    """
    info = image.info

    def fits(size: tuple[int, int]) -> bool:
        chosen = plan(info, request.region, size)
        overhead = render.read_overhead(image.source, chosen.level, chosen.w, chosen.h)
        return render.memory_estimate(info, chosen, dataclasses.replace(request, size=size), overhead) <= budget

    width, height = request.size
    if fits(request.size):
        return request
    low, high = 0, max(width, height)  # longest sides: ``low`` fits (0: none found), ``high`` does not
    while high - low > 1:
        middle = (low + high) // 2
        if fits(_with_longest(width, height, middle)):
            low = middle
        else:
            high = middle
    return dataclasses.replace(request, size=_with_longest(width, height, low)) if low else None


def _with_longest(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) scaled so that its longer side is ``side``."""
    if width >= height:
        return side, max(1, round(height * side / width))
    return max(1, round(width * side / height)), side


def image_limits(image: OpenImage, settings: Settings) -> Limits:
    """The output limits of ``image``: MAX_CVT, and the largest area its renders fit MAX_REQUEST_MEMORY in.

    An area of 0 says that no output of the image fits (a tile larger than the budget, a flat file
    decoded whole): its info.json advertises 1, the least there is, and each request is a 413.
    """
    budget = settings.max_request_memory * 1024 * 1024
    key = (image.resolved.identity, budget, settings.max_cvt)
    limits = _LIMITS.get(key)
    if limits is None:
        if len(_LIMITS) >= _LIMITS_KEPT:
            _LIMITS.clear()
        limits = _LIMITS[key] = Limits.from_settings(settings, output_area(image, budget))
    return limits


def output_area(image: OpenImage, budget: int) -> int:
    """The largest output area (pixels) that any request of ``image`` keeping its region's shape fits ``budget`` in.

    The estimate at its worst: an arbitrary rotation, grey output of a colormap
    or a four-row CTW, GIF encoding, and the most the level choice can read for
    that area (``_read_area``).
    """
    info = image.info
    rows = (tuple(1.0 for _ in range(info.channels)),) * 4
    worst = ImageRequest(Region(0, 0, 1, 1), (1, 1), rotation=45.0, color="gray", format="gif",
                         display=Display(colormap="jet", twist=rows))  # fmt: skip

    def fits(area: int) -> bool:
        read = _read_area(info, area)
        chosen = Plan(0, 0, 0, read, 1)
        request = dataclasses.replace(worst, size=(area, 1))
        return render.memory_estimate(info, chosen, request, render.read_overhead(image.source, 0, read, 1)) <= budget

    low, high = 0, 1
    while fits(high):  # the area grows at most until each output pixel has one byte
        low, high = high, high * 2
        if high > budget:
            return low
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _read_area(info: ImageInfo, area: int) -> int:
    """The most pixels a render of ``area`` output pixels reads (``bind.plan``).

    Plan reads the coarsest level that has the output's resolution: the next
    coarser one had less, so the read is at most the output times the ratio of
    the two levels' areas; or a part of the coarsest level; or, enlarging, less
    than the output.
    """
    levels = info.levels
    most = levels[-1].width * levels[-1].height
    ratio = 1.0
    for finer, coarser in itertools.pairwise(levels):
        if finer.width * finer.height >= area:
            ratio = max(ratio, finer.width / coarser.width * finer.height / coarser.height)
    return max(most, int(area * ratio) + 1)
