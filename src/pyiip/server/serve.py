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
import socket
import sys

from pyiip import compiled, config, log
from pyiip.read import block_cache, credentials
from pyiip.respond import metrics
from pyiip.respond.app import Application
from pyiip.server import limits, listen
from pyiip.server.http_server import Server
from pyiip.server.options import cores
from pyiip.server.reload import serve_with_reloads
from pyiip.server.workers import supervise

BACKLOG = 1024


def _worker(listening: socket.socket, settings: config.Settings, logger: logging.Logger) -> int:
    """One worker: serve until TERM/INT; on HUP reload the settings and caches, and serve on."""
    log.setup(settings)
    limits.apply(settings)
    app = Application(settings)
    server = Server(app.handle, listening, settings.client_timeout)
    serve_with_reloads(app, server, logger)
    return 0


def run(host: str = "127.0.0.1", port: int = 8000, workers: int = 0) -> int:
    """Serve HTTP on host:port with ``workers`` processes (0: one per core); a wrong host or port is a StartError."""
    try:
        settings = config.load()
        block_cache.check_settings(settings)  # before the workers: one clear error, not one per worker
        credentials.check_settings(settings)
    except config.ConfigError as exc:
        print(f"pyiip: {exc}", file=sys.stderr)
        return 2
    logger = log.setup(settings)
    workers = workers or cores()
    listening = listen.tcp(host, port, BACKLOG, "--port")
    where = f"[{host}]" if ":" in host else host
    print(f"pyiip serving http://{where}:{port}/ with {workers} worker(s)", file=sys.stderr, flush=True)
    logger.info("pyiip HTTP server: %s", compiled.describe())
    cleanup = metrics.share_among_workers(settings.metrics_dir)
    try:
        return supervise(workers, lambda: _worker(listening, settings, logger), logger, "HTTP")
    finally:
        listening.close()
        cleanup()
