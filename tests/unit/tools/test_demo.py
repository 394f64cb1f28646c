"""pyiip.demo: the demo astronomy cube and RGB pyramid, made small so the test is quick."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile
from astropy.io import fits
from astropy.wcs import WCS

from pyiip.tools.demo import write_demo_data

SIZE = 1024


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    directory = tmp_path_factory.mktemp("demo")
    return directory, write_demo_data(directory, size=SIZE, progress=False)


def test_paths(demo):
    directory, paths = demo
    names = [p.relative_to(directory).as_posix() for p in paths]
    assert names == ["cube.tif", "rgb.tif", "fits/g.fits", "fits/r.fits", "fits/i.fits"]
    assert all(p.is_file() for p in paths)
    assert not [p for p in directory.rglob(".*")]  # no temporaries left


def test_fits_images_look_like_sky(demo):
    directory, _ = demo
    peaks = []
    for band in "gri":
        with fits.open(directory / "fits" / f"{band}.fits") as hdul:
            header, data = hdul[0].header, hdul[0].data
            assert data.shape == (SIZE, SIZE) and data.dtype.kind == "f" and data.dtype.itemsize == 4
            assert header["FILTER"] == band and header["OBJECT"]
            assert (header["CTYPE1"], header["CTYPE2"]) == ("RA---TAN", "DEC--TAN")
            assert all(k in header for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"))
            median, mad = np.median(data), np.median(np.abs(data - np.median(data)))
            assert 99 < median < 103 and 3 < 1.4826 * mad < 7  # sky 100 ADU, sigma 5
            assert data.max() > 1000  # stars and galaxies
            peaks.append(float(np.sort(data.ravel())[-1000]))
            ra, dec = WCS(header).wcs_pix2world([[SIZE / 2 + 0.5, SIZE / 2 + 0.5]], 1)[0]
            assert ra == pytest.approx(150.1191, abs=1e-6) and dec == pytest.approx(2.2058, abs=1e-6)
    assert len(set(peaks)) == 3  # the bands differ


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
    # The cube is the FITS images, flipped vertically.
    g = fits.getdata(directory / "fits" / "g.fits")
    np.testing.assert_array_equal(pixels[:, :, 0], g[::-1])


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
