"""/health and /metrics against a real memcached."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.test_ops import call, parse_metrics, tiles, value
from tests.support.mcserver import memcached as memcached_daemon
from tests.support.servers import free_port


@pytest.fixture(scope="module")
def memcached() -> Iterator[int]:
    """The port of a real memcached."""
    with memcached_daemon() as daemon:
        yield daemon.port


def test_health_checks_memcached(images, memcached, make_app):
    dead = free_port()
    app = make_app(images.root, MEMCACHED_SERVERS=f"127.0.0.1:{memcached}")
    status, _, body = call(app, "/health")
    reply = json.loads(body)
    assert status == 200 and reply["status"] == "ok"
    assert reply["checks"]["memcached"] == [{"server": f"127.0.0.1:{memcached}", "ok": True}]
    # One server down: ok until requests fail on it (no probe), then still 200 (images are served,
    # from disk), "degraded", the failing server named.
    app = make_app(images.root, MEMCACHED_SERVERS=f"127.0.0.1:{memcached},127.0.0.1:{dead}", MAX_IMAGE_CACHE_SIZE="0")
    assert json.loads(call(app, "/health")[2])["status"] == "ok"
    tiles(app, 20)
    status, _, body = call(app, "/health")
    reply = json.loads(body)
    assert status == 200 and reply["status"] == "degraded"
    assert [s["ok"] for s in reply["checks"]["memcached"]] == [True, False]
    assert reply["checks"]["memcached"][1]["error"]


def test_metrics_of_memcached_tier(images, memcached, make_app):
    app = make_app(images.root, MEMCACHED_SERVERS=f"127.0.0.1:{memcached}", MAX_IMAGE_CACHE_SIZE="0")
    for _ in range(2):
        call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb_deflate.tif&JTL=2,3")
    samples = parse_metrics(call(app, "/metrics")[2].decode())
    assert value(samples, "pyiip_cache_hits_total", cache="memcached") >= 1
    assert value(samples, "pyiip_cache_stores_total", cache="memcached") >= 1
    assert value(samples, "pyiip_cache_servers_down", cache="memcached") == 0
