"""The FITS cache's builder in-process: which HDUs make the cube, sizes refused from the header, eviction."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from astropy.io import fits

from pyiip.tools import fits_build
from pyiip.tools.fits_build import BuildRefused, build, check_sizes, choose_inputs, trim

MB = 1 << 20


def plane(height: int = 40, width: int = 60, value: float = 1.0) -> np.ndarray:
    return np.full((height, width), value, np.float32)


def test_a_cube_is_one_input_with_its_planes(tmp_path: Path) -> None:
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.stack([plane(), plane(), plane()])).writeto(path)
    assert choose_inputs(path) == ([(path, 0)], [60, 40, 3], "")


def test_extensions_of_one_size_are_channels(tmp_path: Path) -> None:
    path = tmp_path / "mef.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(plane(), name="G"), fits.ImageHDU(plane(), name="R")]).writeto(path)
    assert choose_inputs(path) == ([(path, 1), (path, 2)], [60, 40], "")


def test_extensions_of_different_sizes_give_the_first_and_say_so(tmp_path: Path) -> None:
    path = tmp_path / "mixed.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(plane()), fits.ImageHDU(plane(20, 30))]).writeto(path)
    inputs, dims, note = choose_inputs(path)
    assert (inputs, dims) == ([(path, 1)], [60, 40])
    assert "HDU 1 served alone" in note


def test_multi_extension_build_labels_channels_by_extname(tmp_path: Path) -> None:
    path = tmp_path / "mef.fits"
    hdus = [fits.ImageHDU(plane(value=v), name=n) for v, n in ((1.0, "G"), (5.0, "R"))]
    fits.HDUList([fits.PrimaryHDU(), *hdus]).writeto(path)
    build(path, str(tmp_path / "out"), 1024, 64 * MB)
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        data = tif.pages[0].asarray()
        description = tif.pages[0].description
    assert data.shape == (40, 60, 2) and data[0, 0].tolist() == [1.0, 5.0]
    assert "CHAN0001= 'G" in description and "CHAN0002= 'R" in description


def test_compressed_fits_is_read(tmp_path: Path) -> None:
    path = tmp_path / "image.fits.fz"
    data = np.arange(40 * 60, dtype=np.float32).reshape(40, 60)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="GZIP_2")]).writeto(path)
    build(path, str(tmp_path / "out"), 1024, 64 * MB)
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert np.array_equal(tif.pages[0].asarray(), data[::-1])  # TIFF row 0 is FITS row NAXIS2


def lying_header(path: Path, cards: dict[str, int], data: bytes = b"") -> None:
    """A FITS header that claims what it likes, with ``data`` after it (a hostile file)."""
    header = fits.Header({"SIMPLE": True, "BITPIX": -32, **cards})
    path.write_bytes(header.tostring().encode() + data)


@pytest.mark.parametrize(
    ("cards", "status", "words"),
    [
        ({"NAXIS": 2, "NAXIS1": 100_000_000, "NAXIS2": 4}, 413, "MAX_REQUEST_MEMORY"),
        ({"NAXIS": 2, "NAXIS1": 20000, "NAXIS2": 20000}, 413, "FITS_CACHE_SIZE"),
        ({"NAXIS": 3, "NAXIS1": 100, "NAXIS2": 100, "NAXIS3": 4}, 404, "truncated"),
        ({"NAXIS": 2, "NAXIS1": -5, "NAXIS2": 4}, 404, "not a size"),
        ({"NAXIS": 0}, 404, "no image data"),
    ],
)
def test_hostile_headers_leave_a_clear_error_and_no_cube(
    tmp_path: Path, cards: dict[str, int], status: int, words: str
) -> None:
    path = tmp_path / "hostile.fits"
    lying_header(path, cards, bytes(2880))
    base = tmp_path / "cache" / "key"
    base.parent.mkdir()
    build(path, str(base), 256, 512 * MB)
    error = json.loads((tmp_path / "cache" / "key.error").read_text())
    assert error["status"] == status and words in error["message"]
    assert error["message"].startswith("hostile.fits: ") and str(tmp_path) not in error["message"]
    assert not (tmp_path / "cache" / "key.tif").exists()
    assert os.listdir(tmp_path / "cache") == ["key.error"]  # no temporary file left behind


def test_sizes_are_checked_from_the_header_alone() -> None:
    check_sizes([8192, 8192], 1, 1024 * MB, 1024 * MB)
    with pytest.raises(BuildRefused, match="FITS_CACHE_SIZE"):
        check_sizes([8192, 8192, 4], 1, 1024 * MB, 1024 * MB)
    with pytest.raises(BuildRefused, match="MAX_REQUEST_MEMORY"):
        check_sizes([1 << 20, 2], 1, 1024 * MB, 1 << 40)


def test_trim_evicts_least_recently_used_cubes_but_not_the_new_one(tmp_path: Path) -> None:
    now = time.time()
    for age, name in enumerate(("new", "recent", "old", "oldest")):
        path = tmp_path / f"{name}.tif"
        path.write_bytes(bytes(MB))
        os.utime(path, (now - 100 * age, now - 100 * age))
    os.utime(tmp_path / "new.tif", (now - 1000, now - 1000))  # just built, however old its mtime
    debris = tmp_path / ".old.123.partial"
    debris.write_bytes(b"x")
    os.utime(debris, (now - 2 * 86400, now - 2 * 86400))
    stale = now - 2 * 86400
    for name in ("gone.lock", "gone.error", "new.lock", "building.lock", "fresh.error"):
        (tmp_path / name).touch()
        if name != "fresh.error":
            os.utime(tmp_path / name, (stale, stale))
    with open(tmp_path / "building.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a build of that version is running
        trim(str(tmp_path), 3 * MB, str(tmp_path / "new.tif"))
    kept = ["building.lock", "fresh.error", "new.lock", "new.tif", "recent.tif"]
    assert sorted(os.listdir(tmp_path)) == kept


def test_a_build_past_its_time_is_stopped_and_says_so(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "slow.fits"
    fits.PrimaryHDU(np.zeros((3, 600, 800), np.float32)).writeto(path)
    previous = signal.signal(signal.SIGALRM, fits_build._timeout)  # what main() arms with FITS_BUILD_TIMEOUT
    monkeypatch.setattr(fits_build, "_timed_out", False)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        build(path, str(tmp_path / "key"), 1024, 64 * MB)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    error = json.loads((tmp_path / "key.error").read_text())
    assert error["status"] == 413 and "FITS_BUILD_TIMEOUT" in error["message"]
    assert sorted(os.listdir(tmp_path)) == ["key.error", "slow.fits"]  # the partial cube removed
