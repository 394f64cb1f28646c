"""The HTTP side of a request and a reply, independent of WSGI details."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import lru_cache
from http import HTTPStatus

from . import __version__

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
    dict of them is built.
    """

    __slots__ = ("environ",)

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def get(self, name: str, default: str = "") -> str:
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

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def base(self) -> str:
        """scheme://host, for absolute URLs built from the request."""
        return f"{self.scheme}://{self.host}"


@dataclass(slots=True)
class Response:
    """A reply; ``mtime`` makes it carry Last-Modified and answer If-Modified-Since."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    mtime: float | None = None
    cacheable: bool = True

    def header_list(self) -> list[tuple[str, str]]:
        head = [("Server", SERVER), ("X-Powered-By", "IIPImage"), ("Content-Type", self.content_type)]
        return head + self.headers


def text(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    """A plain-text error reply: one line, never a server path."""
    return Response(status, (message + "\n").encode(), headers=headers or [], cacheable=False)
