"""The memcached tier against real memcached daemons on free loopback ports.

Hits and misses, two servers sharing keys, replaced images, values over the
item limit, an outage logged once and recovered from, and a memcached killed
or frozen under load without one failed request.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import simplejpeg

from pyiip.cache.memcached import place
from pyiip.cache.tier import MemcachedCache
from pyiip.http import Request
from pyiip.process.render import Rendered
from pyiip.respond.app import Application
from tests.integration.test_cache import replace_image
from tests.support.mcserver import memcached
from tests.support.servers import get, http_server

# rgb.tif is 1100 x 900 in 256-pixel tiles: 20 + 6 + 2 + 1 tiles, IIP resolutions 3 (full) to 0.
ALL_TILES = [(3, i) for i in range(20)] + [(2, i) for i in range(6)] + [(1, 0), (1, 1), (0, 0)]


@pytest.fixture
def root(tmp_path: Path, images) -> Path:
    shutil.copy(
        images.root / "rgb_deflate.tif", tmp_path / "rgb.tif"
    )  # re-encoded tiles: stored JPEG tiles bypass the caches
    return tmp_path


@pytest.fixture
def mc():
    with memcached() as daemon:
        yield daemon


class Captured(logging.Handler):
    """The pyiip log records, whatever another test did to the logger's handlers."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def pyiip_log():
    logger = logging.getLogger("pyiip")
    handler, level = Captured(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def jtl(app: Application, res: int, index: int, path: str = "/fcgi-bin/iipsrv.fcgi"):
    response = app.respond(Request("GET", path, f"FIF=rgb.tif&JTL={res},{index}"))
    assert response.status == 200, response.body
    return response


def test_miss_then_hit_in_another_process(root, mc, make_app):
    first = make_app(root, MEMCACHED_SERVERS=mc.address)
    reply = jtl(first, 3, 6)
    body, etag = reply.body, reply.etag
    tier = first.service.cache.memcached
    assert (tier.hits, tier.misses, tier.stores) == (0, 1, 1)
    assert mc.stats()["curr_items"] == 1
    jtl(first, 3, 6)  # the per-process LRU answers: memcached is not asked again
    assert (tier.hits, tier.misses) == (0, 1) and mc.stats()["get_hits"] == 0

    second = make_app(root, MEMCACHED_SERVERS=mc.address)  # another process: empty LRU, same memcached
    again = jtl(second, 3, 6)
    assert again.body == body and again.etag == etag
    assert second.service.cache.memcached.hits == 1 and mc.stats()["get_hits"] == 1
    iiif = second.respond(Request("GET", "/iiif/3/rgb.tif/256,256,256,256/256,256/0/default.jpg", ""))
    assert iiif.body == body  # the LRU entry the memcached hit filled, shared with IIIF


def test_two_servers_share_the_keys(root, images, make_app):
    with memcached() as a, memcached() as b:
        writer = make_app(root, MEMCACHED_SERVERS=f"{a.address},{b.address}")
        bodies = {tile: jtl(writer, *tile).body for tile in ALL_TILES}
        items = a.stats()["curr_items"], b.stats()["curr_items"]
        assert sum(items) == len(ALL_TILES) and min(items) > 0, items  # spread over both
        # Another process listing the servers in another order finds every key.
        reader = make_app(root, MEMCACHED_SERVERS=f" {b.address} , {a.address} ")
        for tile in ALL_TILES:
            assert jtl(reader, *tile).body == bodies[tile]
        assert reader.service.cache.memcached.hits == len(ALL_TILES)
        assert a.stats()["get_hits"] + b.stats()["get_hits"] == len(ALL_TILES)
        assert a.stats()["curr_items"] + b.stats()["curr_items"] == len(ALL_TILES)


def test_replaced_image_is_never_served_from_memcached(root, mc, make_app):
    old_app = make_app(root, MEMCACHED_SERVERS=mc.address)
    before = jtl(old_app, 3, 6).body
    pixels = replace_image(root / "rgb.tif", seed=11)
    fresh = make_app(root, MEMCACHED_SERVERS=mc.address)
    after = jtl(fresh, 3, 6).body
    assert after != before and fresh.service.cache.memcached.hits == 0
    tile = simplejpeg.decode_jpeg(after).astype(int)
    assert abs(tile - pixels[256:512, 256:512].astype(int)).mean() < 3
    assert jtl(old_app, 3, 6).body == after  # its LRU entry was keyed on the old file
    # The replacement is a JPEG pyramid: its stored tile is sent as it is, never cached.
    assert mc.stats()["curr_items"] == 1


def test_values_over_the_item_limit_are_skipped(mc, pyiip_log):
    tier = MemcachedCache(mc.address)
    big = Rendered(os.urandom(2 * 1024 * 1024), "image/png")
    tier.set("pyiip:big", big)
    assert (tier.skipped, tier.stores, tier.errors) == (1, 0, 0)
    # A limit above the daemon's own (-I 1m): the daemon refuses the item, quietly.
    lax = MemcachedCache(mc.address, item_limit=8 * 1024 * 1024)
    lax.set("pyiip:big", big)
    assert lax.get("pyiip:big") is None and lax.errors == 0 and not lax.down
    lax.set("pyiip:small", Rendered(b"abc", "image/jpeg"))
    assert lax.get("pyiip:small").body == b"abc"  # the connection is still in step
    assert pyiip_log.messages() == []


def test_outage_is_logged_once_and_recovered_from(mc, pyiip_log):
    tier = MemcachedCache(mc.address, dead_timeout=0.3)
    entry = Rendered(b"tile", "image/jpeg")
    tier.set("pyiip:a", entry)
    assert tier.get("pyiip:a").body == b"tile"
    mc.kill()
    for _ in range(50):
        tier.set("pyiip:b", entry)
        assert tier.get("pyiip:a") is None
        time.sleep(0.01)  # spans more than one dead_timeout: retried, still down, still one line
    errors = pyiip_log.messages(logging.ERROR)
    assert len(errors) == 1 and "unreachable" in errors[0] and mc.address in errors[0]
    assert tier.down == {mc.address}

    mc.start()  # back, on the same port, empty
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        tier.set("pyiip:c", entry)
        if tier.get("pyiip:c") is not None:
            break
        time.sleep(0.05)
    assert tier.get("pyiip:c").body == b"tile" and not tier.down
    assert len(pyiip_log.messages(logging.ERROR)) == 1
    assert any("reachable again" in m for m in pyiip_log.messages())


def test_frozen_or_absent_memcached_stalls_one_timeout(mc, pyiip_log):
    tier = MemcachedCache(mc.address, timeout=0.2, dead_timeout=60)
    tier.set("pyiip:x", Rendered(b"x", "image/jpeg"))
    mc.pause()
    try:
        started = time.monotonic()
        for _ in range(20):
            assert tier.get("pyiip:x") is None
        assert time.monotonic() - started < 1.0  # one timeout, then the server is skipped
    finally:
        mc.resume()
    refused = MemcachedCache("127.0.0.1:1", dead_timeout=60)  # nothing listens on port 1
    assert refused.get("pyiip:x") is None and refused.get("pyiip:y") is None
    assert len(pyiip_log.messages(logging.ERROR)) == 2


def test_values_of_every_size_come_back_whole(mc):
    """The get reads the reply itself: values within one read, over several, empty; misses in between."""
    tier = MemcachedCache(mc.address)
    for size in (0, 1, 5, 15_000, 65_536 - 60, 65_536, 200_000, 1_000_000):
        # Bodies that look like the end of a reply: the length in the header decides, not markers.
        body = os.urandom(size - 7) + b"\r\nEND\r\n" if size >= 7 else os.urandom(size)
        tier.set(f"pyiip:size{size}", Rendered(body, "image/png"))
        assert tier.get(f"pyiip:absent{size}") is None
        found = tier.get(f"pyiip:size{size}")
        assert found.body == body and found.mime == "image/png", size
        assert found.etag == f'W/"size{size}"'
    assert tier.errors == 0 and tier.hits == 8 and tier.misses == 8


def test_a_reply_out_of_step_costs_one_miss_not_an_outage(mc, pyiip_log):
    tier = MemcachedCache(mc.address)
    tier.set("pyiip:a", Rendered(b"tile", "image/jpeg"))
    assert tier.get("pyiip:a").body == b"tile"
    connection = tier.client.clients[mc.address]
    connection.sock.sendall(b"version\r\n")  # a reply the get does not expect comes first
    time.sleep(0.05)
    assert tier.get("pyiip:a") is None and tier.errors == 1 and not tier.down
    assert connection.sock is None  # closed: the next get starts on a clean stream
    assert tier.get("pyiip:a").body == b"tile" and tier.errors == 1
    assert pyiip_log.messages() == []


def test_keys_of_a_dead_server_go_to_the_others_meanwhile(images, pyiip_log):
    with memcached() as a, memcached() as b:
        tier = MemcachedCache(f"{a.address},{b.address}", dead_timeout=0.5)
        keys = [f"pyiip:{i:032x}" for i in range(40)]
        on_a = [key for key in keys if place(key, tier.names) == a.address]
        assert 0 < len(on_a) < len(keys)
        entry = Rendered(b"tile", "image/jpeg")
        a.kill()
        key = on_a[0]
        assert tier.get(key) is None  # refused: a is left out
        assert tier.down == {a.address}
        tier.set(key, entry)
        assert tier.get(key).body == b"tile"  # now on b
        assert b.stats()["curr_items"] == 1
        a.start()
        time.sleep(0.6)  # past the dead timeout: a is asked again, and holds nothing yet
        assert tier.get(key) is None and not tier.down
        tier.set(key, entry)
        assert tier.get(key).body == b"tile" and a.stats()["curr_items"] == 1
        errors = pyiip_log.messages(logging.ERROR)
        assert len(errors) == 1 and a.address in errors[0]
        assert any("reachable again" in m for m in pyiip_log.messages())


def fetch_all(base: str, urls: list[str]) -> list[tuple[int, bytes]]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda url: get(base + url, timeout=20)[::2], urls))


def test_memcached_killed_or_frozen_under_load_fails_no_request(images, tmp_path):
    """`pyiip serve`, two workers, a load of distinct and repeated tiles; memcached dies mid-way."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(
        images.root / "rgb_deflate.tif", root / "rgb.tif"
    )  # re-encoded tiles: stored JPEG tiles bypass the caches
    logfile = tmp_path / "pyiip.log"
    urls = [f"/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL={r},{i}" for r, i in ALL_TILES]
    urls += [f"/iiif/3/rgb.tif/{x},{y},256,256/256,256/0/default.jpg" for x in (0, 256, 512) for y in (0, 256)]
    urls += [f"/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&QLT={q}&JTL=3,{i}" for q in (60, 70, 80) for i in range(20)]
    with memcached() as mc:
        env = {"MEMCACHED_SERVERS": mc.address, "VERBOSITY": "1", "LOGFILE": str(logfile)}
        env["MAX_IMAGE_CACHE_SIZE"] = "0"  # every request goes to memcached
        port, context = http_server(root, env, workers=2)
        with context:
            base = f"http://127.0.0.1:{port}"
            results = fetch_all(base, urls * 2)  # warm: misses, then hits
            assert mc.stats()["get_hits"] > 0
            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(get, base + url, None, "GET", 20) for url in urls * 6]
                while sum(f.done() for f in futures) < len(futures) // 4:
                    time.sleep(0.002)
                mc.kill()
                killed_at = sum(f.done() for f in futures)
                results += [f.result()[::2] for f in futures]
            assert killed_at < len(futures) * 0.9  # memcached died in the middle of the load
            results += fetch_all(base, urls * 2)  # memcached gone for good
            mc.start()
            mc.pause()  # back, but frozen: connections accepted, nothing answered
            try:
                time.sleep(5.5)  # past the dead timeout: the workers try it again
                started = time.monotonic()
                results += fetch_all(base, urls)
                frozen_time = time.monotonic() - started
            finally:
                mc.resume()
    statuses = [status for status, _ in results]
    assert statuses.count(200) == len(results), {s: statuses.count(s) for s in set(statuses)}
    assert all(body[:2] == b"\xff\xd8" and body[-2:] == b"\xff\xd9" for _, body in results)
    assert frozen_time < 10, frozen_time
    lines = [line for line in logfile.read_text().splitlines() if "unreachable" in line]
    pids = {line.split("pyiip[")[1].split("]")[0] for line in lines}
    assert 1 <= len(pids) <= 2 and len(lines) <= 2 * len(pids), lines  # once per outage, per process
