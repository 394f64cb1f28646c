"""DeepZoom (``.dzi`` and ``_files/{level}/{col}_{row}.{ext}``), as iipsrv serves it.

Reached as ``/deepzoom/{path}.dzi`` (URI_MAP style) or ``?DeepZoom={path}.dzi``.
DeepZoom level L has scale 2^(N-L) with N = ceil(log2(max(W, H))) and size
ceil(W / scale); tiles have no overlap and the stored tile size. Levels
coarser than the pyramid's smallest are rendered from it, so every level a
viewer asks for exists (iipsrv clamps them to its smallest level instead).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pyiip.errors import NotFound
from pyiip.http import Request, Response
from pyiip.parse import deepzoom as dz
from pyiip.process.bind import tile_request_region
from pyiip.read.image import OpenImage
from pyiip.respond.display_query import path_handler, query_handler, tile_reply
from pyiip.service import Service

PREFIX = "/deepzoom/"
NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"


def max_level(width: int, height: int) -> int:
    """N: the DeepZoom level of the full image (level 0 is 1x1)."""
    return max(0, math.ceil(math.log2(max(width, height))))


def descriptor(image: OpenImage) -> bytes:
    """The .dzi document, without an XML declaration as iipsrv writes it."""
    info = image.info
    return (
        f'<Image xmlns="{NAMESPACE}" TileSize="{info.tile_size[0]}" Overlap="0" Format="jpg">'
        f'<Size Width="{info.width}" Height="{info.height}"/></Image>'
    ).encode()


def tile(
    service: Service, request: Request, image: OpenImage, level: int, col: int, row: int, ext: str, query: str
) -> Response:
    info = image.info
    top = max_level(info.width, info.height)
    if level > top:
        raise NotFound("DeepZoom level out of range")
    found = tile_request_region(info, 1 << (top - level), info.tile_size[0], col, row)
    return tile_reply(service, request, image, found, ext, query, "DeepZoom")


def respond(service: Service, request: Request, path: str, query: str) -> Response:
    """``path`` is decoded: ``{id}.dzi`` or ``{id}_files/{level}/{col}_{row}.{ext}``."""
    parsed = dz.parse(path)  # 400 before any file
    image = service.image(parsed.identifier)
    if isinstance(parsed, dz.Descriptor):
        return Response(200, descriptor(image), "application/xml", origin=image.resolved)
    return tile(service, request, image, parsed.level, parsed.col, parsed.row, parsed.ext, query)


handle_path: Callable[[Service, Request], Response] = path_handler(PREFIX, respond)
handle_query: Callable[[Service, Request, str], Response] = query_handler("deepzoom", respond)
