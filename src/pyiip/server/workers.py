"""``pyiip.fcgi --workers N``: N single-threaded FastCGI processes on one listening socket, kept alive.

lighttpd, mod_fcgid and OpenLiteSpeed start and restart their FastCGI
processes themselves; nginx cannot, and neither spawn-fcgi (``-F N`` forks N
and forgets them) nor a systemd ``Accept=no`` socket (one service process)
brings a dead process back. This supervisor does what spawn-fcgi -F does,
forks N accepters on the inherited socket (fd 0), and also replaces any that
dies. The kernel hands each connection on the shared socket to one idle
accepter, so no request is lost while a worker is being replaced; only the
request in flight in a process that crashes fails.

Signals: TERM/INT are passed on, each worker closes its idle connections,
finishes its requests in flight (a peer that stalls is dropped at its
CLIENT_TIMEOUT deadline) and exits, then the supervisor exits. HUP is passed on (each worker empties
its caches and reloads its settings). Workers get TERM if the supervisor dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
# A worker that dies this soon after its start counts as failing to start:
# respawn it with a growing delay instead of forking in a tight loop.
QUICK_DEATH = 2.0
MAX_DELAY = 10.0
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the supervisor goes, so no orphan keeps the socket."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(count: int, serve: Callable[[], int], logger: logging.Logger, kind: str = "FastCGI") -> int:
    """Run ``serve`` in ``count`` forked workers until TERM/INT; the exit status; ``kind`` names them in the log."""
    children: dict[int, float] = {}  # pid -> start time
    stopping = False
    failures = 0
    parent = os.getpid()

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)

    def spawn() -> None:
        # Signals wait while forking: a child must not run ``forward`` with its parent's list.
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload before serving: nothing to reload yet
                signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
                _die_with_parent()
                if os.getppid() != parent:  # the supervisor died before prctl
                    os._exit(0)
                status = serve()
            except BaseException:
                logger.exception("worker %d failed", os.getpid())
            finally:
                os._exit(status)
        children[pid] = time.monotonic()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)

    for sig in SIGNALS:
        signal.signal(sig, forward)
    for _ in range(count):
        spawn()
    logger.info("pyiip supervisor %d started %d %s workers: %s", parent, count, kind, " ".join(map(str, children)))
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        started = children.pop(pid, None)
        if started is None or stopping:
            continue
        code = os.waitstatus_to_exitcode(status)
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        quick = time.monotonic() - started < QUICK_DEATH
        failures = failures + 1 if quick else 0
        delay = min(MAX_DELAY, 0.1 * 2 ** (failures - 1)) if failures else 0.0
        logger.error("%s worker %d %s; starting another%s", kind, pid, how, f" in {delay:.1f} s" if delay else "")
        if delay:
            time.sleep(delay)  # a TERM meanwhile sets stopping: checked below
        if not stopping:
            spawn()
    logger.info("pyiip supervisor %d stopped", parent)
    return 0
