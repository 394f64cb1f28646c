"""Decompression bombs through libvips served by a real `pyiip serve`: memory and temporary files seen from outside."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pyvips

from tests.support.hostile import png_bomb
from tests.support.imaging import rgb_pattern
from tests.support.servers import children, get, http_server, status_kib

BOMB_SIDE = 40000  # 1.6 GB of grey pixels, over the default MAX_REQUEST_MEMORY (1024 MB)


def _held_temporaries(pid: int) -> dict[str, int]:
    """Deleted files a process holds open, with their disk bytes (libvips unlinks its temporary files at once).

    Standard streams are left out: a server started under pytest writes to its capture files.
    """
    held = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
            if int(fd.name) > 2 and link.endswith("(deleted)"):
                held[link] = os.stat(fd).st_blocks * 512
        except OSError:
            continue
    return held


@pytest.fixture(scope="module")
def flat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, int, Path]]:
    """`pyiip serve`, one worker, default budget, with its own TMPDIR and a 1 MB libvips disc threshold."""
    root = tmp_path_factory.mktemp("bombs")
    png_bomb(root / "bomb.png", BOMB_SIDE)
    png_bomb(root / "adam7.png", BOMB_SIDE, interlaced=True)
    pyvips.Image.new_from_array(rgb_pattern(1800, 1200)).pngsave(str(root / "photo.png"))  # 6.5 MB decoded
    # 550 KB of float strips, 576 MB decoded: its display range is computed at open, outside any request budget.
    pyvips.Image.black(12000, 12000).cast("float").tiffsave(str(root / "float.tif"), compression="deflate")
    scratch = root / "tmp"
    scratch.mkdir()
    # pyiip's own directories (metrics, FITS cubes) elsewhere: the scratch directory is libvips' alone.
    state = tmp_path_factory.mktemp("state")
    settings = {"METRICS_DIR": str(state / "metrics"), "FITS_CACHE_DIR": str(state / "fits")}
    port, server = http_server(root, {"TMPDIR": str(scratch), "VIPS_DISC_THRESHOLD": "1m", **settings}, workers=1)
    with server as process:
        deadline = time.monotonic() + 10
        while not children(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (worker,) = children(process.pid)
        yield port, process.pid, worker, scratch


@pytest.mark.parametrize("name", ["bomb.png", "adam7.png"])
def test_png_bomb_is_refused_before_it_is_decoded(flat_server: tuple[int, int, int, Path], name: str) -> None:
    """1.5 MB declaring 40000^2: was decoded into a 1.5 GB temporary file kept open (1.6 GB RSS), or all in
    memory when interlaced (libvips calls that loader partial); now a 413."""
    port, server, worker, scratch = flat_server
    base = f"http://127.0.0.1:{port}/iiif/3/{name}"
    status, _headers, body = get(f"{base}/info.json")
    assert status == 200 and b'"width": 40000' in body
    for url in (f"{base}/full/256,/0/default.jpg", f"{base}/0,0,256,256/256,/0/default.png"):
        status, _headers, body = get(url, timeout=120)
        assert status == 413, (status, body[:80])
        assert b"MAX_REQUEST_MEMORY" in body
    assert status_kib(worker, "VmHWM") // 1024 < 200
    assert _held_temporaries(worker) == {} and not list(scratch.iterdir())
    assert get(f"http://127.0.0.1:{port}/health")[0] == 200
    assert children(server) == [worker]  # the same worker, alive


def test_float_bomb_is_refused_at_open(flat_server: tuple[int, int, int, Path]) -> None:
    """The display range of a float image read whole decoded it all at open (info.json: 615 MB RSS and a
    576 MB temporary file kept open); a whole decode over DECODED_BUDGET is refused wherever it comes from."""
    port, server, worker, scratch = flat_server
    status, _headers, body = get(f"http://127.0.0.1:{port}/iiif/3/float.tif/info.json", timeout=120)
    assert status == 413 and b"too large to decode whole" in body
    assert status_kib(worker, "VmHWM") // 1024 < 200
    assert _held_temporaries(worker) == {} and not list(scratch.iterdir())
    assert children(server) == [worker]


def test_whole_decodes_within_the_budget_keep_no_temporary_file(flat_server: tuple[int, int, int, Path]) -> None:
    """A PNG decoded whole past VIPS_DISC_THRESHOLD went to a deleted temporary file held while the image
    stayed open; it is decoded into memory now, where the budget and the open image's cost count it."""
    port, _server, worker, scratch = flat_server
    for url in ("/iiif/3/photo.png/full/300,/0/default.jpg", "/iiif/3/photo.png/512,512,256,256/256,/0/default.jpg"):
        status, headers, _body = get(f"http://127.0.0.1:{port}{url}")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert _held_temporaries(worker) == {}
    assert not list(scratch.iterdir())
