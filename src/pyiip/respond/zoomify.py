"""Zoomify (``ImageProperties.xml`` and ``TileGroupN/{tier}-{col}-{row}.jpg``), as iipsrv serves it.

Reached as ``/zoomify/{path}/...`` (URI_MAP style) or ``?Zoomify={path}/...``.
Tiers halve (floor) from the full size until the image fits one tile, as
viewers compute them; tier 0 is the smallest. The TileGroup number only
spreads files over directories in static Zoomify sets, so it is ignored
(as iipsrv does): the tier and tile indices say everything.
"""

from __future__ import annotations

from collections.abc import Callable

from pyiip.errors import NotFound
from pyiip.http import Request, Response
from pyiip.parse import zoomify as zf
from pyiip.process.bind import tile_request_region
from pyiip.read.image import OpenImage
from pyiip.read.source import ImageInfo
from pyiip.respond.display_query import path_handler, query_handler, tile_reply
from pyiip.service import Service

PREFIX = "/zoomify/"


def tiers(info: ImageInfo) -> list[tuple[int, int, int]]:
    """(scale, width, height) of each tier, smallest (tier 0) first."""
    tile = info.tile_size[0]
    scale, width, height = 1, info.width, info.height
    found = [(scale, width, height)]
    while width > tile or height > tile:
        scale, width, height = scale * 2, max(1, width // 2), max(1, height // 2)
        found.append((scale, width, height))
    return found[::-1]


def properties(image: OpenImage) -> bytes:
    info = image.info
    tile = info.tile_size[0]
    count = sum(-(-w // tile) * -(-h // tile) for _s, w, h in tiers(info))
    return (
        f'<IMAGE_PROPERTIES WIDTH="{info.width}" HEIGHT="{info.height}" NUMTILES="{count}" '
        f'NUMIMAGES="1" VERSION="1.8" TILESIZE="{tile}" />'
    ).encode()


def tile(
    service: Service, request: Request, image: OpenImage, tier: int, col: int, row: int, ext: str, query: str
) -> Response:
    info = image.info
    levels = tiers(info)
    if tier >= len(levels):
        raise NotFound("Zoomify tier out of range")
    found = tile_request_region(info, levels[tier][0], info.tile_size[0], col, row, ceil=False)
    return tile_reply(service, request, image, found, ext, query, "Zoomify")


def respond(service: Service, request: Request, path: str, query: str) -> Response:
    """``path`` is decoded: ``{id}/ImageProperties.xml`` or ``{id}/TileGroup{n}/{tier}-{col}-{row}.{ext}``."""
    parsed = zf.parse(path)  # 400 before any file
    image = service.image(parsed.identifier)
    if isinstance(parsed, zf.Properties):
        return Response(200, properties(image), "application/xml", origin=image.resolved)
    return tile(service, request, image, parsed.tier, parsed.col, parsed.row, parsed.ext, query)


handle_path: Callable[[Service, Request], Response] = path_handler(PREFIX, respond)
handle_query: Callable[[Service, Request, str], Response] = query_handler("zoomify", respond)
