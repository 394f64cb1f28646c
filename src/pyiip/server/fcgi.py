"""FastCGI: one single-threaded responder per process (fastcgi.py), as iipsrv runs.

The listening socket comes from systemd (LISTEN_FDS, fd 3), from ``--bind``
(created here, so the backlog and socket mode are ours to set), or from the
spawning web server on fd 0 (lighttpd ``bin-path``, mod_fcgid, spawn-fcgi).
Whichever it is, it ends up on fd 0, where the responder accepts; so a SIGHUP
reloads the settings and empties the caches without dropping the socket.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import sys

from pyiip import compiled, config, log
from pyiip.read import block_cache, credentials
from pyiip.respond import metrics
from pyiip.respond.app import Application
from pyiip.server import limits, listen
from pyiip.server.fastcgi import Responder
from pyiip.server.options import Parser, StartError, cores, fcgi_arguments, split_bind, version
from pyiip.server.reload import serve_with_reloads
from pyiip.server.workers import supervise

LISTEN_FD_START = 3


def _fd0_is_socket() -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(0).st_mode)
    except OSError:
        return False


def run(bind: str | None = None, backlog: int = 2048, mode: int | None = None, workers: int = 1) -> int:
    """Serve FastCGI until SIGTERM/SIGINT, in ``workers`` supervised processes when more than one (0: per core).

    A ``--bind`` unix socket is removed on the way out (after the workers), if it is still ours.
    """
    try:
        settings = config.load()
        block_cache.check_settings(settings)  # before the workers: one clear error, not one per worker
        credentials.check_settings(settings)
    except config.ConfigError as exc:
        print(f"pyiip: {exc}", file=sys.stderr)
        return 2
    logger = log.setup(settings)
    workers = workers or cores()
    if os.environ.get("LISTEN_FDS") and os.environ.get("LISTEN_PID") == str(os.getpid()):
        os.dup2(LISTEN_FD_START, 0)
        os.close(LISTEN_FD_START)
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)  # meant for this process only, not for workers or children
    elif bind:
        address = split_bind(bind)
        if isinstance(address, str):
            sock = listen.unix(address, backlog, mode)
        else:
            sock = listen.tcp(*address, backlog, "--bind")
        os.dup2(sock.fileno(), 0)
        sock.close()
        print(f"pyiip FastCGI listening on {bind} with {workers} process(es)", file=sys.stderr, flush=True)
        logger.info("pyiip FastCGI listening on %s with %d process(es)", bind, workers)
    elif not _fd0_is_socket():
        print(
            "pyiip: no FastCGI socket on standard input; start me from a web server, "
            "with --bind HOST:PORT|/path.sock, or use `pyiip serve` for HTTP",
            file=sys.stderr,
        )
        return 2
    with listen.unix_socket_removed(bind if bind and "/" in bind else None):
        if workers > 1:
            cleanup = metrics.share_among_workers(settings.metrics_dir)
            try:
                return supervise(workers, lambda: _serve(settings, logger), logger)
            finally:
                cleanup()
        return _serve(settings, logger)


def _serve(settings: config.Settings, logger: logging.Logger) -> int:
    """One single-threaded FastCGI process accepting on fd 0; SIGHUP reloads and carries on."""
    # The responder handles HUP while serving and puts back this disposition between runs:
    # a HUP during start-up or a reload then changes nothing, instead of killing the process.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    limits.apply(settings)
    app = Application(settings)
    logger.info(
        "pyiip FastCGI process %d started, image root %s, %s",
        os.getpid(),
        app.service.resolver.root,
        compiled.describe(),
    )
    responder = Responder(app.handle, socket.socket(fileno=0), settings.client_timeout)
    serve_with_reloads(app, responder, logger)
    logger.info("pyiip FastCGI process %d stopping", os.getpid())
    return 0


def main(argv: list[str] | None = None) -> None:
    """The ``pyiip.fcgi`` executable a web server points bin-path at (iipsrv's options)."""
    parser = Parser(prog="pyiip.fcgi", description="pyiip FastCGI responder (settings: iipsrv's environment variables)")
    version(parser)
    fcgi_arguments(parser)
    args = parser.parse_args(argv)
    try:
        status = run(args.bind, args.backlog, args.mode, args.workers)
    except StartError as exc:
        status = exc.report(parser.prog)
    sys.exit(status)
