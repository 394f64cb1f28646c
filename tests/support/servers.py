"""Start and stop real servers on free loopback ports, always by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def running(command: list[str], port: int, env: dict[str, str] | None = None, **kw) -> Iterator[subprocess.Popen]:
    """Run a server until the block ends; the process is stopped by its PID."""
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, **kw)
    try:
        wait_for_port(port, process=process)
        yield process
    finally:
        stop(process)


def http_server(root: Path, env: dict[str, str] | None = None, workers: int = 2):
    """`pyiip serve` on a free port; yields (process, base URL)."""
    port = free_port()
    command = [str(VENV_BIN / "pyiip"), "serve", "--port", str(port), "--workers", str(workers), "--root", str(root)]
    return port, running(command, port, {"VERBOSITY": "0", **(env or {})})


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET", timeout: float = 30):
    """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def require(program: str) -> str:
    """The path of a system program the test needs (installed by `make test`)."""
    import pytest

    found = shutil.which(program) or next(
        (p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}") if os.path.exists(p)), None
    )
    if found is None:
        pytest.fail(f"{program} is not installed: run `make test`, which installs it")
    return found


def fastcgi_settings(directory: Path, root: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the FastCGI processes of lighttpd_config: log in ``directory``, images in ``root``."""
    return {
        "FILESYSTEM_PREFIX": f"{root}/",
        "VERBOSITY": "1",
        "LOGFILE": f"{directory}/pyiip.log",
        "JPEG_QUALITY": "90",
        **(env or {}),
    }


def lighttpd_config(
    directory: Path, port: int, root: Path, procs: int = 2, env: dict[str, str] | None = None, fcgi_port: int = 0
) -> Path:
    """The conf/lighttpd.conf recipe, on a free port with a private socket (tests and scripts/soak.py).

    With ``fcgi_port``, lighttpd spawns nothing and forwards to a pyiip.fcgi already listening there.
    """
    config = directory / "lighttpd.conf"
    settings = fastcgi_settings(directory, root, env)
    environment = ", ".join(f'"{key}" => "{value}"' for key, value in settings.items())
    backend = (
        f'"host" => "127.0.0.1", "port" => {fcgi_port}'
        if fcgi_port
        else f'"socket" => "{directory}/pyiip.sock", "bin-path" => "{VENV_BIN}/pyiip.fcgi", '
        f'"bin-environment" => ( {environment} ), "min-procs" => {procs}, "max-procs" => {procs}'
    )
    config.write_text(
        f"""
server.modules = ( "mod_fastcgi" )
server.document-root = "{directory}"
server.bind = "127.0.0.1"
server.port = {port}
server.pid-file = "{directory}/lighttpd.pid"
server.errorlog = "{directory}/error.log"
server.breakagelog = "{directory}/breakage.log"
fastcgi.server = ( "/" => (( {backend}, "check-local" => "disable" )) )
"""
    )
    return config


def children(pid: int, marker: bytes = b"") -> list[int]:
    """PIDs of the processes ``pid`` started whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and marker in cmdline:
                found.append(int(entry.name))
    return found


def fastcgi_children(pid: int) -> list[int]:
    """PIDs of the pyiip.fcgi processes a web server (``pid``) spawned."""
    return children(pid, b"pyiip.fcgi")


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` size in KiB (VmRSS, VmHWM...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")
