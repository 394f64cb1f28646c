"""VisiOmatic v3's protocol at ``/api``, where its client asks (the v3 server's default ``api_path``).

The same images, pyramids and caches as IIP and IIIF: a tile is an image
request of the protocol-neutral model whose display is a
``VisiomaticDisplay``, rendered through the render cache (its keys can never
meet IIP's, the display being of another type), and pixel values come from
``process.pixels`` as IIP's VAL does. Requests are answered in the v3
server's order: no FIF is the banner, an image that cannot be opened a 404,
then INFO, PFL, VAL, and a tile (JTL) or a snapshot (RGN with BIN); with none
of them the reply is JSON ``null``.

Errors are FastAPI's JSON, ``{"detail": [{"loc": ["query", KEY], "msg": ...,
"type": ...}]}``: 422 for values its declarations refuse (parse.visiomatic),
404 naming FIF for an image that cannot be opened (never with a server path:
pyiip's messages hold none), 501 naming RGN for a snapshot the server will
not make, as the v3 server answers; a tile outside the grid is a 404 naming
JTL (a 500 there).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pyiip.errors import HTTPError, TooLarge, UnsupportedFormat
from pyiip.http import Request, Response
from pyiip.model import ImageRequest, VisiomaticDisplay
from pyiip.parse.visiomatic import Invalid, V3Request, parse
from pyiip.process import pixels
from pyiip.process.bind import grid_region, tile_request_region
from pyiip.process.display_v3 import mix_matrix
from pyiip.read.image import OpenImage
from pyiip.respond import index
from pyiip.respond.visiomatic_info import info
from pyiip.service import Service

PATH = "/api"
MAX_REGION_TILES = 1024  # tiles one snapshot may span: the v3 server's max_region_tile_count
_PFL_BYTES_PER_VALUE = 128  # a value on its way to JSON: a Python float in a list, its text
JSON = "application/json"


class Refused(HTTPError):
    """A failure the v3 server reports on one query key, with its error type."""

    def __init__(self, status: int, key: str, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = [{"loc": ["query", key], "msg": message, "type": kind}]


def _json(status: int, content: Any, image: OpenImage | None = None) -> Response:
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    return Response(status, body, JSON, origin=image.resolved if image else None, cacheable=status == 200)


def handle(service: Service, request: Request) -> Response:
    """The reply to one v3 query; every failure is FastAPI's JSON error body."""
    try:
        return _answer(service, parse(request.query))
    except Invalid as error:
        return _json(422, {"detail": error.details})
    except Refused as error:
        return _json(error.status, {"detail": error.detail})


def _answer(service: Service, query: V3Request) -> Response:
    if query.identifier is None:
        return index.banner()
    try:
        image = service.image(query.identifier)
    except HTTPError as error:
        if error.status >= 500:
            raise
        raise Refused(404, "FIF", error.message, "value_error.str") from None
    if query.obj:
        raise Refused(501, "obj", "the IIP header is served by IIP (OBJ=...), not by this endpoint", "value_error")
    if query.info:
        return _json(200, info(image, query.identifier, service.renderer.options.jpeg_quality), image)
    if query.profile is not None:
        return _profile(service, image, query)
    if query.value is not None:
        found = _samples(image, np.array([query.value[0]]), np.array([query.value[1]]), "VAL")
        return _json(200, {"values": pixels.pick(found[0], query.channels, image.info.channels)}, image)
    if query.tile is not None:
        return _rendered(service, image, _tile(image, query), query)
    if query.region is not None:
        return _rendered(service, image, _region(image, query), query)
    return _json(200, None, image)


def _samples(image: OpenImage, xs: np.ndarray, ys: np.ndarray, key: str) -> list[list[pixels.Value] | None]:
    if image.info.dtype.kind == "c":
        raise Refused(UnsupportedFormat.status, key, "this image holds complex samples", "value_error")
    return pixels.samples(image.source, xs, ys)


def _profile(service: Service, image: OpenImage, query: V3Request) -> Response:
    """PFL: the samples along a Bresenham line between two FITS pixels, with their 0-based coordinates."""
    assert query.profile is not None
    x1, y1, x2, y2 = query.profile
    count = image.info.channels
    points = max(abs(x2 - x1), abs(y2 - y1)) + 1
    if points * (len(query.channels) or count) * _PFL_BYTES_PER_VALUE > service.renderer.budget:
        raise Refused(TooLarge.status, "PFL", "request needs more memory than MAX_REQUEST_MEMORY allows", "value_error")
    xs, ys = pixels.line(x1, y1, x2, y2)
    found = _samples(image, xs, ys, "PFL")
    profile = [
        {"x": x - 1, "y": y - 1, "values": pixels.pick(values, query.channels, count)}
        for x, y, values in zip(xs.tolist(), ys.tolist(), found, strict=True)
    ]
    return _json(200, {"profile": profile}, image)


def _display(image: OpenImage, query: V3Request) -> VisiomaticDisplay:
    """The request's display for this image: CHAN (a channel the image lacks is the first) selects mono
    mode, else MIX mixes the channels; only the MINMAX of channels shown are kept, so equal renderings
    share a cache key."""
    count = image.info.channels
    cuts = {c - 1: (low, high) for c, low, high in query.minmax if 1 <= c <= count}  # the last one wins
    common: dict[str, Any] = {
        "brightness": query.brightness,
        "contrast": query.contrast,
        "gamma": query.gamma,
        "invert": query.invert,
    }
    if query.channels:
        channel = query.channels[0] - 1 if 1 <= query.channels[0] <= count else 0
        shown: tuple[tuple[int, float, float], ...] = ((channel, *cuts[channel]),) if channel in cuts else ()
        colormap = "cool" if query.colormap == "cold" else query.colormap
        return VisiomaticDisplay(channel, shown, colormap=colormap, **common)
    minmax = tuple((c, low, high) for c, (low, high) in sorted(cuts.items()))
    return VisiomaticDisplay(None, minmax, mix_matrix(count, query.mix), **common)


def _tile(image: OpenImage, query: V3Request) -> ImageRequest:
    """JTL=z,index: tile ``index`` (row by row) of zoom level z, the levels being W / 2^k rounded down
    as the client lays them out; a z past the full resolution is the full resolution, as v3."""
    assert query.tile is not None
    meta = image.info
    top = len(meta.levels) - 1
    z, index = query.tile
    scale = 1 << (top - min(z, top))
    size = meta.tile_size[0]
    across = -(-max(1, meta.width // scale) // size)
    found = tile_request_region(meta, scale, size, index % across, index // across, ceil=False)
    if found is None:
        raise Refused(404, "JTL", "tile index out of range", "value_error")
    region, out = found
    return ImageRequest(region=region, size=out, quality=query.quality, display=_display(image, query))


def _region(image: OpenImage, query: V3Request) -> ImageRequest:
    """RGN=x1,y1:x2,y2 with BIN=b: the rectangle of full-resolution raster pixels (from 1, y down) at the
    pyramid level of scale 2^k <= b, columns (x1 - 1) / 2^k up to, not including, (x2 - 1) / 2^k, cut
    at the image's edges."""
    assert query.region is not None
    meta = image.info
    level = query.binning.bit_length() - 1
    scale = 1 << level
    x1, y1, x2, y2 = query.region
    xmin, ymin = max(0, (x1 - 1) >> level), max(0, (y1 - 1) >> level)
    xmax, ymax = min(meta.width >> level, (x2 - 1) >> level), min(meta.height >> level, (y2 - 1) >> level)
    if xmax <= xmin or ymax <= ymin:
        raise Refused(501, "RGN", "Inconsistent region bounding box coordinates", "value_error")
    size = meta.tile_size[0]
    tiles = (-(-xmax // size) - xmin // size) * (-(-ymax // size) - ymin // size)
    if tiles > MAX_REGION_TILES:
        raise Refused(
            501,
            "RGN",
            f"The requested image size exceeds the server limit of {MAX_REGION_TILES} tiles."
            "Please zoom in or increase image binning",
            "value_error",
        )
    w, h = xmax - xmin, ymax - ymin
    region = grid_region(meta, xmin * scale, ymin * scale, w * scale, h * scale, w, h)
    return ImageRequest(region=region, size=(w, h), quality=query.quality, display=_display(image, query))


def _rendered(service: Service, image: OpenImage, request: ImageRequest, query: V3Request) -> Response:
    try:
        rendered = service.render(image, request)
    except HTTPError as error:
        if error.status >= 500:
            raise
        raise Refused(error.status, "JTL" if query.tile else "RGN", error.message, "value_error") from None
    return Response(200, rendered.body, rendered.mime, origin=image.resolved, etag=rendered.etag)
