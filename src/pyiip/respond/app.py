"""The application: route, call the protocol handler, finish the HTTP reply.

Both of pyiip's servers call ``Application.handle`` with CGI variables; calling the
object itself is the WSGI interface, for any other WSGI server (gunicorn, uWSGI).
Routes on REQUEST_URI and QUERY_STRING, never on PATH_INFO, which web
servers percent-decode (``%2F`` included) or fabricate. Every exception is
turned into a reply here, so none reaches the FastCGI layer and no request takes the
process down.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import cast
from urllib.parse import quote

from pyiip.cache.etags import content_etag
from pyiip.config import Settings
from pyiip.errors import HTTPError
from pyiip.hooks import HookRequest
from pyiip.http import EnvironHeaders, Reply, Request, Response, http_date, status_line, text
from pyiip.log import LOGGER
from pyiip.respond import metrics, ops, routes
from pyiip.respond.request_ids import request_id
from pyiip.service import Service

_CONTROLS = re.compile(r"[\x00-\x20\x7f]")


def _escape_controls(text: str) -> str:
    """Percent-encode control characters and spaces, which no valid request target holds (RFC 9112).

    Parts of the target reappear in replies (IIIF ids and Link headers,
    redirects): encoded, they can never break a header line.
    """
    if text.isprintable() and " " not in text:  # nearly always: no regex pass
        return text
    return _CONTROLS.sub(lambda match: "%%%02X" % ord(match.group()), text)


def request_from_environ(environ: Mapping[str, str]) -> Request:
    """Build the request from the raw URI; WSGI strings are latin-1 decoded bytes (PEP 3333)."""
    uri = environ.get("REQUEST_URI") or ""
    if uri:
        path, _, query = uri.partition("?")
        query = environ.get("QUERY_STRING", query)
    else:
        raw_path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1", "replace")
        path, query = quote(raw_path, safe="/:@!$&'()*+,;=-._~"), environ.get("QUERY_STRING", "")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    scheme = "https" if environ.get("HTTPS", "").lower() in ("on", "1") else environ.get("wsgi.url_scheme", "http")
    if scheme not in ("http", "https"):
        scheme = "http"
    return Request(
        method=environ.get("REQUEST_METHOD", "GET").upper(),
        path=_escape_controls(path) or "/",
        query=_escape_controls(query),
        host=_escape_controls(host),
        scheme=scheme,
        script_name=_escape_controls(environ.get("SCRIPT_NAME", "")),
        headers=EnvironHeaders(environ),
        remote=environ.get("REMOTE_ADDR", ""),
    )


# The kinds of request whose replies the shared tier can hold (shared_replies.py: an image body and
# no header of the handler's): IIIF images carry a Link header, CVT a file name, the rest is not an
# image. Other requests do not ask memcached for a whole reply, which they would never find.
SHARED_KINDS = frozenset({"iip_tile", "deepzoom", "zoomify", "v3_tile", "v3_region"})


def _etag_matches(header: str, etag: str | None) -> bool:
    """If-None-Match with the weak comparison (RFC 9110 13.1.2): ``*`` or any listed tag."""
    if header.strip() == "*":
        return True
    if etag is None:
        return False
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(","))


def _not_modified(request: Request, response: Response, etag: str | None = None) -> bool:
    """Conditional GET/HEAD: If-None-Match when sent (it overrides If-Modified-Since), else If-Modified-Since."""
    if request.method not in ("GET", "HEAD"):
        return False
    match = request.header("if-none-match")
    if match:
        return _etag_matches(match, etag)
    since = request.header("if-modified-since")
    modified = response.modified
    if not since or modified is None:
        return False
    try:
        return int(parsedate_to_datetime(since).timestamp()) >= int(modified)
    except (TypeError, ValueError, OverflowError):
        return False


def _cors_headers(settings: Settings) -> list[tuple[str, str]]:
    """The CORS headers every reply carries when CORS is set (built once per settings)."""
    if not settings.cors:
        return []
    return [
        ("Access-Control-Allow-Origin", settings.cors),
        ("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS"),
        (
            "Access-Control-Allow-Headers",
            "Accept, Authorization, Content-Type, X-Requested-With, If-Modified-Since, If-None-Match",
        ),
        ("Access-Control-Expose-Headers", "ETag, X-Request-ID"),
        ("Access-Control-Max-Age", "86400"),
    ]


def _vary(response: Response, names: list[str]) -> None:
    """Name in Vary every request header the reply was made reading, with any Vary it has already.

    A reply that used a header (X-IIIF-ID in info.json, X-Forwarded-Proto in
    IIIF ids and Link headers, Accept, Accept-Encoding) says so, whatever
    the handler: a shared cache in front then keeps one reply per value of
    each, and one client's header never reaches another client's reply.
    Chosen over ignoring those headers unless a setting trusts them: iipsrv
    honours X-IIIF-ID and X-Forwarded-Proto from anyone, proxies set them,
    and without BASE_URL X-Forwarded-Proto is what makes a proxied https
    id. Host needs no Vary: it is part of the URL every cache keys on. A
    cache that ignores Vary must strip those headers from clients (or the
    site set BASE_URL and drop X-IIIF-ID). The kept replies (replies.py)
    compare the same headers, read from ``EnvironHeaders.asked``.
    """
    kept = [header for header in response.headers if header[0] != "Vary"]
    current = ", ".join(value for name, value in response.headers if name == "Vary")  # handlers spell it so
    kept.append(("Vary", _vary_value(current, tuple(names))))
    response.headers = kept


@lru_cache(maxsize=256)
def _vary_value(current: str, names: tuple[str, ...]) -> str:
    """``current`` (a Vary value) with ``names`` added once each; the same few pairs recur."""
    listed = {name.strip().lower(): name.strip() for name in current.split(",") if name.strip()}
    for name in names:
        listed.setdefault(name, "-".join(part.capitalize() for part in name.split("-")))
    return ", ".join(listed.values())


def _listing_checked(handler: routes.Handler) -> routes.Handler:
    """The index page behind the hook: it names images, so ``authorize`` is asked (identifier "", kind "index")."""

    def checked(service: Service, request: Request) -> Response:
        service.authorize("")  # a Deny is the reply; Allow or MaxSize shows the list
        return handler(service, request)

    return checked


def _identify(service: Service) -> Callable[[str], Hashable]:
    """What a kept reply is checked by: the file's identity, and with a hook the caller's decision too."""
    return service.resolver.identity if service.hooks is None else service.identify


class Application:
    """One per process; ``reload`` swaps settings and empties caches (SIGHUP)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service = Service(settings)
        self.cors_headers = _cors_headers(settings)
        self.identify = _identify(self.service)
        metrics.start(settings.metrics_dir)  # once per process: a reload keeps counting where it did

    def reload(self, settings: Settings) -> None:
        service = Service(settings)  # first: if it cannot be built, the old one keeps serving
        self.service.clear()
        self.settings = settings
        self.service = service
        self.cors_headers = _cors_headers(settings)
        self.identify = _identify(service)

    def route(self, request: Request, handler: routes.Handler) -> Response:
        if request.method == "OPTIONS":
            return Response(204, cacheable=False, headers=[("Allow", "GET, HEAD, POST, OPTIONS")])
        if request.method not in ("GET", "HEAD", "POST"):
            return text(405, "method not allowed", [("Allow", "GET, HEAD, POST, OPTIONS")])
        return handler(self.service, request)

    def respond(self, request: Request, handler: routes.Handler | None = None) -> Response:
        """The reply to ``request`` (its route's ``handler``, looked up when not given); errors become replies."""
        try:
            return self.route(request, handler or routes.route(request)[0])
        except HTTPError as exc:  # the request's one log line (ops.finished) says 4xx; why is detail
            LOGGER.debug("refused status=%d reason=%s", exc.status, json.dumps(exc.message[:200]))
            return text(exc.status, exc.message, list(exc.headers))
        except MemoryError:
            LOGGER.error("out of memory on %s?%s", request.path, request.query[:200])
            return text(503, "server out of memory for this request")
        except Exception:
            LOGGER.exception("internal error on %s?%s", request.path, request.query[:200])
            return text(500, "internal server error")

    def finish(self, request: Request, response: Response) -> tuple[int, list[tuple[str, str]], bytes]:
        """Add the common headers, answer conditionals and HEAD."""
        settings = self.settings
        headers = response.header_list()
        modified = response.modified
        if modified is not None:
            headers.append(("Last-Modified", http_date(modified)))
        etag = None
        if response.status == 200:
            etag = next((v for k, v in response.headers if k.lower() == "etag"), None)
            if etag is None:
                etag = response.etag or content_etag(response.body)  # rendered images carry theirs (key_etag)
                headers.append(("ETag", etag))
        if response.status < 400 and response.cacheable:
            headers.append(("Cache-Control", settings.cache_control))
        else:
            headers.append(("Cache-Control", "no-cache"))
        headers += self.cors_headers
        status, body = response.status, response.body
        if status == 200 and _not_modified(request, response, etag):
            status, body = 304, b""
            headers = [h for h in headers if h[0] != "Content-Type"]
        if status not in (204, 304):
            headers.append(("Content-Length", str(len(body))))
        if request.method == "HEAD":
            body = b""
        return status, headers, body

    def handle(self, environ: Mapping[str, str]) -> Reply:
        """One request from its CGI variables to status line, headers and body (what FastCGI calls)."""
        started = time.perf_counter()
        rid = request_id(environ)
        request = request_from_environ(environ)
        handler, kind = routes.route(request)
        service = self.service
        hooks = service.hooks
        if hooks is not None:  # read from the environ, not request.headers: the decision, not Vary, keys kept replies
            get = environ.get
            service.begin(HookRequest("", kind, get("HTTP_AUTHORIZATION", ""), get("HTTP_COOKIE", ""), request.remote))
            if kind == "index":
                handler = _listing_checked(handler)
        replies = service.cache.replies
        key = replies.key(request)
        if key is not None:
            reply = replies.get(key, request, self.identify)
            if reply is not None:
                reply = reply.again(rid)
                ops.finished(service, request, kind, 200, len(reply.body), started, rid)
                return reply
        # memcached's whole replies next, still before any parsing, for the kinds it can hold; never
        # under a hook (a reply may be one caller's).
        shared = service.cache.shared if key is not None and hooks is None and kind in SHARED_KINDS else None
        shared_key = ""
        response = None
        if shared is not None:
            shared_key = shared.key(request)
            response = shared.get(shared_key, service.resolver.identity)
        if response is None:
            asked = cast(EnvironHeaders, request.headers).asked  # request_from_environ made it
            before = len(asked)
            response = self.respond(request, handler)
            if len(asked) > before:
                _vary(response, asked[before:])
                shared = None  # it read request headers: the tier's key does not hold them
            if hooks is not None and hooks.authorize is not None and response.origin is not None:
                _vary(response, ["authorization", "cookie"])  # a shared cache in front keys on the credentials
        else:
            shared = None  # found there
        status, headers, body = self.finish(request, response)
        reply = Reply(status_line(status), headers, body, rid)
        if key is not None:
            replies.put(key, request, response, reply, service.kept_as)
            if shared is not None and status == 200:
                shared.put(shared_key, response, next(value for name, value in headers if name == "ETag"))
        ops.finished(service, request, kind, status, len(body), started, rid)  # counters; the log line
        return reply

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """WSGI, for other WSGI servers (pyiip's own call ``handle``)."""
        reply = self.handle(environ)
        status, body = reply.status, reply.body
        start_response(status, reply.all_headers())  # a copy: a kept reply's list must not take the server's additions
        return [body if type(body) is bytes else bytes(body)]  # WSGI wants exactly bytes
