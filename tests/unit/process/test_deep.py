"""process.deep: how samples of more than 8 bits become 16-bit output, and which requests it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from pyiip.errors import BadRequest
from pyiip.model import IDENTITY, Display, ImageRequest, Region
from pyiip.process.deep import check, samples
from pyiip.read.source import ImageInfo, LevelInfo


def test_uint16_goes_out_as_stored() -> None:
    pixels = np.array([[[0], [1], [65535]]], np.uint16)
    assert samples(pixels, np.array([[100.0, 200.0]]), IDENTITY) is pixels


def test_uint16_with_minmax_is_normalised() -> None:
    pixels = np.array([[[100], [150], [200], [250]]], np.uint16)
    out = samples(pixels, np.array([[0.0, 65535.0]]), Display(minmax=((0, 100.0, 200.0),)))
    assert out.ravel().tolist() == [0, 32768, 65535, 65535]


def test_float_is_minmax_normalised_per_channel() -> None:
    pixels = np.array([[[90.0, -1.0], [110.0, 0.0], [130.0, 1.0], [np.nan, np.inf]]], np.float32)
    minmax = np.array([[90.0, 130.0], [-1.0, 1.0]])
    out = samples(pixels, minmax, IDENTITY)
    assert out.dtype == np.uint16
    assert out[0, :, 0].tolist() == [0, 32768, 65535, 0]  # NaN is 0
    assert out[0, :, 1].tolist() == [0, 32768, 65535, 65535]
    overridden = samples(pixels, minmax, Display(minmax=((0, 110.0, 130.0),)))
    assert overridden[0, :3, 0].tolist() == [0, 0, 65535]


def test_empty_range_does_not_divide_by_zero() -> None:
    out = samples(np.array([[[5.0], [5.0001]]], np.float32), np.array([[5.0, 5.0]]), IDENTITY)
    assert out.ravel().tolist() == [0, 65535]


def _info(dtype: type, bits: int) -> ImageInfo:
    level = LevelInfo(width=10, height=10, tile_width=10, tile_height=10)
    return ImageInfo(levels=(level,), channels=1, dtype=np.dtype(dtype), bits=bits, colorspace="grey")


def _request(**changes: object) -> ImageRequest:
    values: dict = {"region": Region(0, 0, 10, 10), "size": (10, 10), "format": "png", "depth": 16}
    values.update(changes)
    return ImageRequest(**values)


@pytest.mark.parametrize(
    ("dtype", "bits", "request_", "message"),
    [
        (np.uint16, 16, _request(format="jpg"), "16-bit output is png or tif, not jpg"),
        (np.uint8, 8, _request(), "more than 8 bits"),
        (np.uint16, 16, _request(color="gray"), "no gray or bitonal"),
        (np.float32, 32, _request(display=Display(colormap="jet")), "MINMAX only"),
    ],
)
def test_refused(dtype: type, bits: int, request_: ImageRequest, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        check(_info(dtype, bits), request_)


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_accepted(fmt: str) -> None:
    check(_info(np.float32, 32), _request(format=fmt, display=Display(minmax=((0, 1.0, 2.0),))))
    check(_info(np.uint16, 16), _request(format=fmt, color="color"))
