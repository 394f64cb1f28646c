"""The shipped web-server recipes, run for real on free loopback ports.

lighttpd spawning 2 processes (conf/lighttpd), nginx with 2 processes
under spawn-fcgi (conf/nginx + deploy/pyiip-spawn-fcgi, and iipsrv's plain
``spawn-fcgi -F 2``), Apache with mod_fcgid (conf/apache2). For each: the
request set answers the same bytes as the built-in HTTP mode, every other
endpoint of the HTTP mode (pages, static files, Deep Zoom, Zoomify, probes)
reaches pyiip, and a process killed during a load is replaced while the
load completes. conf/openlitespeed is not run: OpenLiteSpeed is not packaged
for Debian.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.deploy import (
    DEPLOY,
    alive,
    apache_conf,
    apache_script,
    apache_user,
    descendants,
    every_endpoint,
    lighttpd_conf,
    load_and_kill,
    nginx_command,
    nginx_conf,
    process,
    same_bytes,
    settings_env,
    status_from,
    wait_for,
    warm_up,
    world_readable_copy,
)
from tests.support.servers import VENV_BIN, free_port, get, http_server, require, wait_for_port

MARKER = b"pyiip.fcgi"


def _connect_unix(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    """The built-in HTTP mode with the same settings: what every front end must answer."""
    log = tmp_path_factory.mktemp("http-mode") / "pyiip.log"
    port, context = http_server(images.root, settings_env(images.root, log))
    with context:
        yield f"http://127.0.0.1:{port}"


# --- lighttpd -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lighttpd(images, tmp_path_factory):
    binary = require("lighttpd")
    directory = tmp_path_factory.mktemp("lighttpd-conf")
    port = free_port()
    config = lighttpd_conf(directory, port, settings_env(images.root, directory / "pyiip.log"))
    assert subprocess.run([binary, "-tt", "-f", str(config)], capture_output=True).returncode == 0
    with process([binary, "-D", "-f", str(config)], lambda: wait_for_port(port, 0.2)) as server:
        yield f"http://127.0.0.1:{port}", lambda: descendants(server.pid, MARKER), directory


def test_lighttpd_same_bytes_as_http_mode(lighttpd, reference):
    base, processes, directory = lighttpd
    assert wait_for(lambda: len(processes()) == 2), processes()
    same_bytes(base, reference)
    assert "kind=iip_tile status=200" in (directory / "pyiip.log").read_text()


def test_lighttpd_health_and_metrics(lighttpd):
    base, _, _ = lighttpd
    status, headers, body = get(f"{base}/health")
    assert status == 200 and b'"status": "ok"' in body and headers["Cache-Control"] == "no-cache"
    assert get(f"{base}/fcgi-bin/iipsrv.fcgi?HEALTH")[0] == 200
    status, headers, body = get(f"{base}/metrics")  # 127.0.0.1 is allowed
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"pyiip_requests_total{" in body


def test_lighttpd_routes_every_endpoint(lighttpd, reference):
    base, _, _ = lighttpd
    every_endpoint(base, reference)
    assert status_from(base, "/metrics", "127.0.0.2") == 403  # not a local client
    assert status_from(base, "/health", "127.0.0.2") == 200


def test_lighttpd_respawns_a_killed_process_under_load(lighttpd):
    """lighttpd gives each process its own socket and may send it several requests: those fail with it.

    Every failure must be a request lighttpd had sent to the killed process
    ("response not received, request sent ... on socket" of that process in
    its log), none one of the surviving process's.
    """
    base, processes, directory = lighttpd
    log = directory / "error.log"
    before = log.read_text().count("response not received")
    failed = load_and_kill(base, processes, clients=4, in_flight=4)
    lost = re.findall(r"response not received, request sent: \d+ on socket: (\S+)", log.read_text())[before:]
    assert len(lost) == len(failed) and len(set(lost)) <= 1, (failed, lost)


# --- nginx + spawn-fcgi ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def public_dir():
    """A directory nginx's unprivileged workers (www-data) can enter: pytest's are mode 0700."""
    directory = Path(tempfile.mkdtemp(prefix="pyiip-nginx-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def public_subdir(base: Path, name: str) -> Path:
    directory = base / name
    directory.mkdir()
    directory.chmod(0o755)
    return directory


def spawn_fcgi_env(images, directory: Path, sock: Path) -> dict[str, str]:
    """deploy/pyiip-spawn-fcgi's settings: socket group www-data when root (as in production)."""
    env = {
        **os.environ,
        **settings_env(images.root, directory / "pyiip.log"),
        "PYIIP_DEFAULTS": "",
        "PYIIP_FCGI": str(VENV_BIN / "pyiip.fcgi"),
        "PYIIP_SOCKET": str(sock),
        "PYIIP_WORKERS": "2",
        "PYIIP_PIDFILE": str(directory / "pyiip.pid"),
        "PYIIP_SOCKET_GROUP": "www-data" if os.geteuid() == 0 else "",
        "SPAWN_FCGI": require("spawn-fcgi"),
    }
    return env


@pytest.fixture(scope="module")
def nginx(images, public_dir):
    """nginx in front of deploy/pyiip-spawn-fcgi (spawn-fcgi, then `pyiip.fcgi --workers 2`)."""
    require("nginx")
    directory = public_subdir(public_dir, "wrapper")
    sock = directory / "pyiip.sock"
    env = spawn_fcgi_env(images, directory, sock)
    wrapper = [str(DEPLOY / "pyiip-spawn-fcgi"), "run"]
    with process(wrapper, lambda: _connect_unix(sock), env=env) as backend:
        port = free_port()
        config = nginx_conf(directory, port, sock)
        with process(nginx_command(directory, config), lambda: wait_for_port(port, 0.2)):
            yield f"http://127.0.0.1:{port}", lambda: descendants(backend.pid, MARKER), sock, directory


def test_nginx_spawn_fcgi_same_bytes_as_http_mode(nginx, reference):
    base, processes, sock, _ = nginx
    assert wait_for(lambda: len(processes()) == 2), processes()
    if os.geteuid() == 0:  # the recipe's permissions: group www-data, 0660
        status = sock.stat()
        assert oct(status.st_mode & 0o777) == "0o660" and status.st_gid == grp.getgrnam("www-data").gr_gid
    same_bytes(base, reference)
    assert get(f"{base}/health")[0] == 200


def test_nginx_routes_every_endpoint(nginx, reference):
    base, _, _, _ = nginx
    every_endpoint(base, reference)
    assert status_from(base, "/metrics", "127.0.0.2") == 403  # not a local client
    assert status_from(base, "/health", "127.0.0.2") == 200


def test_nginx_spawn_fcgi_replaces_a_killed_process_under_load(nginx):
    base, processes, _, directory = nginx
    load_and_kill(base, processes)
    assert "starting another" in (directory / "pyiip.log").read_text()


def test_spawn_fcgi_start_stop_reload(images, tmp_path, public_dir):
    """The wrapper's daemon mode: start (idempotent), reload (SIGHUP), stop (SIGTERM, all exit)."""
    sock = public_subdir(public_dir, "daemon") / "pyiip.sock"
    env = spawn_fcgi_env(images, tmp_path, sock)
    wrapper = str(DEPLOY / "pyiip-spawn-fcgi")
    assert subprocess.run([wrapper, "start"], env=env, timeout=30).returncode == 0
    try:
        pid = int((tmp_path / "pyiip.pid").read_text())
        log = tmp_path / "pyiip.log"
        assert wait_for(lambda: log.exists() and log.read_text().count("FastCGI process") == 2)
        assert subprocess.run([wrapper, "start"], env=env, timeout=30).returncode == 0  # already running
        assert int((tmp_path / "pyiip.pid").read_text()) == pid
        assert subprocess.run([wrapper, "reload"], env=env, timeout=30).returncode == 0
        assert wait_for(lambda: log.read_text().count("SIGHUP: caches emptied") == 2)
        workers = descendants(pid, MARKER)
    finally:
        assert subprocess.run([wrapper, "stop"], env=env, timeout=60).returncode == 0
    assert not alive(pid) and not any(alive(w) for w in workers)


def test_nginx_plain_spawn_fcgi_two_processes(images, tmp_path, public_dir, reference):
    """iipsrv's own recipe: `spawn-fcgi -F 2` (no supervision), two processes on one socket."""
    spawn = require("spawn-fcgi")
    directory = public_subdir(public_dir, "plain")
    sock = directory / "pyiip.sock"
    pidfile = tmp_path / "spawn.pid"
    command = [spawn, "-s", str(sock), "-M", "0660", "-F", "2", "-P", str(pidfile)]
    if os.geteuid() == 0:
        command += ["-G", "www-data"]
    env = {**os.environ, **settings_env(images.root, tmp_path / "pyiip.log")}
    subprocess.run([*command, "--", str(VENV_BIN / "pyiip.fcgi")], env=env, check=True, capture_output=True)
    pids = [int(p) for p in pidfile.read_text().split()]
    try:
        assert len(pids) == 2
        port = free_port()
        config = nginx_conf(directory, port, sock)
        with process(nginx_command(directory, config), lambda: wait_for_port(port, 0.2)):
            same_bytes(f"http://127.0.0.1:{port}", reference)
    finally:
        for pid in pids:
            os.kill(pid, 15)
    assert wait_for(lambda: not any(alive(p) for p in pids), timeout=10)


# --- Apache + mod_fcgid ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apache(images):
    """Apache 2.4 + mod_fcgid with conf/apache2/pyiip.conf; as root, its children run as www-data.

    Apache refuses to run scripts as root, so a root-run test needs
    everything the children touch readable by www-data: the image root is
    copied into a fresh world-readable directory, and the venv used as is if
    www-data can run it, else through a wrapper (tests/deploy.apache_script).
    """
    binary = require("apache2")
    base, remove = world_readable_copy(images.root)
    try:
        directory = base / "apache"
        directory.mkdir()
        logs = base / "logs"
        logs.mkdir()
        user = apache_user()
        if user:
            shutil.chown(logs, user)
        port = free_port()
        env = settings_env(base / "images", logs / "pyiip.log")
        script = apache_script(directory, user)
        config = apache_conf(directory, port, env, script, user)
        check = subprocess.run([binary, "-t", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        marker = script.name.encode()
        with process([binary, "-f", str(config), "-DFOREGROUND"], lambda: wait_for_port(port, 0.2)) as server:
            base_url = f"http://127.0.0.1:{port}"
            yield base_url, lambda: descendants(server.pid, marker), base / "images", logs
    finally:
        remove()


@pytest.fixture(scope="module")
def apache_reference(apache):
    """The HTTP mode on Apache's copy of the images (same mtimes, same bytes)."""
    _, _, root, logs = apache
    port, context = http_server(root, settings_env(root, logs / "http-mode.log"))
    with context:
        yield f"http://127.0.0.1:{port}"


def test_apache_fcgid_same_bytes_as_http_mode(apache, apache_reference):
    base, _, _, logs = apache
    same_bytes(base, apache_reference)
    assert get(f"{base}/health")[0] == 200
    assert "kind=iip_tile status=200" in (logs / "pyiip.log").read_text()


def test_apache_routes_every_endpoint(apache, apache_reference):
    """(``Require local`` admits all of 127.0.0.0/8: the metrics' denial is not checked from 127.0.0.2.)"""
    base, _, _, _ = apache
    every_endpoint(base, apache_reference)


def test_apache_fcgid_restarts_a_killed_process_under_load(apache):
    base, processes, _, _ = apache
    warm_up(base, lambda: len(processes()), 2)
    load_and_kill(base, processes, on_demand=True)
