"""Object stores that attack the worker reading them: drips, ignored ranges, endless bodies.

Each case runs a real ``pyiip serve`` with one worker against the hostile
loopback store of objectstores.py. A drip must fail its request within
REMOTE_TIMEOUT (the client's timeout only bounds a hang), after which the
same worker answers /health and other images; a reply far longer than the
range asked for must never be read into memory: the worker's peak RSS
(VmHWM, reset through /proc/PID/clear_refs before each request) stays
within a few MiB of what it was, for a 1 GiB stream of zeros.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.imaging import rgb_pattern, write_vips_pyramid
from tests.support.objectstores import HostileStore, hostile_store
from tests.support.servers import get, http_server, status_kib

REMOTE_TIMEOUT = 1.0
DRIP_INTERVAL = 0.5  # under REMOTE_TIMEOUT: a timeout per socket operation never fires
MIB = 1 << 20
HEADROOM = 64 * MIB  # peak RSS a hostile reply may add to a worker that already served a tile
TILE = "JTL=2,0"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile-store")
    write_vips_pyramid(root / "rgb.tif", np.tile(rgb_pattern(512, 512, seed=7), (2, 2, 1)))
    return root


@pytest.fixture(scope="module")
def store(root: Path) -> Iterator[HostileStore]:
    with hostile_store(root, interval=DRIP_INTERVAL) as server:
        yield server


@pytest.fixture(scope="module")
def worker(store: HostileStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(base URL, worker PID) of `pyiip serve --workers 1` reading the hostile store."""
    env = {
        "REMOTE_URL_TEMPLATE": f"{store.base}/{{id}}",
        "REMOTE_TIMEOUT": str(REMOTE_TIMEOUT),
        "REMOTE_BLOCK_SIZE": "16",
        "BLOCK_CACHE_DIR": str(tmp_path_factory.mktemp("blocks")),
    }
    port, context = http_server(store.root, env, workers=1)
    with context as process:
        base = f"http://127.0.0.1:{port}"
        assert get(f"{base}/health", timeout=10)[0] == 200
        yield base, _only_child(process.pid)


def _only_child(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def iip(base: str, identifier: str, timeout: float) -> tuple[int, bytes]:
    status, _headers, body = get(f"{base}/fcgi-bin/iipsrv.fcgi?FIF={identifier}&{TILE}", timeout=timeout)
    return status, body


@pytest.mark.parametrize("mode", ["drip", "dripall"])
def test_a_dripping_store_fails_the_request_within_remote_timeout(
    worker: tuple[str, int], store: HostileStore, mode: str
) -> None:
    """One byte every 0.5 s of a 16 KiB block would take over two hours; REMOTE_TIMEOUT=1 s ends it."""
    base, _pid = worker
    started = time.monotonic()
    status, _ = iip(base, f"{mode}/rgb.tif", timeout=10 * REMOTE_TIMEOUT)  # a hang, not a latency bound
    elapsed = time.monotonic() - started
    assert status == 503
    print(f"{mode}: failed after {elapsed:.2f} s with REMOTE_TIMEOUT={REMOTE_TIMEOUT}")
    assert [p for p in store.requests if p.startswith(f"/{mode}/")] == [f"/{mode}/rgb.tif"]  # no retry after it
    assert get(f"{base}/health", timeout=5)[0] == 200
    assert iip(base, "good/rgb.tif", timeout=10)[0] == 200


@pytest.mark.parametrize(
    ("mode", "status"),
    [
        ("norange", 502),  # a 200 to a range request: refused on its status line
        ("wholerange", 502),  # a 206 for another range than the one asked for: refused on its Content-Range
        ("overlong", 502),  # Content-Length disagrees with the Content-Range asked for
        ("trailing", 200),  # the zeros after the announced body: the next reply's bad status line, retried
        ("unbounded", 200),  # no Content-Length: the range is read, the connection dropped
        ("chunked", 200),  # chunks: likewise
        ("error403", 502),  # an error whose body is 1 GiB: never read
        ("error503", 503),  # the same, chunked and retried
    ],
)
def test_a_reply_longer_than_asked_is_never_read_into_memory(
    worker: tuple[str, int], store: HostileStore, mode: str, status: int
) -> None:
    base, pid = worker
    good = iip(base, "good/rgb.tif", timeout=30)
    assert good[0] == 200
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = status_kib(pid, "VmHWM")
    reply = iip(base, f"{mode}/rgb.tif", timeout=60)
    peak = status_kib(pid, "VmHWM")
    print(f"{mode}: status {reply[0]}, peak RSS {before // 1024} -> {peak // 1024} MiB")
    assert reply[0] == status
    if status == 200:
        assert reply[1] == good[1]  # exactly the bytes asked for, nothing after them
    assert (peak - before) * 1024 < HEADROOM, f"peak RSS grew by {(peak - before) // 1024} MiB"
    assert get(f"{base}/health", timeout=5)[0] == 200
