"""Whole replies in memcached (shared_replies.py), against a real memcached: found before parsing, never stale.

(Under PYIIP_HOOKS the tier is off: tests/system/test_hooks_servers.py counts one memcached item,
the rendering, after a hooked request.)
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from pyiip.respond.app import Application, request_from_environ
from pyiip.server.fcgi_client import environ_for
from tests.integration.test_cache import replace_image
from tests.support.mcserver import memcached
from tests.system.test_memcached import pyiip_log  # noqa: F401 (a fixture)

TILE = "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=3,6"


@pytest.fixture
def root(tmp_path: Path, images) -> Path:
    shutil.copy(images.root / "rgb_deflate.tif", tmp_path / "rgb.tif")  # rendered tiles
    shutil.copy(images.root / "rgb_deflate.tif", tmp_path / "other.tif")
    return tmp_path


@pytest.fixture
def mc():
    with memcached() as daemon:
        yield daemon


def get(app: Application, uri: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    status, headers, body = app.handle(environ_for(uri, REQUEST_METHOD=method))
    return status, {k: v for k, v in headers if k != "X-Request-ID"}, bytes(body)


def counts(app: Application) -> tuple[int, int, int]:
    shared = app.service.cache.shared
    assert shared is not None
    return shared.hits, shared.misses, shared.stores


def test_a_reply_made_by_one_process_is_sent_whole_by_another_without_parsing(root, mc, make_app):
    first = make_app(root, MEMCACHED_SERVERS=mc.address)
    made = get(first, TILE)
    assert made[0] == "200 OK" and counts(first) == (0, 1, 1)
    second = make_app(root, MEMCACHED_SERVERS=mc.address)
    assert get(second, TILE) == made  # status line, every header, the bytes
    assert counts(second) == (1, 0, 0)
    cache = second.service.cache
    assert cache.memcached is not None and (cache.memcached.hits, cache.memcached.misses) == (0, 0)
    assert (cache.lru.hits, cache.lru.misses) == (0, 0)  # neither the renderer's caches nor the image were asked
    head = get(second, TILE, "HEAD")
    assert head[1] == made[1] and head[2] == b""
    assert second.service.cache.stats()["shared_hits"] == 2
    # A hit is kept in the process like any reply (the second coming), then answered from there.
    get(second, TILE)
    assert get(second, TILE) == made and second.service.cache.replies.hits == 1


def test_a_replaced_image_is_never_answered_from_the_tier(root, mc, make_app):
    first = make_app(root, MEMCACHED_SERVERS=mc.address)
    before = get(first, TILE)
    replace_image(root / "rgb.tif", seed=5)
    second = make_app(root, MEMCACHED_SERVERS=mc.address)
    after = get(second, TILE)
    assert after[2] != before[2] and counts(second) == (0, 1, 1)  # the identity differs: a miss, stored anew
    third = make_app(root, MEMCACHED_SERVERS=mc.address)
    assert get(third, TILE) == after and counts(third) == (1, 0, 0)
    (root / "rgb.tif").unlink()
    assert get(make_app(root, MEMCACHED_SERVERS=mc.address), TILE)[0].startswith("404")


def test_only_replies_the_server_can_remake_whole_are_stored(root, mc, make_app):
    app = make_app(root, MEMCACHED_SERVERS=mc.address)
    zoomify = "/zoomify/rgb.tif/TileGroup0/0-0-0.jpg"
    assert get(app, zoomify)[0] == "200 OK" and counts(app) == (0, 1, 1)  # a tile of another protocol
    app = make_app(root, MEMCACHED_SERVERS=mc.address)
    for uri in (
        "/iiif/3/rgb.tif/256,256,256,256/256,/0/default.jpg",  # a Link header
        "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&CVT=jpeg&WID=200",  # a Content-Disposition
        "/iiif/3/rgb.tif/info.json",  # not an image
        "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&OBJ=IIP,1.0&OBJ=Max-size",
        "/fcgi-bin/iipsrv.fcgi?FIF=missing.tif&JTL=3,6",
    ):
        assert get(app, uri)[0] in ("200 OK", "404 Not Found"), uri
    assert counts(app) == (0, 1, 0)  # only the tile of a missing image asked the tier: the others' kinds never
    assert get(app, TILE)[0] == "200 OK" and counts(app)[2] == 1


def test_settings_that_shape_replies_part_the_keys_and_the_others_do_not(root, mc, make_app):
    made = get(make_app(root, MEMCACHED_SERVERS=mc.address, JPEG_QUALITY="75"), TILE)
    other_quality = make_app(root, MEMCACHED_SERVERS=mc.address, JPEG_QUALITY="40")
    assert get(other_quality, TILE)[2] != made[2] and counts(other_quality) == (0, 1, 1)
    # Another log file and the servers listed otherwise: the same replies, shared.
    alike = make_app(root, MEMCACHED_SERVERS=f" {mc.address} ", LOGFILE="/dev/null", JPEG_QUALITY="75")
    assert get(alike, TILE) == made and counts(alike) == (1, 0, 0)


def stored_value(app: Application, uri: str) -> tuple[str, bytes]:
    shared = app.service.cache.shared
    assert shared is not None
    key = shared.key(request_from_environ(environ_for(uri)))
    value = shared.memcached.fetch(key)
    assert value is not None
    return key, value.tobytes()


def forgeries(value: bytes) -> dict[str, bytes]:
    """Values anyone reaching memcached could write under the tile's key, each refused."""
    head, _, rest = value.partition(b"\n")
    magic, token, mtime, etag, mime, length = head.split(b" ")
    identifier, body = rest[: int(length)], rest[int(length) :]

    def line(*fields: bytes) -> bytes:
        return b" ".join(fields) + b"\n"

    return {
        "foreign": b"VALUE-of-someone-else " + body,
        "html": line(magic, token, mtime, etag, b"text/html", length) + identifier + b"<script>alert(1)</script>",
        "type-and-body-disagree": line(magic, token, mtime, etag, b"image/png", length) + identifier + body,
        "etag-with-a-header": line(magic, token, mtime, b'"a"\r\nSet-Cookie:', mime, length) + identifier + body,
        "stale-token": line(magic, b"0" * 32, mtime, etag, mime, length) + identifier + body,
        "not-a-time": line(magic, token, b"nan", etag, mime, length) + identifier + body,
        "length-over-the-bound": line(magic, token, mtime, etag, mime, b"99999") + identifier + body,
        "length-past-the-end": line(magic, token, mtime, etag, mime, b"%d" % (len(rest) + 1)) + identifier + body,
        "negative-length": line(magic, token, mtime, etag, mime, b"-1") + identifier + body,
        "infinite-time": line(magic, token, b"1e999", etag, mime, length) + identifier + body,
        "identifier-not-utf8": line(magic, token, mtime, etag, mime, length) + b"\xff" * len(identifier) + body,
        "outside-the-root": line(magic, token, mtime, etag, mime, b"13") + b"../../etc/pas" + body,
        "another-image-named": line(magic, token, mtime, etag, mime, b"9") + b"other.tif" + body,
        "truncated": value[: len(value) // 2],
        "empty": b"",
        "too-many-fields": line(magic, token, mtime, etag, mime, length, b"x") + identifier + body,
    }


# Values that are a reply pyiip stored, for a file that is not the one there now: plain misses, not logged.
NOT_LOGGED = {"stale-token", "another-image-named", "outside-the-root"}


def test_values_that_lie_are_misses_and_are_replaced(root, mc, make_app, pyiip_log):  # noqa: F811
    writer = make_app(root, MEMCACHED_SERVERS=mc.address)
    made = get(writer, TILE)
    key, value = stored_value(writer, TILE)
    raw = Client(("127.0.0.1", mc.port))
    try:
        for name, forged in forgeries(value).items():
            raw.set(key, forged)
            reader = make_app(root, MEMCACHED_SERVERS=mc.address)
            assert get(reader, TILE) == made, name
            assert counts(reader) == (0, 1, 1), name  # a miss, then the long way's reply stored over it
            assert raw.get(key) == value, name
            logged = [m for m in pyiip_log.messages(logging.INFO) if "is not a reply pyiip stored" in m]
            assert len(logged) == (name not in NOT_LOGGED), name
            pyiip_log.records.clear()
    finally:
        raw.close()


def test_memcached_down_serves_from_the_images(root, mc, make_app):
    app = make_app(root, MEMCACHED_SERVERS=mc.address)
    made = get(app, TILE)
    mc.kill()
    fresh = make_app(root, MEMCACHED_SERVERS=mc.address)
    assert get(fresh, TILE) == made and counts(fresh)[0] == 0
