"""The built-in HTTP server (``pyiip serve``): pre-forked workers, each an HTTP/1.1 event loop.

Each worker is a single-threaded process with its own Application (opened after the fork, so
no file handle is shared), all accepting on one socket, like FastCGI processes behind a web
server; the supervisor (workers.py) replaces a worker that dies. http_server.py is the loop:
keep-alive, deadlines from CLIENT_TIMEOUT, no CPU while idle.

Signals, as for FastCGI: TERM and INT stop accepting, finish the requests in flight and exit;
HUP makes every worker empty its caches and reload its settings, connections kept.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from pyiip import config, log
from pyiip.respond import metrics
from pyiip.respond.app import Application
from pyiip.server import limits
from pyiip.server.http_server import Server
from pyiip.server.reload import serve_with_reloads
from pyiip.server.workers import supervise

BACKLOG = 1024


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def _worker(listening: socket.socket, settings: config.Settings, logger: logging.Logger) -> int:
    """One worker: serve until TERM/INT; on HUP reload the settings and caches, and serve on."""
    log.setup(settings)
    limits.apply(settings)
    app = Application(settings)
    server = Server(app.handle, listening, settings.client_timeout)
    serve_with_reloads(app, server, logger)
    return 0


def run(host: str = "127.0.0.1", port: int = 8000, workers: int = 0) -> int:
    """Serve HTTP on host:port with ``workers`` processes (default: one per core)."""
    try:
        settings = config.load()
    except config.ConfigError as exc:
        print(f"pyiip: {exc}", file=sys.stderr)
        return 2
    logger = log.setup(settings)
    workers = workers or os.cpu_count() or 1
    listening = _listening_socket(host, port)
    print(f"pyiip serving http://{host}:{port}/ with {workers} worker(s)", file=sys.stderr, flush=True)
    cleanup = metrics.share_among_workers(settings.metrics_dir)
    try:
        return supervise(workers, lambda: _worker(listening, settings, logger), logger, "HTTP")
    finally:
        listening.close()
        cleanup()
