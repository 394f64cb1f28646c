"""The memcached client: rendezvous placement over the servers, one pymemcache ``Client`` per server.

pymemcache's HashClient cost ~30 µs of CPU per get on top of its Client,
and the Client's get ~35 µs more than reading the reply off the socket
(4 KB reads, line parsing in Python): together most of a memcached hit. So
the server is chosen here, and ``get`` (the hit path) reads the reply itself
on the Client's socket; connecting, ``set``, ``touch`` and ``version`` stay
pymemcache's. Stores and touches are ``noreply``, so the stream holds
nothing but the replies to our gets, and any failure closes the connection.

A server that fails (refused, timed out, reset) is left out for
``dead_timeout`` seconds: its keys go to the next server in rendezvous order
meanwhile, then it is tried again. Its outage is logged once and its return
once; callers only see exceptions, which they treat as misses.
"""

from __future__ import annotations

import hashlib
import logging
import math
import socket
import struct
import time
from typing import Any

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheServerError, MemcacheUnexpectedCloseError, MemcacheUnknownError

from pyiip.config import ConfigError

LOGGER = logging.getLogger("pyiip")

DEFAULT_PORT = 11211
RECV_SIZE = 65536  # one read holds a typical tile whole (pymemcache reads 4 KB at a time)
MAX_VALUE = 1 << 20  # memcached's default item size (-I)


def parse_servers(text: str) -> list[tuple[str, int] | str]:
    """MEMCACHED_SERVERS: ``host[:port]`` items (``[v6]:port``, or a socket path), comma or space separated."""
    servers: list[tuple[str, int] | str] = []
    for item in text.replace(",", " ").split():
        if item.startswith(("/", "unix:")):
            servers.append(item.removeprefix("unix:"))
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        else:
            host, port = item, ""  # a bare name, or a bare IPv6 address
        if not host:
            raise ConfigError(f"MEMCACHED_SERVERS: no host in {item!r}")
        try:
            number = int(port) if port else DEFAULT_PORT
        except ValueError:
            raise ConfigError(f"MEMCACHED_SERVERS: bad port in {item!r}") from None
        if not 0 < number < 65536:
            raise ConfigError(f"MEMCACHED_SERVERS: bad port in {item!r}")
        servers.append((host, number))
    return servers


def server_name(server: Any) -> str:
    """A server's name in logs and placement: ``host:port`` or the socket path."""
    return "%s:%s" % server if isinstance(server, tuple) else str(server)


_HEADS: dict[str, Any] = {}  # server name -> blake2b fed with "name-"


def place(key: str, names: list[str]) -> str:
    """Rendezvous: the server of ``key`` is the name with the highest blake2b of ``name-key``, ties to the greater name.

    blake2b runs in C, ~15x faster than pymemcache's pure-Python murmur3,
    and only pyiip reads its keys, so they need not be where other clients
    would put them. This is the placement pymemcache's RendezvousHash gave
    with that score (8-byte digests compare as their big-endian integers),
    so entries stored before are still found. The order of ``names`` does
    not matter, and dropping a server moves only its keys. Each name's
    prefix is hashed once: ~2 µs for three servers instead of ~7.
    """
    data = key.encode()
    best: tuple[bytes, str] | None = None
    for name in names:
        head = _HEADS.get(name)
        if head is None:
            head = _HEADS[name] = hashlib.blake2b(f"{name}-".encode(), digest_size=8)
        hasher = head.copy()
        hasher.update(data)
        score = (hasher.digest(), name)
        if best is None or score > best:
            best = score
    if best is None:
        raise ValueError("no server to place a key on")
    return best[1]


class Connection(Client):
    """pymemcache's Client to one server, plus ``fetch``: a get that reads the reply in one or two calls."""

    def __init__(self, server: tuple[str, int] | str, timeout: float, max_value: int = MAX_VALUE) -> None:
        if not timeout > 0:
            raise ValueError("memcached timeout must be positive (SO_RCVTIMEO 0 means none)")
        super().__init__(server, connect_timeout=timeout, timeout=timeout, no_delay=True, default_noreply=True)
        self.name = server_name(server)
        self.max_value = max_value  # longer values are none of ours: refused before any buffer is made

    def _connect(self) -> None:
        """Connect as pymemcache does, then let the kernel time each read and write out.

        A socket with a Python timeout polls before every send and recv: two
        more system calls per get, ~3.5 µs. A blocking socket with
        SO_RCVTIMEO/SO_SNDTIMEO fails the call with EAGAIN (an OSError) instead.
        """
        super()._connect()
        seconds = int(self.timeout)
        limit = struct.pack("ll", seconds, int((self.timeout - seconds) * 1e6))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
        self.sock.settimeout(None)

    def fetch(self, key: bytes) -> memoryview | None:
        """The value under ``key`` (a view of the bytes read), None when absent; closes on any error."""
        if self.sock is None:
            self._connect()
        sock = self.sock
        try:
            sock.sendall(b"get " + key + b"\r\n")
            buf = sock.recv(RECV_SIZE)
            eol = buf.find(b"\r\n")
            while eol < 0:  # a header split over reads: rare
                more = sock.recv(RECV_SIZE)
                if not more:
                    raise MemcacheUnexpectedCloseError()
                buf += more
                eol = buf.find(b"\r\n")
            if eol == 3 and buf == b"END\r\n":
                return None
            header = buf[:eol].split()
            if len(header) != 4 or header[0] != b"VALUE" or header[1] != key:
                if header[:1] == [b"SERVER_ERROR"]:
                    raise MemcacheServerError(buf[:eol].decode("latin-1", "replace"))
                raise MemcacheUnknownError(buf[:eol].decode("latin-1", "replace"))
            start = eol + 2
            size = int(header[3])
            if not 0 <= size <= self.max_value:
                raise MemcacheUnknownError(f"memcached value of {size} bytes refused")
            end = start + size
            total = end + 7  # b"\r\nEND\r\n"
            if len(buf) < total:
                whole = bytearray(total)
                whole[: len(buf)] = buf
                view = memoryview(whole)
                got = len(buf)
                while got < total:
                    count = sock.recv_into(view[got:])
                    if not count:
                        raise MemcacheUnexpectedCloseError()
                    got += count
                buf = whole
            if len(buf) != total or buf[end:total] != b"\r\nEND\r\n":
                raise MemcacheUnknownError("memcached reply out of step")
            return memoryview(buf)[start:end]
        except BaseException:
            self.close()
            raise


class ClusterDown(Exception):
    """Every server is left out for now (each one's outage is already logged)."""


class Cluster:
    """The servers, which one holds a key, and which are left out after a failure.

    ``clients`` maps each server's name to its Connection (``pyiip warm``
    asks each one for ``version``). ``down`` names the servers in an outage
    that has been logged and whose return has not.
    """

    def __init__(
        self, servers: list[tuple[str, int] | str], *, timeout: float, dead_timeout: float, max_value: int = MAX_VALUE
    ) -> None:
        self.clients = {server_name(s): Connection(s, timeout, max_value) for s in servers}
        self.dead_timeout = dead_timeout
        self.down: set[str] = set()
        self._retry: dict[str, float] = {}  # left-out server -> when to try it again (monotonic)
        self._retry_at = math.inf
        self._live = list(self.clients)
        self._last: tuple[str, Connection | None] = ("", None)  # a miss's set follows its get

    def _client(self, key: str) -> Connection:
        if self._retry and time.monotonic() >= self._retry_at:
            self._bring_back()
        live = self._live
        if len(live) == 1:
            return self.clients[live[0]]
        last_key, last = self._last
        if key == last_key and last is not None:
            return last
        if not live:
            raise ClusterDown("every memcached server is left out for now")
        client = self.clients[place(key, live)]
        self._last = (key, client)
        return client

    def _bring_back(self) -> None:
        now = time.monotonic()
        for name, when in list(self._retry.items()):
            if when <= now:
                del self._retry[name]
        self._retry_at = min(self._retry.values(), default=math.inf)
        self._live = [name for name in self.clients if name not in self._retry]
        self._last = ("", None)

    def _failed(self, client: Connection, exc: BaseException) -> None:
        """A refused, timed-out or reset server is left out for ``dead_timeout``; other errors only reconnect."""
        client.close()
        if not isinstance(exc, OSError):
            return
        name = client.name
        self._retry[name] = when = time.monotonic() + self.dead_timeout
        self._retry_at = min(self._retry_at, when)
        self._live = [n for n in self._live if n != name]
        self._last = ("", None)
        if name not in self.down:
            self.down.add(name)
            LOGGER.error(
                "memcached %s unreachable: serving from the images; retrying every %g s", name, self.dead_timeout
            )

    def get(self, key: str) -> memoryview | None:
        client = self._client(key)
        try:
            value = client.fetch(key.encode())
        except Exception as exc:
            self._failed(client, exc)
            raise
        if self.down and client.name in self.down:
            self.down.discard(client.name)
            LOGGER.warning("memcached %s reachable again", client.name)
        return value

    def set(self, key: str, value: bytes, expire: int) -> None:
        client = self._client(key)
        try:
            client.set(key, value, expire=expire, noreply=True)
        except Exception as exc:
            self._failed(client, exc)
            raise

    def touch(self, key: str, expire: int) -> None:
        client = self._client(key)
        try:
            client.touch(key, expire=expire, noreply=True)
        except Exception as exc:
            self._failed(client, exc)
            raise

    def close(self) -> None:
        for client in self.clients.values():
            try:
                client.close()
            except Exception as exc:
                LOGGER.debug("memcached close failed: %s", exc)
