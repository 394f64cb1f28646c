"""Kept replies (replies.py): a repeated request is answered before parsing, never stale, never mixed up."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pyiip.respond.app import Application
from pyiip.server.fcgi_client import environ_for
from tests.support.imaging import rgb_pattern, write_vips_pyramid

TILE = "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=3,6"
INFO = "/iiif/3/rgb.tif/info.json"


@pytest.fixture
def root(tmp_path: Path, images) -> Path:
    shutil.copy(images.root / "rgb_deflate.tif", tmp_path / "rgb.tif")  # rendered tiles, not stored JPEG ones
    return tmp_path


def get(app: Application, uri: str, **extra: str) -> tuple[str, dict[str, str], bytes]:
    status, headers, body = app.handle(environ_for(uri, **extra))
    return status, dict(headers), bytes(body)


def counts(app: Application) -> tuple[int, int, int]:
    replies = app.service.cache.replies
    return replies.hits, replies.misses, replies.stores


def test_repeated_request_is_answered_whole_without_rendering(root, make_app):
    app = make_app(root)
    first = get(app, TILE)
    assert first[0] == "200 OK" and counts(app) == (0, 1, 0)  # asked once: not kept
    assert get(app, TILE) == first and counts(app) == (0, 2, 1)  # asked again: kept
    lru = app.service.cache.lru
    rendered = (lru.hits, lru.misses)
    assert get(app, TILE) == first  # status line, every header, the bytes
    assert counts(app) == (1, 2, 1) and (lru.hits, lru.misses) == rendered  # the renderer's cache was not asked
    stats = app.service.cache.stats()
    assert (stats["reply_hits"], stats["reply_stores"]) == (1, 1)


def test_requests_asked_once_take_nothing_from_the_budget(root, make_app):
    app = make_app(root)
    for n in range(12):
        assert get(app, f"/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=3,{n}")[0] == "200 OK"
    assert counts(app) == (0, 12, 0)


def sample(app: Application, name: str, **labels: str) -> float:
    """One sample of this process's /metrics (0 when absent: request counters are process-wide)."""
    wanted = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in get(app, "/metrics")[2].decode().splitlines():
        if line.startswith(name + wanted + " "):
            return float(line.rpartition(" ")[2])
    return 0.0


def test_hits_are_counted_as_requests(root, make_app):
    app = make_app(root)
    before = sample(app, "pyiip_requests_total", kind="iip_tile", code="200")
    for _ in range(4):
        get(app, TILE)
    assert sample(app, "pyiip_requests_total", kind="iip_tile", code="200") == before + 4
    assert sample(app, "pyiip_cache_hits_total", cache="reply") == 2


def replace(path: Path, seed: int) -> None:
    partial = path.with_name(path.name + ".partial")
    write_vips_pyramid(partial, rgb_pattern(1050, 850, seed=seed), compression="deflate")
    os.replace(partial, path)


def test_replaced_or_removed_image_is_never_answered_from_a_kept_reply(root, make_app):
    app = make_app(root)
    tile, info = get(app, TILE), get(app, INFO)
    assert (get(app, TILE), get(app, INFO)) == (tile, info) and counts(app) == (0, 4, 2)
    replace(root / "rgb.tif", seed=9)
    new_tile, new_info = get(app, TILE), get(app, INFO)
    assert new_tile[0] == "200 OK" and new_tile[2] != tile[2] and new_tile[1]["ETag"] != tile[1]["ETag"]
    assert b'"width": 1050' in new_info[2] and new_info[2] != info[2]
    assert counts(app) == (0, 6, 4)  # the new replies are kept in their turn (their keys were seen)
    assert get(app, TILE) == new_tile and counts(app)[0] == 1
    os.remove(root / "rgb.tif")
    assert get(app, TILE)[0] == "404 Not Found" and get(app, INFO)[0] == "404 Not Found"


def test_replies_vary_on_the_headers_their_handlers_read(root, make_app):
    app = make_app(root)
    ld = get(app, INFO)  # IIIF 3's default
    plain = get(app, INFO, HTTP_ACCEPT="application/json")  # kept, with Accept among what it varies on
    assert ld[1]["Content-Type"].startswith("application/ld+json") and plain[1]["Content-Type"] == "application/json"
    assert get(app, INFO) == ld and get(app, INFO, HTTP_ACCEPT="application/json") == plain
    assert counts(app)[0] == 0  # each variant replaced the other: one entry per request
    assert get(app, INFO) == get(app, INFO) == ld and counts(app)[0] == 1
    other_host = get(app, INFO, host="images.example.org")
    assert b"http://images.example.org/iiif/3/rgb.tif" in other_host[2] and b"localhost" not in other_host[2]
    named = get(app, INFO, HTTP_X_IIIF_ID="https://iiif.example.org/rgb")
    assert b'"id": "https://iiif.example.org/rgb"' in named[2]
    assert b"iiif.example.org" not in get(app, INFO)[2]


def test_conditional_head_and_error_requests(root, make_app):
    app = make_app(root)
    full = get(app, TILE)
    etag = full[1]["ETag"]
    for _ in range(2):
        status, headers, body = get(app, TILE, HTTP_IF_NONE_MATCH=etag)
        assert status == "304 Not Modified" and body == b""
    assert get(app, TILE, HTTP_IF_NONE_MATCH='W/"other"') == full
    for _ in range(3):
        status, headers, body = get(app, TILE, method="HEAD")
        assert status == "200 OK" and body == b"" and headers["Content-Length"] == str(len(full[2]))
    assert get(app, TILE) == full
    for _ in range(3):
        assert get(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=3,999")[0] == "404 Not Found"
    assert counts(app)[2] == 2  # the GET and the HEAD; no conditional reply, no error


def test_no_image_cache_no_kept_replies(root, make_app):
    app = make_app(root, MAX_IMAGE_CACHE_SIZE="0")
    assert get(app, TILE) == get(app, TILE) == get(app, TILE) and counts(app) == (0, 0, 0)


def test_a_kept_reply_follows_its_own_name_not_another_name_of_the_file(root, tmp_path, make_app):
    """Two names open one file once; each kept reply revalidates the name it was asked by."""
    other = root / "other.tif"
    replace(other, seed=4)  # a different image, 1050 x 850
    (root / "link.tif").symlink_to("rgb.tif")
    app = make_app(root)
    by_link = "/fcgi-bin/iipsrv.fcgi?FIF=link.tif&OBJ=Max-size"
    assert get(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&OBJ=Max-size")[0] == "200 OK"  # opened by its own name
    for _ in range(2):  # the second is kept
        assert b"Max-size:1100 900" in get(app, by_link)[2]
    (root / "link.tif").unlink()
    (root / "link.tif").symlink_to("other.tif")
    app.service.resolver._real.clear()  # what REALPATH_TTL (2 s) does in time
    assert b"Max-size:1050 850" in get(app, by_link)[2]
