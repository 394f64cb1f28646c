"""HTTP caching semantics of the finished reply: validators, conditionals, CORS, HEAD, OPTIONS."""

from __future__ import annotations

import pytest

from pyiip.http import http_date
from pyiip.respond.app import Application
from pyiip.server.fcgi_client import environ_for

TILE = "FIF=rgb.tif&JTL=3,6"


@pytest.fixture(scope="module")
def cors_app(settings, make_app) -> Application:
    return make_app(CORS="*")


def call(app: Application, query: str, method: str = "GET", path: str = "/fcgi-bin/iipsrv.fcgi", **headers: str):
    """(status code, headers dict, body) exactly as the WSGI layer sends them."""
    environ = environ_for(f"{path}?{query}" if query else path, host="127.0.0.1", method=method)
    environ.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    started: list = []
    body = b"".join(app(environ, lambda status, header_list: started.extend((status, header_list))))
    status, header_list = started
    names = [name.lower() for name, _ in header_list]
    assert len(names) == len(set(names)), names  # no header twice
    return int(status[:3]), dict(header_list), body


def test_image_validators(app):
    status, headers, body = call(app, TILE)
    assert status == 200 and type(body) is bytes
    assert headers["Cache-Control"] == "max-age=86400"  # iipsrv's default CACHE_CONTROL
    assert headers["ETag"].startswith('W/"') and headers["Last-Modified"].endswith("GMT")
    assert call(app, TILE)[1]["ETag"] == headers["ETag"]
    assert call(app, "FIF=rgb.tif&JTL=3,7")[1]["ETag"] != headers["ETag"]
    assert call(app, "FIF=rgb.tif&QLT=50&JTL=3,6")[1]["ETag"] != headers["ETag"]


@pytest.mark.parametrize(
    ("if_none_match", "expected"),
    [
        ("{etag}", 304),
        ("{strong}", 304),  # weak comparison: W/ does not matter
        ('"nope", {etag}', 304),
        ('"nope",{etag} ,"other"', 304),
        ("*", 304),
        ('"nope"', 200),
        ('W/"nope"', 200),
    ],
)
def test_if_none_match(app, if_none_match, expected):
    _, headers, full = call(app, TILE)
    etag = headers["ETag"]
    value = if_none_match.format(etag=etag, strong=etag.removeprefix("W/"))
    status, got, body = call(app, TILE, if_none_match=value)
    assert status == expected
    if expected == 304:
        assert body == b"" and got["ETag"] == etag and "Content-Type" not in got and "Content-Length" not in got
        assert got["Cache-Control"] == "max-age=86400" and got["Last-Modified"] == headers["Last-Modified"]
    else:
        assert body == full


def test_if_none_match_overrides_if_modified_since(app):
    _, headers, _ = call(app, TILE)
    assert call(app, TILE, if_modified_since=headers["Last-Modified"])[0] == 304
    assert call(app, TILE, if_modified_since=headers["Last-Modified"], if_none_match='"other"')[0] == 200
    assert call(app, TILE, if_modified_since="Thu, 01 Jan 1970 00:00:00 GMT")[0] == 200
    assert call(app, TILE, if_modified_since="garbage")[0] == 200


def test_conditionals_apply_to_get_and_head_only(app):
    _, headers, _ = call(app, TILE)
    assert call(app, TILE, "HEAD", if_none_match=headers["ETag"])[0] == 304
    assert call(app, TILE, "POST", if_none_match=headers["ETag"])[0] == 200
    assert call(app, TILE, "POST", if_modified_since=headers["Last-Modified"])[0] == 200


def test_head_has_the_get_headers_and_no_body(app):
    _, get_headers, body = call(app, TILE)
    status, head_headers, head_body = call(app, TILE, "HEAD")
    assert status == 200 and head_body == b""
    assert head_headers.pop("X-Request-ID") != get_headers.pop("X-Request-ID")  # each request its own
    assert head_headers == get_headers and int(head_headers["Content-Length"]) == len(body)


def test_metadata_replies_have_validators(app, images):
    status, headers, _ = call(app, "FIF=rgb.tif&OBJ=IIP,1.0&OBJ=Max-size")
    assert status == 200 and headers["ETag"].startswith('"')  # strong: a digest of the text itself
    mtime = (images.root / "rgb.tif").stat().st_mtime
    assert headers["Last-Modified"] == http_date(mtime)
    assert call(app, "FIF=rgb.tif&OBJ=IIP,1.0&OBJ=Max-size", if_none_match=headers["ETag"])[0] == 304
    assert call(app, "FIF=rgb.tif&OBJ=IIP,1.0&OBJ=Tile-size")[1]["ETag"] != headers["ETag"]
    status, headers, _ = call(app, "", path="/iiif/3/rgb.tif/info.json")
    assert status == 200 and headers["ETag"].startswith('"') and headers["Last-Modified"] == http_date(mtime)
    assert call(app, "", path="/iiif/3/rgb.tif/info.json", if_none_match=headers["ETag"])[0] == 304


def test_errors_are_not_cacheable_and_have_no_validators(app):
    for query in ("FIF=rgb.tif&JTL=3,999", "FIF=missing.tif&JTL=0,0", "FIF=rgb.tif&JTL=x"):
        status, headers, _ = call(app, query, if_none_match="*")
        assert status >= 400 and headers["Cache-Control"] == "no-cache" and "ETag" not in headers


def test_cache_control_setting(settings, make_app):
    app = make_app(CACHE_CONTROL="public, max-age=600")
    assert call(app, TILE)[1]["Cache-Control"] == "public, max-age=600"


def test_cors_off_by_default(app):
    assert not any(name.startswith("Access-Control") for name in call(app, TILE)[1])


def test_cors_and_preflight(cors_app):
    _, headers, _ = call(cors_app, TILE)
    assert headers["Access-Control-Allow-Origin"] == "*" and "ETag" in headers["Access-Control-Expose-Headers"]
    status, headers, body = call(
        cors_app,
        TILE,
        "OPTIONS",
        origin="https://viewer.example",
        access_control_request_method="GET",
        access_control_request_headers="if-none-match",
    )
    assert status == 204 and body == b"" and "Content-Length" not in headers
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in headers["Access-Control-Allow-Methods"]
    assert "if-none-match" in headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in headers["Access-Control-Allow-Headers"].lower()  # IIIF Auth clients send it
    assert "ETag" not in headers


def test_wsgi_call_sends_plain_bytes(app):
    sent = {}

    def start_response(status, headers):
        sent["status"], sent["headers"] = status, dict(headers)

    environ = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": "/fcgi-bin/iipsrv.fcgi?" + TILE,
        "QUERY_STRING": TILE,
        "HTTP_IF_NONE_MATCH": "",
    }
    chunks = app(environ, start_response)
    assert sent["status"].startswith("200") and all(type(c) is bytes for c in chunks)
    environ["HTTP_IF_NONE_MATCH"] = sent["headers"]["ETag"]
    assert app(environ, start_response) == [b""] and sent["status"].startswith("304")
