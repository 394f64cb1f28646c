"""Hostile peers beside the soak's load: what issue 15's probe did, for as long as the soak runs.

Each peer is a thread with a loop bounded by the soak's stop event; all of
them talk to loopback only. They hit the same FastCGI workers that serve the
soak's traffic (lighttpd forwards to ``pyiip.fcgi --workers 2 --bind``), so a
peer that could stall or kill a worker shows up as a failed soak request, a
respawn or an unanswered health probe:

- short records: the 8-byte BEGIN_REQUEST that used to kill a process, four a second;
- an idle flood: connections that never send a byte, reopened as the workers drop them;
- slowloris: a request sent one byte every half second;
- a non-reader: asks for a large PNG and never reads it;
- files and queries built to exhaust memory (decode bombs, huge numbers, an oversized body),
  through lighttpd, each of which must answer 4xx;
- health probes through lighttpd, twice a second.

The figures: how long the workers took to drop each kind of peer, how many
health probes were answered, and the statuses of the bomb requests.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable

from pyiip.server import fcgi_client

SHORT_BEGIN = b"\x01\x01\x00\x01\x00\x00\x00\x00"  # BEGIN_REQUEST with no content: finding 1
STDIN_END = b"\x01\x05\x00\x01\x00\x00\x00\x00"  # the empty STDIN record of request 1: the request is whole
IDLE_PEERS = 100
SLOW_PEERS = 4


def _connect(address: tuple[str, int]) -> socket.socket | None:
    with contextlib.suppress(OSError):
        return socket.create_connection(address, timeout=2)
    return None


def _closed_by_peer(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server closes ``sock`` (reading and discarding), None past ``limit``."""
    start = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - start < limit:
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return None


class HostileLoad:
    """Start the peers with ``start()``; ``stop()`` ends them and returns the figures."""

    def __init__(self, fcgi: tuple[str, int], base: str, bombs: list[tuple[str, str, bytes | None]], limit: float):
        self.fcgi = fcgi
        self.base = base
        self.bombs = bombs  # (method, path, body): each must answer 4xx
        self.limit = limit  # CLIENT_TIMEOUT of the workers, plus a margin
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.drops: dict[str, list[float]] = {"idle": [], "slowloris": []}
        self.cut: Counter[str] = Counter()  # non-readers whose reply the workers cut at the deadline
        self.undropped: Counter[str] = Counter()
        self.short_records = 0
        self.health = Counter[str]()
        self.bomb_statuses: Counter[str] = Counter()
        self.unexpected: set[str] = set()  # the bomb requests that did not answer 4xx
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        peers: list[Callable[[], None]] = [self._short_records, self._non_reader, self._bombs, self._health]
        peers += [self._idle] * IDLE_PEERS + [self._slowloris] * SLOW_PEERS
        for peer in peers:
            thread = threading.Thread(target=peer, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> dict[str, object]:
        self.done.set()
        for thread in self.threads:
            thread.join(self.limit + 5)
        return {
            "short_records_sent": self.short_records,
            "health_probes": dict(self.health),
            "bomb_statuses": dict(self.bomb_statuses),
            "bombs_not_refused": sorted(self.unexpected),
            "dropped_after_s": {
                kind: {"count": len(times), "median": round(statistics.median(times), 2), "max": round(max(times), 2)}
                for kind, times in self.drops.items()
                if times
            },
            "not_dropped": dict(self.undropped),
            "non_readers_cut": self.cut["non-reader"],
        }

    def _dropped(self, kind: str, sock: socket.socket) -> None:
        seconds = _closed_by_peer(sock, self.limit)
        sock.close()
        with self.lock:
            if seconds is None:
                self.undropped[kind] += 1
            else:
                self.drops[kind].append(seconds)

    def _short_records(self) -> None:
        while not self.done.wait(0.25):
            sock = _connect(self.fcgi)
            if sock is None:
                continue
            with sock, contextlib.suppress(OSError):
                sock.sendall(SHORT_BEGIN)
                _closed_by_peer(sock, 5)
            with self.lock:
                self.short_records += 1

    def _idle(self) -> None:
        while not self.done.is_set():
            sock = _connect(self.fcgi)
            if sock is None:
                self.done.wait(0.5)
                continue
            self._dropped("idle", sock)

    def _slowloris(self) -> None:
        request = fcgi_client.opening(fcgi_client.environ_for("/health"))
        while not self.done.is_set():
            sock = _connect(self.fcgi)
            if sock is None:
                self.done.wait(0.5)
                continue
            start = time.monotonic()
            try:
                for byte in request[:-1]:  # never the last byte: the request never completes
                    if self.done.wait(0.5):
                        break
                    sock.sendall(bytes((byte,)))
            except OSError:
                with self.lock:
                    self.drops["slowloris"].append(time.monotonic() - start)
                sock.close()
                continue
            self._dropped("slowloris", sock)

    def _non_reader(self) -> None:
        """Ask for a large reply, read nothing for longer than the deadline, then see if it was cut."""
        uri = "/fcgi-bin/iipsrv.fcgi?FIF=demo/rgb.tif&WID=3000&CVT=png"
        while not self.done.wait(2):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                sock.settimeout(2)
                sock.connect(self.fcgi)
                sock.sendall(fcgi_client.opening(fcgi_client.environ_for(uri)) + STDIN_END)
            except OSError:
                sock.close()
                continue
            if self.done.wait(self.limit):
                sock.close()
                return
            with self.lock, sock:
                self.cut["non-reader"] += _whole_reply(sock) is False

    def _bombs(self) -> None:
        while not self.done.wait(1):
            for method, path, body in self.bombs:
                request = urllib.request.Request(self.base + path, data=body, method=method)
                try:
                    with urllib.request.urlopen(request, timeout=60) as reply:
                        status = reply.status
                        reply.read()
                except urllib.error.HTTPError as exc:
                    status = exc.code
                except OSError:
                    status = 0
                outcome = f"{status // 100}xx" if status else "no reply"
                with self.lock:
                    self.bomb_statuses[outcome] += 1
                    if outcome != "4xx":
                        self.unexpected.add(f"{outcome} {method} {path[:100]}")

    def _health(self) -> None:
        while not self.done.wait(0.5):
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=5) as reply:
                    outcome = "answered" if reply.status == 200 else f"status {reply.status}"
            except urllib.error.HTTPError as exc:
                outcome = f"status {exc.code}"
            except OSError:
                outcome = "timed out or failed"
            with self.lock:
                self.health[outcome] += 1


def _whole_reply(sock: socket.socket) -> bool:
    """Read to the end: True when the reply ended with END_REQUEST, False when the server cut it."""
    data = bytearray()
    sock.settimeout(5)
    with contextlib.suppress(OSError):
        while chunk := sock.recv(1 << 20):
            data += chunk
    return data[-16:-12] == b"\x01\x03\x00\x01"
