"""Listening sockets for ``--host``/``--port`` and ``--bind``, whose failures name the option (StartError).

A TCP socket is bound to the first address the host resolves to (a name, an IPv4 or an IPv6
address). A unix socket path left by a server that died is replaced; one another server still
answers on is refused, and so is a path that is not a socket: unlinking either would take the
name from under something else. The caller removes its unix socket on exit (``unix_socket_removed``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Iterator

from pyiip.server.options import StartError

_WHY = {
    errno.EADDRINUSE: "address already in use (another server listens there: choose another port)",
    errno.EADDRNOTAVAIL: "not an address of this machine",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


def tcp(host: str, port: int, backlog: int, option: str) -> socket.socket:
    """A listening TCP socket on host:port; ``option`` (``--port``, ``--bind``) names it in errors."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise StartError("--host" if option == "--port" else option, host, f"unknown host ({_reason(exc)})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        where = "--host" if exc.errno == errno.EADDRNOTAVAIL and option == "--port" else option
        value = host if where == "--host" else (port if option == "--port" else f"{host}:{port}")
        raise StartError(where, value, _WHY.get(exc.errno or 0, _reason(exc))) from None
    return sock


def unix(path: str, backlog: int, mode: int | None) -> socket.socket:
    """A listening unix socket at ``path`` (a stale one replaced), chmod ``mode``."""
    _clear(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if mode is not None:
            os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise StartError("--bind", path, _WHY.get(exc.errno or 0, _reason(exc))) from None
    return sock


def _clear(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StartError("--bind", path, _reason(exc)) from None
    if not stat.S_ISSOCK(mode):
        raise StartError("--bind", path, "exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody answers: left by a server that died
            return
    raise StartError("--bind", path, "another server listens on this socket")


@contextlib.contextmanager
def unix_socket_removed(path: str | None) -> Iterator[None]:
    """On leaving, remove the unix socket at ``path`` if it is still the one this process made."""
    made = os.stat(path) if path else None
    try:
        yield
    finally:
        if path and made is not None:
            with contextlib.suppress(OSError):
                now = os.stat(path)
                if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino):
                    os.unlink(path)


def _reason(exc: OSError | UnicodeError) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__
