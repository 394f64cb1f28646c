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

import array
import contextlib
import fcntl
import select
import signal
import socket
import struct
import termios
from collections.abc import Callable

from pyiip.http import Reply

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
    """FastCGI name-value pairs, decoded as latin-1 like every WSGI server (PEP 3333).

    Lengths are read from the bytes, names and values sliced from one decoded
    string: a web server sends some twenty pairs per request, so this loop is
    on every request's path (which is also why the two length reads are
    written out rather than a helper called forty times).
    """
    text = data.decode("latin-1")
    out: dict[str, str] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            name_len = data[pos]
            if name_len < 128:
                pos += 1
            else:
                name_len = int.from_bytes(data[pos : pos + 4], "big") & 0x7FFFFFFF
                pos += 4
            value_len = data[pos]
            if value_len < 128:
                pos += 1
            else:
                value_len = int.from_bytes(data[pos : pos + 4], "big") & 0x7FFFFFFF
                pos += 4
            middle = pos + name_len
            pos = middle + value_len
            if pos > end:
                raise IndexError
            out[text[middle - name_len : middle]] = text[middle:pos]
    except IndexError:
        raise ProtocolError("truncated parameter") from None
    return out


def _encode_pairs(pairs: dict[bytes, bytes]) -> bytes:
    def length(n: int) -> bytes:
        return bytes((n,)) if n < 128 else (n | 0x80000000).to_bytes(4, "big")

    return b"".join(length(len(k)) + length(len(v)) + k + v for k, v in pairs.items())


def _record(kind: int, request_id: int, content: bytes = b"") -> bytes:
    padding = -len(content) & 7
    return HEADER.pack(1, kind, request_id, len(content), padding) + content + b"\x00" * padding


def _stdout_records(request_id: int, head: bytes, body: bytes) -> bytes:
    """The reply as STDOUT records, the empty one that ends it, and END_REQUEST: one buffer, one send."""
    end = HEADER.pack(1, STDOUT, request_id, 0, 0) + _record(
        END_REQUEST, request_id, END_BODY.pack(0, REQUEST_COMPLETE)
    )
    size = len(head) + len(body)
    if size <= MAX_CONTENT:  # nearly every reply: tiles, info.json
        padding = -size & 7
        return b"".join((HEADER.pack(1, STDOUT, request_id, size, padding), head, body, b"\x00" * padding, end))
    data = head + body
    out = []
    view = memoryview(data)
    for start in range(0, len(data), MAX_CONTENT):
        chunk = view[start : start + MAX_CONTENT]
        padding = -len(chunk) & 7
        out.append(HEADER.pack(1, STDOUT, request_id, len(chunk), padding))
        out.append(chunk)
        if padding:
            out.append(b"\x00" * padding)
    out.append(end)
    return b"".join(out)


class _Request:
    """One request being read: its two input streams (PARAMS, STDIN), each ended by an empty record."""

    __slots__ = ("ended", "id", "keep", "streams")

    def __init__(self, request_id: int, keep: bool) -> None:
        self.id = request_id
        self.keep = keep
        self.streams = {PARAMS: bytearray(), STDIN: bytearray()}
        self.ended: set[int] = set()


# What answers a request: its CGI variables in, a reply out (http.Reply: its CGI head
# and body). Not WSGI: a FastCGI request has no use for the wsgi.* keys,
# start_response or an iterable.
Handler = Callable[[dict[str, str]], Reply]


class Responder:
    """Accepts on a listening socket and answers each request with a handler (Application.handle)."""

    def __init__(self, handler: Handler, listening: socket.socket) -> None:
        self.handler = handler
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
        # Several processes may accept on this socket (--workers, spawn-fcgi -F, a web server's
        # pool). Non-blocking, a losing accept() fails with EAGAIN instead of blocking until the
        # next connection, deaf to SIGTERM. Each waits in its own epoll set; EPOLLEXCLUSIVE wakes
        # one of them per connection instead of all.
        self.listening.setblocking(False)
        poller = select.epoll()
        try:
            poller.register(self.listening.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
            while not self.stopping and not self.reloading:
                try:
                    # Accept first: under load a connection is already queued, and the
                    # wait below is skipped.
                    connection, _ = self.listening.accept()
                except BlockingIOError:
                    poller.poll(POLL)
                    continue
                except (InterruptedError, ConnectionAbortedError):
                    continue  # a signal, or the client left before we took its connection
                self._serve_connection(connection)
        finally:
            poller.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.reloading and not self.stopping

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def _reload(self, *_: object) -> None:
        self.reloading = True

    def _serve_connection(self, connection: socket.socket) -> None:
        """Answer the requests of one connection; it arrives blocking (accept4 without SOCK_NONBLOCK)."""
        buffer = bytearray()
        idle = False  # the web server writes its request as soon as it connects: no wait before it
        try:
            while True:
                request = self._read_request(connection, buffer, idle)
                if request is None:
                    break
                connection.sendall(self._respond(request))
                if not request.keep:
                    break
                # Kept connection: after a stop, a request already sent is still answered
                # (reading it does not wait: see _fill), then the connection is closed.
                idle = True
        except (ProtocolError, OSError):
            pass
        finally:
            self._close(connection)

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

    def _read_request(self, connection: socket.socket, buffer: bytearray, idle: bool) -> _Request | None:
        """Records up to a whole request (parameters and body), answering management records.

        Records are parsed in place; what they used of ``buffer`` is dropped when a
        read is due or the request is complete, not after each record.
        """
        request: _Request | None = None
        pos = 0
        while True:
            if len(buffer) - pos < HEADER.size:
                del buffer[:pos]
                pos = 0
                if not self._fill(connection, buffer, HEADER.size, idle=idle and request is None):
                    if request is not None:
                        raise ProtocolError("connection closed mid-request")
                    return None
            version, kind, request_id, length, padding = HEADER.unpack_from(buffer, pos)
            if version != 1:
                raise ProtocolError("unknown FastCGI version")
            start = pos + HEADER.size
            if len(buffer) < start + length + padding:
                del buffer[:pos]
                start -= pos
                pos = 0
                self._fill(connection, buffer, start + length + padding, idle=False)
            content = buffer[start : start + length]
            pos = start + length + padding
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
                del buffer[:pos]  # a kept connection's next request may already be behind it
                return request

    def _management(self, connection: socket.socket, kind: int, content: bytes) -> None:
        if kind == GET_VALUES:
            asked = _pairs(content)
            values = {k.encode(): CAPABILITIES[k.encode()] for k in asked if k.encode() in CAPABILITIES}
            connection.sendall(_record(GET_VALUES_RESULT, 0, _encode_pairs(values)))
        else:
            connection.sendall(_record(UNKNOWN_TYPE, 0, bytes((kind,)) + b"\x00" * 7))

    # ---------------------------------------------------------------- replies

    def _respond(self, request: _Request) -> bytes:
        try:
            reply = self.handler(_pairs(request.streams[PARAMS]))
            head, body = reply.cgi_head(), reply.body
        except Exception:  # the application answers its own errors; this is the last resort
            head = b"Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n"
            body = b"internal server error\n"
        return _stdout_records(request.id, head, body)

    # ---------------------------------------------------------------- closing

    @staticmethod
    def _close(connection: socket.socket) -> None:
        """Take what the web server may still have sent (so closing resets nothing), then close.

        The request was read whole, so nothing more is owed to us, and the web
        server's own close is not awaited. FIONREAD tells whether anything
        waits; nearly always nothing does, and asking costs a quarter of a
        non-blocking read that fails with EAGAIN.
        """
        with contextlib.suppress(OSError):
            waiting = array.array("i", [0])
            fcntl.ioctl(connection.fileno(), termios.FIONREAD, waiting)
            while waiting[0] and connection.recv(65536, socket.MSG_DONTWAIT):
                pass
        connection.close()
