"""What every image source offers the renderer: geometry, metadata and pixels.

The pyramidal TIFF reader and the pyvips reader of flat images both produce
an ``ImageInfo`` and read regions of one pyramid level; nothing above them
knows the file format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class LevelInfo:
    """One pyramid level; index 0 is full resolution."""

    width: int
    height: int
    tile_width: int
    tile_height: int

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        return -(-self.height // self.tile_height)

    def tile_rect(self, col: int, row: int) -> tuple[int, int, int, int]:
        """(x, y, w, h) of a tile, cropped at the level's right and bottom edges."""
        x, y = col * self.tile_width, row * self.tile_height
        return x, y, min(self.tile_width, self.width - x), min(self.tile_height, self.height - y)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """Geometry and metadata of one image, cached per file identity."""

    levels: tuple[LevelInfo, ...]
    channels: int
    dtype: np.dtype
    bits: int
    colorspace: str  # "grey", "rgb" or "lab"
    smin: tuple[float, ...] | None = None
    smax: tuple[float, ...] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    resolution: tuple[float, float] | None = None  # pixels per inch, x and y

    @property
    def width(self) -> int:
        return self.levels[0].width

    @property
    def height(self) -> int:
        return self.levels[0].height

    @property
    def tile_size(self) -> tuple[int, int]:
        return self.levels[0].tile_width, self.levels[0].tile_height

    @property
    def is_float(self) -> bool:
        return self.dtype.kind == "f"


class ImageSource(Protocol):
    """An open image: one per file identity, kept open per process.

    ``cost`` and ``descriptors`` are what the store of open images (images.ImageStore) budgets.
    """

    info: ImageInfo

    @property
    def cost(self) -> int:
        """Bytes this open image holds in memory while open (tables, metadata, decoded pixels)."""
        ...

    @property
    def descriptors(self) -> int:
        """File descriptors it holds open."""
        ...

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Pixels of a rectangle of one level as an (h, w, channels) array of the native dtype.

        It may be read-only (a view of a cached tile): callers copy before they change pixels.
        """
        ...

    def stored_jpeg(self, level: int, col: int, row: int) -> bytes | None:
        """The tile's stored JPEG stream when it can be sent as it is, else None."""
        ...

    def close(self) -> None: ...
