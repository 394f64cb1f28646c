"""/metrics through a web server with two workers: one scrape sums both, and a worker's death loses nothing."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.test_ops import parse_metrics, value
from tests.support.servers import fastcgi_children, free_port, get, http_server, lighttpd_config, require, running

SRC = str(Path(__file__).resolve().parents[2] / "src")  # the spawned workers run this tree's code
TILE = "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&RGN=0,0,1,1&WID={}&CVT=jpeg"


def spread(base: str, count: int) -> dict[str, int]:
    """``count`` concurrent CVTs; the replies per worker, told apart by their request ids' process prefix."""
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda n: get(base + TILE.format(200 + n)), range(count)))
    assert all(status == 200 for status, _, _ in replies)
    workers: dict[str, int] = {}
    for _, headers, _ in replies:
        prefix = headers["X-Request-ID"].rpartition("-")[0]
        workers[prefix] = workers.get(prefix, 0) + 1
    return workers


def scrape(base: str) -> dict:
    status, headers, body = get(base + "/metrics")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(body.decode())


def answered_by_both(base: str) -> dict[str, int]:
    workers: dict[str, int] = {}
    for _ in range(10):  # the web server balances on load: concurrent requests reach both
        for prefix, n in spread(base, 24).items():
            workers[prefix] = workers.get(prefix, 0) + n
        if len(workers) == 2:
            return workers
    pytest.fail(f"the requests never reached two workers: {workers}")


@pytest.fixture
def lighttpd(images, tmp_path):
    binary = require("lighttpd")
    port = free_port()
    env = {"PYTHONPATH": SRC, "METRICS_DIR": str(tmp_path / "metrics")}
    config = lighttpd_config(tmp_path, port, images.root, procs=2, env=env)
    with running([binary, "-D", "-f", str(config)], port) as process:
        yield f"http://127.0.0.1:{port}", process, tmp_path / "metrics"


def test_one_scrape_sums_both_fastcgi_workers(lighttpd):
    base, process, directory = lighttpd
    workers = answered_by_both(base)
    for _ in range(4):  # whichever worker answers the scrape, the sum is the same
        samples = scrape(base)
        assert value(samples, "pyiip_requests_total", kind="iip_cvt", code="200") == sum(workers.values())
        assert value(samples, "pyiip_workers") == 2
        assert not any(name == "pid" for _n, labels in samples for name, _v in labels)
        assert value(samples, "process_cpu_seconds_total") > 0
    assert sorted(p.name for p in directory.iterdir() if p.suffix == ".metrics") == sorted(
        f"{pid}.metrics" for pid in fastcgi_children(process.pid)
    )
    assert directory.stat().st_mode & 0o777 == 0o700

    # A worker killed: its counts are folded into the archive, its file goes, the total never drops.
    victim = fastcgi_children(process.pid)[0]
    os.kill(victim, 9)
    deadline = time.monotonic() + 15
    while (victim in fastcgi_children(process.pid) or len(fastcgi_children(process.pid)) < 2) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    more = spread(base, 8)
    samples = scrape(base)
    total = sum(workers.values()) + sum(more.values())
    assert value(samples, "pyiip_requests_total", kind="iip_cvt", code="200") == total
    assert not (directory / f"{victim}.metrics").exists() and (directory / "archive.json").exists()


def test_pyiip_serve_workers_share_a_private_directory(images):
    port, context = http_server(images.root, {"PYTHONPATH": SRC}, workers=2)
    base = f"http://127.0.0.1:{port}"
    with context:
        workers = answered_by_both(base)
        for _ in range(3):
            samples = scrape(base)
            assert value(samples, "pyiip_requests_total", kind="iip_cvt", code="200") == sum(workers.values())
