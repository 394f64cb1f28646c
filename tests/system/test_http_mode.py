"""`pyiip serve` as `make run` starts it, and how both servers stop (issue 17).

Idle for 60 s it takes under 1 % of a core (the issue's own measure: process CPU time from
/proc, supervisor and workers); its workers default to the cores; a worker killed is replaced;
a terminal's Ctrl-C (SIGINT to the whole process group) lets the request in flight finish; a
``--bind`` unix socket is removed on exit, and ``--bind`` says where it listens.
Keep-alive, idle floods and slowloris clients, SIGTERM and SIGHUP: test_http_hostile.py,
test_http_server.py, test_deploy_fcgi.py.
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyiip.server import fcgi_client
from pyiip.server.options import cores
from tests.support.deploy import REPO, descendants, wait_for
from tests.support.servers import VENV_BIN, free_port, get, stop, wait_for_port
from tests.system.test_deploy_fcgi import SLOW_CVT, TILE, stopped
from tests.system.test_faults import cpu_ticks

IDLE_SECONDS = 60
FCGI = str(VENV_BIN / "pyiip.fcgi")


def make_run_command(data: Path, port: int) -> tuple[dict[str, str], list[str]]:
    """The command `make run` runs for DATA and PORT, as (variables it sets, argv); read with make -n,
    so no demo data is made."""
    planned = subprocess.run(
        ["make", "-n", "--no-print-directory", "run", f"DATA={data}", f"PORT={port}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    words = shlex.split(next(line for line in planned if " serve " in line))
    settings = dict(word.split("=", 1) for word in itertools.takewhile(lambda w: "=" in w, words))
    return settings, words[len(settings) :]


def workers(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture(scope="module")
def make_run(images) -> Iterator[tuple[subprocess.Popen, int]]:
    """`make run`'s command line over the test images: (supervisor, port)."""
    port = free_port()
    settings, command = make_run_command(images.root, port)
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **settings}, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, process=process)
        yield process, port
    finally:
        stop(process)


def test_make_run_idles_at_no_cpu_with_a_worker_per_core(make_run):
    process, port = make_run
    assert process.stderr is not None
    assert process.stderr.readline() == f"pyiip serving http://127.0.0.1:{port}/ with {cores()} worker(s)\n"
    assert wait_for(lambda: len(workers(process.pid)) == cores())
    for _ in range(2 * cores()):  # every worker has answered, or is ready to: its start-up is over
        assert get(f"http://127.0.0.1:{port}/livez")[0] == 200
    time.sleep(1)
    pids = [process.pid, *workers(process.pid)]
    before = sum(cpu_ticks(pid) for pid in pids)
    time.sleep(IDLE_SECONDS)
    used = (sum(cpu_ticks(pid) for pid in pids) - before) / os.sysconf("SC_CLK_TCK")
    print(f"\nCPU of `make run` ({len(pids)} processes) idle for {IDLE_SECONDS} s: {used:.2f} s")
    assert used < 0.01 * IDLE_SECONDS


def test_a_killed_worker_is_replaced(make_run):
    process, port = make_run
    assert wait_for(lambda: len(workers(process.pid)) == cores())
    victim = workers(process.pid)[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: victim not in workers(process.pid) and len(workers(process.pid)) == cores())
    replies = [get(f"http://127.0.0.1:{port}{TILE}")[0] for _ in range(4 * cores())]
    assert replies == [200] * len(replies)


def in_flight(worker: int, before: int) -> bool:
    return cpu_ticks(worker) > before + 5  # 50 ms into the slow request


SIGNALLERS = {
    "SIGTERM": lambda pid: os.kill(pid, signal.SIGTERM),  # to the supervisor, which passes it on
    "Ctrl-C": lambda pid: os.killpg(pid, signal.SIGINT),  # a terminal's: to the supervisor and its workers at once
}


@pytest.mark.parametrize("how", SIGNALLERS)
def test_the_http_request_in_flight_finishes(images, how):
    port = free_port()
    command = [str(VENV_BIN / "pyiip"), "serve", "--port", str(port), "--workers", "1", "--root", str(images.root)]
    process = subprocess.Popen(
        command, env={**os.environ, "VERBOSITY": "0"}, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_port(port, process=process)
        assert wait_for(lambda: len(descendants(process.pid, b"pyiip")) == 1)
        (worker,) = descendants(process.pid, b"pyiip")
        result: dict = {}
        client = threading.Thread(target=lambda: result.update(reply=get(f"http://127.0.0.1:{port}{SLOW_CVT}")))
        before = cpu_ticks(worker)
        client.start()
        assert wait_for(lambda: in_flight(worker, before), step=0.01)
        SIGNALLERS[how](process.pid)
        client.join(120)
        status, headers, body = result["reply"]
        assert status == 200 and int(headers["Content-Length"]) == len(body) > 100_000
        assert stopped(process) == 0
    finally:
        stop(process, signal.SIGKILL)


def start_fcgi(images, sock: str, *args: str) -> tuple[subprocess.Popen, str]:
    """`pyiip.fcgi --bind SOCK ARGS` in a session of its own; (process, the line it printed on starting)."""
    environ = {**os.environ, "FILESYSTEM_PREFIX": f"{images.root}/", "VERBOSITY": "0"}
    process = subprocess.Popen(
        [FCGI, "--bind", sock, *args], env=environ, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    assert wait_for(lambda: os.path.exists(sock) and _answers(sock), timeout=30), line
    return process, line


def _answers(sock: str) -> bool:
    try:
        return fcgi_client.request(sock, "/livez", timeout=5).status == 200
    except OSError:
        return False


@pytest.mark.parametrize("count", [1, 2])
def test_ctrl_c_lets_the_fastcgi_request_in_flight_finish_and_removes_the_socket(images, tmp_path, count):
    sock = str(tmp_path / "pyiip.sock")
    process, line = start_fcgi(images, sock, "--workers", str(count))
    try:
        assert line == f"pyiip FastCGI listening on {sock} with {count} process(es)\n"
        with fcgi_client.connect(sock) as conn:
            fcgi_client.begin(conn, fcgi_client.environ_for(SLOW_CVT))
            time.sleep(0.3)  # accepted and begun
            os.killpg(process.pid, signal.SIGINT)
            reply = fcgi_client.finish(conn)
        assert reply.status == 200 and len(reply.body) > 100_000
        assert stopped(process) == 0
        assert not os.path.exists(sock)
    finally:
        stop(process, signal.SIGKILL)


@pytest.mark.parametrize("count", [1, 2])
def test_sigterm_removes_the_socket(images, tmp_path, count):
    sock = str(tmp_path / "pyiip.sock")
    process, _ = start_fcgi(images, sock, "--workers", str(count))
    try:
        process.send_signal(signal.SIGTERM)
        assert stopped(process) == 0
        assert not os.path.exists(sock)
    finally:
        stop(process, signal.SIGKILL)


def test_a_stale_socket_is_replaced_and_a_live_one_kept(images, tmp_path):
    sock = str(tmp_path / "pyiip.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock)
    stale.close()  # the file stays, nobody listens: what a server killed with SIGKILL leaves
    process, _ = start_fcgi(images, sock)
    try:
        second = subprocess.run([FCGI, "--bind", sock], capture_output=True, text=True, timeout=60)
        assert (second.returncode, second.stderr) == (
            2,
            f"pyiip.fcgi: error: --bind {sock}: another server listens on this socket\n",
        )
        assert _answers(sock)  # the first one's socket is still there
    finally:
        stop(process)
    assert not os.path.exists(sock)


@pytest.mark.parametrize("verbosity", ["1", "2"])
def test_fcgi_start_and_stop_are_logged_at_info(images, tmp_path, verbosity):
    """VERBOSITY 1 (warnings and errors) leaves them out; 2 has where it listens, the start and the stop."""
    sock = str(tmp_path / "pyiip.sock")
    environ = {**os.environ, "FILESYSTEM_PREFIX": f"{images.root}/", "VERBOSITY": verbosity, "LOGFILE": "-"}
    process = subprocess.Popen([FCGI, "--bind", sock, "--workers", "2"], env=environ, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: os.path.exists(sock) and _answers(sock), timeout=30)
        process.send_signal(signal.SIGTERM)
        assert stopped(process) == 0
    finally:
        stop(process, signal.SIGKILL)
    assert process.stderr is not None
    lines = process.stderr.read().splitlines()
    assert lines[0] == f"pyiip FastCGI listening on {sock} with 2 process(es)"  # printed, whatever VERBOSITY says
    logged = [line.split(" ", 2)[2] for line in lines[1:]]
    assert not [line for line in logged if not line.startswith("INFO ")], logged
    if verbosity == "1":
        assert logged == []
    else:
        assert f"INFO pyiip FastCGI listening on {sock} with 2 process(es)" in logged
        assert sum(line.startswith("INFO pyiip FastCGI process") and "started" in line for line in logged) == 2
        assert sum(line.endswith("stopping") for line in logged) == 2 and logged[-1].endswith("stopped")
