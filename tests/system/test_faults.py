"""Faults: a worker killed mid-request, memcached stopped and restarted, an image replaced or deleted
while it is served, a full disk under LOGFILE. Each time the service keeps answering.

Everything runs for real: lighttpd spawning two pyiip.fcgi, a memcached
daemon, the built-in HTTP server, a 64 kB tmpfs (or /dev/full where mounting
is not allowed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.imaging import rgb_pattern, write_tifffile_pyramid
from tests.support.mcserver import memcached
from tests.support.servers import fastcgi_children, free_port, get, http_server, lighttpd_config, require, running

SLOW = "/fcgi-bin/iipsrv.fcgi?FIF=float.tif&WID=5000&MINMAX=1:90,130&GAM=0.5&CMP=jet&ROT=33&CVT=png"
QUICK = [
    "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=2,{n}",
    "/fcgi-bin/iipsrv.fcgi?FIF=float.tif&MINMAX=1:90,200&CMP=jet&JTL=1,{n}",
    "/iiif/3/rgb.tif/{x},0,256,256/128,/0/default.jpg",
    "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&OBJ=IIP,1.0&OBJ=Max-size",
]


def quick(n: int) -> str:
    return QUICK[n % len(QUICK)].format(n=n % 4, x=(n * 64) % 800)


@pytest.fixture(scope="module")
def root(images, tmp_path_factory) -> Path:
    """A private copy of two images, so files can be replaced and deleted."""
    directory = tmp_path_factory.mktemp("faults")
    for name in ("rgb.tif", "float.tif"):
        shutil.copy(images.root / name, directory / name)
    return directory


@contextlib.contextmanager
def lighttpd(root: Path, directory: Path, **env: str):
    binary = require("lighttpd")
    port = free_port()
    config = lighttpd_config(directory, port, root, procs=2, env=env)
    with running([binary, "-D", "-f", str(config)], port) as process:
        deadline = time.monotonic() + 20
        while len(fastcgi_children(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", process


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def all_answer(base: str, count: int = 24, start: int = 0) -> list[int]:
    return [get(base + quick(start + n))[0] for n in range(count)]


def test_worker_killed_mid_request(root, tmp_path):
    with lighttpd(root, tmp_path) as (base, server):
        assert set(all_answer(base)) == {200}
        workers = fastcgi_children(server.pid)
        before = {pid: (cpu_ticks(pid), len(open_sockets(pid))) for pid in workers}
        result: list[object] = []
        slow = threading.Thread(target=lambda: result.append(get(base + SLOW, timeout=60)[0]))
        slow.start()
        busy = None
        deadline = time.monotonic() + 10
        while busy is None and time.monotonic() < deadline:
            time.sleep(0.1)
            # the one holding lighttpd's connection (one socket more than when idle), and working on it
            busy = next(
                (
                    pid
                    for pid in workers
                    if len(open_sockets(pid)) > before[pid][1] and cpu_ticks(pid) - before[pid][0] >= 10
                ),
                None,
            )
        assert busy is not None, "no worker started on the slow request"
        os.kill(busy, signal.SIGKILL)
        slow.join(60)
        assert result and result[0] != 200  # the request in flight is lost (lighttpd answers 5xx)...
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            children = fastcgi_children(server.pid)
            if len(children) == 2 and busy not in children:
                break
            time.sleep(0.1)
        assert busy not in fastcgi_children(server.pid) and len(fastcgi_children(server.pid)) == 2
        assert set(all_answer(base, 40)) == {200}  # ...and every request after it is answered
        assert get(base + SLOW.replace("ROT=33", "ROT=0").replace("WID=5000", "WID=800"))[0] == 200


def test_http_worker_killed_mid_request(root):
    port, context = http_server(root, workers=2)
    base = f"http://127.0.0.1:{port}"
    with context as supervisor:
        assert set(all_answer(base)) == {200}
        children = [int(p) for p in Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()]
        client = socket.create_connection(("127.0.0.1", port), timeout=60)
        busy = _owner(children, port, client.getsockname()[1])  # the worker that accepted it, not a guess from CPU
        before = cpu_ticks(busy)
        result: list[bytes] = []
        slow = threading.Thread(target=lambda: result.append(_exchange(client, SLOW)))
        slow.start()
        deadline = time.monotonic() + 10
        while cpu_ticks(busy) - before < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_ticks(busy) - before >= 10, "the worker did not start on the slow request"
        os.kill(busy, signal.SIGKILL)
        slow.join(60)
        assert result == [b""]  # the connection closed without a reply
        time.sleep(0.5)
        assert set(all_answer(base, 40)) == {200}


def open_sockets(pid: int) -> set[str]:
    """The process's open sockets, as "socket:[inode]"."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while listed
            if (target := os.readlink(fd)).startswith("socket:"):
                found.add(target)
    return found


def _owner(pids: list[int], port: int, client_port: int) -> int:
    """The process holding the server end of the loopback connection from client_port."""
    wanted = f"0100007F:{port:04X} 0100007F:{client_port:04X}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
        inodes = {f"socket:[{row.split()[9]}]" for row in rows if " ".join(row.split()[1:3]) == wanted}
        owner = next((pid for pid in pids if open_sockets(pid) & inodes), None)
        if owner is not None:
            return owner
        time.sleep(0.05)
    raise AssertionError("no worker accepted the connection")


def _exchange(client: socket.socket, path: str) -> bytes:
    """Everything the server sent back to one HTTP/1.0 request ("" when the connection just closed)."""
    with client:
        client.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := client.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def test_memcached_stopped_and_restarted(root, tmp_path):
    with (
        memcached() as mc,
        lighttpd(root, tmp_path, MEMCACHED_SERVERS=mc.address, MAX_IMAGE_CACHE_SIZE="0") as (
            base,
            _server,
        ),
    ):
        assert set(all_answer(base, 16)) == {200}
        assert mc.stats()["curr_items"] > 0
        mc.kill()
        started = time.monotonic()
        statuses = all_answer(base, 40, start=100)  # new tiles: rendered, the dead memcached skipped
        assert set(statuses) == {200}
        assert time.monotonic() - started < 30  # no request waits long for the dead memcached
        mc.start()  # the same port, empty
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert set(all_answer(base, 8, start=200)) == {200}
            if mc.stats()["curr_items"] > 0:
                break
            time.sleep(1)
        assert mc.stats()["curr_items"] > 0, "pyiip never went back to memcached"
    log = (tmp_path / "pyiip.log").read_text()
    assert "unreachable" in log and "Traceback" not in log


def _versions(directory: Path) -> list[Path]:
    """Three different valid versions of one image, and a corrupt one."""
    found = []
    for index, (width, height) in enumerate(((900, 700), (640, 1000), (300, 300))):
        path = directory / f"version{index}.tif"
        write_tifffile_pyramid(path, rgb_pattern(width, height, seed=index), compression="zlib")
        found.append(path)
    return found


def test_image_replaced_or_deleted_while_served(root, tmp_path):
    versions = _versions(tmp_path)
    live = root / "live.tif"
    shutil.copy(versions[0], live)
    stop = threading.Event()
    changes = [0]

    def churn() -> None:
        rng = np.random.default_rng(5)
        while not stop.is_set():
            action = int(rng.integers(0, 5))
            source = versions[int(rng.integers(0, len(versions)))]
            if action == 0:  # atomic replacement, as a careful deployment does
                temporary = root / ".live.tmp"
                shutil.copy(source, temporary)
                os.replace(temporary, live)
            elif action == 1:
                with contextlib.suppress(FileNotFoundError):
                    live.unlink()
            elif action == 2:  # rewritten in place, same inode
                with open(live, "wb") as handle:
                    handle.write(source.read_bytes())
            elif action == 3:  # truncated in place
                with contextlib.suppress(FileNotFoundError), open(live, "r+b") as handle:
                    handle.truncate(max(1, handle.seek(0, os.SEEK_END) // 3))
            else:
                shutil.copy(source, live)
            changes[0] += 1
            time.sleep(0.01)

    port, context = http_server(root, workers=2)
    base = f"http://127.0.0.1:{port}"
    urls = [
        "/fcgi-bin/iipsrv.fcgi?FIF=live.tif&OBJ=Max-size",
        "/fcgi-bin/iipsrv.fcgi?FIF=live.tif&JTL=1,0",
        "/fcgi-bin/iipsrv.fcgi?FIF=live.tif&JTL=2,1",
        "/fcgi-bin/iipsrv.fcgi?FIF=live.tif&WID=200&CVT=jpeg",
        "/iiif/3/live.tif/info.json",
        "/iiif/3/live.tif/full/100,/0/default.png",
        "/deepzoom/live.tif_files/8/0_0.jpg",
    ]
    with context:
        writer = threading.Thread(target=churn)
        writer.start()
        statuses: dict[int, int] = {}
        try:
            deadline = time.monotonic() + 8
            n = 0
            while time.monotonic() < deadline:
                status = get(base + urls[n % len(urls)])[0]
                statuses[status] = statuses.get(status, 0) + 1
                n += 1
        finally:
            stop.set()
            writer.join()
        assert changes[0] > 50
        assert set(statuses) <= {200, 400, 404}, statuses  # a vanished or half-written file is a 4xx, never 5xx
        assert statuses.get(200, 0) > 10, statuses
        shutil.copy(versions[1], live)  # the final version is served, nothing stale
        status, _headers, body = get(base + urls[0])
        assert status == 200 and b"Max-size:640 1000" in body
        live.unlink()
        assert get(base + urls[1])[0] == 404


@contextlib.contextmanager
def full_disk(tmp_path: Path):
    """A directory on a 64 kB tmpfs, or None when mounting is not allowed here."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_under_logfile(root, tmp_path):
    with full_disk(tmp_path) as mount:
        logfile = str(mount / "pyiip.log") if mount is not None else "/dev/full"
        directory = tmp_path / "lighttpd"
        directory.mkdir()
        with lighttpd(root, directory, LOGFILE=logfile, VERBOSITY="3") as (base, server):
            workers = fastcgi_children(server.pid)
            statuses = all_answer(base, 600)
            if mount is not None:
                usage = shutil.disk_usage(mount)
                assert usage.free < 8192, "the log filled the disk"
            statuses += all_answer(base, 200, start=600)  # and every request after that
            assert set(statuses) == {200}
            assert sorted(fastcgi_children(server.pid)) == sorted(workers), "a worker died"


def test_logfile_on_dev_full_in_http_mode(root):
    port, context = http_server(root, {"LOGFILE": "/dev/full", "VERBOSITY": "3"}, workers=1)
    with context as process:
        assert set(all_answer(f"http://127.0.0.1:{port}", 40)) == {200}
        assert process.poll() is None
