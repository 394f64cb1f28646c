"""Decoded tiles in the per-process LRU: hits on overlapping regions, same bytes, one budget, never stale, read-only."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from pyiip.cache.lru import LRUCache
from pyiip.cache.tiles import TileCache
from pyiip.http import Request, Response
from pyiip.read.tiff import TiffSource
from pyiip.respond.app import Application
from tests.support.imaging import rgb_pattern, write_tifffile_pyramid, write_vips_pyramid

TILE_BYTES = 256 * 256 * 3  # one decoded RGB tile


@pytest.fixture
def root(tmp_path: Path, images) -> Path:
    """A private root: JPEG and deflate RGB pyramids (1100 x 900, 256 px tiles) and a float cube."""
    shutil.copy(images.root / "rgb.tif", tmp_path / "jpeg.tif")
    shutil.copy(images.root / "rgb_deflate.tif", tmp_path / "deflate.tif")
    shutil.copy(images.root / "float.tif", tmp_path / "float.tif")
    return tmp_path


def iiif(app: Application, path: str) -> Response:
    return app.respond(Request("GET", "/iiif/3/" + path, ""))


def iip(app: Application, query: str) -> Response:
    return app.respond(Request("GET", "/fcgi-bin/iipsrv.fcgi", query))


def tile_entries(app: Application) -> dict:
    """The decoded tiles the LRU holds, by key."""
    return {key: item[0] for key, item in app.service.cache.lru._entries.items() if key[0] == "tile"}


def file_identity(path: Path) -> tuple:
    st = os.stat(path)
    return ("file", st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)


def test_overlapping_regions_share_decoded_tiles(root, make_app):
    app = make_app(root)
    tiles = app.service.cache.tiles
    first = iiif(app, "deflate.tif/100,100,300,300/max/0/default.png")  # tiles (0,0), (1,0), (0,1), (1,1)
    assert first.status == 200 and (tiles.hits, tiles.misses, tiles.stores) == (0, 4, 4)
    second = iiif(app, "deflate.tif/150,120,300,300/max/0/default.png")  # the same four tiles
    assert second.status == 200 and second.body != first.body
    assert (tiles.hits, tiles.misses, tiles.stores) == (4, 4, 4)
    iip(app, "FIF=deflate.tif&RGN=0.2,0.2,0.1,0.1&WID=110&CVT=png")  # IIP too: (220, 180) to (330, 270)
    assert tiles.hits == 8 and tiles.misses == 4
    # A region inside one tile reads it in part: a hit here; stored when it was not cached.
    assert iiif(app, "deflate.tif/300,10,100,100/max/0/default.png").status == 200
    assert tiles.hits == 9
    assert iiif(app, "deflate.tif/600,10,100,100/max/0/default.png").status == 200  # tile (2, 0)
    assert (tiles.misses, tiles.stores) == (5, 5)
    samples = app.respond(Request("GET", "/metrics", "")).body.decode()
    assert 'pyiip_cache_hits_total{cache="tile"} 9' in samples
    assert 'pyiip_cache_misses_total{cache="tile"} 5' in samples


def test_tile_aligned_requests_store_no_decoded_tile(root, make_app):
    """A tile read whole is the output of a tile-aligned request: its encoded form is cached instead."""
    app = make_app(root)
    tiles = app.service.cache.tiles
    assert iip(app, "FIF=deflate.tif&JTL=3,6").status == 200
    assert iiif(app, "deflate.tif/256,256,256,256/256,/0/default.jpg").status == 200  # the same tile
    assert iiif(app, "deflate.tif/1024,768,76,132/max/0/default.jpg").status == 200  # an edge tile, whole
    assert iip(app, "FIF=jpeg.tif&QLT=60&JTL=2,1").status == 200
    assert tiles.stores == 0 and not tile_entries(app)
    # ... but a tile already there from a region is used.
    iiif(app, "deflate.tif/200,200,100,100/max/0/default.png")
    hits = tiles.hits
    assert iip(app, "FIF=deflate.tif&QLT=50&JTL=3,0").status == 200
    assert tiles.hits == hits + 1


def test_output_is_byte_identical_with_and_without_the_tile_cache(root, make_app):
    cached, plain = make_app(root, MAX_IMAGE_CACHE_SIZE="64"), make_app(root, MAX_IMAGE_CACHE_SIZE="0")
    assert plain.service.cache.tiles is None
    warm = [
        "jpeg.tif/90,90,400,400/max/0/default.jpg",
        "deflate.tif/90,90,400,400/max/0/default.jpg",
        "jpeg.tif/500,300,600,600/300,/0/default.jpg",
    ]
    checks = [
        "jpeg.tif/100,100,300,300/max/0/default.jpg",
        "jpeg.tif/100,100,300,300/150,/0/default.png",
        "deflate.tif/120,80,350,300/max/90/gray.jpg",
        "deflate.tif/120,80,350,300/200,/!45/default.png",
        "deflate.tif/300,10,100,100/max/!0/bitonal.png",  # inside one tile: a view of it
        "jpeg.tif/520,310,500,500/250,/180/default.webp",
        "jpeg.tif/600,400,256,256/max/270/color.tif",
    ]
    for path in warm + checks:
        assert iiif(cached, path).body == iiif(plain, path).body, path
    assert cached.service.cache.tiles.hits >= len(checks)
    for query in ("RGN=0.1,0.1,0.4,0.4&WID=300&CVT=jpeg", "RGN=0.1,0.1,0.4,0.4&WID=300&ROT=90&CVT=png"):
        query = "FIF=float.tif&MINMAX=1:90,130&GAM=0.5&CMP=JET&" + query
        assert iip(cached, query).body == iip(plain, query).body


def test_cached_tiles_are_read_only_and_unchanged_by_rendering(root, make_app):
    """Render paths over cached tiles (display processing, rotation, mirror, colour, formats) leave them as decoded."""
    app = make_app(root, MAX_IMAGE_CACHE_SIZE="64")
    regions = ("100,100,300,300", "300,10,100,100", "700,500,400,400", "256,0,256,256")  # the last, a whole tile
    for name in ("jpeg.tif", "deflate.tif"):
        for region in regions:
            for rest in (
                "max/0/default.jpg",
                "max/90/gray.png",
                "max/!0/bitonal.png",
                "max/!180/default.webp",
                "max/33/default.png",
                "max/12/gray.jpg",
                "^150,/270/color.tif",
                "max/0/default.gif",
            ):
                reply = iiif(app, f"{name}/{region}/{rest}")
                assert reply.status == 200, (name, region, rest, reply.body[:200])
    for display in (
        "MINMAX=1:90,130&GAM=0.5&CMP=JET",
        "INV&CNT=2.5",
        "MINMAX=2:0,200&GAM=2&CTW=0.3,0.3,0.3;0.1,0.8,0.1;0,0,1",
        "SHD=30,60",
        "MINMAX=1:90,130&CMP=HOT&INV",
    ):
        for rgn in ("0.1,0.1,0.4,0.4", "0.3,0.01,0.1,0.1"):
            for tail in ("WID=300&CVT=jpeg", "ROT=90&CVT=png", "ROT=!180&CVT=jpeg", "COL=grey&CVT=jpeg"):
                reply = iip(app, f"FIF=float.tif&{display}&RGN={rgn}&{tail}")
                assert reply.status == 200, (display, rgn, tail, reply.body[:200])
        assert iip(app, f"FIF=deflate.tif&{display}&RGN=0.2,0.2,0.3,0.3&CVT=jpeg").status == 200
    assert iip(app, "FIF=float.tif&PFL=2:10,300-690,300").status == 200  # a line across tiles
    entries = tile_entries(app)
    assert len(entries) >= 20 and app.service.cache.tiles.hits > 100
    fresh = {}
    for name in ("jpeg.tif", "deflate.tif", "float.tif"):
        source = TiffSource(str(root / name))
        fresh[file_identity(root / name)] = source
    for (_tag, identity, level, index), tile in entries.items():
        assert not tile.flags.writeable
        source = fresh[identity]
        across = source.info.levels[level].tiles_across
        expected = source.decode_tile(level, index % across, index // across)
        assert np.array_equal(tile, expected, equal_nan=tile.dtype.kind == "f")
    for source in fresh.values():
        source.close()


def test_reads_are_read_only_views_or_copies(root):
    lru = LRUCache(16 * 1024 * 1024)
    tiles = TileCache(lru)
    source = TiffSource(str(root / "deflate.tif"), tiles)
    inside = source.read(0, 10, 10, 50, 50)  # a view of one tile, which is now cached
    assert not inside.flags.writeable and tiles.stores == 1
    with pytest.raises(ValueError):
        inside[0, 0, 0] = 1
    across = source.read(0, 200, 200, 100, 100)  # composed from four tiles: the caller's own array
    assert across.flags.writeable and tiles.stores == 4 and tiles.hits == 1
    whole = source.read(0, 256, 0, 256, 256)  # a whole tile: not stored, read-only all the same
    assert not whole.flags.writeable and tiles.stores == 4 and tiles.hits == 2
    uncached = TiffSource(str(root / "deflate.tif"))
    assert not uncached.read(0, 10, 10, 50, 50).flags.writeable
    assert np.array_equal(uncached.read(0, 200, 200, 100, 100), across)
    uncached.close()
    source.close()


def test_one_budget_for_encoded_images_and_decoded_tiles(root, make_app):
    app = make_app(root, MAX_IMAGE_CACHE_SIZE="1")
    lru, tiles = app.service.cache.lru, app.service.cache.tiles
    assert tiles.max_read == lru.max_entry == 1024 * 1024 // 4
    stored = 0
    for x in range(0, 800, 37):
        assert iiif(app, f"deflate.tif/{x},{x // 2},300,300/max/0/default.jpg").status == 200
        assert tiles.stores - stored <= 1  # a read adds at most a quarter of the budget: one tile here
        stored = tiles.stores
        assert lru.bytes <= lru.max_bytes
    assert stored > 1 and lru.evictions > 0
    kinds = {type(key[1]) for key in lru._entries}  # encoded images (identity, request) and tiles side by side
    assert len(tile_entries(app)) <= 1024 * 1024 // (TILE_BYTES + LRUCache.ENTRY_OVERHEAD)
    assert len(kinds) == 2 and len(lru) > len(tile_entries(app))
    # Float tiles (256 x 256 x 3 x 4 bytes) are over a quarter of the budget: never kept.
    before = tiles.stores
    assert iip(app, "FIF=float.tif&RGN=0.1,0.1,0.4,0.4&WID=200&CVT=jpeg").status == 200
    assert tiles.stores == before
    # SIGHUP empties both kinds.
    app.service.clear()
    assert len(lru) == 0 and lru.bytes == 0


def test_no_tile_cache_without_an_image_cache(root, make_app):
    app = make_app(root, MAX_IMAGE_CACHE_SIZE="0")
    assert app.service.cache.tiles is None and app.service.store.tiles is None
    assert iiif(app, "deflate.tif/100,100,300,300/max/0/default.png").status == 200
    assert 'cache="tile"' not in app.respond(Request("GET", "/metrics", "")).body.decode()


def test_replaced_or_rewritten_file_never_serves_stale_tiles(root, make_app):
    app = make_app(root)
    tiles = app.service.cache.tiles
    path = root / "jpeg.tif"
    region = "100,100,300,300/max/0/default.png"
    before = iiif(app, "jpeg.tif/" + region)
    iiif(app, "jpeg.tif/110,110,300,300/max/0/default.png")
    assert tiles.hits == 4
    # Renamed over (a new inode): the tiles of the old file are not used.
    pixels = rgb_pattern(1100, 900, seed=9)
    pixels[:, :, 0] = 255 - pixels[:, :, 0]
    write_vips_pyramid(root / "new.tif", pixels, compression="jpeg", quality=95)
    os.replace(root / "new.tif", path)
    after = iiif(app, "jpeg.tif/110,110,300,300/max/0/default.jpg")
    assert tiles.hits == 4 and after.status == 200
    decoded = simplejpeg.decode_jpeg(after.body).astype(int)
    assert np.abs(decoded - pixels[110:410, 110:410]).mean() < 4
    # Rewritten in place (same inode, new mtime): neither.
    pixels = rgb_pattern(1100, 900, seed=11)
    write_vips_pyramid(root / "other.tif", pixels, compression="jpeg", quality=95)
    inode = os.stat(path).st_ino
    shutil.copyfile(root / "other.tif", path)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 1_000_000))
    assert os.stat(path).st_ino == inode
    hits = tiles.hits
    again = iiif(app, "jpeg.tif/110,110,300,300/max/0/default.jpg")
    assert tiles.hits == hits
    decoded = simplejpeg.decode_jpeg(again.body).astype(int)
    assert np.abs(decoded - pixels[110:410, 110:410]).mean() < 4
    assert before.body != iiif(app, "jpeg.tif/" + region).body


def test_hard_links_share_decoded_tiles(root, make_app):
    os.link(root / "deflate.tif", root / "alias.tif")
    app = make_app(root)
    tiles = app.service.cache.tiles
    first = iiif(app, "deflate.tif/100,100,300,300/max/0/default.png")
    second = iiif(app, "alias.tif/100,100,300,300/max/0/default.png")  # another name: a render-cache miss
    assert second.body == first.body and (tiles.hits, tiles.misses) == (4, 4)


def test_planar_and_float_tiles_are_cached_too(tmp_path):
    data = np.random.default_rng(3).random((600, 700, 2), dtype=np.float32)
    write_tifffile_pyramid(tmp_path / "two.tif", data, compression="zlib")
    planar = rgb_pattern(600, 500)
    import tifffile

    tifffile.imwrite(
        tmp_path / "planar.tif", np.moveaxis(planar, 2, 0), tile=(256, 256), photometric="rgb", planarconfig="separate"
    )
    lru = LRUCache(64 * 1024 * 1024)
    tiles = TileCache(lru)
    for name, expected in (("two.tif", data), ("planar.tif", planar)):
        source = TiffSource(str(tmp_path / name), tiles)
        for _ in range(2):
            assert np.array_equal(source.read(0, 100, 120, 300, 200), expected[120:320, 100:400])
        source.close()
    assert tiles.hits == tiles.misses == tiles.stores == 8
