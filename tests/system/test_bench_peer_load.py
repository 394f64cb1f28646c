"""bench/visiomatic_peer.py's measure(): bench/run.py's wrk driver and CPU sampling against a real server
(Python's http.server standing in for either peer), and a failing one stopping the benchmark."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_peer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pyiip_bench_peer_load", BENCH / "visiomatic_peer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peer = load_peer()
run = peer.run  # bench/run.py as the peer imports it


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    (tmp_path / "tile.jpg").write_bytes(b"\xff\xd8" + b"x" * 2000)
    port = run.free_port()
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(tmp_path), str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run.wait_for_port(port, process)
        yield process, port
    finally:
        run.stop_process(process)


def test_measure_counts_tiles_cpu_and_latency_from_one_wrk_run(server, tmp_path: Path) -> None:
    process, port = server
    urls = run.write_list(tmp_path, "urls", ["/tile.jpg"] * 3)
    measured = peer.measure("stand-in", process, port, urls, conc=2, seconds=1)
    assert measured["tiles"] > 10 and measured["cpu_ms_per_tile"] > 0
    assert 0 < measured["p50_ms"] <= measured["p99_ms"] and measured["mean_ms"] > 0
    assert 10 < measured["tiles_per_s"] < measured["tiles"] / 0.9  # one second of load


def test_a_server_that_fails_requests_stops_the_benchmark(server, tmp_path: Path) -> None:
    process, port = server
    urls = run.write_list(tmp_path, "missing", ["/tile.jpg", "/missing.jpg"])
    with pytest.raises(SystemExit, match=r"stand-in: [1-9][0-9]* failed requests of"):
        peer.measure("stand-in", process, port, urls, conc=2, seconds=1)
