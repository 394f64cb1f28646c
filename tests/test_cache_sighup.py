"""SIGHUP to a FastCGI process: the caches are emptied, the listening socket and the process stay."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import time
from pathlib import Path

from mcserver import memcached
from servers import VENV_BIN, free_port, running

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6


def _record(kind: int, content: bytes) -> bytes:
    return struct.pack("!BBHHBx", 1, kind, 1, len(content), 0) + content


def _pair(name: str, value: str) -> bytes:
    def length(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)

    raw_name, raw_value = name.encode(), value.encode()
    return length(len(raw_name)) + length(len(raw_value)) + raw_name + raw_value


def fcgi_get(port: int, query: str, path: str = "/fcgi-bin/iipsrv.fcgi") -> tuple[int, dict[str, str], bytes]:
    """One GET as a web server would send it over FastCGI (responder role, connection not kept)."""
    params = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": f"{path}?{query}",
        "QUERY_STRING": query,
        "SCRIPT_NAME": path,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
    }
    message = _record(FCGI_BEGIN_REQUEST, struct.pack("!HB5x", 1, 0))
    message += _record(FCGI_PARAMS, b"".join(_pair(k, v) for k, v in params.items())) + _record(FCGI_PARAMS, b"")
    message += _record(FCGI_STDIN, b"")
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(message)
        while chunk := sock.recv(65536):
            received += chunk
    stdout, offset = b"", 0
    while offset + 8 <= len(received):
        _version, kind, _id, size, padding = struct.unpack("!BBHHB", received[offset : offset + 7])
        if kind == FCGI_STDOUT:
            stdout += received[offset + 8 : offset + 8 + size]
        elif kind == FCGI_END_REQUEST:
            break
        offset += 8 + size + padding
    head, _, body = stdout.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n") if ": " in line)
    return int(headers.get("Status", "200")[:3]), headers, body


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
            assert fcgi_get(port, tile)[2] == body  # from the process's LRU: memcached not asked
            assert (mc.stats()["get_hits"], mc.stats()["get_misses"]) == (0, 1)

            os.kill(process.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "caches emptied" not in logfile.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "caches emptied" in logfile.read_text()

            status, again, second = fcgi_get(port, tile)  # same socket, same process
            assert status == 200 and second == body and again["ETag"] == headers["ETag"]
            assert mc.stats()["get_hits"] == 1  # the LRU was emptied: memcached answered
            assert process.poll() is None
            for _ in range(3):
                os.kill(process.pid, signal.SIGHUP)
                time.sleep(0.1)
                assert fcgi_get(port, "FIF=rgb.tif&OBJ=Max-size")[0] == 200
            assert process.poll() is None
