"""The built-in HTTP server, for first use and development: stdlib wsgiref, pre-forked.

Each worker is a single-threaded process with its own Application (opened
after the fork, so no file handle is shared), all accepting on one socket,
like FastCGI instances behind a web server. Dead workers are replaced.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from pyiip import config, log
from pyiip.respond.app import Application
from pyiip.server import limits


class _Handler(WSGIRequestHandler):
    def get_environ(self) -> dict:
        environ = super().get_environ()
        environ["REQUEST_URI"] = self.path  # the raw, still-encoded target: routing needs it
        return environ

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # the application logs requests itself, at VERBOSITY >= 2


class _Server(WSGIServer):
    allow_reuse_address = True
    request_queue_size = 1024

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up mid-reply is not an error worth a traceback


def _worker(server: _Server) -> None:
    """Serve until SIGTERM; the request in flight completes (a flag, checked between requests)."""
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop.append(signum))
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    settings = config.load()
    log.setup(settings)
    limits.apply(settings)
    server.set_app(Application(settings))
    server.timeout = 0.5  # handle_request returns at least this often to look at the flag
    # All workers wake up for each connection; a losing accept() must fail (EAGAIN), not
    # block until the next connection, deaf to SIGTERM.
    server.socket.setblocking(False)
    try:
        while not stop:
            server.handle_request()
    finally:
        os._exit(0)


def run(host: str = "127.0.0.1", port: int = 8000, workers: int = 0) -> int:
    """Serve HTTP on host:port with ``workers`` processes (default: one per core)."""
    try:
        config.load()
    except config.ConfigError as exc:
        print(f"pyiip: {exc}", file=sys.stderr)
        return 2
    workers = workers or os.cpu_count() or 1
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    _Server.address_family = family
    server = _Server((host, port), _Handler)
    children: set[int] = set()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            _worker(server)
        children.add(pid)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        spawn()
    print(f"pyiip serving http://{host}:{port}/ with {workers} worker(s)", file=sys.stderr, flush=True)
    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        children.discard(pid)
        if not stopping:
            spawn()
    server.server_close()
    return 0
