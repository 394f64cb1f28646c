"""flup's FastCGI connection with the two costs profiling found taken out.

py-spy on a pyiip.fcgi process under lighttpd load (pass-through JTL tiles)
put ~35 % of its time in flup's ``_cleanupSocket``, which after every reply
blocks until the web server closes the connection, and ~12 % in record
writes of three ``send`` calls each. Here records are encoded into one
buffer sent once per reply, and the connection is closed as soon as the
reply is out: the process goes back to ``accept`` instead of waiting for
the web server's round trip.
"""

from __future__ import annotations

import contextlib
import socket
import struct

from flup.server.fcgi_base import (
    FCGI_END_REQUEST,
    FCGI_GET_VALUES_RESULT,
    FCGI_STDIN,
    FCGI_UNKNOWN_TYPE,
    Connection,
    FCGI_Header,
    Record,
)

# Records sent at once: the end of a request, and replies to management records.
_FLUSH_TYPES = frozenset((FCGI_END_REQUEST, FCGI_GET_VALUES_RESULT, FCGI_UNKNOWN_TYPE))
_PADDING = [b"\x00" * n for n in range(8)]
# Longest wait for the end of a request the web server is still sending, in seconds.
STDIN_WAIT = 2.0
# Largest record content; flup's default of 8 KiB multiplies records and Python work.
MAX_WRITE = 65535


class BufferedConnection(Connection):
    """A flup Connection that writes each reply with one sendall and never waits to close."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The listening socket is non-blocking (several processes accept on it); the
        # accepted one must block, so sendall writes a large reply whole.
        self._sock.setblocking(True)
        self._pending: list[bytes] = []
        self.server.maxwrite = MAX_WRITE

    def writeRecord(self, rec: Record) -> None:  # noqa: N802 - flup's API
        length = rec.contentLength
        padding = -length & 7
        self._pending.append(struct.pack(FCGI_Header, rec.version, rec.type, rec.requestId, length, padding))
        if length:
            self._pending.append(rec.contentData)
        if padding:
            self._pending.append(_PADDING[padding])
        if rec.type in _FLUSH_TYPES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._sock.sendall(data)

    def end_request(self, req, appStatus=0, protocolStatus=0, remove=True) -> None:  # noqa: N803 - flup's API
        # Remember whether the web server had finished sending this request (its empty
        # STDIN record): flup starts the application before reading it.
        self._stdin_done = req.stdin._eof
        self._request_id = req.requestId
        super().end_request(req, appStatus, protocolStatus, remove)

    def _cleanupSocket(self) -> None:  # noqa: N802 - flup's API
        """Half-close, take the rest of the request the web server sent, close.

        Closing with unread input would reset the connection and could lose the
        reply; so the rest of the request (usually already buffered) is read,
        but the web server's own close is not awaited.
        """
        end_of_stdin = struct.pack(FCGI_Header, 1, FCGI_STDIN, getattr(self, "_request_id", 0), 0, 0)
        done = getattr(self, "_stdin_done", True)
        received = b""
        with contextlib.suppress(OSError):
            self._flush()
            self._sock.shutdown(socket.SHUT_WR)
            self._sock.settimeout(0.0 if done else STDIN_WAIT)
            while True:
                try:
                    chunk = self._sock.recv(65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                received = (received + chunk)[-len(end_of_stdin) :]
                if received.endswith(end_of_stdin):
                    self._sock.settimeout(0.0)  # the request is whole: take only what is there
        self._sock.close()
