"""pyiip.parse.deepzoom from the DeepZoom file layout (Microsoft's DZI format), both ways, without a file."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiip.errors import BadRequest
from pyiip.parse import numbers
from pyiip.parse.deepzoom import Descriptor, Tile, parse

TABLE = [
    ("duomo.dzi", Descriptor("duomo")),
    ("dir/sub/duomo.tif.dzi", Descriptor("dir/sub/duomo.tif")),
    ("duomo_files/0/0_0.jpg", Tile("duomo", 0, 0, 0, "jpg")),  # level 0: the 1x1 image
    ("duomo_files/14/3_2.jpg", Tile("duomo", 14, 3, 2, "jpg")),
    ("dir/sub/duomo.tif_files/9/12_7.png", Tile("dir/sub/duomo.tif", 9, 12, 7, "png")),
    ("a_files/1/0_0.jpg_files/2/3_4.jpg", Tile("a_files/1/0_0.jpg", 2, 3, 4, "jpg")),  # the last one wins
]


@pytest.mark.parametrize(("path", "value"), TABLE)
def test_table(path: str, value: Descriptor | Tile) -> None:
    assert parse(path) == value
    assert str(value) == path


def test_leading_zeros_print_without_them() -> None:
    assert str(parse("x_files/07/001_02.jpg")) == "x_files/7/1_2.jpg"


@pytest.mark.parametrize(
    "path",
    [
        "duomo",
        "duomo.xml",
        "duomo_files/1/0-0.jpg",
        "duomo_files/1/0_0",
        "_files/1/0_0.jpg",
        "duomo_files/-1/0_0.jpg",
        "duomo_files/1/0_0_0.jpg",
        f"duomo_files/{2**53}/0_0.jpg",  # beyond numbers.MAX_PIXELS
        "duomo_files/" + "9" * 100 + "/0_0.jpg",
    ],
)
def test_bad_paths(path: str) -> None:
    with pytest.raises(BadRequest):
        parse(path)


identifiers = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), min_size=1)
indices = st.integers(0, numbers.MAX_PIXELS)


@given(identifiers, indices, indices, indices, st.sampled_from(["jpg", "jpeg", "png", "webp"]))
def test_tiles_round_trip(identifier: str, level: int, col: int, row: int, ext: str) -> None:
    tile = Tile(identifier, level, col, row, ext)
    assert parse(str(tile)) == tile


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_descriptors_round_trip(identifier: str) -> None:
    assert parse(str(Descriptor(identifier))) == Descriptor(identifier)
