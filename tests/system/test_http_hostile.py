"""Hostile HTTP peers against a real `pyiip serve --workers 2` on loopback (issue 15, finding 2).

Idle connections, slowloris clients (one header byte per 0.5 s), clients that ask for a
multi-MB reply and never read it, oversized or malformed heads: none may stop the workers from
answering others, each is dropped once CLIENT_TIMEOUT passes, and an idle worker takes no CPU.
Which worker holds a connection is read from /proc (its descriptors and /proc/net/tcp).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyiip.server.http_server import MAX_CONNECTIONS
from tests.support.servers import http_server, status_kib
from tests.system.test_faults import cpu_ticks, open_sockets

TILE = "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=2,1"
BIG = "/fcgi-bin/iipsrv.fcgi?FIF=float.tif&WID=2400&MINMAX=1:90,110&CVT=png"  # ~7 MB of PNG, ~1 s to render
SLOWLORIS_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000


@contextlib.contextmanager
def serve(root: Path, timeout: float, **env: str) -> Iterator[tuple[int, list[int]]]:
    """`pyiip serve --workers 2` with CLIENT_TIMEOUT=timeout; yields its port and its workers' PIDs."""
    port, context = http_server(root, {"CLIENT_TIMEOUT": str(timeout), **env}, workers=2)
    with context as process:
        yield port, workers_of(process.pid)


def workers_of(pid: int) -> list[int]:
    """The supervisor's two workers."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        if len(children) == 2:
            return children
        time.sleep(0.05)
    raise AssertionError("the server did not start its two workers")


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_until_serving(pids: list[int]) -> None:
    """Until each worker waits in epoll, its start-up over (bounded; a worker that never does fails later)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(waiting(pid) for pid in pids):
        time.sleep(0.05)


def waiting(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/wchan").read_text() in ("do_epoll_wait", "ep_poll")
    return False


@pytest.fixture(scope="module")
def patient(images) -> Iterator[tuple[int, list[int]]]:
    """A server whose client timeout outlasts every test using it: what it does not drop, it must still serve around."""
    with serve(images.root, 60) as server:
        yield server


def connect(port: int, receive_buffer: int = 0) -> socket.socket:
    sock = socket.socket()
    if receive_buffer:  # set before connecting: the window the server sees stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def probe(port: int, path: str, timeout: float = 5) -> int | None:
    """The status of one request on a new connection, None if it is not answered within ``timeout``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        reply = connection.getresponse()
        reply.read()
        return reply.status
    except OSError:
        return None
    finally:
        connection.close()


def read_reply(stream, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One reply from a connection's buffered reader: status, headers (lower-case names), body."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only or status in (204, 304) else int(headers.get("content-length", 0))
    return status, headers, stream.read(length)


def exchange(port: int, data: bytes) -> int:
    """The status the server answers to raw request bytes, read up to the connection's end."""
    with connect(port) as sock:
        sock.sendall(data)
        with sock.makefile("rb") as stream:
            status = read_reply(stream)[0]
            assert stream.read() == b""  # refusals close the connection
        return status


def still_open(sock: socket.socket) -> bool:
    """No end of connection (nor reset) from the server so far."""
    timeout = sock.gettimeout()
    sock.setblocking(False)  # with a timeout, recv would wait for it
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)


def held(pids: list[int], port: int, client: socket.socket) -> bool:
    """Whether a worker still holds the server end of the client's connection (a descriptor of it)."""
    wanted = f"0100007F:{port:04X} 0100007F:{client.getsockname()[1]:04X}"
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    inodes = {f"socket:[{row.split()[9]}]" for row in rows if " ".join(row.split()[1:3]) == wanted}
    return any(open_sockets(pid) & inodes for pid in pids)


def connections_held(pids: list[int], port: int) -> list[int]:
    """How many established connections on ``port`` each worker holds."""
    rows = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    inodes = {f"socket:[{row[9]}]" for row in rows if row[1] == f"0100007F:{port:04X}" and row[3] == "01"}
    return [len(open_sockets(pid) & inodes) for pid in pids]


def drip(sockets: list[socket.socket], stop: threading.Event) -> None:
    """Slowloris: one more byte of a never-ending head on each socket every 0.5 s, until stopped."""
    for index in range(len(SLOWLORIS_HEAD)):
        if stop.wait(0.5):
            return
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(SLOWLORIS_HEAD[index : index + 1])


@contextlib.contextmanager
def dripping(sockets: list[socket.socket]) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=drip, args=(sockets, stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def test_idle_flood_and_slowloris_leave_the_server_answering(patient):
    port, _ = patient
    idle = [connect(port) for _ in range(100)]
    slow = [connect(port) for _ in range(4)]
    try:
        with dripping(slow):
            time.sleep(1.2)  # the flood accepted, a few bytes of each slow head in
            health = [probe(port, "/health") for _ in range(3)]
            tiles = [probe(port, TILE) for _ in range(3)]
            print(f"\nhealth probes answered during the idle flood: {health.count(200)}/3")
            assert health == [200] * 3 and tiles == [200] * 3
            assert all(still_open(sock) for sock in idle + slow)  # served around them, not after dropping them
    finally:
        for sock in idle + slow:
            sock.close()


def test_each_worker_stops_accepting_at_its_connection_cap(patient):
    port, pids = patient
    extra = 40
    peers = [connect(port) for _ in range(2 * MAX_CONNECTIONS + extra)]  # the rest wait in the backlog
    try:
        deadline = time.monotonic() + 10
        while sum(held := connections_held(pids, port)) < 2 * MAX_CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert held == [MAX_CONNECTIONS, MAX_CONNECTIONS]
        time.sleep(0.3)
        assert connections_held(pids, port) == held  # and no more
        for sock in peers[:100]:
            sock.close()
        deadline = time.monotonic() + 10
        while sum(held := connections_held(pids, port)) < 2 * MAX_CONNECTIONS + extra - 100:
            assert time.monotonic() < deadline, held  # the waiting ones are taken as places free up
            time.sleep(0.05)
        assert probe(port, "/health") == 200
    finally:
        for sock in peers:
            sock.close()


def test_keep_alive_and_pipelining(patient):
    port, _ = patient
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with contextlib.closing(connection):
        seen = []
        for method, path in (("GET", TILE), ("GET", "/health"), ("HEAD", TILE), ("GET", "/nope"), ("GET", TILE)):
            connection.request(method, path)
            reply = connection.getresponse()
            body = reply.read()
            seen.append((reply.status, reply.version, len(body)))
            if len(seen) == 1:
                first = connection.sock
            assert connection.sock is first, "the server closed a kept connection"
        tile = seen[0][2]
        assert seen == [(200, 11, tile), (200, 11, seen[1][2]), (200, 11, 0), (404, 11, 10), (200, 11, tile)]
    # Three requests in one write: three replies, in order; the last asked for the close.
    with connect(port) as sock, sock.makefile("rb") as stream:
        sock.sendall(
            f"GET {TILE} HTTP/1.1\r\nHost: x\r\n\r\nHEAD {TILE} HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        get, head, missing = read_reply(stream), read_reply(stream, head_only=True), read_reply(stream)
        assert (get[0], len(get[2]), head[0], head[1]["content-length"]) == (200, tile, 200, str(tile))
        assert missing[0] == 404 and missing[1]["connection"] == "close" and stream.read() == b""
    # HTTP/1.0 closes unless asked to keep; 100-continue is honoured.
    with connect(port) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        assert read_reply(stream)[0] == 200 and stream.read() == b""
    with connect(port) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert stream.readline() == b"HTTP/1.1 100 Continue\r\n" and stream.readline() == b"\r\n"
        sock.sendall(b"x=1&y")
        assert read_reply(stream)[0] == 200


def test_clients_that_never_read_a_big_reply_block_nobody(patient):
    port, _ = patient
    request = f"GET {BIG} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    stuck = [connect(port, receive_buffer=4096) for _ in range(4)]  # more than the workers
    try:
        for sock in stuck:
            sock.sendall(request)
        answered = [probe(port, "/health", timeout=30) for _ in range(4)] + [probe(port, TILE, timeout=30)]
        assert answered == [200] * 5
        for sock in stuck:  # the replies were kept whole meanwhile
            with sock.makefile("rb") as stream:
                status, headers, body = read_reply(stream)
                assert status == 200 and len(body) == int(headers["content-length"]) > 4_000_000
    finally:
        for sock in stuck:
            sock.close()


def test_idle_workers_use_no_cpu(patient):
    port, pids = patient
    kept = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(10)]
    for connection in kept:
        connection.request("GET", "/health")
        connection.getresponse().read()
    time.sleep(0.5)
    before = sum(cpu_ticks(pid) for pid in pids)
    time.sleep(3)
    used = sum(cpu_ticks(pid) for pid in pids) - before
    print(f"\nCPU of two idle workers over 3 s (10 kept connections): {used / 100:.2f} s")
    assert used < 10  # 0.1 s: the old loop polled ~36,000 times a second
    assert all(connection.sock is not None and still_open(connection.sock) for connection in kept)
    for connection in kept:
        connection.close()


def test_oversized_and_malformed_requests(patient):
    port, _ = patient
    fields = "".join(f"X-Filler-{n}: {'a' * 1200}\r\n" for n in range(60))  # 73 KB in short lines
    assert exchange(port, f"GET /health HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode()) == 431
    assert exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70_000) == 431  # no end in sight
    assert exchange(port, b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n") == 413
    assert exchange(port, b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n") == 400
    assert exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n") == 501
    assert exchange(port, b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n") == 505
    for bad in (b"GET /health\r\n\r\n", b"GET  /health HTTP/1.1\r\n\r\n", b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n"):
        assert exchange(port, bad) == 400, bad
    assert exchange(port, b"GET /health HTTP/1.1\r\n\r\n") == 400  # HTTP/1.1 without Host
    assert exchange(port, b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400
    assert exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n") == 400
    body = b"x" * (1 << 20)  # the limit itself is fine
    with connect(port) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert read_reply(stream)[0] == 200
    assert probe(port, "/health") == 200


def test_bodies_coming_in_are_not_kept(patient):
    """60 peers each one byte short of a 1 MB body: the workers' memory does not hold 60 MB of them."""
    port, pids = patient
    before = sum(status_kib(pid, "VmRSS") for pid in pids)
    peers = [connect(port) for _ in range(60)]
    try:
        for sock in peers:
            sock.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (1 << 20))
            sock.sendall(b"x" * ((1 << 20) - 1))
        time.sleep(0.5)
        grown = sum(status_kib(pid, "VmRSS") for pid in pids) - before
        print(f"\nworkers' RSS with 60 MB of request bodies coming in: +{grown / 1024:.1f} MB")
        assert grown < 16 * 1024
        assert probe(port, "/health") == 200
    finally:
        for sock in peers:
            sock.close()


def test_garbage_heads_leave_the_workers_up(patient):
    port, pids = patient
    rng = random.Random(15)
    for _ in range(200):
        data = bytes(rng.choice(b"GET /\r\n:HTP1.0 \x00\xff\t") for _ in range(rng.randrange(1, 60))) + b"\r\n\r\n"
        with connect(port) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError), sock.makefile("rb") as stream:
                stream.read()
    assert workers_of(parent(pids[0])) == pids  # none died
    assert probe(port, "/health") == 200


def test_slow_and_idle_peers_are_dropped_at_the_client_timeout(images):
    with serve(images.root, 2) as (port, pids):
        started = time.monotonic()
        idle = connect(port)
        slow = connect(port)
        stuck = connect(port, receive_buffer=4096)
        stuck.sendall(f"GET {BIG} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        kept = connect(port)
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        peers = {"idle": idle, "slowloris": slow, "never reads": stuck, "kept": kept}
        with dripping([slow]):
            deadline = time.monotonic() + 10
            while not all(held(pids, port, sock) for sock in peers.values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            dropped: dict[str, float] = {}
            deadline = time.monotonic() + 30
            while len(dropped) < len(peers) and time.monotonic() < deadline:
                for name, sock in peers.items():
                    if name not in dropped and not held(pids, port, sock):
                        dropped[name] = time.monotonic() - started
                time.sleep(0.05)
        print("\nseconds from connect to drop, CLIENT_TIMEOUT=2:", {k: round(v, 2) for k, v in dropped.items()})
        assert sorted(dropped) == sorted(peers), "a peer outlived its deadline"
        assert probe(port, "/health") == 200
        for sock in peers.values():
            sock.close()


def test_sigterm_finishes_requests_in_flight_and_drops_idle_peers(images):
    port, context = http_server(images.root, {"CLIENT_TIMEOUT": "60"}, workers=2)
    with context as process:
        idle = [connect(port) for _ in range(20)]
        slow = [connect(port) for _ in range(2)]
        with dripping(slow):
            pids = workers_of(process.pid)
            wait_until_serving(pids)  # the CPU the renders take from here on is the request's
            time.sleep(1.2)  # the slow heads have begun
            before = {pid: cpu_ticks(pid) for pid in pids}
            busy = connect(port)
            busy.sendall(f"GET {BIG} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            deadline = time.monotonic() + 10
            while all(cpu_ticks(pid) - before[pid] < 10 for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.02)  # a worker is rendering
            stopped = time.monotonic()
            os.kill(process.pid, signal.SIGTERM)
            with busy.makefile("rb") as stream:
                status, headers, body = read_reply(stream)
            assert status == 200 and len(body) == int(headers["content-length"])
            assert headers["connection"] == "close"
            assert process.wait(20) == 0  # well before the slow peers' deadline
        print(f"\nSIGTERM to exit, slowloris peers and CLIENT_TIMEOUT=60: {time.monotonic() - stopped:.1f} s")
        assert not any(still_open(sock) for sock in idle + slow)
        for sock in [*idle, *slow, busy]:
            sock.close()


def test_sighup_reloads_every_worker_and_keeps_connections(images, tmp_path):
    logfile = tmp_path / "pyiip.log"
    with serve(images.root, 30, LOGFILE=str(logfile), VERBOSITY="1") as (port, pids):
        wait_until_serving(pids)  # a SIGHUP during a worker's start-up is ignored: nothing to reload yet
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", TILE)
        assert connection.getresponse().read()
        first = connection.sock
        supervisor = parent(pids[0])
        os.kill(supervisor, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while logfile.read_text().count("SIGHUP: caches emptied") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert logfile.read_text().count("SIGHUP: caches emptied") == 2
        connection.request("GET", TILE)
        assert connection.getresponse().status == 200 and connection.sock is first
        assert workers_of(supervisor) == pids
        connection.close()
