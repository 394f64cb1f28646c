"""Zoomify paths -> typed requests, and back to text.

``{id}/ImageProperties.xml`` and ``{id}/TileGroup{n}/{tier}-{col}-{row}.{ext}``.

Pure: the tier, column and row are bounded numbers here (numbers.indices);
whether they lie inside the image's tiers is the respond layer's question.
The TileGroup number only spreads files over directories in static Zoomify
sets: it is kept as written, for printing back, and otherwise ignored (as
iipsrv does), so no length of it is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyiip.errors import BadRequest
from pyiip.parse import numbers

_INDICES = ("Zoomify tier", "Zoomify column", "Zoomify row")
_TILE = re.compile(r"^(.+)/TileGroup(\d+)/(\d+)-(\d+)-(\d+)\.(\w+)$")
_PROPERTIES = "/ImageProperties.xml"


@dataclass(frozen=True, slots=True)
class Properties:
    """``{id}/ImageProperties.xml``: the image's size and tile size."""

    identifier: str

    def __str__(self) -> str:
        return self.identifier + _PROPERTIES


@dataclass(frozen=True, slots=True)
class Tile:
    """``{id}/TileGroup{group}/{tier}-{col}-{row}.{ext}``; tier 0 is the smallest."""

    identifier: str
    group: str  # digits, as written
    tier: int
    col: int
    row: int
    ext: str

    def __str__(self) -> str:
        return f"{self.identifier}/TileGroup{self.group}/{self.tier}-{self.col}-{self.row}.{self.ext}"


def parse(path: str) -> Properties | Tile:
    """``path`` is decoded; a path of neither form, or an index out of bounds, is a 400."""
    if path.endswith(_PROPERTIES):
        return Properties(path[: -len(_PROPERTIES)])
    match = _TILE.match(path)
    if match is None:
        raise BadRequest(
            "Zoomify requests are {image}/ImageProperties.xml or {image}/TileGroup{n}/{tier}-{col}-{row}.jpg"
        )
    identifier, group, *indices, ext = match.groups()
    tier, col, row = numbers.indices(_INDICES, indices)
    return Tile(identifier, group, tier, col, row, ext)
