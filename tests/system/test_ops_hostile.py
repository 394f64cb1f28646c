"""Issue 15, operations: /health without blocking probes and without details for remote clients,
an index page that survives FIFOs, odd names and large roots, Vary for the headers a reply reads,
and MAX_PROCESS_MEMORY in every shipped configuration.

Real components: a memcached stopped with SIGSTOP, a FIFO made with mkfifo, files named with latin-1
bytes, 25,000 files, lighttpd running the shipped conf/lighttpd file with clients on two loopback
source addresses.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.integration.test_ops_hostile import call, lighttpd_settings
from tests.support.deploy import CONF, DEPLOY, lighttpd_conf, nginx_command, nginx_conf, process, settings_env
from tests.support.mcserver import memcached
from tests.support.servers import VENV_BIN, free_port, get, http_server, require, wait_for_port

HEALTH_BOUND = 0.3  # seconds: the old probe waited 0.5 s per stopped memcached
REMOTE = "203.0.113.7"  # TEST-NET-3: a client that is not on this host


# --- /health -------------------------------------------------------------------------------------


def test_health_does_not_wait_on_a_stopped_memcached(images, make_app):
    """SIGSTOPped memcached: /health answers at once, and says degraded once requests found it failing."""
    with memcached() as daemon:
        app = make_app(images.root, MEMCACHED_SERVERS=daemon.address, MAX_IMAGE_CACHE_SIZE="0")
        daemon.pause()
        try:
            for _ in range(3):
                started = time.perf_counter()
                status, _, body = call(app, "/health", REMOTE_ADDR="127.0.0.1")
                assert time.perf_counter() - started < HEALTH_BOUND
                assert status == 200 and json.loads(body)["status"] == "ok"  # no request used it yet
            assert call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&WID=120&CVT=jpeg")[0] == 200  # served from the file
            started = time.perf_counter()
            status, _, body = call(app, "/health", REMOTE_ADDR="127.0.0.1")
            assert time.perf_counter() - started < HEALTH_BOUND
        finally:
            daemon.resume()
    reply = json.loads(body)
    assert status == 200 and reply["status"] == "degraded"
    assert reply["checks"]["memcached"] == [
        {"server": daemon.address, "ok": False, "error": reply["checks"]["memcached"][0]["error"]}
    ]


def test_health_details_only_for_local_clients(images, make_app):
    with memcached() as daemon:
        app = make_app(images.root, MEMCACHED_SERVERS=daemon.address)
        for remote in (REMOTE, "10.0.0.2", "127.0.0.2", "::ffff:192.0.2.1"):
            status, _, body = call(app, "/health", REMOTE_ADDR=remote)
            assert status == 200 and json.loads(body) == {"status": "ok"}, remote
            assert str(daemon.port).encode() not in body and str(images.root).encode() not in body
        for local in ("127.0.0.1", "::1"):
            reply = json.loads(call(app, "/health", REMOTE_ADDR=local)[2])
            assert reply["checks"]["memcached"] == [{"server": daemon.address, "ok": True}], local
        root = images.root
    status, _, body = call(make_app(root / "gone"), "/fcgi-bin/iipsrv.fcgi?HEALTH", REMOTE_ADDR=REMOTE)
    assert status == 503 and json.loads(body) == {"status": "fail"}  # the status alone, still true


def lighttpd_env(images, directory: Path) -> dict[str, str]:
    """The deploy tests' settings, plus PYTHONPATH: lighttpd gives its processes bin-environment alone."""
    env = settings_env(images.root, directory / "pyiip.log")
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.path.abspath(os.environ["PYTHONPATH"])  # the code under test, not an install
    return env


def get_from(source: str, url: str) -> tuple[int, bytes]:
    """GET with the client socket bound to ``source``: what the server sees as REMOTE_ADDR."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET", parts.path)
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def test_shipped_lighttpd_keeps_metrics_and_health_details_local(images, tmp_path):
    """conf/lighttpd as shipped: from 127.0.0.2 /metrics is 403 and /health the status alone."""
    binary = require("lighttpd")
    port = free_port()
    config_file = lighttpd_conf(tmp_path, port, lighttpd_env(images, tmp_path))
    with process([binary, "-D", "-f", str(config_file)], lambda: wait_for_port(port, 0.2)):
        assert_local_only(f"http://127.0.0.1:{port}")


def assert_local_only(base: str) -> None:
    """A client on 127.0.0.2 gets 403 for /metrics and the bare status of /health; 127.0.0.1 gets both."""
    status, body = get_from("127.0.0.2", f"{base}/metrics")
    assert status == 403 and b"pyiip_" not in body
    status, body = get_from("127.0.0.2", f"{base}/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, body = get_from("127.0.0.1", f"{base}/metrics")
    assert status == 200 and b"pyiip_requests_total{" in body
    status, body = get_from("127.0.0.1", f"{base}/health")
    assert status == 200 and json.loads(body)["checks"]["image_root"] == {"ok": True}


def connect_unix(path: Path) -> None:
    """Raises OSError until a server listens on the socket."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))


def test_shipped_nginx_keeps_metrics_and_health_details_local(images):
    """conf/nginx as shipped, a `pyiip.fcgi --bind` behind it: the same from 127.0.0.2 and 127.0.0.1."""
    require("nginx")
    directory = Path(tempfile.mkdtemp(prefix="pyiip-nginx-ops-"))  # pytest's are 0700: www-data's workers
    directory.chmod(0o755)
    try:
        sock = directory / "pyiip.sock"
        env = {**os.environ, **lighttpd_env(images, directory)}
        backend = [str(VENV_BIN / "pyiip.fcgi"), "--bind", str(sock), "--mode", "666"]
        with process(backend, lambda: connect_unix(sock), env=env):
            port = free_port()
            config_file = nginx_conf(directory, port, sock)
            with process(nginx_command(directory, config_file), lambda: wait_for_port(port, 0.2)):
                assert_local_only(f"http://127.0.0.1:{port}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- the index page ------------------------------------------------------------------------------


@pytest.fixture
def hostile_root(images, tmp_path):
    """An image root holding a FIFO, a link to a FIFO outside, and a name in latin-1 bytes."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "rgb.tif").write_bytes((images.root / "rgb.tif").read_bytes())
    os.mkfifo(root / "pipe")  # extension-less: the old listing opened it to read its magic bytes
    os.mkfifo(outside / "pipe")
    os.symlink(outside / "pipe", root / "outpipe")
    os.mkfifo(root / "pipe.tif")
    os.symlink(outside / "pipe", root / "outpipe.tif")
    os.symlink(root / "pipe", root / "inpipe")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.tif"), "wb") as handle:
        handle.write((images.root / "rgb.tif").read_bytes())
    return root


def test_index_survives_fifos_and_latin1_names(hostile_root):
    port, context = http_server(hostile_root, workers=1)
    with context:
        base = f"http://127.0.0.1:{port}"
        for path in ("/", "/viewer.html", "/index.html"):
            status, _, body = get(base + path, timeout=10)  # the old listing hung here on the FIFOs
            assert status == 200, path
            page = body.decode()
            assert "rgb.tif" in page and "caf\\xe9.tif" in page
            assert "pipe" not in page
        # The odd name is shown escaped, not linked to the viewer (which works on text); its IIIF and IIP
        # links carry its bytes and serve it.
        assert 'class="image" href="/viewer.html?image=caf' not in page
        assert get(f"{base}/iiif/3/caf%E9.tif/info.json")[0] == 200
        assert get(f"{base}/fcgi-bin/iipsrv.fcgi?FIF=caf%E9.tif&OBJ=Max-size")[0] == 200
        assert get(f"{base}/health", timeout=10)[0] == 200  # the worker is still there


# --- Vary -----------------------------------------------------------------------------------------


# --- MAX_PROCESS_MEMORY in every shipped configuration ---------------------------------------------


def test_the_limit_is_what_the_shipped_lighttpd_processes_run_under(images, tmp_path):
    """The FastCGI processes lighttpd starts from conf/lighttpd have RLIMIT_AS set from the file."""
    binary = require("lighttpd")
    port = free_port()
    config_file = lighttpd_conf(tmp_path, port, lighttpd_env(images, tmp_path), procs=1)
    wanted = int(lighttpd_settings((CONF / "lighttpd" / "pyiip.conf").read_text())["MAX_PROCESS_MEMORY"]) << 20
    with process([binary, "-D", "-f", str(config_file)], lambda: wait_for_port(port, 0.2)) as server:
        status, _, body = get(f"http://127.0.0.1:{port}/health")
        assert status == 200
        pid = json.loads(body)["pid"]
        limits = Path(f"/proc/{pid}/limits").read_text()
        soft = re.search(r"^Max address space\s+(\S+)", limits, re.M)
        assert soft and int(soft.group(1)) == wanted, limits
        assert server.poll() is None


def test_spawn_fcgi_wrapper_reads_the_environment_file():
    """deploy/pyiip-spawn-fcgi sources deploy/default/pyiip: the limit reaches nginx's processes."""
    wrapper = (DEPLOY / "pyiip-spawn-fcgi").read_text()
    assert "/etc/default/pyiip" in wrapper
    done = subprocess.run(
        ["sh", "-c", f'set -a; . "{DEPLOY / "default" / "pyiip"}"; echo "$MAX_PROCESS_MEMORY"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(done.stdout) >= 1536
