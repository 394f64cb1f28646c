"""Hostile FastCGI peers (issue 15, findings 1, 2 and 17): short records, idle and slow connections, peers
that do not read, floods, oversized bodies; in process over socket pairs, and against real pyiip.fcgi
processes on loopback sockets. The process must stay up, serve other clients meanwhile, drop the bad
connection once CLIENT_TIMEOUT passes, and stop on SIGTERM within that deadline."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyiip.http import Reply
from pyiip.server import fastcgi, fcgi_client
from pyiip.server.fastcgi import encode_record
from pyiip.server.fcgi_client import environ_for, opening
from tests.support.deploy import descendants, wait_for
from tests.support.servers import VENV_BIN, free_port, lighttpd_config, require, running
from tests.system.test_deploy_fcgi import FCGI, TILE, start, stopped
from tests.unit.server.test_fastcgi import full_request, records, serve_one

TIMEOUT = 2.0  # CLIENT_TIMEOUT of the processes below: short, so the tests wait little
BIG_PNG = "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&WID=4000&CVT=png"  # a reply of several MB
SHORT_BEGIN = b"\x01\x01\x00\x01\x00\x00\x00\x00"  # finding 1: BEGIN_REQUEST with no body at all


def small_handler(environ: dict[str, str]) -> Reply:
    return Reply("200 OK", [("Content-Type", "text/plain")], environ.get("QUERY_STRING", "").encode("latin-1"))


def begin_body(length: int) -> bytes:
    """A BEGIN_REQUEST (responder role) whose body is cut to ``length`` bytes."""
    return encode_record(fastcgi.BEGIN_REQUEST, 1, struct.pack("!HB5x", fastcgi.RESPONDER, 0)[:length])


# --- in process: the record parser ----------------------------------------------------------------

SHORT_OR_BROKEN = {
    **{f"begin_{n}_bytes": begin_body(n) for n in range(8)},
    "finding_1": SHORT_BEGIN,
    "get_values_garbage": encode_record(fastcgi.GET_VALUES, 0, b"\xff\xff\xff\xff\x01"),
    "get_values_cut_long_length": encode_record(fastcgi.GET_VALUES, 0, b"\x80\x00"),
    "params_bad_pair": begin_body(8)
    + encode_record(fastcgi.PARAMS, 1, b"\x85\x00\x00\x00\x01ab")
    + encode_record(fastcgi.PARAMS, 1),
    "end_request_from_the_peer": begin_body(8) + encode_record(fastcgi.END_REQUEST, 1, b"\x00"),
    "bad_version": b"\x07" + SHORT_BEGIN[1:],
    "params_over_the_limit": begin_body(8) + encode_record(fastcgi.PARAMS, 1, b"\x00" * 65528) * 17,
}


def send_quietly(sock: socket.socket, data: bytes, end: bool = False) -> None:
    """Send (from a thread: the responder reads in the test's); the responder may drop the connection first."""
    with contextlib.suppress(OSError):
        sock.sendall(data)
        if end:
            sock.shutdown(socket.SHUT_WR)


def answer(responder: fastcgi.Responder, data: bytes) -> bytes:
    """Serve one connection that sends ``data`` and closes its side, in this thread (an exception
    fails the test); what the responder sent. The connection must end closed."""
    server_side, client = socket.socketpair()
    with client:
        sender = threading.Thread(target=send_quietly, args=(client, data, True))
        sender.start()
        serve_one(responder, server_side)
        sender.join(10)
        assert not responder.connections and server_side.fileno() == -1
        client.settimeout(5)
        return b"".join(iter(lambda: client.recv(65536), b""))


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("data", SHORT_OR_BROKEN.values(), ids=SHORT_OR_BROKEN.keys())
def test_a_broken_record_drops_its_connection_only(data, caplog):
    """No exception leaves the connection handler; the same responder then answers a good request."""
    responder = fastcgi.Responder(small_handler, socket.socket(), timeout=TIMEOUT)
    answer(responder, data)
    assert records(answer(responder, full_request("after")))[0][2].endswith(b"\r\n\r\nafter")
    assert not failures(caplog)


RECORD = st.builds(
    lambda version, kind, rid, content, padding: (
        fastcgi.HEADER.pack(version, kind, rid, len(content), padding) + content + b"\x00" * padding
    ),
    st.sampled_from([1, 1, 1, 1, 0, 2]),
    st.integers(0, 12),
    st.sampled_from([0, 1, 1, 2]),
    st.binary(max_size=24),
    st.integers(0, 8),
)
STREAM = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(RECORD, st.binary(max_size=9)), max_size=12).map(b"".join),
    st.lists(RECORD, max_size=8).map(lambda rs: b"".join(rs) + full_request("tail")),
)


def test_fuzzed_byte_streams_never_escape_the_handler(caplog):
    """Arbitrary byte streams, and streams of arbitrary records: each connection ends closed, nothing
    raised, nothing logged as a failure, and the responder keeps answering."""
    responder = fastcgi.Responder(small_handler, socket.socket(), timeout=TIMEOUT)

    @settings(max_examples=400, deadline=None, database=None)
    @given(STREAM)
    def one_stream(data: bytes) -> None:
        answer(responder, data)

    one_stream()
    assert not failures(caplog)
    assert records(answer(responder, full_request("still")))[0][2].endswith(b"still")


def test_waiting_connections_hold_at_most_max_held(monkeypatch):
    """Three peers each send 420 KB of parameters and stop: under a 1 MB budget, two are kept, one is closed."""
    monkeypatch.setattr(fastcgi, "MAX_HELD", 1 << 20)
    responder = fastcgi.Responder(small_handler, socket.socket(), timeout=30)
    part = begin_body(8) + encode_record(fastcgi.PARAMS, 1, b"\x00" * 60000) * 7
    clients = []
    for _ in range(3):
        server_side, client = socket.socketpair()
        threading.Thread(target=send_quietly, args=(client, part), daemon=True).start()
        responder.serve_connection(server_side)
        clients.append(client)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (responder.held >= 840000 and len(responder.connections) == 2):
        responder.step(0.05)
    assert len(responder.connections) == 2 and 840000 <= responder.held <= fastcgi.MAX_HELD
    assert [closed_by_peer(c, 0) for c in clients].count(True) == 1
    for client in clients:
        client.close()


# --- in process: the request body limit (finding 17) ----------------------------------------------


# --- real processes: the 8-byte record of finding 1 -----------------------------------------------


def send_and_close(address: tuple[str, int], data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; what came back before the server closed it."""
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(data)
        return b"".join(iter(lambda: conn.recv(65536), b""))


def hammer_with_short_records(port: int) -> int:
    """Finding 1's record, and BEGIN bodies of every short length, between health probes; probes answered."""
    answered = 0
    for round_ in range(10):
        assert send_and_close(("127.0.0.1", port), SHORT_BEGIN if round_ % 2 else begin_body(round_ % 8)) == b""
        answered += fcgi_client.request(f"127.0.0.1:{port}", "/health", timeout=10).status == 200
    return answered


def test_pyiip_fcgi_survives_short_records(images, tmp_path):
    """`pyiip fcgi --bind 127.0.0.1:PORT`: the process stays up and keeps answering."""
    port = free_port()
    command = [str(VENV_BIN / "pyiip"), "fcgi", "--bind", f"127.0.0.1:{port}"]
    env = {"FILESYSTEM_PREFIX": f"{images.root}/", "VERBOSITY": "0"}
    with running(command, port, env) as process:
        assert hammer_with_short_records(port) == 10
        assert process.poll() is None


def test_workers_survive_short_records(images, tmp_path):
    """`pyiip.fcgi --workers 2`: no worker dies (none is replaced), every probe is answered."""
    port = free_port()
    log = tmp_path / "pyiip.log"
    env = {"FILESYSTEM_PREFIX": f"{images.root}/", "VERBOSITY": "1", "LOGFILE": str(log)}
    with running([FCGI, "--bind", f"127.0.0.1:{port}", "--workers", "2"], port, env) as process:
        assert wait_for(lambda: len(descendants(process.pid, b"pyiip.fcgi")) == 2)
        workers = sorted(descendants(process.pid, b"pyiip.fcgi"))
        assert hammer_with_short_records(port) == 10
        assert sorted(descendants(process.pid, b"pyiip.fcgi")) == workers
    assert "starting another" not in log.read_text()


# --- real processes: slow, idle and non-reading peers (finding 2) ---------------------------------


@pytest.fixture(scope="module")
def strict(images, tmp_path_factory) -> Iterator[tuple[subprocess.Popen, str]]:
    """One pyiip.fcgi process on a unix socket, CLIENT_TIMEOUT=2 s."""
    process, sock, _log = start(images, tmp_path_factory.mktemp("strict"), CLIENT_TIMEOUT=str(TIMEOUT))
    yield process, sock
    process.send_signal(signal.SIGTERM)
    stopped(process)


def connect_unix(path: str, receive_buffer: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(path)
    return sock


def silent(path: str) -> socket.socket:
    return connect_unix(path)


def half_header(path: str) -> socket.socket:
    sock = connect_unix(path)
    sock.sendall(begin_body(8)[:4])
    return sock


def short_content(path: str) -> socket.socket:
    """A record announcing 65,535 bytes that sends 10."""
    sock = connect_unix(path)
    sock.sendall(begin_body(8) + fastcgi.HEADER.pack(1, fastcgi.PARAMS, 1, 65535, 0) + b"\x00" * 10)
    return sock


def drip(path: str) -> socket.socket:
    """A whole, valid request sent one byte every 50 ms (slowloris), from a thread, until refused."""
    sock = connect_unix(path)
    data = opening(environ_for(TILE)) + encode_record(fastcgi.STDIN, 1)

    def dripping() -> None:
        with contextlib.suppress(OSError):
            for byte in data:
                sock.send(bytes((byte,)))
                time.sleep(0.05)

    threading.Thread(target=dripping, daemon=True).start()
    return sock


def not_reading(path: str) -> socket.socket:
    """Asks for a multi-MB PNG and never reads the reply."""
    sock = connect_unix(path, receive_buffer=4096)
    sock.sendall(opening(environ_for(BIG_PNG)) + encode_record(fastcgi.STDIN, 1))
    return sock


def closed_by_peer(sock: socket.socket, wait: float) -> bool:
    """Whether the server has closed its end within ``wait`` seconds, seen without reading."""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP | select.POLLHUP)
    return bool(poller.poll(wait * 1000))


BAD_PEERS: dict[str, Callable[[str], socket.socket]] = {
    f.__name__: f for f in (silent, half_header, short_content, drip, not_reading)
}


@pytest.mark.parametrize("peer", BAD_PEERS.values(), ids=BAD_PEERS.keys())
def test_a_bad_peer_delays_nobody_and_is_dropped_at_its_deadline(strict, peer):
    process, path = strict
    with peer(path) as bad:
        opened = time.monotonic()
        for _ in range(3):  # on the one process that holds the bad connection
            assert fcgi_client.request(path, "/health", timeout=10).status == 200
        assert fcgi_client.request(path, TILE, timeout=10).status == 200
        assert not closed_by_peer(bad, 0), "the probes were answered only once the bad peer was dropped"
        assert closed_by_peer(bad, TIMEOUT + 10)
        print(f"{peer.__name__}: dropped {time.monotonic() - opened:.2f} s after it connected")
    assert process.poll() is None


def test_a_peer_that_does_not_read_never_gets_the_whole_reply(strict):
    """The multi-MB reply stays in the connection's buffer until the deadline, then is dropped."""
    _process, path = strict
    whole = len(fcgi_client.request(path, BIG_PNG, timeout=60).body)
    assert whole > 2_000_000
    with not_reading(path) as bad:
        assert closed_by_peer(bad, 60)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := bad.recv(65536):
                received += len(chunk)
    assert received < whole


def test_a_posted_body_over_the_limit_is_a_413_not_a_dropped_connection(strict):
    _process, path = strict
    refused = fcgi_client.request(path, "/health", body=b"p" * (3 * fastcgi.MAX_STDIN), timeout=30)
    assert (refused.status, refused.body) == (413, b"request body over 1048576 bytes\n")
    assert fcgi_client.request(path, "/health", body=b"p" * 1000, timeout=30).status == 200


def socket_count(pid: int) -> int:
    return sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in os.listdir(f"/proc/{pid}/fd"))


def test_idle_flood_on_two_workers(images, tmp_path):
    """200 idle connections on `pyiip.fcgi --workers 2`: every probe is answered meanwhile; once
    CLIENT_TIMEOUT passes, the server has closed all of them and holds no descriptor for them."""
    port = free_port()
    env = {"FILESYSTEM_PREFIX": f"{images.root}/", "VERBOSITY": "0", "CLIENT_TIMEOUT": str(TIMEOUT)}
    with running([FCGI, "--bind", f"127.0.0.1:{port}", "--workers", "2"], port, env) as process:
        assert wait_for(lambda: len(descendants(process.pid, b"pyiip.fcgi")) == 2)
        workers = descendants(process.pid, b"pyiip.fcgi")
        before = {pid: socket_count(pid) for pid in workers}
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        try:
            answered = sum(
                fcgi_client.request(f"127.0.0.1:{port}", "/health", timeout=10).status == 200 for _ in range(15)
            )
            assert answered == 15
            assert all(closed_by_peer(conn, TIMEOUT + 10) for conn in idle)
            assert wait_for(lambda: {pid: socket_count(pid) for pid in workers} == before, timeout=5)
        finally:
            for conn in idle:
                conn.close()


def test_connections_above_the_cap_are_left_in_the_backlog(images, tmp_path):
    """Under a 64-descriptor limit a process holds 16 waiting connections at most (a quarter)."""
    path = str(tmp_path / "capped.sock")
    env = {**os.environ, "FILESYSTEM_PREFIX": f"{images.root}/", "VERBOSITY": "0", "CLIENT_TIMEOUT": str(TIMEOUT)}

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    process = subprocess.Popen([FCGI, "--bind", path], env=env, preexec_fn=low_limit)
    try:
        assert wait_for(lambda: Path(path).exists() and fcgi_client.request(path, "/health").status == 200)
        # The probe's connection may still be closing: wait until only the listening socket is left.
        assert wait_for(lambda: socket_count(process.pid) == 1, timeout=10)
        before = 1
        idle = [connect_unix(path) for _ in range(24)]
        # It takes up to the cap (a loaded machine may need a while), then no more.
        assert wait_for(lambda: socket_count(process.pid) - before >= 16, timeout=10)
        time.sleep(0.5)
        assert socket_count(process.pid) - before == 16
        assert fcgi_client.request(path, "/health", timeout=TIMEOUT + 10).status == 200  # once some are dropped
        for conn in idle:
            conn.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert stopped(process) == 0


# --- signals with stuck peers ---------------------------------------------------------------------


def stuck_peers(path: str) -> list[socket.socket]:
    """A silent connection, a request begun and never finished, and a peer that does not read."""
    begun = connect_unix(path)
    begun.sendall(opening(environ_for(TILE)))
    return [silent(path), begun, not_reading(path)]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_within_the_deadline_whatever_the_peers_do(images, tmp_path, workers):
    process, path, log = start(images, tmp_path, "--workers", str(workers), CLIENT_TIMEOUT=str(TIMEOUT))
    peers = stuck_peers(path)
    try:
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert stopped(process, timeout=TIMEOUT + 15) == 0
    finally:
        for conn in peers:
            conn.close()
    assert "stopping" in log.read_text()


def test_sigterm_closes_idle_connections_at_once(images, tmp_path):
    """Idle connections (a kept one between requests, one that never sent anything) do not hold a stopping
    process until their deadline: with the default 30 s, it exits long before."""
    process, path, _log = start(images, tmp_path)
    fresh = silent(path)  # accepted first
    kept = connect_unix(path)
    kept.settimeout(10)
    try:
        fcgi_client.begin(kept, environ_for(TILE), keep_conn=True)
        assert fcgi_client.finish(kept).status == 200
        process.send_signal(signal.SIGTERM)
        assert stopped(process, timeout=10) == 0
        assert closed_by_peer(kept, 0) and closed_by_peer(fresh, 0)
    finally:
        kept.close()
        fresh.close()


def test_sighup_reloads_while_a_peer_is_stuck(images, tmp_path):
    """With the default CLIENT_TIMEOUT (30 s) the stuck peers are still there when the reload is done."""
    process, path, log = start(images, tmp_path)
    peers = stuck_peers(path)
    try:
        time.sleep(0.5)
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "SIGHUP: caches emptied" in log.read_text(), timeout=10)
        assert fcgi_client.request(path, "/health", timeout=10).status == 200
        assert not any(closed_by_peer(conn, 0) for conn in peers[:2])
    finally:
        for conn in peers:
            conn.close()
        process.send_signal(signal.SIGTERM)
        assert stopped(process) == 0


# --- through lighttpd -----------------------------------------------------------------------------


def test_lighttpd_answers_413_for_a_body_over_the_limit(images, tmp_path):
    """lighttpd passes the responder's 413 on (before: the connection dropped, lighttpd answered 500)."""
    port = free_port()
    # lighttpd gives its FastCGI processes bin-environment only: PYTHONPATH passed on, so a worktree's code runs.
    paths = os.pathsep.join(str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
    config = lighttpd_config(tmp_path, port, images.root, env={"PYTHONPATH": paths})
    with running([require("lighttpd"), "-D", "-f", str(config)], port):
        statuses = {}
        for size in (100, fastcgi.MAX_STDIN + 1, 3 * fastcgi.MAX_STDIN):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", TILE, body=b"p" * size, headers={"Content-Type": "application/octet-stream"})
            reply = conn.getresponse()
            statuses[size] = (reply.status, reply.read())
            conn.close()
    assert statuses[100][0] == 200
    for size in (fastcgi.MAX_STDIN + 1, 3 * fastcgi.MAX_STDIN):
        assert statuses[size] == (413, b"request body over 1048576 bytes\n")
