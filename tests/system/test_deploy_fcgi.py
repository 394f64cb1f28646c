"""pyiip.fcgi as process managers see it: graceful SIGTERM, the --workers supervisor, systemd socket
activation, the FastCGI probe, and the deploy/ files themselves."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import simplejpeg

from pyiip.server import fcgi_client
from tests.support.deploy import DEPLOY, REPO, alive, descendants, wait_for
from tests.support.servers import VENV_BIN, free_port, wait_for_port

FCGI = str(VENV_BIN / "pyiip.fcgi")
SLOW_CVT = "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&WID=4000&CVT=jpeg"  # about a second of work
TILE = "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=2,1"


def start(images, tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.Popen, str, Path]:
    """`pyiip.fcgi --bind <unix socket> ARGS`, ready to answer; returns (process, socket, log)."""
    sock, log = str(tmp_path / "pyiip.sock"), tmp_path / "pyiip.log"
    environ = {
        **os.environ,
        "FILESYSTEM_PREFIX": f"{images.root}/",
        "VERBOSITY": "2",
        "LOGFILE": str(log),
        **env,
    }
    process = subprocess.Popen([FCGI, "--bind", sock, *args], env=environ)
    assert wait_for(lambda: _answers(sock) or process.poll() is not None, timeout=30)
    assert process.poll() is None, process.returncode
    return process, sock, log


def _answers(sock: str) -> bool:
    try:
        return fcgi_client.request(sock, "/health", timeout=5).status == 200
    except OSError:
        return False


def stopped(process: subprocess.Popen, timeout: float = 10) -> int:
    try:
        return process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def in_cpu_work(pid: int) -> float:
    """CPU seconds used so far by ``pid`` (utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- graceful stop --------------------------------------------------------------------------------


def test_sigterm_completes_the_open_request_then_exits(images, tmp_path):
    """SIGTERM after the web server has begun a request: the request is answered, then the process exits."""
    process, sock, log = start(images, tmp_path)
    with fcgi_client.connect(sock) as conn:
        fcgi_client.begin(conn, fcgi_client.environ_for(TILE))  # accepted, parameters read, stdin open
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert process.poll() is None  # still there for its request
        reply = fcgi_client.finish(conn)
    assert reply.status == 200 and reply.header("content-type") == "image/jpeg"
    assert simplejpeg.decode_jpeg(reply.body).shape == (256, 256, 3)
    assert stopped(process) == 0
    assert "stopping" in log.read_text()


def test_sigterm_during_a_slow_cvt(images, tmp_path):
    """SIGTERM while the process renders a large CVT: the reply is complete, then the process exits."""
    process, sock, _ = start(images, tmp_path)
    result: dict = {}

    def ask() -> None:
        result["reply"] = fcgi_client.request(sock, SLOW_CVT, timeout=120)
        result["at"] = time.monotonic()

    before = in_cpu_work(process.pid)
    client = threading.Thread(target=ask)
    client.start()
    assert wait_for(lambda: in_cpu_work(process.pid) > before + 0.05, step=0.01)  # it is working on it
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    client.join(120)
    reply = result["reply"]
    assert result["at"] > signalled  # the reply came after the signal...
    assert reply.status == 200 and int(reply.header("content-length")) == len(reply.body)
    assert simplejpeg.decode_jpeg_header(reply.body)[1] == 4000  # ...and whole
    assert stopped(process) == 0


def test_sigterm_closes_a_kept_alive_connection(images, tmp_path):
    """A front end holding the connection (FCGI_KEEP_CONN, OpenLiteSpeed) does not keep a stopped process alive."""
    process, sock, _ = start(images, tmp_path)
    with fcgi_client.connect(sock) as conn:
        fcgi_client.begin(conn, fcgi_client.environ_for(TILE), keep_conn=True)
        assert fcgi_client.finish(conn).status == 200
        fcgi_client.begin(conn, fcgi_client.environ_for(TILE), request_id=2, keep_conn=True)
        process.send_signal(signal.SIGTERM)
        assert fcgi_client.finish(conn, request_id=2).status == 200  # in flight: answered
        conn.settimeout(5)
        assert conn.recv(1) == b""  # then the process ends the connection the front end kept...
    assert stopped(process, timeout=5) == 0  # ...and exits once the front end closes its side


# --- the --workers supervisor ---------------------------------------------------------------------


def test_workers_supervisor(images, tmp_path):
    """--workers 2: two accepters on one socket, a killed one replaced, SIGTERM stops all, orphans do not linger."""
    process, sock, log = start(images, tmp_path, "--workers", "2")
    workers = lambda: descendants(process.pid, b"pyiip.fcgi")  # noqa: E731
    try:
        assert wait_for(lambda: len(workers()) == 2)
        # Both have started (and logged it) before one is killed: the count below relies on it.
        assert wait_for(lambda: log.read_text().count("FastCGI process") >= 2)
        first = workers()
        os.kill(first[0], signal.SIGKILL)
        assert wait_for(lambda: len(workers()) == 2 and first[0] not in workers())
        assert fcgi_client.request(sock, TILE).status == 200
        assert "killed by signal 9; starting another" in log.read_text()
        # HUP reaches every worker: each empties its caches and keeps serving.
        assert wait_for(lambda: log.read_text().count("FastCGI process") >= 3)
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: log.read_text().count("SIGHUP: caches emptied") == 2)
        assert len(workers()) == 2
        current = workers()
        process.send_signal(signal.SIGTERM)
        assert stopped(process) == 0
        assert wait_for(lambda: not any(alive(pid) for pid in current), timeout=5)
    finally:
        for pid in [process.pid, *workers()] if process.poll() is None else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_workers_exit_with_a_killed_supervisor(images, tmp_path):
    process, _, _ = start(images, tmp_path, "--workers", "2")
    assert wait_for(lambda: len(descendants(process.pid, b"pyiip.fcgi")) == 2)
    workers = descendants(process.pid, b"pyiip.fcgi")
    process.kill()
    process.wait()
    assert wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10)  # PR_SET_PDEATHSIG


# --- systemd socket activation --------------------------------------------------------------------

LAUNCHER = """
import os, socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.bind(sys.argv[1]); sock.listen(16)
os.dup2(sock.fileno(), 3); os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])
"""


def _activators() -> list[str]:
    found = ["emulated"]
    if shutil.which("systemd-socket-activate"):
        found.append("systemd-socket-activate")
    return found


@pytest.mark.parametrize("activator", _activators())
def test_socket_activation(images, tmp_path, activator):
    """The socket on fd 3 with LISTEN_FDS/LISTEN_PID, as pyiip.socket gives it to pyiip.service."""
    sock = str(tmp_path / "activated.sock")
    if activator == "emulated":  # what systemd does: bind, fd 3, LISTEN_PID = the exec'd process
        command = [sys.executable, "-c", LAUNCHER, sock, FCGI, "--workers", "2"]
    else:
        # It passes no environment but the names given: the unit's Environment=/EnvironmentFile= lines.
        names = [arg for name in ("FILESYSTEM_PREFIX", "VERBOSITY", "LOGFILE") for arg in ("-E", name)]
        command = ["systemd-socket-activate", "-l", sock, *names, FCGI, "--workers", "2"]
    env = {**os.environ, "FILESYSTEM_PREFIX": f"{images.root}/", "VERBOSITY": "2", "LOGFILE": "-"}  # start at INFO
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: os.path.exists(sock), timeout=10)
        reply = fcgi_client.request(sock, TILE, timeout=60)  # may start the service (systemd-socket-activate)
        assert reply.status == 200
        assert wait_for(lambda: len(descendants(process.pid, b"pyiip.fcgi")) == 2)
        process.send_signal(signal.SIGTERM)
        assert stopped(process) == 0
        log = process.stderr.read()
        assert "started 2 FastCGI workers" in log and "no FastCGI socket" not in log
    finally:
        if process.poll() is None:
            process.kill()


# --- the probe ------------------------------------------------------------------------------------


def test_fcgi_client_probe(images, tmp_path):
    """`python -m pyiip.server.fcgi_client ADDRESS [URI]`: a container HEALTHCHECK for FastCGI-only deployments."""
    process, sock, _ = start(images, tmp_path)
    try:
        probe = [sys.executable, "-m", "pyiip.server.fcgi_client"]
        result = subprocess.run([*probe, sock], capture_output=True, text=True)
        assert result.returncode == 0 and '"status": "ok"' in result.stdout
        assert subprocess.run([*probe, "-q", sock, "/nothing-here"]).returncode == 1
        assert subprocess.run([*probe, "-q", str(tmp_path / "none.sock")]).returncode == 2
        port = free_port()
        assert subprocess.run([*probe, "-q", f"127.0.0.1:{port}"]).returncode == 2
    finally:
        process.terminate()
        stopped(process)


def test_fcgi_bind_tcp_and_probe(images):
    port = free_port()
    env = {**os.environ, "FILESYSTEM_PREFIX": f"{images.root}/", "VERBOSITY": "0"}
    process = subprocess.Popen([FCGI, "--bind", f"127.0.0.1:{port}"], env=env)
    try:
        wait_for_port(port, process=process)
        reply = fcgi_client.request(f"127.0.0.1:{port}", "/fcgi-bin/iipsrv.fcgi?HEALTH")
        assert reply.status == 200 and b'"status": "ok"' in reply.body
    finally:
        process.terminate()
        assert stopped(process) == 0


# --- the deploy/ files ----------------------------------------------------------------------------


def test_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    for unit in ("pyiip.socket", "pyiip.service"):
        text = (DEPLOY / "systemd" / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/opt/pyiip/venv/bin/pyiip.fcgi", FCGI))
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "pyiip.socket"), str(tmp_path / "pyiip.service")],
        capture_output=True,
        text=True,
    )
    complaints = [line for line in result.stderr.splitlines() if "pyiip" in line]
    assert result.returncode == 0 and not complaints, result.stderr


def test_environment_file_is_read_by_systemd_and_sh():
    """deploy/default/pyiip: KEY=value lines only (systemd EnvironmentFile= and `sh -a .` read it alike)."""
    text = (DEPLOY / "default" / "pyiip").read_text()
    names = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z_]+=[^\s\"'$`;&|]*", line), line
            names.append(line.split("=")[0])
    from pyiip.config import _VARIABLES

    assert set(names) <= set(_VARIABLES), set(names) - set(_VARIABLES)
    shell = subprocess.run(
        ["sh", "-c", 'set -a; . "$1"; echo "$FILESYSTEM_PREFIX|$CORS"', "sh", str(DEPLOY / "default" / "pyiip")],
        capture_output=True,
        text=True,
    )
    assert shell.stdout.strip() == "/srv/images/|*"


def test_sysctl_settings():
    """deploy/sysctl.d: every active setting is `key = value`, explained, and names a real kernel key."""
    text = (DEPLOY / "sysctl.d" / "60-pyiip.conf").read_text()
    settings = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(settings) >= 10
    missing = []
    for line in settings:
        match = re.fullmatch(r"-?([a-z0-9_.]+) = (\S+(?: \S+)*)", line)
        assert match, line
        key = match.group(1)
        proc = Path("/proc/sys") / key.replace(".", "/")
        # Optional keys (modules not loaded) carry sysctl's "-" prefix: ignored when absent.
        if not line.startswith("-") and not proc.exists():
            missing.append(key)
    if missing and not Path("/proc/sys/net/core/netdev_max_backlog").exists():
        pytest.skip(f"a restricted /proc/sys (a container?) lacks {missing}")
    assert not missing, f"not kernel settings here: {missing}"
    assert "somaxconn" in text and "tcp_tw_recycle" in text  # the seed's list, with the removed key explained


def test_container_file():
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^FROM debian:\S+", text, re.M)
    user = re.search(r"^USER (\S+)", text, re.M)
    assert user and user.group(1) not in ("root", "0")
    assert re.search(r"^VOLUME \[\"/images\"\]", text, re.M)
    assert "pyiip.server.fcgi_client" in text and "HEALTHCHECK" in text
    assert (REPO / ".dockerignore").exists() or (DEPLOY / "Containerfile.dockerignore").exists()


def test_spawn_fcgi_wrapper_is_posix_sh():
    wrapper = DEPLOY / "pyiip-spawn-fcgi"
    assert os.access(wrapper, os.X_OK)
    assert subprocess.run(["sh", "-n", str(wrapper)]).returncode == 0
    dash = shutil.which("dash")  # Debian's /bin/sh: no bash-only syntax
    if dash:
        assert subprocess.run([dash, "-n", str(wrapper)]).returncode == 0
    env = {**os.environ, "PYIIP_DEFAULTS": ""}
    result = subprocess.run([str(wrapper), "bogus"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "usage" in result.stderr
