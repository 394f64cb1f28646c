"""SIGHUP to a FastCGI process: the caches are emptied, the listening socket and the process stay."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

from pyiip.server import fcgi_client
from tests.support.mcserver import memcached
from tests.support.servers import VENV_BIN, free_port, running


def fcgi_get(port: int, query: str, path: str = "/fcgi-bin/iipsrv.fcgi") -> tuple[int, dict[str, str], bytes]:
    """One GET as a web server would send it over FastCGI (responder role, connection not kept)."""
    reply = fcgi_client.request(f"127.0.0.1:{port}", f"{path}?{query}", timeout=20)
    return reply.status, dict(reply.headers), reply.body


def test_sighup_empties_the_caches_and_keeps_the_socket(images, tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(
        images.root / "rgb_deflate.tif", root / "rgb.tif"
    )  # re-encoded tiles: stored JPEG tiles bypass the caches
    logfile = tmp_path / "pyiip.log"
    port = free_port()
    with memcached() as mc:
        env = {"MEMCACHED_SERVERS": mc.address, "VERBOSITY": "1", "LOGFILE": str(logfile)}
        command = [str(VENV_BIN / "pyiip"), "fcgi", "--bind", f"127.0.0.1:{port}", "--root", str(root)]
        with running(command, port, env) as process:
            tile = "FIF=rgb.tif&JTL=3,6"
            status, headers, body = fcgi_get(port, tile)
            assert status == 200 and body[:2] == b"\xff\xd8" and headers["ETag"].startswith('W/"')
            # Missed in both memcached tiers (whole replies, then renderings), rendered, stored in both.
            assert (mc.stats()["get_hits"], mc.stats()["get_misses"]) == (0, 2)
            assert fcgi_get(port, tile)[2] == body  # memcached's whole reply; now kept in the process too
            assert fcgi_get(port, tile)[2] == body  # the kept reply: memcached not asked
            assert (mc.stats()["get_hits"], mc.stats()["get_misses"]) == (1, 2)

            os.kill(process.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "caches emptied" not in logfile.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "caches emptied" in logfile.read_text()

            status, again, second = fcgi_get(port, tile)  # same socket, same process
            assert status == 200 and second == body and again["ETag"] == headers["ETag"]
            assert mc.stats()["get_hits"] == 2  # the kept replies were emptied: memcached answered
            assert process.poll() is None
            for _ in range(3):
                os.kill(process.pid, signal.SIGHUP)
                time.sleep(0.1)
                assert fcgi_get(port, "FIF=rgb.tif&OBJ=Max-size")[0] == 200
            assert process.poll() is None
