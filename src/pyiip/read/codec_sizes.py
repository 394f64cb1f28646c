"""The size a compressed tile declares in its own header, read before it is decoded.

Image codecs inside TIFF tiles (JPEG, WebP, PNG, JPEG 2000, JPEG XL) allocate the
image their header declares, whatever the tile they are meant to fill: a
333-byte JPEG whose frame header says 30000 x 30000 takes 900 MB to decode.
The TIFF reader compares what these parsers find with its tile before it
decodes anything. Each parser reads only headers, in a loop bounded by the
stream's length, and returns None when it finds no size (the decoder then
fails on its own, at no cost).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Declared:
    """What a stream says it decodes to."""

    width: int
    height: int
    samples: int  # components per pixel (0 when the header does not say)
    frames: int = 1  # images in the stream (an animation decodes them all)


# JPEG frame headers: SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RSTn, SOI, EOI.
_STANDALONE = frozenset([0x01, *range(0xD0, 0xDA)])


def jpeg(data: bytes) -> Declared | None:
    """The first frame header (SOF) of a JPEG stream: what libjpeg allocates for."""
    at = 2 if data.startswith(b"\xff\xd8") else 0
    end = len(data) - 4
    while at <= end:
        if data[at] != 0xFF:
            return None  # entropy-coded data before any frame header
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker in _STANDALONE:
            at += 2
        elif marker in _SOF:
            if at + 10 > len(data):
                return None
            height, width, samples = struct.unpack_from(">HHB", data, at + 5)
            return Declared(width, height, samples)
        else:
            length = data[at + 2] << 8 | data[at + 3]
            if length < 2:
                return None
            at += 2 + length
    return None


def webp(data: bytes) -> Declared | None:
    """The canvas of an extended WebP (VP8X), else the size of its lossy (VP8) or lossless (VP8L) image."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk, body = data[12:16], data[20:30]
    if chunk == b"VP8X":
        flags = body[0]
        width = 1 + int.from_bytes(body[4:7], "little")
        height = 1 + int.from_bytes(body[7:10], "little")
        return Declared(width, height, 4 if flags & 0x10 else 3, 2 if flags & 0x02 else 1)
    if chunk == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", body, 6)
        return Declared(width & 0x3FFF, height & 0x3FFF, 3)
    if chunk == b"VP8L" and body[0] == 0x2F:
        (bits,) = struct.unpack_from("<I", body, 1)
        return Declared(1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF), 4 if bits >> 28 & 1 else 3)
    return None


def png(data: bytes) -> Declared | None:
    """The IHDR chunk, which PNG requires first."""
    if len(data) < 26 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    width, height, _depth, colour = struct.unpack_from(">IIBB", data, 16)
    samples = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour, 4)
    return Declared(width, height, samples)


_J2K_SIGNATURE = b"\xff\x4f\xff\x51"  # SOC then SIZ
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def jpeg2000(data: bytes) -> Declared | None:
    """The SIZ marker of the codestream: bare (J2K), or in the contiguous codestream box of a JP2 file."""
    if data.startswith(_JP2_SIGNATURE):
        data = _jp2_codestream(data)
    if not data.startswith(_J2K_SIGNATURE) or len(data) < 42:
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", data, 8)
    (components,) = struct.unpack_from(">H", data, 40)
    return Declared(max(0, xsiz - xosiz), max(0, ysiz - yosiz), components)


def _jp2_codestream(data: bytes) -> bytes:
    """The content of a JP2 file's contiguous codestream box (empty when there is none)."""
    return _box(data, (b"jp2c",))


def _box(data: bytes, kinds: tuple[bytes, ...]) -> bytes:
    """The content of the first top-level ISO base media box of one of ``kinds`` (JP2, JPEG XL containers)."""
    at = 0
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if length == 1 and at + 16 <= len(data):
            (length,) = struct.unpack_from(">Q", data, at + 8)
            header = 16
        elif length == 0:
            length = len(data) - at
        if kind in kinds:
            return data[at + header : at + length]
        if length < header:
            return b""
        at += length
    return b""


_JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


class _Bits:
    """JPEG XL's bit reader: least significant bit first."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data[:64], "little")
        self.position = 0

    def read(self, count: int) -> int:
        result = (self.value >> self.position) & ((1 << count) - 1)
        self.position += count
        return result

    def u32(self) -> int:
        """U32(Bits(9), Bits(13), Bits(18), Bits(30)), the distribution of image sides."""
        return self.read((9, 13, 18, 30)[self.read(2)])

    def size(self) -> tuple[int, int]:
        """A SizeHeader: (width, height)."""
        small = self.read(1)
        height = (1 + self.read(5)) * 8 if small else 1 + self.u32()
        ratio = self.read(3)
        if ratio:
            num, den = _JXL_RATIOS[ratio]
            return height * num // den, height
        return ((1 + self.read(5)) * 8 if small else 1 + self.u32()), height


def jpegxl(data: bytes) -> Declared | None:
    """The SizeHeader of a JPEG XL codestream (bare, or in a container), and whether it holds more frames.

    A preview or an animation counts as more than one frame: they are refused, not parsed.
    """
    if data.startswith(_JXL_CONTAINER):
        partial = _box(data, (b"jxlp",))
        data = partial[4:] if partial else _box(data, (b"jxlc",))
    if not data.startswith(b"\xff\x0a") or len(data) < 12:
        return None
    bits = _Bits(data[2:])
    width, height = bits.size()
    frames = 1
    if not bits.read(1) and bits.read(1):  # not all_default, extra_fields
        bits.read(3)  # orientation
        if bits.read(1):
            bits.size()  # intrinsic size: a hint to viewers, not what is decoded
        if bits.read(1) or bits.read(1):  # a preview, an animation
            frames = 2
    return Declared(width, height, 0, frames)


# TIFF compression codes whose decoders size their output from the stream's own header.
PARSERS: dict[int, Callable[[bytes], Declared | None]] = {
    6: jpeg,
    7: jpeg,
    33007: jpeg,
    34892: jpeg,
    50001: webp,
    34927: webp,
    34933: png,
    33003: jpeg2000,
    33004: jpeg2000,
    33005: jpeg2000,
    34712: jpeg2000,
    50002: jpegxl,
    52546: jpegxl,
}
