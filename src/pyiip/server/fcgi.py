"""FastCGI: one single-threaded responder per process (fastcgi.py), as iipsrv runs.

The listening socket comes from systemd (LISTEN_FDS, fd 3), from ``--bind``
(created here, so the backlog and socket mode are ours to set), or from the
spawning web server on fd 0 (lighttpd ``bin-path``, mod_fcgid, spawn-fcgi).
Whichever it is, it ends up on fd 0, where the responder accepts; so a SIGHUP
reloads the settings and empties the caches without dropping the socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import stat
import sys

from pyiip import config, log
from pyiip.respond import metrics
from pyiip.respond.app import Application
from pyiip.server import limits
from pyiip.server.fastcgi import Responder
from pyiip.server.reload import serve_with_reloads
from pyiip.server.workers import supervise

LISTEN_FD_START = 3


def _listening_socket(bind: str, backlog: int, mode: int | None) -> socket.socket:
    """A unix socket for a path, else TCP for HOST:PORT (or :PORT)."""
    if "/" in bind:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bind)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(bind)
        if mode is not None:
            os.chmod(bind, mode)
    else:
        host, _, port = bind.rpartition(":")
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]") or "0.0.0.0", int(port)))
    sock.listen(backlog)
    return sock


def _fd0_is_socket() -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(0).st_mode)
    except OSError:
        return False


def run(bind: str | None = None, backlog: int = 2048, mode: int | None = None, workers: int = 1) -> int:
    """Serve FastCGI until SIGTERM/SIGINT, in ``workers`` supervised processes when more than one (0: per core)."""
    try:
        settings = config.load()
    except config.ConfigError as exc:
        print(f"pyiip: {exc}", file=sys.stderr)
        return 2
    logger = log.setup(settings)
    if os.environ.get("LISTEN_FDS") and os.environ.get("LISTEN_PID") == str(os.getpid()):
        os.dup2(LISTEN_FD_START, 0)
        os.close(LISTEN_FD_START)
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)  # meant for this process only, not for workers or children
    elif bind:
        sock = _listening_socket(bind, backlog, mode)
        os.dup2(sock.fileno(), 0)
        sock.close()
    elif not _fd0_is_socket():
        print(
            "pyiip: no FastCGI socket on standard input; start me from a web server, "
            "with --bind HOST:PORT|/path.sock, or use `pyiip serve` for HTTP",
            file=sys.stderr,
        )
        return 2
    if workers <= 0:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
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
    logger.warning("pyiip FastCGI process %d started, image root %s", os.getpid(), app.service.resolver.root)
    responder = Responder(app.handle, socket.socket(fileno=0), settings.client_timeout)
    serve_with_reloads(app, responder, logger)
    logger.warning("pyiip FastCGI process %d stopping", os.getpid())
    return 0


def main() -> None:
    """The ``pyiip.fcgi`` executable a web server points bin-path at (iipsrv's options)."""
    import argparse

    parser = argparse.ArgumentParser(prog="pyiip.fcgi", description="pyiip FastCGI responder")
    parser.add_argument("--bind", help="HOST:PORT or /path/to/socket (default: socket on fd 0)")
    parser.add_argument("--backlog", type=int, default=2048)
    parser.add_argument("--mode", help="octal permissions of a --bind unix socket, e.g. 660")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes on the socket, restarted if they die; 0: one per core"
    )
    args = parser.parse_args()
    sys.exit(run(args.bind, args.backlog, int(args.mode, 8) if args.mode else None, args.workers))
