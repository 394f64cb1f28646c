"""pyiip.process.pixels: the Bresenham line against the textbook error-term loop, and samples at FITS
pixels against the array the test cube was written from (the raster flipped: FITS y up)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiip.process import pixels
from pyiip.read.tiff import TiffSource


def bresenham(x1: int, y1: int, x2: int, y2: int) -> list[tuple[int, int]]:
    """The loop: step the major axis; step the minor one while the error term is >= 0 (ties step)."""
    steep = abs(y2 - y1) > abs(x2 - x1)
    a1, b1, a2, b2 = (y1, x1, y2, x2) if steep else (x1, y1, x2, y2)
    major, minor = abs(a2 - a1), abs(b2 - b1)
    sa, sb = (1 if a2 > a1 else -1), (1 if b2 > b1 else -1)
    a, b, error = a1, b1, 2 * minor - major
    points = []
    for _ in range(major):
        points.append((b, a) if steep else (a, b))
        while error >= 0:
            b += sb
            error -= 2 * major
        a += sa
        error += 2 * minor
    points.append((x2, y2))
    return points


coordinate = st.integers(-300, 300)


@given(coordinate, coordinate, coordinate, coordinate)
def test_line_is_bresenham(x1: int, y1: int, x2: int, y2: int) -> None:
    xs, ys = pixels.line(x1, y1, x2, y2)
    assert list(zip(xs.tolist(), ys.tolist(), strict=True)) == bresenham(x1, y1, x2, y2)


def test_line_ties_round_away_from_the_start() -> None:
    assert list(zip(*pixels.line(0, 0, 4, 2), strict=True)) == [(0, 0), (1, 1), (2, 1), (3, 2), (4, 2)]
    assert list(zip(*pixels.line(4, 2, 0, 0), strict=True)) == [(4, 2), (3, 1), (2, 1), (1, 0), (0, 0)]


@pytest.fixture(scope="module")
def cube(images):
    source = TiffSource(str(images.root / "float.tif"))
    yield source, images.arrays["float"][0]
    source.close()


def test_samples_are_the_stored_values_at_fits_pixels(cube) -> None:
    source, data = cube
    height, width, _ = data.shape
    rng = np.random.default_rng(3)
    xs = rng.integers(-5, width + 5, 400)
    ys = rng.integers(-5, height + 5, 400)
    found = pixels.samples(source, xs, ys)
    for x, y, values in zip(xs.tolist(), ys.tolist(), found, strict=True):
        if not (1 <= x <= width and 1 <= y <= height):
            assert values is None
            continue
        expected = data[height - y, x - 1]
        assert values == [None if math.isnan(v) else v for v in expected.tolist()]  # exact: float32 as stored


def test_nan_is_null_and_channels_are_picked(cube) -> None:
    source, data = cube
    height = data.shape[0]
    (top_left,) = pixels.samples(source, np.array([1]), np.array([height]))  # raster (0, 0) holds NaN
    assert top_left == [None, None, None]
    (inside,) = pixels.samples(source, np.array([201]), np.array([height - 100]))
    assert inside == [5000.0, 5000.0, 5000.0]
    assert pixels.pick(inside, (3, 0, 9, 1), 3) == [5000.0, None, None, 5000.0]
    assert pixels.pick(None, (), 3) == [None, None, None]


def test_a_long_line_reads_each_tile_once(cube) -> None:
    source, data = cube
    height, width, _ = data.shape
    reads = []
    original = source.read

    def counting(level, x, y, w, h):
        reads.append((w, h))
        return original(level, x, y, w, h)

    source.read = counting
    try:
        xs, ys = pixels.line(1, 1, width, height)
        found = pixels.samples(source, xs, ys)
    finally:
        del source.read
    tile = source.info.levels[0].tile_width
    assert len(reads) <= 2 * (-(-width // tile) + -(-height // tile))
    assert all(w <= tile and h <= tile for w, h in reads)
    assert found[-1] == [None if math.isnan(v) else v for v in data[0, width - 1].tolist()]
