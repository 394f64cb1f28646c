"""DeepZoom paths -> typed requests, and back to text: ``{id}.dzi`` and ``{id}_files/{level}/{col}_{row}.{ext}``.

Pure: the level, column and row are bounded numbers here (numbers.indices);
whether they lie inside the image's pyramid is the respond layer's question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyiip.errors import BadRequest
from pyiip.parse import numbers

_INDICES = ("DeepZoom level", "DeepZoom column", "DeepZoom row")
_TILE = re.compile(r"^(.+)_files/(\d+)/(\d+)_(\d+)\.(\w+)$")
_SUFFIX = ".dzi"


@dataclass(frozen=True, slots=True)
class Descriptor:
    """``{id}.dzi``: the image's size and tile size."""

    identifier: str

    def __str__(self) -> str:
        return self.identifier + _SUFFIX


@dataclass(frozen=True, slots=True)
class Tile:
    """``{id}_files/{level}/{col}_{row}.{ext}``; level 0 is the 1x1 image."""

    identifier: str
    level: int
    col: int
    row: int
    ext: str

    def __str__(self) -> str:
        return f"{self.identifier}_files/{self.level}/{self.col}_{self.row}.{self.ext}"


def parse(path: str) -> Descriptor | Tile:
    """``path`` is decoded; a path of neither form, or an index out of bounds, is a 400."""
    if path.endswith(_SUFFIX):
        return Descriptor(path[: -len(_SUFFIX)])
    match = _TILE.match(path)
    if match is None:
        raise BadRequest("DeepZoom requests are {image}.dzi or {image}_files/{level}/{col}_{row}.jpg")
    identifier, *indices, ext = match.groups()
    level, col, row = numbers.indices(_INDICES, indices)
    return Tile(identifier, level, col, row, ext)
