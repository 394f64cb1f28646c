"""pyiip's HTTP/1.1 server: one single-threaded event loop per worker process (``pyiip serve``).

Each worker waits in epoll on the shared listening socket and on its own connections. A request
is answered once its head and body are in whole: the application runs to completion, one
request at a time, as in the FastCGI responder; a reply the peer does not take at once waits in
its connection's buffer while the other connections are served. Nothing a peer sends, or fails
to send, holds the worker:

- ``timeout`` (CLIENT_TIMEOUT) to send a whole request, head and body, from its first byte (from
  the accept for a connection's first request), and as long to take a whole reply;
- ``min(KEEP_ALIVE, timeout)`` idle between the requests of a kept connection: time enough for
  a viewer's next tiles, short enough that idle connections do not pile up;
- heads of at most MAX_HEAD bytes (431), bodies of at most MAX_BODY (413, and read only to
  be dropped), and at most MAX_CONNECTIONS connections per worker (fewer under a descriptor
  limit below 4 x that): above it the worker stops accepting, leaving new connections to its
  peers (or the backlog).

Pipelined requests are answered in order, one per turn of the loop, the next only once the
reply before it has gone out (so a peer that does not read makes no queue of replies).

Idle, a worker sleeps in epoll until the nearest deadline or a signal (a wakeup fd): no CPU.
SIGTERM and SIGINT stop accepting and close idle connections; requests in flight are answered
and replies being sent finish by their deadline, requests still coming in get LINGER more at
most; then ``serve`` returns. SIGHUP returns at once, keeping the connections, so that the
caller reloads and serves again.
"""

from __future__ import annotations

import contextlib
import math
import re
import resource
import select
import signal
import socket
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from urllib.parse import unquote

from pyiip.http import SERVER, Reply, http_date, status_line

MAX_HEAD = 64 * 1024
MAX_BODY = 1 << 20  # the FastCGI responder's bound too; the application reads no body anyway
MAX_CONNECTIONS = 256  # per worker, and a quarter of the descriptor limit at most: images need descriptors too
KEEP_ALIVE = 5.0
LINGER = 2.0  # after a last reply, how long to wait for the peer's close (closing on its unread bytes resets the reply)
ACCEPT_PAUSE = 1.0  # after a failed accept (out of descriptors): retry then, instead of spinning
ACCEPT_BATCH = 16
RECV_SIZE = 65536
TICK = 0.05  # the slack of deadlines: a busy loop checks them at most this often
IN, OUT = select.EPOLLIN, select.EPOLLOUT

# A reply's CGI head (http.Reply.cgi_head) starts "Status: "; the status line takes its place.
_STATUS_PREFIX = len("Status: ")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TARGET = re.compile(r"[^\x00-\x20\x7f]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what no field may hold (a tab may)
_VERSION = re.compile(r"HTTP/\d+(\.\d+)?")

# What answers a request: CGI variables in, a finished reply out (Application.handle).
Handler = Callable[[dict[str, str]], Reply]


class Refusal(Exception):
    """A request the application never sees: answered with ``status``, then the connection is closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def plain_reply(status: int, message: str) -> Reply:
    """A one-line text reply of the server's own (refusals, the last-resort 500)."""
    body = (message + "\n").encode()
    headers = [
        ("Server", SERVER),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Cache-Control", "no-cache"),
        ("Content-Length", str(len(body))),
    ]
    return Reply(status_line(status), headers, body)


@lru_cache(maxsize=256)
def _cgi_name(field: str) -> str:
    """``Accept-Encoding`` -> ``HTTP_ACCEPT_ENCODING`` (the two CGI exceptions keep no prefix).

    "" for a name that is not a token (a folded line, a space before the colon), which is
    refused; "-" for a name with an underscore, which is dropped as nginx does by default: in
    CGI form ``X_Forwarded_Proto`` would pass for ``X-Forwarded-Proto``.
    """
    if _TOKEN.fullmatch(field) is None:
        return ""
    if "_" in field:
        return "-"
    name = field.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name


@lru_cache(maxsize=2)
def _date_line(second: int) -> bytes:
    return f"Date: {http_date(second)}\r\n".encode()


class Request:
    """A parsed request head: CGI variables, how much body is still to come, what to do after."""

    __slots__ = ("body_left", "environ", "expects_continue", "head_only", "http10", "keep")

    def __init__(self, environ: dict[str, str], body: int, keep: bool, http10: bool, expects_continue: bool) -> None:
        self.environ = environ
        self.body_left = body
        self.keep = keep
        self.http10 = http10
        self.head_only = environ["REQUEST_METHOD"] == "HEAD"
        self.expects_continue = expects_continue


def _request_line(line: str, environ: dict[str, str]) -> str:
    """Method, target and version into ``environ``; the version is returned."""
    parts = line.split(" ")
    if len(parts) != 3:
        raise Refusal(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if _VERSION.fullmatch(version):
            raise Refusal(505, "only HTTP/1.1 and HTTP/1.0 are served")
        raise Refusal(400, "malformed request line")
    if _TOKEN.fullmatch(method) is None or _TARGET.fullmatch(target) is None:
        raise Refusal(400, "malformed request line")
    if target.startswith(("http://", "https://")):  # absolute form (RFC 9112 3.2.2): keep the path
        _, _, rest = target.partition("//")
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    environ["REQUEST_METHOD"] = method
    environ["REQUEST_URI"] = target  # raw, still encoded: the application routes on it
    environ["QUERY_STRING"] = query
    environ["PATH_INFO"] = unquote(path, "latin-1")
    environ["SERVER_PROTOCOL"] = version
    return version


def _fields(text: str, environ: dict[str, str]) -> None:
    """Header fields into ``environ`` as CGI variables; repeated fields are joined with commas.

    Two Host fields are refused (RFC 9112 3.2): the host goes into the URLs of replies. One
    look at the whole text for control characters (CR and LF only as line ends), then names
    looked up in a cache: the fields a browser sends cost a few microseconds.
    """
    if not text:
        return
    lines = text.replace("\r\n", "")
    if not lines.isprintable() and _CONTROL.search(lines):  # isprintable: the fast, nearly always true test
        raise Refusal(400, "control character in a header field")
    for line in text.split("\r\n"):
        name, colon, value = line.partition(":")
        key = _cgi_name(name)
        if not colon or not key:
            raise Refusal(400, "malformed header field")
        if key == "-":
            continue
        value = value.strip(" \t")
        if key not in environ:
            environ[key] = value
        elif key == "HTTP_HOST":
            raise Refusal(400, "more than one Host field")
        else:
            environ[key] += "," + value


def parse_head(head: str, base: dict[str, str]) -> Request:
    """A request head (latin-1 text, without its blank line) to a Request, or a Refusal."""
    environ = dict(base)
    line, _, fields = head.partition("\r\n")
    version = _request_line(line, environ)
    _fields(fields, environ)
    http10 = version == "HTTP/1.0"
    if not http10 and "HTTP_HOST" not in environ:
        raise Refusal(400, "an HTTP/1.1 request needs a Host field")
    if "HTTP_TRANSFER_ENCODING" in environ:
        raise Refusal(501, "transfer codings are not supported: send Content-Length")
    length = environ.get("CONTENT_LENGTH", "0")
    if not (length.isascii() and length.isdigit()):
        raise Refusal(400, "malformed Content-Length")
    if len(length) > 9 or int(length) > MAX_BODY:
        raise Refusal(413, f"request body over {MAX_BODY} bytes")
    connection = environ.get("HTTP_CONNECTION")
    tokens = {token.strip().lower() for token in connection.split(",")} if connection else set()
    keep = "keep-alive" in tokens if http10 else "close" not in tokens
    expects = not http10 and int(length) > 0 and environ.get("HTTP_EXPECT", "").lower() == "100-continue"
    return Request(environ, int(length), keep, http10, expects)


class Connection:
    """One peer: what it sent and we have not answered, what we owe it, its deadline."""

    __slots__ = (
        "base",
        "closing",
        "deadline",
        "events",
        "fd",
        "idle",
        "inbox",
        "lingering",
        "outbox",
        "request",
        "scanned",
        "sock",
    )

    def __init__(self, sock: socket.socket, base: dict[str, str], deadline: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.base = base  # the CGI variables every request of this connection shares
        self.deadline = deadline
        self.events = IN
        self.inbox = bytearray()
        self.scanned = 0  # how much of the inbox is known to hold no end of head
        self.request: Request | None = None  # parsed head, body not yet in whole
        self.outbox: list[bytes | memoryview] = []
        self.idle = False  # between the requests of a kept connection
        self.closing = False  # close once the outbox is sent
        self.lingering = False  # write side shut: waiting for the peer's close

    def quiet(self) -> bool:
        """Nothing begun and nothing owed: the connection can be closed without losing a request."""
        return self.lingering or (not self.inbox and not self.outbox and self.request is None)


def _consume(outbox: list[bytes | memoryview], sent: int) -> None:
    """Drop ``sent`` bytes from the front of the buffers."""
    while sent:
        first = outbox[0]
        if sent >= len(first):
            sent -= len(first)
            del outbox[0]
        else:
            outbox[0] = memoryview(first)[sent:]
            sent = 0


@contextlib.contextmanager
def signals_waking(writer: socket.socket, stop: Callable[..., None], reload: Callable[..., None]) -> Iterator[None]:
    """TERM and INT call ``stop``, HUP ``reload``, and each writes to ``writer``, waking a wait in epoll.

    Python runs a handler between bytecodes and retries an interrupted epoll wait with what is
    left of its timeout (PEP 475): without the wakeup fd, an idle loop would sleep through a stop.
    The previous handlers are put back on leaving.
    """
    handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: reload}
    previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
    wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(wakeup)
        for number, handler in previous.items():
            signal.signal(number, handler)


class Server:
    """Serves HTTP on a listening socket (shared with other workers) with a handler (Application.handle)."""

    def __init__(self, handler: Handler, listening: socket.socket, timeout: float) -> None:
        self.handler = handler
        self.listening = listening
        self.timeout = timeout
        listening.setblocking(False)  # a lost race for a connection fails with EAGAIN instead of blocking
        host, port = listening.getsockname()[:2]
        self.base = {"SERVER_NAME": host, "SERVER_PORT": str(port), "SCRIPT_NAME": "", "HTTPS": "off"}
        self.poller = select.epoll()
        self.wakeup, self.wakeup_writer = socket.socketpair()
        self.wakeup.setblocking(False)
        self.wakeup_writer.setblocking(False)
        self.poller.register(self.wakeup.fileno(), IN)
        self.connections: dict[int, Connection] = {}
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_connections = MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else min(MAX_CONNECTIONS, soft // 4)
        self.ready: list[Connection] = []  # whole requests left in an inbox: answered next turn
        self.accepting = False
        self.paused_until = 0.0
        self.next_check = math.inf  # when deadlines are next looked at
        self.stopping = False
        self.reloading = False

    @property
    def keep_alive(self) -> float:
        return min(KEEP_ALIVE, self.timeout)

    # ---------------------------------------------------------------- the loop

    def serve(self) -> bool:
        """Serve until SIGTERM/SIGINT (False, once the connections are done) or SIGHUP (True: reload, call again)."""
        self.reloading = False
        with signals_waking(self.wakeup_writer, self._stop, self._reload):
            self._update_accepting()
            while True:
                if self.stopping:
                    self._wind_down()
                if self.reloading or (self.stopping and not self.connections):
                    return self.reloading
                self._step()

    def _stop(self, *_: object) -> None:
        self.stopping = True
        self.reloading = False  # a stop wins over a reload not yet made

    def _reload(self, *_: object) -> None:
        self.reloading = not self.stopping

    def _step(self) -> None:
        """One wait in epoll and what it brought; then the turn of whole requests left waiting, then deadlines."""
        timeout = 0.0 if self.ready else self._wait()
        listening, wakeup = self.listening.fileno(), self.wakeup.fileno()
        for fd, _ in self.poller.poll(timeout):
            if fd == listening:
                self._accept()
            elif fd == wakeup:
                with contextlib.suppress(OSError):
                    while self.wakeup.recv(512):  # the signal's handler has run: the flags are set
                        pass
            elif (connection := self.connections.get(fd)) is not None:
                if connection.outbox:
                    self._send(connection)
                else:
                    self._receive(connection)
        if self.ready:
            ready, self.ready = self.ready, []
            for connection in ready:
                if self.connections.get(connection.fd) is connection:
                    self._process(connection)
        now = time.monotonic()
        if now >= self.next_check:
            self._expire(now)

    def _wait(self) -> float | None:
        """Seconds until the nearest deadline; None (forever) without any."""
        if self.next_check == math.inf:
            return None
        return max(0.0, self.next_check - time.monotonic())

    def _set_deadline(self, connection: Connection, seconds: float) -> None:
        connection.deadline = deadline = time.monotonic() + seconds
        if deadline < self.next_check:
            self.next_check = deadline

    def _expire(self, now: float) -> None:
        """Drop the connections whose deadline has passed; note when the next one passes.

        A scan of all connections, but only when the earliest noted deadline comes, at most
        once per TICK: deadlines only move later, so most scans find the one that was due.
        """
        earliest = math.inf
        for connection in list(self.connections.values()):
            if connection.deadline <= now:
                self._close(connection)
            elif connection.deadline < earliest:
                earliest = connection.deadline
        if self.paused_until:
            if now >= self.paused_until:
                self.paused_until = 0.0
                self._update_accepting()
            else:
                earliest = min(earliest, self.paused_until)
        self.next_check = max(earliest, now + TICK) if earliest < math.inf else math.inf

    def _wind_down(self) -> None:
        """While stopping: no accepts, idle connections closed, replies finish by their deadline.

        A request still coming in gets LINGER more at most: a slow peer does not hold a stop
        for a whole client timeout.
        """
        self._update_accepting()
        soon = time.monotonic() + min(LINGER, self.timeout)
        for connection in list(self.connections.values()):
            if connection.quiet() and not connection.lingering:
                self._receive(connection)  # a request that has just come in is answered, not dropped
            if self.connections.get(connection.fd) is not connection:
                continue
            if connection.quiet():
                self._close(connection)
            elif not connection.outbox and connection.deadline > soon:
                connection.deadline = soon
                self.next_check = min(self.next_check, soon)

    # ---------------------------------------------------------------- connections

    def _update_accepting(self) -> None:
        """Listen while not stopping, under the connection cap and not paused by a failed accept.

        EPOLLEXCLUSIVE wakes one waiting worker per connection instead of all; it cannot be
        modified, so the socket is registered and unregistered.
        """
        wanted = not self.stopping and not self.paused_until and len(self.connections) < self.max_connections
        if wanted == self.accepting:
            return
        if wanted:
            self.poller.register(self.listening.fileno(), IN | select.EPOLLEXCLUSIVE)
        else:
            self.poller.unregister(self.listening.fileno())
        self.accepting = wanted

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self.accepting:
                return
            try:
                sock, address = self.listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError:  # EMFILE, ENFILE, ENOBUFS: the socket stays readable, so pause
                self.paused_until = time.monotonic() + ACCEPT_PAUSE
                self.next_check = min(self.next_check, self.paused_until)
                self._update_accepting()
                return
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # a reply in one write: no Nagle wait on its last segment
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            base = {**self.base, "REMOTE_ADDR": str(address[0]), "REMOTE_PORT": str(address[1])}
            connection = Connection(sock, base, 0.0)
            self._set_deadline(connection, self.timeout)
            self.connections[connection.fd] = connection
            self.poller.register(connection.fd, IN)
            self._update_accepting()

    def _close(self, connection: Connection) -> None:
        self.connections.pop(connection.fd, None)
        with contextlib.suppress(OSError, ValueError):
            self.poller.unregister(connection.fd)
        connection.sock.close()
        connection.outbox = []
        self._update_accepting()

    def _want(self, connection: Connection, events: int) -> None:
        if connection.events != events:
            self.poller.modify(connection.fd, events)
            connection.events = events

    # ---------------------------------------------------------------- requests

    def _receive(self, connection: Connection) -> None:
        try:
            data = connection.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(connection)
            return
        if connection.lingering:
            return  # discarded, until the peer closes or the linger deadline
        if connection.idle:  # a kept connection's next request begins
            connection.idle = False
            self._set_deadline(connection, self.timeout)
        connection.inbox += data
        self._process(connection)

    def _process(self, connection: Connection) -> None:
        """Answer the request at the front of the inbox if it is whole (one per turn, none while a reply is owed)."""
        if connection.outbox or connection.lingering:
            return
        try:
            request = connection.request or self._parse(connection)
        except Refusal as refusal:
            self._queue(connection, plain_reply(refusal.status, refusal.message), None)
            return
        if request is None:
            return
        if request.body_left:  # read and dropped: the application answers from the head alone
            taken = min(len(connection.inbox), request.body_left)
            del connection.inbox[:taken]
            request.body_left -= taken
            if request.body_left:
                if request.expects_continue:
                    request.expects_continue = False
                    connection.outbox.append(b"HTTP/1.1 100 Continue\r\n\r\n")
                    self._send(connection)
                return
        connection.request = None
        connection.scanned = 0
        try:
            reply = self.handler(request.environ)
        except Exception:  # the application answers its own errors; this is the last resort
            reply = plain_reply(500, "internal server error")
        self._queue(connection, reply, request)

    def _parse(self, connection: Connection) -> Request | None:
        """The head at the front of the inbox, once it is in whole; None until then."""
        inbox = connection.inbox
        while inbox.startswith(b"\r\n"):  # empty lines before a request are allowed (RFC 9112 2.2)
            del inbox[:2]
        end = inbox.find(b"\r\n\r\n", max(0, connection.scanned - 3))
        if end < 0:
            if len(inbox) > MAX_HEAD:
                raise Refusal(431, f"request head over {MAX_HEAD} bytes")
            connection.scanned = len(inbox)
            return None
        if end > MAX_HEAD:
            raise Refusal(431, f"request head over {MAX_HEAD} bytes")
        connection.request = parse_head(inbox[:end].decode("latin-1"), connection.base)
        del inbox[: end + 4]
        return connection.request

    # ---------------------------------------------------------------- replies

    def _queue(self, connection: Connection, reply: Reply, request: Request | None) -> None:
        """Put a reply in the outbox and send what the socket takes; a refusal (no request) closes."""
        keep = request is not None and request.keep and not self.stopping
        if request is None or not keep:
            connection_field = b"Connection: close\r\n"
        else:
            connection_field = b"Connection: keep-alive\r\n" if request.http10 else b""
        head = b"".join(
            (
                b"HTTP/1.1 ",
                reply.cgi_head()[_STATUS_PREFIX:-2],
                _date_line(int(time.time())),
                connection_field,
                b"\r\n",
            )
        )
        connection.outbox.append(head)
        if reply.body and not (request is not None and request.head_only):
            connection.outbox.append(reply.body)
        connection.closing = not keep
        self._set_deadline(connection, self.timeout)  # the whole reply within the client timeout
        self._send(connection)

    def _send(self, connection: Connection) -> None:
        outbox = connection.outbox
        try:
            while outbox:
                _consume(outbox, connection.sock.sendmsg(outbox))
        except (BlockingIOError, InterruptedError):
            self._want(connection, OUT)
            return
        except OSError:
            self._close(connection)
            return
        if connection.closing:
            self._linger(connection)
            return
        self._want(connection, IN)
        if connection.request is not None:
            return  # a 100 Continue went out: the body is still coming, under the request's deadline
        if connection.inbox:  # pipelined: the next request has begun
            self._set_deadline(connection, self.timeout)
            self.ready.append(connection)
        else:
            connection.idle = True
            self._set_deadline(connection, self.keep_alive)

    def _linger(self, connection: Connection) -> None:
        """After the last reply: shut our side, take and drop what the peer still sends until it closes."""
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_WR)
        connection.lingering = True
        connection.inbox = bytearray()
        connection.request = None
        self._want(connection, IN)
        self._set_deadline(connection, min(LINGER, self.timeout))
