"""The route table: which handler answers a request, by exact path, path prefix or query key.

Every handler is imported here, once: no module registers routes by being
imported. Routes are chosen on REQUEST_URI's path and QUERY_STRING (app.py
says why); ``ops.kind_of`` names requests for the metrics by its own string
tests, which count a request without parsing it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from pyiip.http import Request, Response, text
from pyiip.respond import deepzoom, iiif, iip, index, ops, static_files, zoomify
from pyiip.service import Service

Handler = Callable[[Service, Request], Response]

# ``?KEY=value`` forms of the other protocols, which iip.handle hands the request when the key comes first.
QUERY_KEYS = MappingProxyType(
    {"iiif": iiif.handle_query, "deepzoom": deepzoom.handle_query, "zoomify": zoomify.handle_query}
)


def _static(service: Service, request: Request) -> Response:
    return static_files.serve(request)


def _banner(service: Service, request: Request) -> Response:
    return index.banner()


def _not_found(service: Service, request: Request) -> Response:
    return text(404, "not found")


def _iip(service: Service, request: Request) -> Response:
    return iip.handle(service, request, QUERY_KEYS)


PATH_PREFIXES: tuple[tuple[str, Handler], ...] = (
    (iiif.PREFIX, iiif.handle_path),
    (deepzoom.PREFIX, deepzoom.handle_path),
    (zoomify.PREFIX, zoomify.handle_path),
    (static_files.PREFIX, _static),
)


def handler(request: Request) -> Handler:
    """The handler of a GET, HEAD or POST request (the application answers the other methods)."""
    path, query = request.path, request.query
    if path in ops.PATHS or (len(query) == 6 and query.upper() == "HEALTH"):
        return ops.answer
    for prefix, handle in PATH_PREFIXES:
        if path.startswith(prefix):
            return handle
    if path == "/viewer.html":
        return index.page
    if path in ("/", "/index.html") and (not query or query.startswith("page=")):
        return index.page  # ?page=N: the index's later pages
    if query:
        return _iip
    if path.endswith((".fcgi", "/iipsrv")):
        return _banner
    return _not_found
