"""AVIF and 16-bit PNG/TIFF output: decoded back with independent decoders (libavif's, libpng's, libtiff's)."""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pytest
import tifffile

from pyiip.encode.encoders import encode


def _pattern(channels: int, dtype: type = np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    y, x = np.mgrid[0:64, 0:96]
    planes = [(x * top // 95), (y * top // 63), ((x + y) * top // 158)][:channels]
    return np.dstack(planes).astype(dtype)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_avif_lossless_is_exact(channels: int) -> None:
    pixels = _pattern(channels)
    body = encode(pixels, "avif", -1)
    assert body[4:12] == b"ftypavif"
    decoded = imagecodecs.avif_decode(body)
    decoded = decoded if decoded.ndim == 3 else decoded[:, :, None]
    assert np.array_equal(decoded, pixels)


def test_avif_quality_changes_size_and_stays_close() -> None:
    pixels = _pattern(3)
    small, large = encode(pixels, "avif", 20), encode(pixels, "avif", 90)
    assert len(small) < len(large)
    assert np.abs(imagecodecs.avif_decode(large).astype(int) - pixels).mean() < 4


@pytest.mark.parametrize("channels", [1, 3])
def test_png_16_bit(channels: int) -> None:
    pixels = _pattern(channels, np.uint16)
    decoded = imagecodecs.png_decode(encode(pixels, "png", 100))
    assert decoded.dtype == np.uint16
    assert np.array_equal(decoded.reshape(pixels.shape), pixels)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_tiff_16_bit(channels: int) -> None:
    pixels = _pattern(channels, np.uint16)
    with tifffile.TiffFile(io.BytesIO(encode(pixels, "tif", 100))) as tif:
        page = tif.pages[0]
        assert page.bitspersample == 16
        assert np.array_equal(page.asarray().reshape(pixels.shape), pixels)
