"""pyiip.model: the request values stay values (cache keys print their repr; ETags digest it)."""

from __future__ import annotations

import dataclasses

from pyiip.model import IDENTITY, ImageRequest, Region


def test_a_request_prints_equals_and_hashes_by_its_fields() -> None:
    first = ImageRequest(Region(0, 256, 256, 256, 1), (256, 256))
    second = ImageRequest(region=Region(0, 256, 256, 256, level=1), size=(256, 256), display=IDENTITY)
    assert first is not second and first == second and hash(first) == hash(second)
    assert len({first, second, dataclasses.replace(first, format="png")}) == 2
    assert repr(first) == (
        "ImageRequest(region=Region(x=0, y=256, w=256, h=256, level=1), size=(256, 256), rotation=0.0, "
        "mirror=False, color='default', format='jpg', quality=None, display=Display(minmax=(), gamma=1.0, "
        "contrast=1.0, colormap=None, invert=False, twist=None, shade=None), depth=8)"
    )
    assert first != dataclasses.replace(first, region=Region(0, 256, 256, 256))
