"""Any request head parses or is refused with its status (parse_head alone, no server)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pyiip.server.http_server import MAX_BODY, Refusal, parse_head

HEAD_PARTS = [
    b"GET / HTTP/1.1\r\n",
    b"POST /x?y HTTP/1.0\r\n",
    b"Host: a\r\n",
    b"Content-Length: 12\r\n",
    b"Content-Length: 99999999999\r\n",
    b"Connection: close, keep-alive\r\n",
    b"Expect: 100-continue\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"X_Y: z\r\n",
    b" folded\r\n",
    b"\r\n",
    b"http://h/p HTTP/1.1 ",
]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.lists(st.sampled_from(HEAD_PARTS), max_size=12))
def test_any_head_parses_or_is_refused(noise, parts):
    """Whatever the bytes, a head is a request or a Refusal with a 4xx/5xx status, never another exception."""
    head = (b"".join(parts) + noise).decode("latin-1")
    try:
        request = parse_head(head, {"SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80"})
    except Refusal as refusal:
        assert refusal.status in (400, 413, 501, 505)
    else:
        assert 0 <= request.body_left <= MAX_BODY and request.environ["REQUEST_METHOD"]
