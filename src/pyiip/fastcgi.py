"""A single-threaded FastCGI responder: one connection, one request at a time, like iipsrv.

It replaced flup's ``fcgi_single`` after profiling: py-spy on pyiip.fcgi under
lighttpd load put over half of each process's time in flup's record
handling (a ``select`` and up to three ``recv`` calls per record, three
``send`` calls per record written, and a wait for the web server to close
the connection after every reply), against under a fifth in the application.
Here a request is read in as few ``recv`` calls as the web server's writes
allow, the reply goes out in one ``sendall``, and the connection is closed as
soon as the request has been read whole.

What the web servers use of the protocol is all here: the responder role,
FCGI_KEEP_CONN (nginx ``fastcgi_keep_conn``, OpenLiteSpeed persistent
connections), FCGI_GET_VALUES, FCGI_ABORT_REQUEST; a second request
multiplexed on a connection is refused with FCGI_CANT_MPX_CONN, as a
single-threaded server advertises (FCGI_MPXS_CONNS=0).
"""

from __future__ import annotations

import contextlib
import io
import select
import signal
import socket
import struct
import sys
from collections.abc import Callable, Iterable

BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT = 1, 2, 3, 4, 5, 6
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
RESPONDER, KEEP_CONN = 1, 1
REQUEST_COMPLETE, CANT_MPX_CONN, UNKNOWN_ROLE = 0, 1, 3
HEADER = struct.Struct("!BBHHBx")
END_BODY = struct.Struct("!IB3x")
MAX_CONTENT = 65528  # a multiple of 8 below the 16-bit record length: no padding in long replies
MAX_PARAMS = 1 << 20  # a web server sends a few KB; more is not a web server
MAX_STDIN = 1 << 20  # the request body (IIP accepts POSTed queries): bounded
STREAM_LIMITS = {PARAMS: MAX_PARAMS, STDIN: MAX_STDIN}
POLL = 1.0  # seconds between looks at the stop flag while idle
CAPABILITIES = {b"FCGI_MAX_CONNS": b"1", b"FCGI_MAX_REQS": b"1", b"FCGI_MPXS_CONNS": b"0"}


class ProtocolError(Exception):
    """The peer broke the protocol or went away: drop the connection."""


def _pairs(data: bytes) -> dict[str, str]:
    """FastCGI name-value pairs, decoded as latin-1 like every WSGI server (PEP 3333)."""
    out: dict[str, str] = {}
    pos, end = 0, len(data)
    while pos < end:
        lengths = []
        for _ in range(2):
            if pos >= end:
                raise ProtocolError("truncated parameter")
            if data[pos] & 0x80:
                if pos + 4 > end:
                    raise ProtocolError("truncated parameter")
                lengths.append(int.from_bytes(data[pos : pos + 4], "big") & 0x7FFFFFFF)
                pos += 4
            else:
                lengths.append(data[pos])
                pos += 1
        name_len, value_len = lengths
        if pos + name_len + value_len > end:
            raise ProtocolError("truncated parameter")
        name = data[pos : pos + name_len].decode("latin-1")
        out[name] = data[pos + name_len : pos + name_len + value_len].decode("latin-1")
        pos += name_len + value_len
    return out


def _encode_pairs(pairs: dict[bytes, bytes]) -> bytes:
    def length(n: int) -> bytes:
        return bytes((n,)) if n < 128 else (n | 0x80000000).to_bytes(4, "big")

    return b"".join(length(len(k)) + length(len(v)) + k + v for k, v in pairs.items())


def _record(kind: int, request_id: int, content: bytes = b"") -> bytes:
    padding = -len(content) & 7
    return HEADER.pack(1, kind, request_id, len(content), padding) + content + b"\x00" * padding


def _stdout_records(request_id: int, data: bytes) -> list[bytes]:
    """The reply as STDOUT records, the empty one that ends it, and END_REQUEST."""
    out = []
    view = memoryview(data)
    for start in range(0, len(data), MAX_CONTENT):
        chunk = view[start : start + MAX_CONTENT]
        padding = -len(chunk) & 7
        out.append(HEADER.pack(1, STDOUT, request_id, len(chunk), padding))
        out.append(chunk)
        if padding:
            out.append(b"\x00" * padding)
    out.append(HEADER.pack(1, STDOUT, request_id, 0, 0))
    out.append(_record(END_REQUEST, request_id, END_BODY.pack(0, REQUEST_COMPLETE)))
    return out


class _Request:
    """One request being read: its two input streams (PARAMS, STDIN), each ended by an empty record."""

    __slots__ = ("ended", "id", "keep", "streams")

    def __init__(self, request_id: int, keep: bool) -> None:
        self.id = request_id
        self.keep = keep
        self.streams = {PARAMS: bytearray(), STDIN: bytearray()}
        self.ended: set[int] = set()


class Responder:
    """Accepts on a listening socket and answers each request with a WSGI application."""

    def __init__(self, app: Callable, listening: socket.socket) -> None:
        self.app = app
        self.listening = listening
        self.stopping = False
        self.reloading = False

    # ---------------------------------------------------------------- the loop

    def serve(self) -> bool:
        """Serve until SIGTERM/SIGINT (False) or SIGHUP (True: reload, then call again)."""
        self.reloading = False
        previous = {
            sig: signal.signal(sig, handler)
            for sig, handler in (
                (signal.SIGTERM, self._stop),
                (signal.SIGINT, self._stop),
                (signal.SIGHUP, self._reload),
            )
        }
        try:
            while not self.stopping and not self.reloading:
                connection = self._accept()
                if connection is not None:
                    self._serve_connection(connection)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.reloading and not self.stopping

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def _reload(self, *_: object) -> None:
        self.reloading = True

    def _accept(self) -> socket.socket | None:
        try:
            readable, _, _ = select.select([self.listening], [], [], POLL)
        except InterruptedError:
            return None
        if not readable:
            return None
        try:
            connection, _ = self.listening.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None  # another process on the same socket took it, or the client left
        connection.setblocking(True)
        return connection

    def _serve_connection(self, connection: socket.socket) -> None:
        buffer = bytearray()
        try:
            while True:
                request = self._read_request(connection, buffer)
                if request is None:
                    break
                reply = self._respond(request)
                connection.sendall(b"".join(reply))
                if not request.keep:
                    break
                # Kept connection: after a stop, a request already sent is still answered
                # (reading it does not wait: see _fill), then the connection is closed.
        except (ProtocolError, OSError):
            pass
        finally:
            self._close(connection, buffer)

    # ---------------------------------------------------------------- records

    def _fill(self, connection: socket.socket, buffer: bytearray, needed: int, idle: bool) -> bool:
        """Read until ``buffer`` holds ``needed`` bytes; False on a clean end of the connection.

        While idle (between requests of a kept connection), a stop ends the wait.
        """
        while len(buffer) < needed:
            if idle and not buffer:
                readable, _, _ = select.select([connection], [], [], 0 if (self.stopping or self.reloading) else POLL)
                if not readable:
                    if self.stopping or self.reloading:
                        return False
                    continue
            chunk = connection.recv(65536)
            if not chunk:
                if buffer:
                    raise ProtocolError("connection closed mid-record")
                return False
            buffer += chunk
        return True

    def _read_request(self, connection: socket.socket, buffer: bytearray) -> _Request | None:
        """Records up to a whole request (parameters and body), answering management records."""
        request: _Request | None = None
        while True:
            if not self._fill(connection, buffer, HEADER.size, idle=request is None):
                if request is not None:
                    raise ProtocolError("connection closed mid-request")
                return None
            version, kind, request_id, length, padding = HEADER.unpack_from(buffer)
            total = HEADER.size + length + padding
            self._fill(connection, buffer, total, idle=False)
            content = bytes(buffer[HEADER.size : HEADER.size + length])
            del buffer[:total]
            if version != 1:
                raise ProtocolError("unknown FastCGI version")
            if request_id == 0:
                self._management(connection, kind, content)
                continue
            if kind == BEGIN_REQUEST:
                role, flags = struct.unpack_from("!HB", content)
                if request is not None and request_id != request.id:
                    connection.sendall(_record(END_REQUEST, request_id, END_BODY.pack(0, CANT_MPX_CONN)))
                    continue
                if role != RESPONDER:
                    connection.sendall(_record(END_REQUEST, request_id, END_BODY.pack(0, UNKNOWN_ROLE)))
                    continue
                request = _Request(request_id, bool(flags & KEEP_CONN))
                continue
            if request is None or request_id != request.id:
                continue  # records of a request we refused or ended
            if kind in request.streams:
                stream = request.streams[kind]
                if not content:
                    request.ended.add(kind)
                elif len(stream) + len(content) > STREAM_LIMITS[kind]:
                    raise ProtocolError("parameters or request body too long")
                else:
                    stream += content
            elif kind == ABORT_REQUEST:
                connection.sendall(_record(END_REQUEST, request.id, END_BODY.pack(0, REQUEST_COMPLETE)))
                if not request.keep:
                    return None
                request = None
                continue
            if len(request.ended) == len(request.streams):
                return request

    def _management(self, connection: socket.socket, kind: int, content: bytes) -> None:
        if kind == GET_VALUES:
            asked = _pairs(content)
            values = {k.encode(): CAPABILITIES[k.encode()] for k in asked if k.encode() in CAPABILITIES}
            connection.sendall(_record(GET_VALUES_RESULT, 0, _encode_pairs(values)))
        else:
            connection.sendall(_record(UNKNOWN_TYPE, 0, bytes((kind,)) + b"\x00" * 7))

    # ---------------------------------------------------------------- WSGI

    def _respond(self, request: _Request) -> list[bytes]:
        environ = _pairs(bytes(request.streams[PARAMS]))
        environ.update(
            {
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "https" if environ.get("HTTPS", "").lower() in ("on", "1") else "http",
                "wsgi.input": io.BytesIO(bytes(request.streams[STDIN])),
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": False,
                "wsgi.multiprocess": True,
                "wsgi.run_once": False,
            }
        )
        started: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None) -> Callable:
            lines = [f"Status: {status}\r\n"] + [f"{name}: {value}\r\n" for name, value in headers]
            started[:] = ["".join(lines).encode("latin-1") + b"\r\n"]
            return lambda data: None

        try:
            result: Iterable[bytes] = self.app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:  # the application answers its own errors; this is the last resort
            started[:] = [b"Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n"]
            body = b"internal server error\n"
        return _stdout_records(request.id, (started[0] if started else b"Status: 500\r\n\r\n") + body)

    # ---------------------------------------------------------------- closing

    @staticmethod
    def _close(connection: socket.socket, buffer: bytearray) -> None:
        """Half-close, take what the web server already sent (so closing resets nothing), close.

        The request was read whole, so nothing more is owed to us: the web
        server's own close is not awaited.
        """
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_WR)
            connection.setblocking(False)
            while connection.recv(65536):
                pass
        connection.close()
