"""Hostile flat images read through libvips: decompression bombs, many-page TIFFs, what an open image holds.

A PNG of a few MB may declare 40000 x 40000 pixels: libvips decodes such a
file whole before any crop, so the request budget must count all of it and
the decode must never go to a temporary file that outlives the request. A
TIFF of many equal pages must open in time linear in its pages.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile

from pyiip.read.image import open_source
from pyiip.read.vips import VipsSource
from tests.support.hostile import png_bomb
from tests.support.imaging import rgb_pattern
from tests.support.servers import get, http_server

BOMB_SIDE = 40000  # 1.6 GB of grey pixels, over the default MAX_REQUEST_MEMORY (1024 MB)


def equal_pages_tiff(path: Path, pages: int, side: int = 512) -> Path:
    """A tiled TIFF of ``pages`` equal grey pages (none is a reduced level of another)."""
    page = np.zeros((side, side), np.uint8)
    with tifffile.TiffWriter(path) as tif:
        for _ in range(pages):
            tif.write(page, tile=(256, 256), compression="zlib", photometric="minisblack")
    return path


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _status_mb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(key)


def _links(pid: int | str) -> list[str]:
    """Where the descriptors of a process point."""
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
    return links


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
    port, server = http_server(root, {"TMPDIR": str(scratch), "VIPS_DISC_THRESHOLD": "1m"}, workers=1)
    with server as process:
        deadline = time.monotonic() + 10
        while not _children(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (worker,) = _children(process.pid)
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
    assert _status_mb(worker, "VmHWM") < 200
    assert _held_temporaries(worker) == {} and not list(scratch.iterdir())
    assert get(f"http://127.0.0.1:{port}/health")[0] == 200
    assert _children(server) == [worker]  # the same worker, alive


def test_float_bomb_is_refused_at_open(flat_server: tuple[int, int, int, Path]) -> None:
    """The display range of a float image read whole decoded it all at open (info.json: 615 MB RSS and a
    576 MB temporary file kept open); a whole decode over DECODED_BUDGET is refused wherever it comes from."""
    port, server, worker, scratch = flat_server
    status, _headers, body = get(f"http://127.0.0.1:{port}/iiif/3/float.tif/info.json", timeout=120)
    assert status == 413 and b"too large to decode whole" in body
    assert _status_mb(worker, "VmHWM") < 200
    assert _held_temporaries(worker) == {} and not list(scratch.iterdir())
    assert _children(server) == [worker]


def test_whole_decodes_within_the_budget_keep_no_temporary_file(flat_server: tuple[int, int, int, Path]) -> None:
    """A PNG decoded whole past VIPS_DISC_THRESHOLD went to a deleted temporary file held while the image
    stayed open; it is decoded into memory now, where the budget and the open image's cost count it."""
    port, _server, worker, scratch = flat_server
    for url in ("/iiif/3/photo.png/full/300,/0/default.jpg", "/iiif/3/photo.png/512,512,256,256/256,/0/default.jpg"):
        status, headers, _body = get(f"http://127.0.0.1:{port}{url}")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert _held_temporaries(worker) == {}
    assert not list(scratch.iterdir())


def test_many_equal_pages_open_in_linear_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1000 equal tiled pages: libvips opened the file once per page (25 s, quadratic); now page sizes come
    from one pass and no page is opened that cannot be a reduced level."""
    path = equal_pages_tiff(tmp_path / "pages.tif", 1000)
    opens = []
    real = pyvips.Image.new_from_file

    def counted(*args: object, **kwargs: object) -> pyvips.Image:
        opens.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(pyvips.Image, "new_from_file", counted)
    started = time.monotonic()
    source = open_source(str(path))
    elapsed = time.monotonic() - started
    try:
        assert [(lv.width, lv.height) for lv in source.info.levels] == [(512, 512), (256, 256)]
        assert len(opens) <= 2, opens[:5]
        assert elapsed < 5  # an upper bound of the hang: 25 s before
        assert source.read(1, 0, 0, 256, 256).shape == (256, 256, 1)
    finally:
        source.close()


def test_page_levels_are_still_found_among_other_pages(tmp_path: Path) -> None:
    """A same-size page (a mask) before the halvings does not hide them; the probes skip it unopened."""
    data = rgb_pattern(1200, 800)
    path = tmp_path / "masked.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(data, photometric="rgb", rowsperstrip=64)
        tif.write(np.zeros((800, 1200), np.uint8), photometric="minisblack", rowsperstrip=64)
        for k in (1, 2):
            tif.write(np.ascontiguousarray(data[:: 2**k, :: 2**k]), photometric="rgb", rowsperstrip=64)
    source = VipsSource(str(path))
    try:
        sizes = [(lv.width, lv.height) for lv in source.info.levels]
        assert sizes == [(1200, 800), (600, 400), (300, 200), (150, 100)]
        assert np.array_equal(source.read(2, 0, 0, 300, 200), data[::4, ::4])
    finally:
        source.close()


def _fds_on(path: Path) -> int:
    return sum(link == str(path) for link in _links("self"))


@pytest.fixture(scope="module")
def flat_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flatfd")
    image = pyvips.Image.new_from_array(rgb_pattern(1503, 1001, seed=4))
    image.jpegsave(str(root / "photo.jpg"))
    image.pngsave(str(root / "photo.png"))
    image.pngsave(str(root / "adam7.png"), interlace=True)
    image.webpsave(str(root / "photo.webp"), lossless=True)
    image.tiffsave(str(root / "strips.tif"))
    image.tiffsave(str(root / "tiled.tif"), tile=True, pyramid=True)
    return root


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png", "adam7.png", "photo.webp", "strips.tif", "tiled.tif"])
def test_descriptors_count_the_files_held_open(flat_files: Path, name: str) -> None:
    """``descriptors`` is the number of /proc/self/fd entries on the file, as levels are read and released."""
    path = flat_files / name
    source = VipsSource(str(path))
    try:
        seen = [(source.descriptors, _fds_on(path))]
        for level in range(len(source.info.levels)):
            source.read(level, 0, 0, 64, 64)
            seen.append((source.descriptors, _fds_on(path)))
        source.release()
        seen.append((source.descriptors, _fds_on(path)))
    finally:
        source.close()
    assert all(claimed == real for claimed, real in seen), seen
    assert _fds_on(path) == 0
    if name in ("photo.webp", "tiled.tif"):
        assert max(real for _claimed, real in seen) >= 1  # loaders that keep the file are counted


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_cost_is_the_memory_an_open_image_holds(tmp_path: Path) -> None:
    """A PNG decoded whole holds all its pixels while open: ``cost`` says so, and drops when they are released."""
    path = tmp_path / "large.png"
    pyvips.Image.black(4000, 3000, bands=3).pngsave(str(path))  # 36 MB decoded
    source = VipsSource(str(path))
    try:
        idle = source.cost
        assert idle < 64 * 1024
        before = _rss()
        source.read(0, 2000, 1500, 16, 16)
        held = _rss() - before
        assert 4000 * 3000 * 3 <= source.cost - idle <= 1.1 * 4000 * 3000 * 3
        assert 0.8 * (source.cost - idle) <= held <= 1.25 * (source.cost - idle)
        source.release()
        assert source.cost == idle
        assert _rss() - before < 0.2 * held
    finally:
        source.close()
