"""`pyiip warm`: the entries it makes are exactly the ones live requests hit."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pyiip import config
from pyiip.http import Request
from pyiip.tools.warm import WarmError, warm
from tests.support.mcserver import memcached
from tests.support.servers import VENV_BIN


@pytest.fixture
def root(tmp_path: Path, images) -> Path:
    shutil.copy(
        images.root / "rgb_deflate.tif", tmp_path / "rgb.tif"
    )  # re-encoded tiles: stored JPEG tiles bypass the caches
    (tmp_path / "with space & more.tif").symlink_to(tmp_path / "rgb.tif")
    return tmp_path


@pytest.fixture
def mc():
    with memcached() as daemon:
        yield daemon


def settings_for(root: Path, servers: str = "") -> config.Settings:
    return config.load({"FILESYSTEM_PREFIX": f"{root}/", "VERBOSITY": "0", "MEMCACHED_SERVERS": servers})


def test_warmed_tiles_are_memcached_hits_for_live_requests(root, mc, make_app):
    report = warm(settings_for(root, mc.address), "rgb.tif", "0-2", progress=False)
    assert (report.tiles, report.rendered, report.cached, report.failed) == (9, 9, 0, 0)  # 1 + 2 + 6 tiles
    assert mc.stats()["curr_items"] == 9
    hits = mc.stats()["get_hits"]
    live = make_app(root, MEMCACHED_SERVERS=mc.address)  # a server process, empty LRU
    for query in ("FIF=rgb.tif&JTL=0,0", "FIF=rgb.tif&JTL=2,5", "FIF=rgb.tif&JTL=1,1"):
        response = live.respond(Request("GET", "/fcgi-bin/iipsrv.fcgi", query))
        assert response.status == 200
    assert mc.stats()["get_hits"] == hits + 3 and live.service.cache.memcached.misses == 0
    # IIIF asks for the same pixels: a hit too (resolution 2, tile 4 = 512,512,512,388 at full size).
    fresh = make_app(root, MEMCACHED_SERVERS=mc.address)
    response = fresh.respond(Request("GET", "/iiif/3/rgb.tif/512,512,512,388/256,194/0/default.jpg", ""))
    assert response.status == 200 and fresh.service.cache.memcached.hits == 1
    assert mc.stats()["curr_items"] == 9  # live requests added nothing

    again = warm(settings_for(root, mc.address), "rgb.tif", [0, 1, 2], progress=False)
    assert (again.cached, again.rendered) == (9, 0)  # already there; expiry re-armed


def test_identifiers_needing_escapes(root, mc, make_app):
    report = warm(settings_for(root, mc.address), "with space & more.tif", "0", progress=False)
    assert (report.rendered, report.failed) == (1, 0)
    live = make_app(root, MEMCACHED_SERVERS=mc.address)
    live.respond(Request("GET", "/", "FIF=with+space+%26+more.tif&JTL=0,0"))
    assert live.service.cache.memcached.hits == 1


def test_warm_needs_memcached(root, mc):
    with pytest.raises(WarmError, match="MEMCACHED_SERVERS"):
        warm(settings_for(root), "rgb.tif", progress=False)
    with pytest.raises(WarmError, match="not reachable"):
        warm(settings_for(root, "127.0.0.1:1"), "rgb.tif", progress=False)


def test_command_line(root, mc, make_app):
    env = {**os.environ, "MEMCACHED_SERVERS": mc.address, "VERBOSITY": "0"}
    command = [str(VENV_BIN / "pyiip"), "warm", "--root", str(root), "--levels", "3", "rgb.tif"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "20 tiles: 20 rendered and stored" in done.stderr and "tile/s" in done.stderr  # the progress bar
    live = make_app(root, MEMCACHED_SERVERS=mc.address)
    live.respond(Request("GET", "/", "FIF=rgb.tif&JTL=3,19"))
    assert live.service.cache.memcached.hits == 1
    env.pop("MEMCACHED_SERVERS")
    done = subprocess.run([*command, "--quiet"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "MEMCACHED_SERVERS is not set" in done.stderr
    done = subprocess.run(
        [*command[:-1], "missing.tif"], env={**env, "MEMCACHED_SERVERS": mc.address}, capture_output=True, text=True
    )
    assert done.returncode == 1 and "not found" in done.stderr
