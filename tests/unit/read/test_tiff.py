"""The pyramidal TIFF reader: levels, tiles and regions against the source pixels."""

import numpy as np
import pytest

from pyiip.errors import SourceError
from pyiip.read.tiff import TiffSource


def _open(images, name):
    return TiffSource(str(images.root / name))


@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        ("rgb.tif", [(1100, 900), (550, 450), (275, 225), (137, 112)]),
        ("rgb_subifd.tif", [(1100, 900), (550, 450), (275, 225), (137, 112)]),
        ("rgb_deflate.tif", [(1100, 900), (550, 450), (275, 225), (137, 112)]),
        ("float.tif", [(700, 500), (350, 250), (175, 125)]),
        ("grey16.tif", [(600, 520), (300, 260), (150, 130)]),
    ],
)
def test_levels(images, name, sizes):
    source = _open(images, name)
    try:
        assert [(lv.width, lv.height) for lv in source.info.levels] == sizes
    finally:
        source.close()


@pytest.mark.parametrize("name", ["rgb_deflate.tif", "grey16.tif", "float.tif"])
def test_lossless_regions_match_the_source_exactly(images, name):
    levels = images.arrays[name.removesuffix(".tif")]
    source = _open(images, name)
    try:
        for index, expected in enumerate(levels):
            h, w = expected.shape[:2]
            rects = [(0, 0, 10, 10), (100, 90, 200, 50), (w - 37, h - 5, 37, 5), (0, 0, w, h)]
            for x, y, rw, rh in [r for r in rects if r[0] + r[2] <= w and r[1] + r[3] <= h]:
                got = source.read(index, x, y, rw, rh)
                assert got.shape == (rh, rw, expected.shape[2] if expected.ndim == 3 else 1)
                np.testing.assert_array_equal(got, expected[y : y + rh, x : x + rw].reshape(got.shape))
    finally:
        source.close()


def test_jpeg_tiles_decode_close_to_the_source(images):
    rgb = images.arrays["rgb"][0]
    source = _open(images, "rgb.tif")
    try:
        got = source.read(0, 1000, 800, 100, 100).astype(int)
        assert np.abs(got - rgb[800:900, 1000:1100]).mean() < 4
        assert source.info.colorspace == "rgb" and source.info.channels == 3
    finally:
        source.close()


def test_float_metadata(images):
    source = _open(images, "float.tif")
    try:
        info = source.info
        assert info.is_float and info.bits == 32 and info.channels == 3
        assert info.smin == (90.0, 91.0, 92.0)
        assert info.smax == (130.0, 131.5, 0.1)
        assert info.metadata["description"].startswith("SIMPLE  =")
    finally:
        source.close()


def test_stored_jpeg_is_the_tile_itself(images):
    import simplejpeg

    source = _open(images, "rgb.tif")
    try:
        stored = source.stored_jpeg(0, 1, 1)
        assert stored is not None and stored.startswith(b"\xff\xd8")
        np.testing.assert_array_equal(simplejpeg.decode_jpeg(stored), source.read(0, 256, 256, 256, 256))
        assert source.stored_jpeg(0, 4, 0) is None  # an edge tile must be cropped, so decoded
    finally:
        source.close()


def test_not_an_image(images):
    with pytest.raises(SourceError):
        _open(images, "not_an_image.tif")
