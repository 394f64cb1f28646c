"""What a memcached value must look like to be sent as an image of the asked format (tier.looks_like)."""

from __future__ import annotations

import numpy as np
import pytest

from pyiip.cache.tier import looks_like
from pyiip.encode.encoders import encode

PIXELS = np.random.default_rng(3).integers(0, 255, (40, 30, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "gif", "tif"])
def test_whole_images_of_each_format_are_taken_and_only_as_that_format(fmt):
    body = encode(PIXELS, fmt, 80)
    assert looks_like(body, fmt) and looks_like(memoryview(body), fmt)
    others = {"jpg", "png", "webp", "gif", "tif"} - {fmt}
    assert not any(looks_like(body, other) for other in others)


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "gif"])
def test_an_image_cut_short_or_with_bytes_after_it_is_refused(fmt):
    body = encode(PIXELS, fmt, 80)
    assert not looks_like(body[:-1], fmt)
    assert not looks_like(body[: len(body) // 2], fmt)
    assert not looks_like(body + b"<html>", fmt)


def test_unknown_formats_and_empty_values_are_refused():
    assert not looks_like(b"", "jpg")
    assert not looks_like(b"\xff\xd8\xff\xd9", "svg")
