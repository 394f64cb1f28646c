"""The command-line options of ``pyiip serve``, ``pyiip fcgi`` and ``pyiip.fcgi``, checked as they are read.

A mistake (a port over 65535, ``--workers -1``, a mode that is not octal, a missing directory)
ends with one line on stderr naming the option and the problem, and exit status 2: argparse's
usage block is left out, a traceback never shown. What only starting can tell (a port in use, a
host that is not this machine's) is a StartError, reported the same way (listen.py).
This module imports nothing heavy: ``pyiip --help`` stays quick.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import math
import os
import re
import sys
from typing import NoReturn

from pyiip import __version__

MAX_PORT = 65535
MAX_MODE = 0o777
MAX_HOST_NAME = 253
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


class StartError(Exception):
    """An option found wrong while starting (the port in use...): ``option value: problem``."""

    def __init__(self, option: str, value: object, problem: str) -> None:
        super().__init__(f"{option} {value}: {problem}")

    def report(self, prog: str) -> int:
        """Print the one line on stderr; the exit status."""
        print(f"{prog}: error: {self}", file=sys.stderr)
        return 2


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless it has none to show (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with defaults in --help and each error on one line: ``prog: error: argument --x: problem``."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def _number(text: str, lowest: int, highest: float, what: str, base: int = 10) -> int:
    """``text`` as a whole number from ``lowest`` to ``highest``, else the error saying it is not ``what``."""
    try:
        number = int(text, base)
    except ValueError:
        number = lowest - 1
    if not lowest <= number <= highest:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
    return number


def port(text: str) -> int:
    return _number(text, 1, MAX_PORT, f"a port number (1-{MAX_PORT})")


def host(text: str) -> str:
    """An IP address or a host name (looked up when binding); brackets around an IPv6 address are dropped."""
    name = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(name)
        return name
    if not _HOST_NAME.fullmatch(name) or len(name) > MAX_HOST_NAME:
        raise argparse.ArgumentTypeError(f"not an IP address or a host name: {text!r}")
    return name


def workers(text: str) -> int:
    return _number(text, 0, math.inf, "a number of processes (0 for one per core, or more)")


def positive(text: str) -> int:
    return _number(text, 1, math.inf, "a positive whole number")


def mode(text: str) -> int:
    """An octal permission mode such as 660."""
    return _number(text, 0, MAX_MODE, "an octal permission mode such as 660", base=8)


def directory(text: str) -> str:
    """An image directory this process can list: checked now, rather than on the first request."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such directory: {text!r}")
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
    if not os.access(text, os.R_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"directory not readable by this user: {text!r}")
    return os.path.abspath(text)


def split_bind(text: str) -> tuple[str, int] | str:
    """``--bind``: a unix socket path (holds a ``/``) whose directory exists, or (host, port) from HOST:PORT."""
    if "/" in text:
        parent = os.path.dirname(os.path.abspath(text))
        if not os.path.isdir(parent):
            raise argparse.ArgumentTypeError(f"no directory {parent!r} for the socket {text!r}")
        return text
    name, colon, number = text.rpartition(":")
    if not colon:
        raise argparse.ArgumentTypeError(f"neither HOST:PORT nor a socket path: {text!r}")
    try:
        return (host(name) if name else "0.0.0.0"), port(number)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} in {text!r}") from None


def bind(text: str) -> str:
    split_bind(text)
    return text


def cores() -> int:
    """The CPUs this process may run on (a container's or taskset's share), the default number of workers."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", type=directory, help="image directory (sets FILESYSTEM_PREFIX; default: FILESYSTEM_PREFIX)"
    )


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``pyiip serve``'s options."""
    parser.add_argument(
        "--host", type=host, default="127.0.0.1", help="address to listen on (0.0.0.0: every IPv4 address)"
    )
    parser.add_argument("--port", type=port, default=8000, help="TCP port")
    parser.add_argument("--workers", type=workers, default=0, help="processes, each one thread; 0: one per core")
    root(parser)


def fcgi_arguments(parser: argparse.ArgumentParser) -> None:
    """The FastCGI options, the same for ``pyiip fcgi`` and ``pyiip.fcgi`` (iipsrv's)."""
    parser.add_argument(
        "--bind", type=bind, help="HOST:PORT or /path/to/socket to listen on (default: the socket on fd 0)"
    )
    parser.add_argument("--backlog", type=positive, default=2048, help="listen backlog of a --bind socket")
    parser.add_argument("--mode", type=mode, help="octal permissions of a --bind unix socket, e.g. 660")
    parser.add_argument(
        "--workers", type=workers, default=1, help="processes on the socket, restarted if they die; 0: one per core"
    )
