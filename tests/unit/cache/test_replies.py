"""What a kept reply is charged (replies.entry_size): never less than the bytes it holds."""

from __future__ import annotations

import sys

import pytest

from pyiip.cache.lru import footprint
from pyiip.cache.replies import entry_size
from pyiip.http import Reply

KEY = ("reply", "GET", "/fcgi-bin/iipsrv.fcgi", "FIF=demo/cube.tif&JTL=3,6", "127.0.0.1:8000", "http", "")
IDENTITY = ("/srv/images/demo/cube.tif", 1733400000123456789, 123456789, 4242, 1733400000123456789)
HEADERS = [
    ("Server", "pyiip/0.1.0"),
    ("X-Powered-By", "IIPImage"),
    ("Content-Type", "image/jpeg"),
    ("Last-Modified", "Sat, 05 Dec 2026 15:13:45 GMT"),
    ("ETag", 'W/"64b0adbc7bf2abe847f980641f8cc24d"'),
    ("Cache-Control", "max-age=86400"),
    ("Access-Control-Allow-Origin", "*"),
    ("Content-Length", "20000"),
]


@pytest.mark.parametrize(
    ("vary", "body", "request_id", "key", "identifier"),
    [
        ((), b"\xff" * 20000, "", KEY, "demo/cube.tif"),
        ((), b"", "", KEY, "demo/cube.tif"),  # an empty body: the fixed parts dominate
        (
            (("accept", "image/webp,*/*"), ("x-iiif-id", "https://example.org/iiif/3/x")),
            b"{}" * 300,
            "r" * 32,
            KEY,
            "demo/cube.tif",
        ),
        ((), b"x", "", (*KEY[:3], "FIF=" + "é" * 3000, *KEY[4:]), "demo/cube.tif"),  # a long latin-1 query
        ((), b"x", "", KEY, "星図/🔭" * 500),  # an identifier of 2- and 4-byte characters
    ],
)
def test_the_charge_covers_every_byte_the_entry_holds(vary, body, request_id, key, identifier):
    reply = Reply("200 OK", list(HEADERS), body, request_id)
    charged = entry_size(key, identifier, IDENTITY, vary, reply)
    # Walked by hand: a compiled Reply (mypyc) has no __slots__ for footprint to follow (footprint
    # charged such a kept reply ~1 KB whatever its body, before entry_size).
    parts = (reply.status, reply.headers, reply.body, reply.request_id, reply.cgi_head())  # the head made above
    held = footprint((key, (identifier, IDENTITY, vary))) + sys.getsizeof(reply) + footprint(parts)
    assert held <= charged <= held + 4096 + 3 * len(identifier)
