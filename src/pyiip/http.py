"""The HTTP side of a request and a reply, independent of WSGI details.

Value types (Request, Response, Reply) that cache/ (kept replies) and server/ use as well as respond/: they
live at the top so that nothing below respond/ imports it. Imports no stage package.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import lru_cache
from http import HTTPStatus
from typing import Any, Protocol

from pyiip import __version__

SERVER = f"pyiip/{__version__}"


@lru_cache(maxsize=1024)
def _http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


def http_date(timestamp: float) -> str:
    """RFC 1123 date, as iipsrv's Last-Modified (memoised: the same few file times recur)."""
    return _http_date(int(timestamp))


@lru_cache(maxsize=64)
def status_line(status: int) -> str:
    """``200 OK``; memoised, since building it goes through the HTTPStatus enum."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


class EnvironHeaders:
    """Request headers looked up in the CGI variables when asked (``accept`` is ``HTTP_ACCEPT``).

    A request reads two or three of the twenty-odd a web server sends: no
    dict of them is built. The names read are noted in ``asked``: a kept
    reply varies on those and on no other (replies.py).
    """

    __slots__ = ("asked", "environ")

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.asked: list[str] = []

    def get(self, name: str, default: str = "") -> str:
        self.asked.append(name)
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"), default)


@dataclass(slots=True)
class Request:
    """What the protocol handlers may look at: raw path and query, a few headers."""

    method: str
    path: str  # still percent-encoded, without the query
    query: str  # raw, as the web server passed it
    host: str = "127.0.0.1"
    scheme: str = "http"
    script_name: str = ""
    headers: dict[str, str] | EnvironHeaders = field(default_factory=dict)  # lower-case names
    remote: str = ""  # the client's address (REMOTE_ADDR), "" when none is known

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def base(self) -> str:
        """scheme://host, for absolute URLs built from the request.

        ``scheme`` is the server's own (https when the web server says so);
        over plain http a proxy's ``X-Forwarded-Proto`` (http or https)
        names what the client used. It is read here, only when a URL is
        built, so the reply varies on it (Vary, and the kept replies) and
        on nothing it did not read.
        """
        scheme = self.scheme
        if scheme != "https":
            forwarded = self.header("x-forwarded-proto").strip().lower()
            if forwarded in ("http", "https"):
                scheme = forwarded
        return f"{scheme}://{self.host}"


class Origin(Protocol):
    """The image a reply was made from (read.resolved.Resolved): what a kept reply checks again.

    A protocol, so that these value types import no stage package.
    """

    @property
    def mtime(self) -> float: ...

    @property
    def identifier(self) -> str: ...

    @property
    def identity(self) -> Hashable: ...


@dataclass(slots=True)
class Response:
    """A reply; ``origin``, the image it was made from, gives Last-Modified and lets the reply be kept.

    A reply with an origin depends on nothing else than the request, the
    settings and that image (replies.py relies on it): anything made from
    other state (counters, listings) has none.
    """

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    origin: Origin | None = None
    cacheable: bool = True
    mtime: float | None = None  # Last-Modified of a reply not made from an image (static files)
    etag: str = ""  # a rendered image's (Rendered.etag) or a kept body's; "" for a digest of the body

    @property
    def modified(self) -> float | None:
        """What Last-Modified says: the image's time, else ``mtime``."""
        return self.origin.mtime if self.origin is not None else self.mtime

    def header_list(self) -> list[tuple[str, str]]:
        head = [("Server", SERVER), ("X-Powered-By", "IIPImage"), ("Content-Type", self.content_type)]
        return head + self.headers


class Reply:
    """A finished reply: status line, headers, body (what ``Application.handle`` returns).

    It unpacks like the tuple it replaces. A kept reply (replies.py) is sent
    again and again: its CGI head is encoded once, and each sending names its
    own request's id (``X-Request-ID``, added when the head is written).
    """

    __slots__ = ("_cgi", "body", "headers", "request_id", "status")

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes, request_id: str = "") -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.request_id = request_id
        self._cgi: bytes | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.status, self.headers, self.body))

    def again(self, request_id: str) -> Reply:
        """This reply, sent for another request: the encoded head shared, the id that request's."""
        reply = Reply(self.status, self.headers, self.body, request_id)
        reply._cgi = self._cgi
        return reply

    def all_headers(self) -> list[tuple[str, str]]:
        """The headers with the request id (what WSGI sends)."""
        return [*self.headers, ("X-Request-ID", self.request_id)] if self.request_id else list(self.headers)

    def cgi_head(self) -> bytes:
        """``Status:`` and the header lines as a CGI/FastCGI responder writes them, with the blank line."""
        if self._cgi is None:
            lines = [f"Status: {self.status}\r\n", *(f"{name}: {value}\r\n" for name, value in self.headers)]
            self._cgi = "".join(lines).encode("latin-1")
        if self.request_id:
            return b"%sX-Request-ID: %s\r\n\r\n" % (self._cgi, self.request_id.encode("latin-1"))
        return self._cgi + b"\r\n"


def media_ranges(accept: str) -> list[tuple[str, dict[str, str], float]]:
    """The ranges of an Accept header: (``type/subtype`` lower-cased, other parameters, q), in header order.

    Never raises: a range without a slash, or whose q is not a number in
    0..1, is left out (RFC 9110 section 12.5.1 gives it no meaning). Commas
    inside quoted parameters are not expected (IIIF profiles are URIs).
    """
    ranges = []
    for item in accept.split(","):
        kind, _, rest = item.partition(";")
        kind = kind.strip().lower()
        if kind.count("/") != 1:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for param in rest.split(";"):
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name != "q":
                params[name] = value
                continue
            try:
                q = float(value)
            except ValueError:
                q = math.nan
        if 0.0 <= q <= 1.0:
            ranges.append((kind, params, q))
    return ranges


def _weight(offer: str, ranges: list[tuple[str, dict[str, str], float]]) -> float | None:
    """The q of the most specific range matching ``offer`` (exact, then ``type/*``, then ``*/*``); None if none does."""
    family = offer.partition("/")[0] + "/*"
    found: tuple[int, float] | None = None
    for kind, _params, q in ranges:
        rank = 3 if kind == offer else 2 if kind == family else 1 if kind == "*/*" else 0
        if rank and (found is None or rank > found[0]):
            found = (rank, q)
    return None if found is None else found[1]


def negotiate(accept: str, offers: Sequence[str]) -> str:
    """The offer the Accept header weighs highest, ties in the order of ``offers`` (the server's preference).

    An offer no range names comes before one refused with ``q=0``; when every
    offer is refused the first is sent anyway (a body beats a 406 here).
    """
    if not accept:
        return offers[0]
    ranges = media_ranges(accept)
    best, best_q = "", 0.0
    unnamed = []
    for offer in offers:
        q = _weight(offer, ranges)
        if q is None:
            unnamed.append(offer)
        elif q > best_q:
            best, best_q = offer, q
    return best or (unnamed or offers)[0]


def text(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    """A plain-text error reply: one line, never a server path."""
    return Response(status, (message + "\n").encode(), headers=headers or [], cacheable=False)
