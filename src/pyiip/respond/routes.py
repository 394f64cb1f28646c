"""The route table: which handler answers a request, by exact path, path prefix or query key.

Every handler is imported here, once: no module registers routes by being
imported. Routes are chosen on REQUEST_URI's path and QUERY_STRING (app.py
says why). The same table names each request's kind for the metrics and the
log line, so what is counted is what answered.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from pyiip.http import Request, Response, text
from pyiip.respond import deepzoom, iiif, iip, index, ops, static_files, visiomatic, zoomify
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


def _iiif_kind(path: str) -> str:
    return "iiif_info" if path.upper().endswith("/INFO.JSON") else "iiif_image"


def _iip_kind(query: str) -> str:
    """The kind of an IIP query: the protocol it hands over to (its first key), else its output command."""
    upper = query.upper()
    key, _, value = upper.partition("=")
    if key in ("IIIF", "DEEPZOOM", "ZOOMIFY"):
        return _iiif_kind(value) if key == "IIIF" else key.lower()
    if "TL=" in upper or "TIL=" in upper or "JTLS=" in upper:  # JTL, PTL, WTL, TIL, JTLS
        return "iip_tile"
    if "CVT=" in upper:
        return "iip_cvt"
    if "PFL=" in upper:
        return "iip_profile"
    if "VAL=" in upper:
        return "iip_value"
    if "OBJ=" in upper:
        return "iip_metadata"
    return "iip_other"


# VisiOmatic v3's requests by what answers them, in its server's order (the first key found names the kind).
_V3_KINDS = (
    ("INFO", "v3_info"),
    ("PFL=", "v3_profile"),
    ("VAL=", "v3_value"),
    ("JTL=", "v3_tile"),
    ("RGN=", "v3_region"),
)


def _v3_kind(query: str) -> str:
    return next((kind for key, kind in _V3_KINDS if key in query), "v3_other")


# (prefix, handler, the request kind from the path)
PATH_PREFIXES: tuple[tuple[str, Handler, Callable[[str], str]], ...] = (
    (iiif.PREFIX, iiif.handle_path, _iiif_kind),
    (deepzoom.PREFIX, deepzoom.handle_path, lambda _path: "deepzoom"),
    (zoomify.PREFIX, zoomify.handle_path, lambda _path: "zoomify"),
    (static_files.PREFIX, _static, lambda _path: "other"),
)


def route(request: Request) -> tuple[Handler, str]:
    """The handler of a GET, HEAD or POST request (the application answers the other methods), and the
    request's kind for the metrics (``iip_tile``, ``iiif_image``, ``health``...)."""
    path, query = request.path, request.query
    if path in ops.PATHS or (len(query) == 6 and query.upper() == "HEALTH"):
        return ops.answer, "metrics" if path == ops.METRICS_PATH else "health"
    for prefix, handle, kind in PATH_PREFIXES:
        if path.startswith(prefix):
            return handle, kind(path)
    if path == visiomatic.PATH:
        return visiomatic.handle, _v3_kind(query)
    if path == "/viewer.html":
        return index.page, "other"
    if path in ("/", "/index.html") and (not query or query.startswith("page=")):
        return index.page, "index"  # ?page=N: the index's later pages
    if query:
        return _iip, _iip_kind(query)
    if path.endswith((".fcgi", "/iipsrv")):
        return _banner, "other"
    return _not_found, "other"
