"""A single-threaded FastCGI responder, like iipsrv: one request at a time, many connections held.

It replaced flup's ``fcgi_single`` after profiling: py-spy on pyiip.fcgi under
lighttpd load put over half of each process's time in flup's record
handling (a ``select`` and up to three ``recv`` calls per record, three
``send`` calls per record written, and a wait for the web server to close
the connection after every reply), against under a fifth in the application.

The fast path is what a web server in front does nearly every time: a
connection arrives with its whole request already written. The responder
accepts it, reads it in one ``recv``, answers it in one ``sendmsg`` and closes
it, without registering anything anywhere: seven system calls with the
FIONREAD check and the getsockname CPython's socket makes (iipsrv 1.3 makes
19 for a cached tile). Only a connection that cannot
complete at once (its request not all there, a reply the peer does not take
whole, a kept connection waiting for its next request) enters an epoll set,
with its own buffers, and the loop serves whichever connection is ready, so
a slow or idle peer never stops the others. A request is handled only once it
has been read whole, one at a time: the application stays single-threaded (its
caches and per-request memory budget assume it), and what a slow peer needs
is waiting, which one epoll set does for any number of connections. Before
this design a connection was read with blocking calls until its request was
whole, so one idle or slow peer held the whole process.

Every connection in the epoll set has a deadline, ``CLIENT_TIMEOUT`` seconds
(settings.client_timeout): to send a whole request (from its accept, or from
the end of the previous reply on a kept connection), to take a whole reply,
or to stay idle between requests (nginx ``fastcgi_keep_conn``). Past it the
connection is closed. A process holds at most ``MAX_CONNECTIONS`` such
connections (fewer under a low descriptor limit); above that it stops
accepting and leaves new connections to the other processes on the socket.
What they hold (requests partly read, replies not yet taken) is counted:
a connection that would take the total over ``MAX_HELD`` is closed (unless
it is the only one holding anything), so peers that send large parameters
slowly, or ask for large replies and do not read them, cannot grow the
process.

Anything a peer sends that breaks the protocol (a record too short for its
type, a bad version, truncated name-value pairs, oversized parameters) is a
ProtocolError that closes that connection only. A request body (STDIN) is
counted, not kept (no handler reads it); over ``MAX_STDIN`` the request is
answered 413 once the body has ended.

SIGTERM: no more accepts, idle connections closed, requests in flight
answered (within their deadlines), then ``serve`` returns. SIGHUP: ``serve``
returns between requests so the caller reloads; connections stay open.

What the web servers use of the protocol is all here: the responder role,
FCGI_KEEP_CONN (nginx ``fastcgi_keep_conn``, OpenLiteSpeed persistent
connections), FCGI_GET_VALUES, FCGI_ABORT_REQUEST; a second request
multiplexed on a connection is refused with FCGI_CANT_MPX_CONN, as a
single-threaded server advertises (FCGI_MPXS_CONNS=0).
"""

from __future__ import annotations

import _socket
import contextlib
import fcntl
import resource
import select
import signal
import socket
import struct
import termios
import time
from collections.abc import Callable

from pyiip.errors import TooLarge
from pyiip.http import Reply
from pyiip.log import LOGGER
from pyiip.server.interpreted import run_signal_handlers

BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT = 1, 2, 3, 4, 5, 6
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
RESPONDER, KEEP_CONN = 1, 1
REQUEST_COMPLETE, CANT_MPX_CONN, UNKNOWN_ROLE = 0, 1, 3
HEADER = struct.Struct("!BBHHBx")
HEADER_SIZE, unpack_header = HEADER.size, HEADER.unpack_from
BEGIN_BODY = struct.Struct("!HB5x")
END_BODY = struct.Struct("!IB3x")
MAX_CONTENT = 65528  # a multiple of 8 below the 16-bit record length: no padding in long replies
MAX_PARAMS = 1 << 20  # a web server sends a few KB; more is not a web server
MAX_STDIN = 1 << 20  # the request body (IIP accepts POSTed queries): over it, 413
READ_SIZE = 65536  # one recv: a whole request from a web server, or one full record
POLL = 1.0  # seconds between looks at the stop and reload flags while waiting
MAX_CONNECTIONS = 512  # connections waiting in one process (a quarter of the descriptor limit at most)
MAX_HELD = 64 << 20  # bytes the waiting connections of a process may hold: requests read, replies unsent
CAPABILITIES = {b"FCGI_MAX_CONNS": b"1", b"FCGI_MAX_REQS": b"1", b"FCGI_MPXS_CONNS": b"0"}
WAIT_INPUT, WAIT_OUTPUT = select.EPOLLIN, select.EPOLLOUT
SEND_PARTS = 64  # buffers given to one sendmsg (IOV_MAX is 1024): management answers can queue thousands
NOTHING_WAITING = bytes(4)  # FIONREAD's answer when the peer sent nothing more


class ProtocolError(Exception):
    """The peer broke the protocol or went away: drop the connection."""


def decode_pairs(data: bytes) -> dict[str, str]:
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


def encode_pairs(pairs: dict[bytes, bytes]) -> bytes:
    """Name-value pairs as FastCGI writes them (the inverse of ``decode_pairs``): the GET_VALUES
    answer here, the PARAMS of the client in ``fcgi_client`` and the tests."""

    def length(n: int) -> bytes:
        return bytes((n,)) if n < 128 else (n | 0x80000000).to_bytes(4, "big")

    return b"".join(length(len(k)) + length(len(v)) + k + v for k, v in pairs.items())


def encode_record(kind: int, request_id: int, content: bytes = b"") -> bytes:
    """One record, padded to 8 bytes: the responder's replies and the records ``fcgi_client`` sends."""
    padding = -len(content) & 7
    return HEADER.pack(1, kind, request_id, len(content), padding) + content + b"\x00" * padding


def _end_records(request_id: int) -> bytes:
    """The empty STDOUT record that ends a reply, and END_REQUEST."""
    end_request = encode_record(END_REQUEST, request_id, END_BODY.pack(0, REQUEST_COMPLETE))
    return HEADER.pack(1, STDOUT, request_id, 0, 0) + end_request


# After each padding, what ends a reply to request 1: every request of lighttpd, nginx and Apache.
ENDS_1 = tuple(bytes(padding) + _end_records(1) for padding in range(8))


def _stdout_records(request_id: int, head: bytes, body: bytes) -> list[bytes | memoryview]:
    """The reply as STDOUT records, the empty one that ends it, and END_REQUEST: the buffers of one sendmsg.

    A reply that fits one record (tiles, info.json: nearly every reply) goes
    out as three buffers, the body among them as it is: gathering them is the
    kernel's copy, not one more here.
    """
    size = len(head) + len(body)
    if size <= MAX_CONTENT:
        padding = -size & 7
        tail = ENDS_1[padding] if request_id == 1 else bytes(padding) + _end_records(request_id)
        return [HEADER.pack(1, STDOUT, request_id, size, padding) + head, body, tail]
    data = head + body
    out: list[bytes | memoryview] = []
    view = memoryview(data)
    for start in range(0, len(data), MAX_CONTENT):
        chunk = view[start : start + MAX_CONTENT]
        padding = -len(chunk) & 7
        out.append(HEADER.pack(1, STDOUT, request_id, len(chunk), padding))
        out.append(chunk)
        if padding:
            out.append(b"\x00" * padding)
    out.append(_end_records(request_id))
    return [b"".join(out)]


def _plain(status: str, message: str) -> tuple[bytes, bytes]:
    """The CGI head and body of a short text reply the responder gives without the application."""
    body = (message + "\n").encode()
    head = f"Status: {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode(), body


INTERNAL_ERROR = _plain("500 Internal Server Error", "internal server error")
BODY_TOO_LARGE = _plain(f"{TooLarge.status} {TooLarge.reason}", f"request body over {MAX_STDIN} bytes")


def _end_request(request_id: int, status: int) -> list[bytes | memoryview]:
    return [encode_record(END_REQUEST, request_id, END_BODY.pack(0, status))]


def _management(kind: int, content: bytes | bytearray) -> list[bytes | memoryview]:
    """The answer to a record of request id 0: the values asked for, or "unknown type"."""
    if kind == GET_VALUES:
        asked = decode_pairs(bytes(content))
        values = {k.encode(): CAPABILITIES[k.encode()] for k in asked if k.encode() in CAPABILITIES}
        return [encode_record(GET_VALUES_RESULT, 0, encode_pairs(values))]
    return [encode_record(UNKNOWN_TYPE, 0, bytes((kind,)) + b"\x00" * 7)]


def _connection_limit() -> int:
    """MAX_CONNECTIONS, or a quarter of the descriptor limit when that is lower (images need descriptors too)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft // 4))


class _Request:
    """One request being read: its parameters kept, its body (STDIN) only counted, as no handler reads it."""

    __slots__ = ("aborted", "body", "id", "keep", "params", "params_ended", "stdin_ended")

    def __init__(self, request_id: int, keep: bool) -> None:
        self.id = request_id
        self.keep = keep
        # The one PARAMS record as it came (nearly always), or the records gathered in a bytearray
        self.params: bytes | bytearray = b""
        self.body = 0
        self.params_ended = self.stdin_ended = self.aborted = False


class _Connection:
    """A peer's connection: bytes read but not parsed, the request being read, bytes still to send.

    ``deadline`` is None until the connection waits in the poller; it is set
    then, and cleared when a reply is queued or sent, which starts a new phase.
    ``events`` is what the poller watches for it (0: not registered);
    ``held`` the bytes it holds, as last counted in the process's total.
    """

    __slots__ = ("buffer", "closing", "deadline", "events", "held", "out", "replying", "request", "sock")

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buffer: bytes | bytearray = b""  # the first read as it came (nearly always the whole request)
        self.request: _Request | None = None
        self.out: list[bytes | memoryview] = []  # the buffers still to send, in order
        self.replying = False  # out holds a request's reply (not only management records)
        self.closing = False  # close once out is sent
        self.deadline: float | None = None
        self.events = 0
        self.held = 0

    def holding(self) -> int:
        """Bytes kept for this connection: unparsed input, the parameters so far, the unsent output."""
        unsent = sum([len(part) for part in self.out])
        return len(self.buffer) + unsent + (len(self.request.params) if self.request else 0)


# What answers a request: its CGI variables in, a reply out (http.Reply: its CGI head
# and body). Not WSGI: a FastCGI request has no use for the wsgi.* keys,
# start_response or an iterable.
Handler = Callable[[dict[str, str]], Reply]


class Responder:
    """Accepts on a listening socket and answers each request with a handler (Application.handle)."""

    def __init__(self, handler: Handler, listening: socket.socket, timeout: float = 30.0) -> None:
        self.handler = handler
        self.listening = listening
        self.family: int = listening.family
        # accept4 in C, the descriptor only (socket.accept wraps it in Python; typeshed omits it)
        self.take: Callable[[], tuple[int, object]] = listening._accept  # type: ignore[attr-defined]
        self.timeout = timeout  # CLIENT_TIMEOUT; the caller updates it on reload
        self.limit = _connection_limit()
        self.stopping = False
        self.reloading = False
        self.wound_down = False
        self.accepting = False  # the listening socket is in the poller
        self.poller = select.epoll()
        self.connections: dict[int, _Connection] = {}  # those in the poller, by descriptor
        self.held = 0  # bytes they hold (_Connection.held), at most MAX_HELD
        self.next_sweep = 0.0
        self.waiting = bytearray(4)  # FIONREAD's answer (_discard_and_close)

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
        # next connection, deaf to SIGTERM.
        self.listening.setblocking(False)
        try:
            self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.reloading and not self.stopping

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def _reload(self, *_: object) -> None:
        self.reloading = True

    def _run(self) -> None:
        """Accept first (under load a connection is already queued), then serve the connections that are ready.

        While no connection waits, each accepted one is served whole and the
        next accept follows without a poll, as before there was a poller.
        """
        self._listen()
        while True:
            run_signal_handlers()  # compiled, this loop would not notice a signal that came between system calls
            if self.stopping:
                if not self.wound_down:
                    self._wind_down()
                if not self.connections:
                    return
            elif self.reloading:
                return
            accepted = self.accepting and self._accept()
            if accepted and not self.connections:
                continue
            self.step(0 if accepted else min(POLL, self.timeout / 8) if self.connections else POLL)

    def step(self, timeout: float) -> None:
        """Serve the connections that became ready within ``timeout``; drop those past their deadline."""
        for fd, _events in self.poller.poll(timeout):
            connection = self.connections.get(fd)  # None: the listening socket, taken at the loop's top
            if connection is None:
                continue
            if connection.out:
                self._work(connection)  # writable (or broken): send more
            else:
                self._receive(connection)
        now = time.monotonic()
        if now >= self.next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Close the connections past their deadline; a tick later, look again."""
        self.next_sweep = now + min(POLL, self.timeout / 8)
        late = [c for c in self.connections.values() if c.deadline is not None and c.deadline <= now]
        for connection in late:
            LOGGER.info("FastCGI peer dropped: nothing whole within CLIENT_TIMEOUT (%g s)", self.timeout)
            self._close(connection)
        self._listen()  # after a failed accept, try again

    def _wind_down(self) -> None:
        """After SIGTERM: accept no more, close idle connections, let requests in flight finish.

        An idle kept connection is read once more: a request the web server
        sent before the stop is answered, not dropped.
        """
        self.wound_down = True
        self._listen()
        for connection in list(self.connections.values()):
            if connection.out:
                continue  # a reply being sent: it finishes, then the connection closes
            self._receive(connection)
            idle = connection.request is None and not connection.buffer and not connection.out
            if connection.events and idle:  # still open, and nothing was on its way
                self._close(connection)

    def _listen(self) -> None:
        """Put the listening socket in the poller, or take it out when stopping or at the connection cap.

        EPOLLEXCLUSIVE: of the processes waiting on the shared socket, one is woken per connection.
        """
        wanted = not self.stopping and len(self.connections) < self.limit
        if wanted == self.accepting:
            return
        if wanted:
            self.poller.register(self.listening.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        else:
            self.poller.unregister(self.listening.fileno())
        self.accepting = wanted

    def _accept(self) -> bool:
        """Take one waiting connection and serve it; False when none waits (or none can be taken now)."""
        try:
            fd, _ = self.take()
        except BlockingIOError:
            return False
        except ConnectionAbortedError:
            return True  # the client left before we took its connection
        except OSError as exc:  # out of descriptors or memory: wait for a connection to close or a tick
            LOGGER.error("FastCGI: cannot accept a connection: %s", exc)
            self.poller.unregister(self.listening.fileno())
            self.accepting = False
            return False
        # The C socket type, not socket.socket: its accept(), __init__ and close() are Python
        # code, a fifth of what the responder itself costs a connection.
        self.serve_connection(_socket.socket(self.family, socket.SOCK_STREAM, 0, fd))
        return True

    # ---------------------------------------------------------------- one connection

    def serve_connection(self, sock: _socket.socket) -> None:
        """A new connection: answered and closed at once when its request is already there.

        Behind a web server it nearly always is; otherwise the connection waits in
        the poller. It arrives blocking (accept4 without SOCK_NONBLOCK): reads and
        writes pass MSG_DONTWAIT instead of spending a system call to change that.
        """
        self._receive(_Connection(sock))

    def _receive(self, connection: _Connection) -> None:
        """One read of what the peer has sent, then whatever it makes possible."""
        try:
            chunk = connection.sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            chunk = None
        except OSError:
            self._close(connection)
            return
        if chunk == b"":  # the peer closed: nothing more will come
            self._close(connection)
            return
        if chunk:
            self._gather(connection, chunk)
        self._work(connection)

    @staticmethod
    def _gather(connection: _Connection, chunk: bytes) -> None:
        """Keep what was read: a first read as it came, later ones appended to a bytearray.

        Appending to bytes would copy what is held at every read: a peer sending
        a long record a byte at a time would cost quadratic copying.
        """
        buffer = connection.buffer
        if not buffer:
            connection.buffer = chunk
            return
        if type(buffer) is bytes:
            buffer = bytearray(buffer)
        buffer += chunk
        connection.buffer = buffer

    def _work(self, connection: _Connection) -> None:
        """Send what is pending, answer the whole requests buffered, then wait for what is needed next.

        A reply is sent before the next request is parsed, and nothing is read
        while a reply is pending: a peer that does not read holds one reply's
        worth of memory, not one per request it sends.
        """
        try:
            while True:
                if connection.out:
                    if not self._flush(connection):
                        self._wait(connection, WAIT_OUTPUT)
                        return
                    if connection.replying:  # the reply is out: reading the next request starts now
                        connection.replying = False
                        connection.deadline = None
                if connection.closing:
                    self._close(connection)
                    return
                request = self._parse(connection)
                if request is not None:
                    self._queue(connection, self._respond(request))
                    connection.replying = True
                    connection.deadline = None
                    connection.closing = not request.keep or self.stopping
                elif not connection.out:
                    self._wait(connection, WAIT_INPUT)
                    return
        except (ProtocolError, OSError):
            self._close(connection)
        except Exception:  # a bug, not the peer's fault: this connection only
            LOGGER.exception("FastCGI connection dropped")
            self._close(connection)

    def _wait(self, connection: _Connection, events: int) -> None:
        """Leave the connection in the poller until ``events``; its deadline starts if not running.

        What it holds is counted here (a connection served at once never is): over
        the process's budget, it is closed instead, unless it holds it all (one
        reply larger than the budget, within the application's own limits, still
        goes out).
        """
        held = connection.holding()
        self.held += held - connection.held
        connection.held = held
        if self.held > MAX_HELD and self.held > held:
            LOGGER.warning("FastCGI peer dropped: waiting connections would hold over %d MB", MAX_HELD >> 20)
            self._close(connection)
            return
        if connection.deadline is None:
            connection.deadline = time.monotonic() + self.timeout
        if connection.events == events:
            return
        fd = connection.sock.fileno()
        if connection.events:
            self.poller.modify(fd, events)
        else:
            self.poller.register(fd, events)
            self.connections[fd] = connection
            self._listen()
        connection.events = events

    @staticmethod
    def _queue(connection: _Connection, parts: list[bytes | memoryview]) -> None:
        """Add to what is to be sent: a reply, management answers and refusals, after what is already there."""
        if connection.out:
            connection.out += parts
        else:
            connection.out = parts

    @staticmethod
    def _flush(connection: _Connection) -> bool:
        """Send what the socket takes now (one sendmsg gathers the buffers); True when nothing is left."""
        out = connection.out
        try:
            sent = connection.sock.sendmsg(out if len(out) <= SEND_PARTS else out[:SEND_PARTS], (), socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        done = 0
        while done < len(out) and sent >= len(out[done]):
            sent -= len(out[done])
            done += 1
        del out[:done]
        if sent:
            out[0] = memoryview(out[0])[sent:]
        return not out

    # ---------------------------------------------------------------- records

    def _parse(self, connection: _Connection) -> _Request | None:
        """Records from the buffer up to the end of a request; None when more bytes are needed.

        Records are parsed in place; what they used of the buffer is dropped once,
        on return (nearly always all of it). Answers to management records and refusals are queued.
        """
        buffer = connection.buffer
        end = len(buffer)  # records do not change the buffer: only this function does, on return
        pos = 0
        try:
            while end - pos >= HEADER_SIZE:
                version, kind, request_id, length, padding = unpack_header(buffer, pos)
                if version != 1:
                    raise ProtocolError("unknown FastCGI version")
                start = pos + HEADER_SIZE
                pos = start + length + padding
                if pos > end:
                    pos = start - HEADER_SIZE
                    return None
                request = self._record(connection, kind, request_id, buffer[start : start + length])
                if request is not None:
                    return request
            return None
        finally:
            if pos:
                connection.buffer = buffer[pos:]

    def _record(
        self, connection: _Connection, kind: int, request_id: int, content: bytes | bytearray
    ) -> _Request | None:
        """Take one record; the request it ends (whole or aborted), if it ends one."""
        if request_id == 0:
            self._queue(connection, _management(kind, content))
            return None
        if kind == BEGIN_REQUEST:
            self._begin(connection, request_id, content)
            return None
        request = connection.request
        if request is None or request_id != request.id:
            return None  # records of a request we refused or ended
        if kind == PARAMS:
            if not content:
                request.params_ended = True
            elif len(request.params) + len(content) > MAX_PARAMS:
                raise ProtocolError("parameters too long")
            elif not request.params:
                request.params = content
            else:
                request.params = bytearray(request.params) if type(request.params) is bytes else request.params
                request.params += content
        elif kind == STDIN:
            request.body += len(content)
            request.stdin_ended = not content
        elif kind == ABORT_REQUEST:
            request.aborted = True
        if request.aborted or (request.params_ended and request.stdin_ended):
            connection.request = None
            return request
        return None

    def _begin(self, connection: _Connection, request_id: int, content: bytes | bytearray) -> None:
        """BEGIN_REQUEST: a new request, or a refusal (a second one at once, another role)."""
        if len(content) < BEGIN_BODY.size:
            raise ProtocolError("BEGIN_REQUEST body too short")
        role, flags = BEGIN_BODY.unpack_from(content)
        if connection.request is not None and request_id != connection.request.id:
            self._queue(connection, _end_request(request_id, CANT_MPX_CONN))
        elif role != RESPONDER:
            self._queue(connection, _end_request(request_id, UNKNOWN_ROLE))
        else:
            connection.request = _Request(request_id, bool(flags & KEEP_CONN))

    # ---------------------------------------------------------------- replies

    def _respond(self, request: _Request) -> list[bytes | memoryview]:
        """The reply records: the handler's, or the responder's own for an abort or an oversized body."""
        if request.aborted:
            return _end_request(request.id, REQUEST_COMPLETE)
        if request.body > MAX_STDIN:
            LOGGER.info("FastCGI request body of %d bytes refused: 413", request.body)
            head, body = BODY_TOO_LARGE
        else:
            try:
                params = request.params
                reply = self.handler(decode_pairs(params if type(params) is bytes else bytes(params)))
                head, body = reply.cgi_head(), reply.body
            except Exception:  # the application answers its own errors; this is the last resort
                head, body = INTERNAL_ERROR
        return _stdout_records(request.id, head, body)

    # ---------------------------------------------------------------- closing

    def _close(self, connection: _Connection) -> None:
        """Take the connection out of the poller, then close it (see _discard_and_close)."""
        self.held -= connection.held
        connection.held = 0
        if connection.events:
            connection.events = 0
            fd = connection.sock.fileno()
            with contextlib.suppress(OSError):
                self.poller.unregister(fd)
            del self.connections[fd]
            self._listen()
        self._discard_and_close(connection.sock)

    def _discard_and_close(self, sock: _socket.socket) -> None:
        """Take what the web server may still have sent (so closing resets nothing), then close.

        The request was read whole, so nothing more is owed to us, and the web
        server's own close is not awaited. FIONREAD tells whether anything
        waits; nearly always nothing does, and asking costs a quarter of a
        non-blocking read that fails with EAGAIN. A few reads at most: a peer
        that keeps writing does not keep us here. The answer is written into a
        buffer kept for it (given bytes, ioctl first fails to parse them as writable).
        """
        with contextlib.suppress(OSError):
            fcntl.ioctl(sock.fileno(), termios.FIONREAD, self.waiting)
            if self.waiting != NOTHING_WAITING:
                for _ in range(4):
                    if not sock.recv(READ_SIZE, socket.MSG_DONTWAIT):
                        break
        sock.close()
