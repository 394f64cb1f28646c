"""The caches against hostile files and requests, in-process: files rewritten in place, absent channels."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyiip.respond.app import Application
from pyiip.server.fcgi_client import environ_for
from tests.support.imaging import rgb_pattern, write_tifffile_pyramid, write_vips_pyramid

WIDTH, HEIGHT = 600, 500


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_tifffile_pyramid(tmp_path / "rgb.tif", rgb_pattern(WIDTH, HEIGHT), compression="zlib")
    return tmp_path


def get(app: Application, uri: str, **extra: str) -> tuple[str, dict[str, str], bytes]:
    status, headers, body = app.handle(environ_for(uri, **extra))
    return status, dict(headers), bytes(body)


def rewrite_in_place(path: Path, data: bytes) -> None:
    """``cp`` into the same inode, then ``touch -d`` back to the old time: size, mtime and inode unchanged."""
    before = path.stat()
    assert len(data) == before.st_size
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


STORED = "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=2,0"  # a whole tile of level 0


def test_a_stored_tile_rewritten_in_place_is_not_called_unmodified(tmp_path, make_app):
    """Stored JPEG tiles go out as they are; their ETag names the file's version, ctime included."""
    root = tmp_path / "root"
    root.mkdir()
    old, new = tmp_path / "old.tif", tmp_path / "new.tif"
    write_vips_pyramid(old, rgb_pattern(WIDTH, HEIGHT, seed=1))
    write_vips_pyramid(new, 255 - rgb_pattern(WIDTH, HEIGHT, seed=2))
    size = max(old.stat().st_size, new.stat().st_size)  # padded to one size: TIFF readers skip trailing bytes
    (root / "rgb.tif").write_bytes(old.read_bytes().ljust(size, b"\0"))
    app = make_app(root)
    status, headers, body = get(app, STORED)
    assert status == "200 OK" and app.service.cache.lru.misses == 0  # the stored tile, no render
    rewrite_in_place(root / "rgb.tif", new.read_bytes().ljust(size, b"\0"))
    status, again, fresh = get(app, STORED, HTTP_IF_NONE_MATCH=headers["ETag"])
    assert status == "200 OK" and fresh != body and again["ETag"] != headers["ETag"]
    assert fresh == get(make_app(root), STORED)[2]


def test_overrides_of_channels_the_image_lacks_never_reach_a_cache_key(root, make_app):
    """MINMAX for channel 4 and up of an RGB image changes no pixel: such requests share one rendered entry."""
    app = make_app(root)
    for n in range(20):
        status, _headers, _body = get(app, f"/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&MINMAX={4 + n}:0,{n + 1}&JTL=1,1")
        assert status.startswith("200")
    assert len(app.service.cache.lru) <= 2  # the rendered tile (and at most its decoded tile)
