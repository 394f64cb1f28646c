"""Hostile TIFF files served by a fresh process: peak memory and file descriptors measured from outside."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pyiip.read.tiff import TiffSource
from tests.support.hostile import decoder_bombs, tables_bigtiff
from tests.support.servers import VENV_BIN, free_port, get, running
from tests.unit.read.test_tiff_hostile import MB

# One request in a fresh process: (status, body, peak RSS growth in MB) as JSON on stdout.
_ONE_REQUEST = textwrap.dedent(
    """
    import json, sys
    from pyiip import config
    from pyiip.respond.app import Application
    from pyiip.http import Request

    def peak():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    root, path = sys.argv[1], sys.argv[2]
    app = Application(config.load({"FILESYSTEM_PREFIX": root + "/", "VERBOSITY": "0"}))
    app.respond(Request("GET", "/iiif/3/warm.tif/info.json", ""))
    before = peak()
    reply = app.respond(Request("GET", path, ""))
    print(json.dumps([reply.status, reply.body[:200].decode("latin-1"), (peak() - before) / (1 << 20)]))
    """
)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return decoder_bombs(tmp_path_factory.mktemp("bombs"))


def fresh_request(root: Path, path: str) -> tuple[int, str, float]:
    """Serve one request in a new process (default settings); it must exit normally."""
    done = subprocess.run(
        [sys.executable, "-c", _ONE_REQUEST, str(root), path], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    status, body, growth = json.loads(done.stdout.splitlines()[-1])
    return status, body, growth


@pytest.mark.parametrize("name", ["jpeg_grey", "jpeg_rgb", "jpeg_max", "webp_lossless"])
def test_codec_stream_declaring_more_than_its_tile_is_refused_before_decoding(bombs, name):
    """Before: 0.9 GB (JPEG 30000^2), 1.2 GB (RGB 20000^2), 0.4 GB (WebP 10000^2) of peak RSS per request."""
    assert (bombs / f"{name}.tif").stat().st_size < 4096
    status, body, growth = fresh_request(bombs, f"/iiif/3/{name}.tif/0,0,100,100/100,/0/default.png")
    assert growth < 40, f"{name}: peak RSS grew by {growth:.0f} MB"
    assert status == 404, body
    assert "declares" in body and "256 x 256" in body


def test_sparse_bigtiff_with_huge_tables_is_refused_before_reading_them(bombs):
    """A 1048576^2 BigTIFF of 3 levels, a few KB on disk: before, 10 s and 0.7 GB to open, then kept open."""
    assert (bombs / "sparse.tif").stat().st_blocks * 512 < 64 * 1024  # holes: a few KB on disk
    status, body, growth = fresh_request(bombs, "/iiif/3/sparse.tif/info.json")
    assert growth < 20, f"peak RSS grew by {growth:.0f} MB"
    assert status == 413, body
    assert "tile tables" in body


def _rss_per_open(path: Path, count: int) -> tuple[float, float]:
    """MB of resident memory each open TiffSource of ``path`` holds (measured in a fresh process), and its cost."""
    script = textwrap.dedent(
        """
        import gc, sys
        from pyiip.read.tiff import TiffSource

        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024

        TiffSource(sys.argv[1]).close()
        gc.collect()
        before = rss()
        kept = [TiffSource(sys.argv[1]) for _ in range(int(sys.argv[2]))]
        gc.collect()
        print((rss() - before) / len(kept) / (1 << 20), kept[0].cost / (1 << 20))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(count)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    held, cost = (float(v) for v in done.stdout.split())
    return held, cost


def test_tables_of_a_big_pyramid_are_arrays_and_counted_in_its_cost(tmp_path):
    """A 131072^2 pyramid of 256-pixel tiles (349,525 tiles): before, ~33 MB of Python ints per open image."""
    path = tables_bigtiff(tmp_path / "big.tif", 131072, 10, filled=True)
    held, cost = _rss_per_open(path, 6)
    assert held < 8, f"each open image holds {held:.1f} MB"
    assert held <= cost * 1.25 + 0.5, f"each open image holds {held:.1f} MB, counted {cost:.1f} MB"
    source = TiffSource(str(path))
    try:
        tables = 349525 * 16
        assert tables <= source.cost <= tables + MB
        assert source.descriptors == 1
    finally:
        source.close()


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def _descriptors_of_children(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return max(len(list(Path(f"/proc/{child}/fd").iterdir())) for child in children)


def test_six_hundred_images_under_a_256_descriptor_limit(tmp_path):
    """Before: past ~120 images every new one was a 404 (EMFILE) and /health a 503, nothing logged."""
    root = tmp_path / "images"
    root.mkdir()
    pixels = (np.arange(96 * 96) % 251).astype(np.uint8).reshape(96, 96)
    for index in range(600):
        tifffile.imwrite(root / f"i{index}.tif", pixels, tile=(32, 32), metadata=None)
    log = tmp_path / "pyiip.log"
    port = free_port()
    command = [str(VENV_BIN / "pyiip"), "serve", "--port", str(port), "--workers", "1", "--root", str(root)]
    env = {"VERBOSITY": "1", "LOGFILE": str(log)}
    with running(command, port, env, preexec_fn=_limit_descriptors) as server:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        for index in range(600):
            assert time.monotonic() < deadline
            status, _headers, body = get(f"{base}/iiif/3/i{index}.tif/full/48,/0/default.png")
            assert status == 200, (index, status, body[:200])
            if index % 100 == 99:
                assert get(f"{base}/health")[0] == 200, index
        assert _descriptors_of_children(server.pid) <= 200
        assert get(f"{base}/iiif/3/i0.tif/full/48,/0/default.png")[0] == 200  # closed, opened again
        assert get(f"{base}/health")[0] == 200
    warnings = [line for line in log.read_text().splitlines() if "file descriptors" in line]
    assert len(warnings) == 1, warnings
    assert "RLIMIT_NOFILE" in warnings[0]
