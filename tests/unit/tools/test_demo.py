"""pyiip.demo: the demo astronomy cube and RGB pyramid, made small so the test is quick."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile
from astropy.io import fits
from astropy.wcs import WCS

from pyiip.tools import demo as demo_module
from pyiip.tools.demo import write_demo_data

SIZE = 1024
CUT = 512  # the FITS example's edge here (CUTOUT), so its offset in the field is tested


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    directory = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo_module, "CUTOUT", CUT)
        return directory, write_demo_data(directory, size=SIZE, progress=False)


def test_paths(demo):
    directory, paths = demo
    names = [p.relative_to(directory).as_posix() for p in paths]
    assert names == ["cube.tif", "rgb.tif", "cutout.fits"]
    assert sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")) == [
        "cube.tif", "cutout.fits", "rgb.tif"
    ]  # fmt: skip  # the full-size FITS bands and every temporary are gone


def test_fits_example_is_the_centre_of_the_cube(demo):
    directory, _ = demo
    with fits.open(directory / "cutout.fits") as hdul:
        header, data = hdul[0].header, hdul[0].data
    assert data.shape == (3, CUT, CUT) and data.dtype.kind == "f" and data.dtype.itemsize == 4
    assert [header[f"CHAN{i:04d}"] for i in (1, 2, 3)] == ["g", "r", "i"] and "FILTER" not in header
    assert (header["CTYPE1"], header["CTYPE2"]) == ("RA---TAN", "DEC--TAN")
    offset = (SIZE - CUT) // 2
    with tifffile.TiffFile(directory / "cube.tif") as tif:
        cube = tif.pages[0].asarray()[::-1]  # back to FITS row order
        full = fits.Header.fromstring(tif.pages[0].description)
    for plane in range(3):
        np.testing.assert_array_equal(data[plane], cube[offset : offset + CUT, offset : offset + CUT, plane])
        median, mad = np.median(data[plane]), np.median(np.abs(data[plane] - np.median(data[plane])))
        assert 99 < median < 103 and 3 < 1.4826 * mad < 7  # sky 100 ADU, sigma 5
    assert len({float(np.sort(data[p].ravel())[-100]) for p in range(3)}) == 3  # the bands differ
    here = WCS(header, naxis=2).wcs_pix2world([[1, 1], [CUT, CUT]], 1)
    there = WCS(full).wcs_pix2world([[1 + offset, 1 + offset], [CUT + offset, CUT + offset]], 1)
    np.testing.assert_allclose(here, there, atol=1e-9)
    ra, dec = WCS(full).wcs_pix2world([[SIZE / 2 + 0.5, SIZE / 2 + 0.5]], 1)[0]
    assert ra == pytest.approx(150.1191, abs=1e-6) and dec == pytest.approx(2.2058, abs=1e-6)


def test_cube_structure(demo):
    directory, _ = demo
    with tifffile.TiffFile(directory / "cube.tif") as tif:
        assert tif.is_bigtiff
        assert [p.shape for p in tif.pages] == [(1024, 1024, 3), (512, 512, 3), (256, 256, 3)]
        first = tif.pages[0]
        assert first.dtype == np.float32 and first.is_tiled and first.tilewidth == 256
        smin, smax = first.tags[340].value, first.tags[341].value
        assert len(smin) == 3 and all(lo < hi for lo, hi in zip(smin, smax, strict=True))
        description = first.description
        pixels = first.asarray()
    assert "CHAN0001= 'g" in description and "CHAN0003= 'i" in description
    assert "CD1_1   =" in description and "NAXIS1  =                 1024" in description
    assert pixels.max() > 1000  # stars and galaxies


def test_rgb_pyramid(demo):
    directory, _ = demo
    with tifffile.TiffFile(directory / "rgb.tif") as tif:
        assert tif.is_bigtiff
        first = tif.pages[0]
        assert first.shape == (SIZE, SIZE, 3) and first.dtype == np.uint8
        assert first.is_tiled and (first.tilewidth, first.tilelength) == (256, 256)
        assert first.compression == tifffile.COMPRESSION.JPEG
        assert first.photometric == tifffile.PHOTOMETRIC.YCBCR
        sizes = [p.shape[:2] for p in tif.pages]
    assert sizes[:3] == [(1024, 1024), (512, 512), (256, 256)]
    image = pyvips.Image.new_from_file(str(directory / "rgb.tif"))
    pixels = np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(SIZE, SIZE, 3))
    assert pixels.std(axis=(0, 1)).min() > 20  # colourful, not flat


def test_size_is_checked(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        write_demo_data(tmp_path, size=10, progress=False)
