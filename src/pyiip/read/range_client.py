"""HTTP/1.1 range GETs to an object store under one deadline per request, on kept connections.

Every socket operation gets the time left as its timeout; a body is read to exactly the length the caller
expects, and a reply's connection is dropped, not drained, when its body is long.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

DRAIN_BYTES = 64 * 1024  # an unwanted body up to this size is read to keep the connection; longer, it is dropped


@dataclass(frozen=True, slots=True)
class ObjectAddress:
    """Where one identifier's object lives. ``name`` is public (no credentials) and keys the caches."""

    name: str
    scheme: str
    host: str  # host[:port], as sent in the Host header
    path: str  # percent-encoded path (and query) of the request line


@dataclass(slots=True)
class UpstreamReply:
    """An object store's reply to one GET: its status, headers and the body read under the deadline."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes


class DeadlineSocket:
    """A connected socket whose every send and receive must end by its owner's ``deadline``.

    Before each operation the socket's timeout becomes the time left, so a
    peer that drips a byte now and then cannot stretch a request past its
    deadline, as a timeout per operation would let it. As with a socket's
    makefile, closing it while a reply's reader is open (http.client does
    when the reply ends with the connection) closes it when the reader is.
    """

    def __init__(self, sock: socket.socket, owner: DeadlineConnection) -> None:
        self._sock, self._owner = sock, owner
        self._readers = 0
        self._closing = False

    def _arm(self) -> None:
        left = self._owner.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("object-store request deadline passed")
        self._sock.settimeout(left)

    def sendall(self, data: bytes) -> None:
        self._arm()
        self._sock.sendall(data)

    def recv_into(self, buffer: memoryview) -> int:
        self._arm()
        return self._sock.recv_into(buffer)

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_DeadlineReader(self))

    def release(self) -> None:
        """A reader is closed."""
        self._readers -= 1
        self._close_if_unused()

    def close(self) -> None:
        self._closing = True
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        if self._closing and self._readers <= 0:
            self._sock.close()


class _DeadlineReader(io.RawIOBase):
    """The raw stream under http.client's buffered reader: one deadline-armed recv per read."""

    def __init__(self, sock: DeadlineSocket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        return self._sock.recv_into(memoryview(buffer).cast("B"))

    def close(self) -> None:
        if not self.closed:
            self._sock.release()
        super().close()


class DeadlineConnection(http.client.HTTPConnection):
    """An HTTP connection whose requests each end by ``deadline`` (connect, send, status, headers, body)."""

    deadline = 0.0  # time.monotonic() by which the request must end; set before each one (unset: passed)

    def connect(self) -> None:
        self.timeout = self.deadline - time.monotonic()
        if self.timeout <= 0:
            raise TimeoutError("object-store request deadline passed")
        super().connect()
        self.sock = DeadlineSocket(self.sock, self)


class DeadlineHTTPSConnection(DeadlineConnection, http.client.HTTPSConnection):
    """The same over TLS: ssl bounds the whole handshake by the socket timeout, the time left at connect."""


def _read_body(response: http.client.HTTPResponse, wanted: int) -> bytes:
    """Exactly ``wanted`` body bytes (whatever the framing: length, chunks or close), never more."""
    if not wanted:
        return b""
    body = response.read(wanted)
    if len(body) != wanted:
        raise http.client.IncompleteRead(body, wanted - len(body))
    return body


def _drain(response: http.client.HTTPResponse) -> None:
    """Read the rest of a small announced body (a 304's nothing, a short error page) to keep the connection."""
    if not response.isclosed() and response.length is not None and response.length <= DRAIN_BYTES:
        response.read()


def _close(connection: http.client.HTTPConnection, response: http.client.HTTPResponse | None) -> None:
    """Drop the connection, and the rest of the reply with it."""
    if response is not None:
        response.close()
    connection.close()


class Connections:
    """Keep-alive connections, one per origin, owned by one (single-threaded) process."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._open: dict[tuple[str, str], DeadlineConnection] = {}

    def _connection(self, scheme: str, host: str) -> DeadlineConnection:
        if os.getpid() != self._pid:  # forked: the parent's sockets are not ours to use
            self._open, self._pid = {}, os.getpid()
        connection = self._open.get((scheme, host))
        if connection is None:
            connection = (DeadlineHTTPSConnection if scheme == "https" else DeadlineConnection)(host)
            self._open[(scheme, host)] = connection
        return connection

    def get(
        self,
        target: ObjectAddress,
        headers: dict[str, str],
        deadline: float,
        body_length: Callable[[http.client.HTTPResponse], int],
    ) -> UpstreamReply:
        """One GET ending by ``deadline``: status and headers, then the ``body_length(response)`` bytes wanted.

        ``body_length`` sees the status and headers before any body byte is
        read, and may refuse the reply by raising. A body not read to its end
        (unwanted, longer than wanted, refused) closes the connection rather
        than being read; the next request opens another.
        """
        connection = self._connection(target.scheme, target.host)
        connection.deadline = deadline
        response: http.client.HTTPResponse | None = None
        try:
            connection.request("GET", target.path, headers=headers)
            response = connection.getresponse()
            body = _read_body(response, body_length(response))
            _drain(response)
        except BaseException:
            _close(connection, response)
            raise
        if response.will_close or not response.isclosed():
            _close(connection, response)
        return UpstreamReply(response.status, response.headers, body)

    def close(self) -> None:
        for connection in self._open.values():
            connection.close()
        self._open.clear()
