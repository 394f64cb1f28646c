"""The astro display parameters of IIP, read from the query of a IIIF, DeepZoom or Zoomify request.

IIIF viewers cannot send IIP commands, but they can keep a query string on
image URLs: ``.../full/max/0/default.jpg?MINMAX=1:0,100&GAM=0.5&CMP=jet&INV``.
The values are parsed by the IIP grammar (parse.iip), so they mean exactly
what they mean in IIP (1-based MINMAX channels, GAM as an exponent, CTW
rows by ``;``...), and a bad value is the same 400.
"""

from __future__ import annotations

from collections.abc import Callable

from pyiip.errors import NotFound
from pyiip.http import Request, Response
from pyiip.model import IDENTITY, Display, ImageRequest, Region
from pyiip.parse.iip import DISPLAY_KEYS as DISPLAY_KEYS
from pyiip.parse.iip import unquote, view, without_key
from pyiip.read.image import OpenImage
from pyiip.respond.iip import QueryHandler
from pyiip.service import Service


def display_from_query(query: str, image: OpenImage) -> tuple[Display, int | None]:
    """(display, JPEG/WebP quality) for ``image`` from the query; other keys (cache busters, IIIF=) are ignored."""
    if not query:
        return IDENTITY, None
    settings = view(query, DISPLAY_KEYS)
    return settings.display(image.info.channels), settings.quality


TILE_FORMATS = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp"}


def tile_reply(
    service: Service,
    request: Request,
    image: OpenImage,
    found: tuple[Region, tuple[int, int]] | None,
    ext: str,
    query: str,
    protocol: str,
) -> Response:
    """A DeepZoom or Zoomify tile: its region and size, display parameters from the query."""
    if found is None:
        raise NotFound(f"{protocol} tile out of range")
    region, size = found
    display, quality = display_from_query(query, image)
    model = ImageRequest(
        region=region, size=size, format=TILE_FORMATS.get(ext.lower(), "jpg"), quality=quality, display=display
    )
    rendered = service.render(image, model)
    return Response(200, rendered.body, rendered.mime, origin=image.resolved, etag=rendered.etag)


Respond = Callable[[Service, Request, str, str], Response]


def path_handler(prefix: str, respond: Respond) -> Callable[[Service, Request], Response]:
    """The handler of ``{prefix}{path}``: ``respond(service, request, path, query)``.

    ``path`` arrives decoded as iipsrv decodes it (a ``+`` in the URL path is
    a plus); ``query`` holds the display parameters.
    """

    def handle_path(service: Service, request: Request) -> Response:
        return respond(service, request, unquote(request.path[len(prefix) :].replace("+", "%2B")), request.query)

    return handle_path


def query_handler(key: str, respond: Respond) -> QueryHandler:
    """The handler of ``?{key}={path}`` (a ``+`` in the query is a space); the other keys are the query."""

    def handle_query(service: Service, request: Request, value: str) -> Response:
        return respond(service, request, unquote(value), without_key(request.query, key))

    return handle_query
