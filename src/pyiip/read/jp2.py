"""JPEG 2000 (.jp2, .j2k) and HTJ2K (.jph, .jhc) images: a pyramid of the codestream's own resolutions.

The levels are the resolutions the codestream declares (ceil(W / 2^r) wide,
as DeepZoom's), offered in tiles of TILE pixels whatever the codestream's
own tiling; a read decodes one window of one resolution (read/openjpeg.py),
so a tile costs the code-blocks under it, not the image. Nothing is decoded
at open: geometry comes from the header (read/jp2_header.py), and what it
declares is checked first, since OpenJPEG allocates structures for every
tile it declares while reading the header, and for every code-block of a
tile it decodes part of.
"""

from __future__ import annotations

import numpy as np

from pyiip.errors import SourceError, TooLarge
from pyiip.read import openjpeg
from pyiip.read.byte_source import ByteSource, LocalFile
from pyiip.read.jp2_header import Header, read_header
from pyiip.read.source import ImageInfo, LevelInfo

SUFFIXES = (".jp2", ".j2k", ".j2c", ".jpf", ".jph", ".jhc")
TILE = 256
MAX_COMPONENTS = 64
MAX_PRECISION = 16  # served as uint16 / int16 at most
# OpenJPEG's header structures, allocated and written for every declared tile while it reads the main header,
# at every read (measured on 2.5.0 and 2.5.4 with a lying SIZ: 9.7 KB a tile with one component, 12.9 with four).
TILE_HEADER_BYTES = 9 * 1024
TILE_COMPONENT_HEADER_BYTES = 1100
MAX_HEADER_BYTES = 256 << 20
# Per code-block of a codestream tile any of whose pixels are decoded: OpenJPEG allocates and initialises the
# whole tile's code-block and precinct structures, not only the window's (measured: about 670 bytes).
CODEBLOCK_BYTES = 768
# A window's int32 planes and wavelet buffers, per decoded value: a partial window (measured 15.7), a window of
# whole codestream tiles (HTJ2K's, measured 4.9).
WINDOW_BYTES = 16
WHOLE_TILE_BYTES = 6
READ_BYTES = 4 << 20  # what any decode holds besides (the codec, its code-block decoder, a tile's indices)
SOURCE_BYTES = 4 * 1024  # the open image: its header and level list
_COLOURS = {16: "rgb", 17: "grey"}


class Jp2Source:
    """An open JPEG 2000 or HTJ2K file (a path or any ByteSource): levels and metadata from its header."""

    def __init__(self, source: str | ByteSource) -> None:
        try:
            self._bytes: ByteSource = LocalFile(source) if isinstance(source, str) else source
        except OSError as exc:
            raise SourceError("image cannot be read") from exc
        self.descriptors = 1 if isinstance(self._bytes, LocalFile) else 0
        self.cost = SOURCE_BYTES
        try:
            openjpeg.library()  # a system without libopenjp2 says so at open, not at the first tile
            self.header = read_header(self._bytes)
            self.info = _info(self.header)
            self.header_bytes = header_bytes(self.header)
        except BaseException:
            self._bytes.close()
            raise

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        area = self._area(level, x, y, w, h)
        if not self.header.high_throughput:
            return self._decode(level, area)
        # OpenJPEG (2.5.0 to 2.5.4 at least) decodes HTJ2K code-blocks wrongly in a window that cuts a
        # codestream tile (the classic ones right): decode the whole tiles the window touches, then crop.
        whole = self._tiles_around(area)
        scale = 1 << level
        dx, dy = -(-area[0] // scale) - -(-whole[0] // scale), -(-area[1] // scale) - -(-whole[1] // scale)
        return self._decode(level, whole)[dy : dy + h, dx : dx + w]

    def _decode(self, level: int, area: tuple[int, int, int, int]) -> np.ndarray:
        header = self.header
        return openjpeg.decode(
            self._bytes,
            header.offset,
            header.length,
            container=False,  # the codestream alone: the boxes were read at open
            reduce=level,
            area=area,
            dtype=self.info.dtype,
        )

    def _area(self, level: int, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        """A level's rectangle on the full-resolution reference grid, which OpenJPEG's window is given in.

        Level pixel i is reference column ceil(x0 / 2^r) + i, so the window is that times 2^r, clipped to
        the image: OpenJPEG's ceil(X / 2^r) gives the rectangle back exactly.
        """
        header, scale = self.header, 1 << level
        left, top = -(-header.x0 // scale) + x, -(-header.y0 // scale) + y
        return (
            max(header.x0, left * scale),
            max(header.y0, top * scale),
            min(header.x1, (left + w) * scale),
            min(header.y1, (top + h) * scale),
        )

    def _tiles_around(self, area: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The smallest window of whole codestream tiles (clipped to the image) that holds ``area``."""
        header = self.header
        tw, th, tx, ty = header.tile_width, header.tile_height, header.tile_x0, header.tile_y0
        return (
            max(header.x0, tx + (area[0] - tx) // tw * tw),
            max(header.y0, ty + (area[1] - ty) // th * th),
            min(header.x1, tx + -(-(area[2] - tx) // tw) * tw),
            min(header.y1, ty + -(-(area[3] - ty) // th) * th),
        )

    def read_overhead(self, level: int, w: int, h: int) -> int:
        """Memory a read needs besides its result, for the request budget (render.memory_estimate).

        OpenJPEG's header structures (every read parses the main header), the decoded window's buffers
        (whole codestream tiles for HTJ2K), and for each codestream tile the window may touch, its
        code-block structures and twice its share of the compressed bytes (a tile-part is read whole).
        Checked against peak RSS in tests/system/test_jpeg2000_memory.py.
        """
        header = self.header
        scale = 1 << level
        across = min(header.tiles_across, -(-w * scale // header.tile_width) + 1)
        down = min(header.tiles_down, -(-h * scale // header.tile_height) + 1)
        if header.high_throughput:
            w = min(self.info.levels[level].width, -(-across * header.tile_width // scale))
            h = min(self.info.levels[level].height, -(-down * header.tile_height // scale))
        count = len(header.components)
        tile_width, tile_height = min(header.tile_width, header.width), min(header.tile_height, header.height)
        blocks = -(-tile_width // header.codeblock[0]) * -(-tile_height // header.codeblock[1]) * 4 // 3
        tiles = across * down
        compressed = min(header.length, 2 * tiles * -(-header.length // (header.tiles_across * header.tiles_down)))
        per_value = WHOLE_TILE_BYTES if header.high_throughput else WINDOW_BYTES
        return (
            READ_BYTES
            + self.header_bytes
            + w * h * count * per_value
            + tiles * blocks * count * CODEBLOCK_BYTES
            + compressed
        )

    def stored_jpeg(self, level: int, col: int, row: int) -> bytes | None:
        return None  # JPEG 2000 tiles are always decoded and encoded again

    def close(self) -> None:
        self._bytes.close()


def header_bytes(header: Header) -> int:
    """What OpenJPEG allocates to read the main header: structures for each tile and component."""
    tiles = header.tiles_across * header.tiles_down
    return tiles * (TILE_HEADER_BYTES + len(header.components) * TILE_COMPONENT_HEADER_BYTES)


def _info(header: Header) -> ImageInfo:
    """The levels and pixel type a header declares, or SourceError/TooLarge for what is not served."""
    components = header.components
    first = components[0]
    if len(components) > MAX_COMPONENTS:
        raise SourceError(f"JPEG 2000 image has more than {MAX_COMPONENTS} components")
    if any(c != first for c in components) or first.dx != 1 or first.dy != 1:
        raise SourceError("JPEG 2000 components of different sizes or types are not served")
    if first.precision > MAX_PRECISION:
        raise SourceError(f"JPEG 2000 samples of more than {MAX_PRECISION} bits are not served")
    if header.palette or header.enumerated_colour not in (None, *_COLOURS):
        raise SourceError("JPEG 2000 palette and YCC colour spaces are not served")
    if header_bytes(header) > MAX_HEADER_BYTES:
        tiles = header.tiles_across * header.tiles_down
        raise TooLarge(f"JPEG 2000 image declares {tiles} tiles: more than {MAX_HEADER_BYTES >> 20} MB to read")
    levels = []
    for reduce in range(header.resolutions):
        scale = 1 << reduce
        width = -(-header.x1 // scale) - -(-header.x0 // scale)
        height = -(-header.y1 // scale) - -(-header.y0 // scale)
        levels.append(LevelInfo(width, height, TILE, TILE))
    kind = "i" if first.signed else "u"
    dtype = np.dtype(f"{kind}{1 if first.precision <= 8 else 2}")
    colour = _COLOURS.get(header.enumerated_colour or 0, "grey" if len(components) < 3 else "rgb")
    # Samples of fewer bits than their type (12 bits in uint16) are shown over their own range, as iipsrv does.
    low = -(1 << (first.precision - 1)) if first.signed else 0
    high = low + (1 << first.precision) - 1
    return ImageInfo(
        levels=tuple(levels),
        channels=len(components),
        dtype=dtype,
        bits=first.precision,
        colorspace=colour,
        smin=(float(low),) * len(components),
        smax=(float(high),) * len(components),
        resolution=header.resolution,
    )
