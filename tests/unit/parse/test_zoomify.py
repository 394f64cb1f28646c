"""pyiip.parse.zoomify from the Zoomify file layout, both ways, without a file."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiip.errors import BadRequest
from pyiip.parse import numbers
from pyiip.parse.zoomify import Properties, Tile, parse

TABLE = [
    ("duomo/ImageProperties.xml", Properties("duomo")),
    ("dir/sub/duomo.tif/ImageProperties.xml", Properties("dir/sub/duomo.tif")),
    ("duomo/TileGroup0/0-0-0.jpg", Tile("duomo", "0", 0, 0, 0, "jpg")),  # tier 0: the smallest
    ("duomo/TileGroup1/4-12-7.jpg", Tile("duomo", "1", 4, 12, 7, "jpg")),
    ("dir/sub/duomo.tif/TileGroup12/6-40-31.png", Tile("dir/sub/duomo.tif", "12", 6, 40, 31, "png")),
    ("duomo/TileGroup007/1-0-1.jpg", Tile("duomo", "007", 1, 0, 1, "jpg")),  # the group is kept as written
]


@pytest.mark.parametrize(("path", "value"), TABLE)
def test_table(path: str, value: Properties | Tile) -> None:
    assert parse(path) == value
    assert str(value) == path


def test_any_length_of_group_is_ignored() -> None:
    """iipsrv ignores the TileGroup number: no length of it is an error."""
    assert parse("d/TileGroup" + "9" * 5000 + "/0-0-0.jpg") == Tile("d", "9" * 5000, 0, 0, 0, "jpg")


@pytest.mark.parametrize(
    "path",
    [
        "duomo",
        "duomo/imageproperties.xml",
        "duomo/TileGroup/0-0-0.jpg",
        "duomo/TileGroupA/0-0-0.jpg",
        "duomo/TileGroup0/0-0.jpg",
        "duomo/TileGroup0/0_0_0.jpg",
        "TileGroup0/0-0-0.jpg",
        "duomo/TileGroup0/-1-0-0.jpg",
        f"duomo/TileGroup0/0-{2**53}-0.jpg",  # beyond numbers.MAX_PIXELS
    ],
)
def test_bad_paths(path: str) -> None:
    with pytest.raises(BadRequest):
        parse(path)


identifiers = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), min_size=1)
indices = st.integers(0, numbers.MAX_PIXELS)


@given(identifiers, st.from_regex(r"[0-9]{1,6}", fullmatch=True), indices, indices, indices)
def test_tiles_round_trip(identifier: str, group: str, tier: int, col: int, row: int) -> None:
    tile = Tile(identifier, group, tier, col, row, "jpg")
    assert parse(str(tile)) == tile


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_properties_round_trip(identifier: str) -> None:
    assert parse(str(Properties(identifier))) == Properties(identifier)
