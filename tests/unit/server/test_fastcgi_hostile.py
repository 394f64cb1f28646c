"""Posted bodies at and over the limit, over a socket pair to the in-process FastCGI responder."""

from __future__ import annotations

from pyiip.server import fastcgi
from pyiip.server.fcgi_client import environ_for, opening, stdin
from tests.unit.server.test_fastcgi import exchange, full_request


def post(size: int, request_id: int = 1, keep: bool = False) -> bytes:
    """A POST with a ``size``-byte body in full STDIN records, then the end of STDIN."""
    params = environ_for("/x?posted", method="POST", CONTENT_LENGTH=str(size))
    return opening(params, request_id, keep) + stdin(b"b" * size, request_id)


def test_a_body_over_the_limit_is_a_413_and_the_kept_connection_carries_on():
    got = exchange(post(fastcgi.MAX_STDIN + 1, 1, keep=True), full_request("next", 2, keep=True))
    replies = [(rid, content) for kind, rid, content in got if kind == fastcgi.STDOUT and content]
    assert replies[0][0] == 1 and replies[0][1].startswith(b"Status: 413 Payload Too Large\r\n")
    assert replies[0][1].endswith(b"request body over 1048576 bytes\n")
    assert replies[1][0] == 2 and replies[1][1].endswith(b"next")


def test_a_body_at_the_limit_is_answered():
    got = exchange(post(fastcgi.MAX_STDIN))
    assert got[0][2].startswith(b"Status: 200 OK") and got[0][2].endswith(b"posted")
