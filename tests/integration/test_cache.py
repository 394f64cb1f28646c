"""The per-process caches in the application: shared keys across protocols, replaced files, reload."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from pyiip import config
from pyiip.config import ConfigError
from pyiip.http import Request
from pyiip.model import ImageRequest, Region
from pyiip.respond.app import Application
from tests.support.imaging import rgb_pattern, write_vips_pyramid


@pytest.fixture
def own_root(tmp_path: Path, images) -> Path:
    """A private image root whose files the test may replace."""
    shutil.copy(
        images.root / "rgb_deflate.tif", tmp_path / "rgb.tif"
    )  # re-encoded tiles: stored JPEG tiles bypass the caches
    return tmp_path


def ask(app: Application, query: str, path: str = "/fcgi-bin/iipsrv.fcgi"):
    return app.respond(Request("GET", path, query))


def test_hot_tile_is_a_cache_hit_with_the_same_bytes_and_etag(own_root, make_app):
    app = make_app(own_root)
    first = ask(app, "FIF=rgb.tif&JTL=3,6")
    lru = app.service.cache.lru
    assert (lru.hits, lru.misses) == (0, 1)
    second = ask(app, "FIF=rgb.tif&JTL=3,6")
    assert (lru.hits, lru.misses) == (1, 1)
    assert second.body == first.body and type(second.body) is bytes
    assert second.etag == first.etag and second.etag.startswith('W/"')
    assert ask(app, "FIF=rgb.tif&JTL=3,7").etag != first.etag


def test_iip_and_iiif_share_entries(own_root, make_app):
    app = make_app(own_root)
    lru = app.service.cache.lru
    tile = ask(app, "FIF=rgb.tif&JTL=3,6")  # res 3 is full size: 5 tiles across, tile 6 = (1, 1)
    iiif = ask(app, "", "/iiif/3/rgb.tif/256,256,256,256/256,256/0/default.jpg")
    assert iiif.status == 200 and iiif.body == tile.body and (lru.hits, lru.misses) == (1, 1)
    ask(app, "FIF=rgb.tif&JTL=2,1")  # half size: tile 1 = (256, 0) at level 1 = (512, 0, 512, 512) at full size
    iiif = ask(app, "", "/iiif/3/rgb.tif/512,0,512,512/256,256/0/default.jpg")
    assert (lru.hits, lru.misses) == (2, 2)


def test_errors_are_not_cached(own_root, make_app):
    app = make_app(own_root)
    assert ask(app, "FIF=rgb.tif&JTL=3,999").status == 404
    assert len(app.service.cache.lru) == 0


def replace_image(path: Path, seed: int, size: tuple[int, int] = (1100, 900)) -> np.ndarray:
    """Publish a new image under the same name the usual way: write aside, then rename over."""
    pixels = rgb_pattern(*size, seed=seed)
    pixels[:, :, 0] = 255 - pixels[:, :, 0]  # unmistakably different from the first
    partial = path.with_name(path.name + ".partial")
    write_vips_pyramid(partial, pixels, compression="jpeg", quality=90)
    os.replace(partial, path)
    return pixels


def test_replaced_image_is_never_served_stale(own_root, make_app):
    app = make_app(own_root)
    before = ask(app, "FIF=rgb.tif&JTL=3,6")
    info_before = ask(app, "FIF=rgb.tif&OBJ=Max-size")
    assert b"Max-size:1100 900" in info_before.body
    pixels = replace_image(own_root / "rgb.tif", seed=5, size=(1050, 850))
    after = ask(app, "FIF=rgb.tif&JTL=3,6")
    assert after.status == 200 and after.body != before.body and after.etag != before.etag
    tile = simplejpeg.decode_jpeg(after.body).astype(int)
    assert np.abs(tile - pixels[256:512, 256:512].astype(int)).mean() < 3
    # The metadata cache (the open-image store) keys on the file identity too.
    assert b"Max-size:1050 850" in ask(app, "FIF=rgb.tif&OBJ=Max-size").body
    assert len(app.service.store._open) == 1


def test_rewritten_in_place_with_a_new_mtime_is_reread(own_root, make_app):
    """Same inode, same size, new mtime (a tool that rewrites in place): still a new identity."""
    app = make_app(own_root)
    path = own_root / "rgb.tif"
    before = ask(app, "FIF=rgb.tif&JTL=3,6").body
    other = own_root / "other.tif"
    replace_image(other, seed=9)
    data = other.read_bytes()
    stat = path.stat()
    with open(path, "r+b") as handle:  # keeps the inode
        handle.truncate(0)
        handle.write(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after = ask(app, "FIF=rgb.tif&JTL=3,6").body
    assert after != before and after == ask(app, "FIF=other.tif&JTL=3,6").body


def test_reload_empties_the_caches(own_root, make_app):
    app = make_app(own_root)
    ask(app, "FIF=rgb.tif&JTL=3,6")
    old = app.service
    assert len(old.cache.lru) == 1 and len(old.store._open) == 1
    app.reload(config.load({"FILESYSTEM_PREFIX": f"{own_root}/", "VERBOSITY": "0", "JPEG_QUALITY": "60"}))
    assert len(old.cache.lru) == 0 and len(old.store._open) == 0
    assert len(app.service.cache.lru) == 0 and app.settings.jpeg_quality == 60
    assert ask(app, "FIF=rgb.tif&JTL=3,6").status == 200


def test_reload_with_bad_memcached_servers_keeps_the_old_service(own_root, make_app):
    app = make_app(own_root)
    old = app.service
    with pytest.raises(ConfigError):
        app.reload(config.load({"FILESYSTEM_PREFIX": f"{own_root}/", "MEMCACHED_SERVERS": "host:port"}))
    assert app.service is old and ask(app, "FIF=rgb.tif&JTL=3,6").status == 200


def test_encoder_settings_change_the_memcached_key(own_root, make_app):
    """Processes with other JPEG_QUALITY sharing a memcached must not swap renderings."""
    a, b = make_app(own_root), make_app(own_root, JPEG_QUALITY="40")
    image = a.service.image("rgb.tif")
    request = ImageRequest(Region(0, 0, 256, 256, 0), (256, 256), quality=None)
    assert a.service.cache.digest(image, request) != b.service.cache.digest(image, request)
    assert a.service.cache.digest(image, request) == make_app(own_root).service.cache.digest(image, request)
    assert len(a.service.cache.digest(image, request)) < 250


def test_digest_is_the_blake2b_of_the_key_repr(own_root, make_app):
    """The digest hashes the text before the request once per file: the keys are those of a plain repr digest."""
    import hashlib

    from pyiip.model import Display

    app = make_app(own_root)
    cache = app.service.cache
    image = app.service.image("rgb.tif")
    requests = [
        ImageRequest(Region(0, 0, 256, 256, 0), (256, 256), quality=None),
        ImageRequest(Region(5, 6, 70, 80, 1), (35, 40), quality=60, format="png"),
        ImageRequest(Region(0, 0, 9, 9), (9, 9), display=Display(colormap="jét", minmax=((0, 1.5, 2.0),))),
    ]
    for request in requests * 2:
        text = repr((cache.namespace, image.resolved.identity, request))
        plain = hashlib.blake2b(text.encode("utf-8", "backslashreplace"), digest_size=16).hexdigest()
        assert cache.digest(image, request) == "pyiip:" + plain
    assert len({cache.digest(image, request) for request in requests}) == len(requests)
