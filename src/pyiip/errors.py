"""Exceptions that carry their HTTP status; the app renders them in one place."""

from __future__ import annotations


class HTTPError(Exception):
    """An error reply. ``message`` is shown to the client, so it never holds a server path."""

    status = 500
    reason = "Internal Server Error"

    def __init__(self, message: str = "", headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message or self.reason)
        self.message = message or self.reason
        self.headers = headers


class BadRequest(HTTPError):
    status, reason = 400, "Bad Request"


class Forbidden(HTTPError):
    status, reason = 403, "Forbidden"


class NotFound(HTTPError):
    status, reason = 404, "Not Found"


class TooLarge(HTTPError):
    """A request that would need more memory or pixels than the limits allow."""

    status, reason = 413, "Payload Too Large"


class UnsupportedFormat(HTTPError):
    status, reason = 415, "Unsupported Media Type"


class NotImplementedFeature(HTTPError):
    status, reason = 501, "Not Implemented"


class Unavailable(HTTPError):
    status, reason = 503, "Service Unavailable"


class SourceError(NotFound):
    """The file exists but cannot be read as an image (corrupt, unsupported layout).

    A 404 as in iipsrv: for the client the identifier names no servable image.
    """
