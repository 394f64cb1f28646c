"""Hostile flat images read through libvips: decompression bombs, many-page TIFFs, what an open image holds.

A PNG of a few MB may declare 40000 x 40000 pixels: libvips decodes such a
file whole before any crop, so the request budget must count all of it and
the decode must never go to a temporary file that outlives the request. A
TIFF of many equal pages must open in time linear in its pages.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile

from pyiip.read.image import open_source
from pyiip.read.vips import VipsSource
from tests.support.imaging import rgb_pattern


def equal_pages_tiff(path: Path, pages: int, side: int = 512) -> Path:
    """A tiled TIFF of ``pages`` equal grey pages (none is a reduced level of another)."""
    page = np.zeros((side, side), np.uint8)
    with tifffile.TiffWriter(path) as tif:
        for _ in range(pages):
            tif.write(page, tile=(256, 256), compression="zlib", photometric="minisblack")
    return path


def _links(pid: int | str) -> list[str]:
    """Where the descriptors of a process point."""
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
    return links


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
