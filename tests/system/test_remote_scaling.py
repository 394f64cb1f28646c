"""Horizontal scaling: pyiip hosts behind one load balancer share memcached and the object store.

Two `pyiip serve` instances (each with its own block cache directory, as on
two machines) read the same nginx origin and hash their keys over the same
two memcached servers, listed in different orders. A tile rendered by one is
a memcached hit on the other, which never reads the tile's bytes; behind an
nginx load balancer each tile is rendered once for the whole cluster; and
with one host gone the other serves everything, since no host keeps state
another needs.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.support.imaging import rgb_pattern, write_vips_pyramid
from tests.support.mcserver import Memcached, memcached
from tests.support.objectstores import Nginx, nginx
from tests.support.servers import free_port, get, http_server, require, stop, wait_for_port

BLOCK = 16 * 1024


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("origin")
    write_vips_pyramid(root / "big.tif", np.tile(rgb_pattern(512, 512, seed=12), (6, 8, 1)))  # 4096 x 3072
    work = tmp_path_factory.mktemp("cluster")
    with ExitStack() as stack:
        origin = stack.enter_context(nginx(root, work / "origin"))
        mc1, mc2 = stack.enter_context(memcached()), stack.enter_context(memcached())
        hosts = {}
        for name, servers in (("a", f"{mc1.address},{mc2.address}"), ("b", f"{mc2.address},{mc1.address}")):
            env = {
                "REMOTE_URL_TEMPLATE": origin.base + "/images/{id}",
                "BLOCK_CACHE_DIR": str(work / f"blocks-{name}"),
                "REMOTE_BLOCK_SIZE": str(BLOCK // 1024),
                "MEMCACHED_SERVERS": servers,
                "MAX_IMAGE_CACHE_SIZE": "0",  # no per-process LRU: every repeat must come from memcached
            }
            port, server = http_server(work / "unused", env, workers=1)
            (work / "unused").mkdir(exist_ok=True)
            hosts[name] = {"port": port, "process": stack.enter_context(server)}
        balancer = stack.enter_context(load_balancer(work / "lb", [h["port"] for h in hosts.values()]))
        yield {"root": root, "origin": origin, "memcached": (mc1, mc2), "hosts": hosts, "balancer": balancer}


def load_balancer(directory: Path, ports: list[int]):
    """A foreground nginx proxying round-robin to the hosts, moving on from a dead one."""
    from contextlib import contextmanager

    @contextmanager
    def run() -> Iterator[int]:
        nginx_program = require("nginx")
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        user = "user root root;" if os.geteuid() == 0 else ""
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in ports)
        temp = directory / "temp"
        (directory / "nginx.conf").write_text(
            f"""worker_processes 1;
{user}
pid {directory}/nginx.pid;
error_log {directory}/error.log crit;
events {{ worker_connections 64; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream pyiip {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://pyiip;
            proxy_set_header Host $http_host;
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"""
        )
        temp.mkdir(exist_ok=True)
        command = [nginx_program, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, process=process)
            yield port
        finally:
            stop(process, timeout=5)

    return run()


def url(port: int, query: str) -> str:
    return f"http://127.0.0.1:{port}/fcgi-bin/iipsrv.fcgi?{query}"


def totals(servers: tuple[Memcached, Memcached], name: str) -> int:
    return sum(server.stats()[name] for server in servers)


def test_a_tile_rendered_on_one_host_is_a_memcached_hit_on_the_other(cluster: dict) -> None:
    origin: Nginx = cluster["origin"]
    mcs = cluster["memcached"]
    a, b = cluster["hosts"]["a"]["port"], cluster["hosts"]["b"]["port"]
    tile = 5 * 16 + 6
    with tifffile.TiffFile(cluster["root"] / "big.tif") as tif:
        offset, count = int(tif.pages[0].dataoffsets[tile]), int(tif.pages[0].databytecounts[tile])

    origin.clear_log()
    started = time.perf_counter()
    status, headers_a, body_a = get(url(a, f"FIF=big.tif&JTL=4,{tile}"))
    rendered_ms = (time.perf_counter() - started) * 1000
    assert status == 200
    log_a = origin.log()
    assert any(x.span[0] <= offset + count - 1 and x.span[1] >= offset for x in log_a)  # A read the tile

    hits = totals(mcs, "get_hits")
    origin.clear_log()
    started = time.perf_counter()
    status, headers_b, body_b = get(url(b, f"FIF=big.tif&JTL=4,{tile}"))
    hit_ms = (time.perf_counter() - started) * 1000
    assert status == 200 and body_b == body_a and headers_b["ETag"] == headers_a["ETag"]
    assert totals(mcs, "get_hits") == hits + 1
    log = origin.log()
    assert log and log[0].range == f"bytes=0-{BLOCK - 1}"  # B checked the version and read the header...
    assert not any(x.span[0] <= offset + count - 1 and x.span[1] >= offset for x in log)  # ...never the tile
    # Steady state, both hosts with the image open: the next tile, rendered on A, then asked of B.
    figures = []
    for host in (a, b):
        origin.clear_log()
        started = time.perf_counter()
        status, _headers, _body = get(url(host, f"FIF=big.tif&JTL=4,{tile + 1}"))
        figures.append(((time.perf_counter() - started) * 1000, len(origin.log(at_least=0))))
        assert status == 200
    assert figures[1][1] == 0  # B: a memcached hit, nothing from the store
    print(f"\nscaling figures: first tile: A {rendered_ms:.1f} ms, {len(log_a)} store reads (opening the image,"
          f" then the tile); B {hit_ms:.1f} ms, {len(log)} (opening the image only); next tile: A rendered it in"
          f" {figures[0][0]:.1f} ms with {figures[0][1]} store read(s), B served it from memcached in"
          f" {figures[1][0]:.1f} ms with {figures[1][1]}")  # fmt: skip  # docs/scaling.md quotes it (pytest -s)


def test_behind_a_load_balancer_each_tile_is_rendered_once_and_one_host_may_go(cluster: dict) -> None:
    mcs = cluster["memcached"]
    balancer = cluster["balancer"]
    queries = [f"FIF=big.tif&JTL=3,{i}" for i in range(0, 48, 4)]  # level 3: 8 x 6 tiles
    sets = totals(mcs, "cmd_set")
    first = [get(url(balancer, q)) for q in queries]
    assert all(status == 200 for status, _h, _b in first)
    assert [get(url(balancer, q))[2] for q in queries] == [body for _s, _h, body in first]
    assert totals(mcs, "cmd_set") == sets + len(queries)  # rendered once in the cluster, whatever host asked
    assert all(server.stats()["curr_items"] > 0 for server in mcs)  # keys spread over both servers

    stop(cluster["hosts"]["a"]["process"])  # a host goes away: nothing it held is needed
    again = [get(url(balancer, q)) for q in [*queries, "FIF=big.tif&JTL=4,150"]]
    assert [status for status, _h, _b in again] == [200] * (len(queries) + 1)
    assert [body for _s, _h, body in again[:-1]] == [body for _s, _h, body in first]
