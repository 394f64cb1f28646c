"""What a JPEG 2000 file declares, read from its boxes and main header alone: no pixel is decoded.

The JP2/JPH boxes (signature, header, colour, resolution, then the codestream
box) and the codestream's main header markers (SIZ: sizes, tiling and
components; COD/COC: decomposition levels and code-blocks; CAP: HTJ2K) are
parsed here, by small reads: a 100 GB codestream costs the few hundred bytes
of its header. The reader checks what they declare against its limits
before OpenJPEG allocates anything for them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pyiip.errors import SourceError
from pyiip.read.byte_source import ByteSource

JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"  # JP2 and JPH files (the HTJ2K file format is JP2's)
CODESTREAM_SIGNATURE = b"\xff\x4f\xff\x51"  # SOC then SIZ: a bare J2K or J2C/JHC codestream
_MAX_BOXES = 1024  # top-level boxes looked at before the codestream (XML, UUID, JPX extras)
_MAX_MARKERS = 4096  # main header markers looked at before the first tile-part
SOT, COD, COC, CAP = 0xFF90, 0xFF52, 0xFF53, 0xFF50
_HT = 0x4000  # Rsiz bit 14: the codestream uses HTJ2K (Part 15) code-blocks


@dataclass(frozen=True, slots=True)
class Component:
    precision: int  # bits per sample
    signed: bool
    dx: int  # subsampling on the reference grid
    dy: int


@dataclass(frozen=True, slots=True)
class Header:
    """SIZ, COD/COC and CAP of the main header, and the JP2 boxes that say how to show the pixels."""

    container: bool  # JP2/JPH boxes around the codestream (else a bare codestream)
    offset: int  # where the codestream starts in the file
    length: int  # its length (to the end of the file when its box says so)
    x0: int
    y0: int
    x1: int
    y1: int
    tile_x0: int
    tile_y0: int
    tile_width: int
    tile_height: int
    components: tuple[Component, ...]
    resolutions: int  # the fewest any component declares in the main header (decomposition levels + 1)
    codeblock: tuple[int, int]  # the largest code-block (width, height) any component declares
    high_throughput: bool
    layers: int
    enumerated_colour: int | None = None  # the colr box's EnumCS: 16 sRGB, 17 greyscale, 18 sYCC
    palette: bool = False
    resolution: tuple[float, float] | None = None  # pixels per inch (x, y), from the res box

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def tiles_across(self) -> int:
        return -(-(self.x1 - self.tile_x0) // self.tile_width)

    @property
    def tiles_down(self) -> int:
        return -(-(self.y1 - self.tile_y0) // self.tile_height)


def _read(data: ByteSource, count: int, offset: int) -> bytes:
    chunk = data.pread(count, offset)
    if len(chunk) != count:
        raise SourceError("JPEG 2000 file is truncated")
    return chunk


@dataclass(slots=True)
class _Boxes:
    """What the boxes before the codestream say."""

    offset: int = 0
    length: int = 0
    enumerated: int | None = None
    palette: bool = False
    resolution: tuple[float, float] | None = None


def _box_header(data: ByteSource, at: int, end: int) -> tuple[bytes, int, int]:
    """(type, content offset, content end) of the box at ``at``; a length of 0 runs to ``end``."""
    length, kind = struct.unpack(">I4s", _read(data, 8, at))
    start = at + 8
    if length == 1:
        (length,) = struct.unpack(">Q", _read(data, 8, at + 8))
        start = at + 16
    elif length == 0:
        length = end - at
    if length < start - at or at + length > end:
        raise SourceError("JPEG 2000 box length is invalid")
    return kind, start, at + length


def _boxes(data: ByteSource) -> _Boxes:
    found = _Boxes()
    at, end = 0, data.size
    for _ in range(_MAX_BOXES):
        if at >= end:
            break
        kind, start, stop = _box_header(data, at, end)
        if kind == b"jp2c":
            found.offset, found.length = start, stop - start
            return found
        if kind == b"jp2h":
            _header_box(data, start, stop, found)
        at = stop
    raise SourceError("JPEG 2000 file has no codestream")


def _header_box(data: ByteSource, at: int, end: int, found: _Boxes) -> None:
    """The JP2 header superbox: colour specification, palette, resolution."""
    for _ in range(_MAX_BOXES):
        if at >= end:
            return
        kind, start, stop = _box_header(data, at, end)
        if kind == b"colr" and found.enumerated is None and stop - start >= 7:
            method = _read(data, 1, start)[0]
            if method == 1:
                (found.enumerated,) = struct.unpack(">I", _read(data, 4, start + 3))
        elif kind == b"pclr":
            found.palette = True
        elif kind == b"res ":
            found.resolution = _resolution(data, start, stop)
        at = stop


def _resolution(data: ByteSource, at: int, end: int) -> tuple[float, float] | None:
    """Capture resolution (else display resolution) in pixels per inch; the boxes give pixels per metre."""
    found: dict[bytes, tuple[float, float]] = {}
    for _ in range(4):
        if at >= end:
            break
        kind, start, stop = _box_header(data, at, end)
        if kind in (b"resc", b"resd") and stop - start == 10:
            vn, vd, hn, hd, ve, he = struct.unpack(">HHHHbb", _read(data, 10, start))
            if vd and hd and vn and hn:
                found[kind] = (hn / hd * 10.0**he * 0.0254, vn / vd * 10.0**ve * 0.0254)
        at = stop
    return found.get(b"resc") or found.get(b"resd")


def read_header(data: ByteSource) -> Header:
    """The header of a JP2/JPH file or of a bare codestream; SourceError when it is neither or is broken."""
    start = data.pread(12, 0)
    if start == JP2_SIGNATURE:
        boxes = _boxes(data)
    elif start.startswith(CODESTREAM_SIGNATURE):
        boxes = _Boxes(0, data.size)
    else:
        raise SourceError("not a JPEG 2000 file")
    return _main_header(data, boxes, start == JP2_SIGNATURE)


def _main_header(data: ByteSource, boxes: _Boxes, container: bool) -> Header:
    at, end = boxes.offset, boxes.offset + boxes.length
    if _read(data, 4, at) != CODESTREAM_SIGNATURE:
        raise SourceError("JPEG 2000 codestream does not start with SOC and SIZ")
    (lsiz,) = struct.unpack(">H", _read(data, 2, at + 4))
    if lsiz < 41:
        raise SourceError("JPEG 2000 SIZ marker is too short")
    siz = _read(data, lsiz - 2, at + 6)
    rsiz, x1, y1, x0, y0, tw, th, tx0, ty0, count = struct.unpack_from(">HIIIIIIIIH", siz)
    if not 1 <= count <= 16384 or lsiz != 38 + 3 * count:
        raise SourceError("JPEG 2000 SIZ declares an invalid number of components")
    components = tuple(
        Component((ssiz & 0x7F) + 1, bool(ssiz & 0x80), dx, dy)
        for ssiz, dx, dy in struct.iter_unpack(">BBB", siz[36 : 36 + 3 * count])
    )
    if x1 <= x0 or y1 <= y0 or tw == 0 or th == 0 or tx0 > x0 or ty0 > y0 or tx0 + tw <= x0 or ty0 + th <= y0:
        raise SourceError("JPEG 2000 SIZ declares an invalid geometry")
    if any(c.dx == 0 or c.dy == 0 or c.precision > 38 for c in components):
        raise SourceError("JPEG 2000 SIZ declares invalid components")
    coding = _coding(data, at + 4 + lsiz, end, count)
    resolutions, codeblock, layers, ht = coding
    return Header(
        container=container,
        offset=boxes.offset,
        length=boxes.length,
        x0=x0,
        y0=y0,
        x1=x1,
        y1=y1,
        tile_x0=tx0,
        tile_y0=ty0,
        tile_width=tw,
        tile_height=th,
        components=components,
        resolutions=resolutions,
        codeblock=codeblock,
        high_throughput=bool(rsiz & _HT) or ht,
        layers=layers,
        enumerated_colour=boxes.enumerated,
        palette=boxes.palette,
        resolution=boxes.resolution,
    )


def _coding(data: ByteSource, at: int, end: int, count: int) -> tuple[int, tuple[int, int], int, bool]:
    """Resolutions, largest code-block, quality layers and HT flag from the markers before the first SOT."""
    resolutions: int | None = None
    block, layers, ht = (0, 0), 0, False
    for _ in range(_MAX_MARKERS):
        if at + 4 > end:
            break
        marker, length = struct.unpack(">HH", _read(data, 4, at))
        if marker == SOT:
            break
        if marker >> 8 != 0xFF or length < 2:
            raise SourceError("JPEG 2000 main header is corrupt")
        if marker == CAP:
            ht = True
        elif marker in (COD, COC):
            body = _read(data, length - 2, at + 4)
            # COD: Scod, progression, layers, MCT, then SPcod; COC: Ccoc (1 or 2 bytes), Scoc, then SPcoc.
            spcod = 5 if marker == COD else (1 if count < 257 else 2) + 1
            if len(body) < spcod + 3:
                raise SourceError("JPEG 2000 coding style marker is too short")
            if marker == COD:
                (layers,) = struct.unpack_from(">H", body, 2)
            levels, xcb, ycb = body[spcod], body[spcod + 1], body[spcod + 2]
            if levels > 32 or xcb > 8 or ycb > 8 or xcb + ycb > 8:
                raise SourceError("JPEG 2000 coding style is invalid")
            resolutions = levels + 1 if resolutions is None else min(resolutions, levels + 1)
            block = (max(block[0], 1 << (xcb + 2)), max(block[1], 1 << (ycb + 2)))
        at += 2 + length
    else:
        raise SourceError("JPEG 2000 main header has too many markers")
    if resolutions is None:
        raise SourceError("JPEG 2000 main header has no coding style (COD)")
    return resolutions, block, layers, ht
