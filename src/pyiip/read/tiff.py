"""Pyramidal (Big)TIFF reader: the structure is parsed once at open, tiles come by pread.

Levels are SubIFDs of the first page when it has them (OME/libvips style),
else every later tiled IFD of the chain (STIFF and libvips style), as iipsrv
reads them. Only the tiles a request covers are read and decoded.

Decoded tiles can be kept in a cache (``tiles``, the TileCache the Service
shares with its rendered images): a tile that a read uses only in part is
stored, so the unaligned regions around it (IIIF regions, CVT) do not decode
it again; a tile read whole, the output of a tile-aligned request, is not:
its encoded form goes to the cache of rendered images anyway. Tiles are
read-only arrays, cached or not, and ``read`` may return a view of one:
callers copy before they change pixels.

The structure is read here before tifffile sees it: the IFDs a pyramid can
use (at most MAX_PAGES, however long the chain), their tile tables as numpy
arrays (tifffile would make tuples of Python ints, 40 bytes an entry, and
read every table whole at open), each refused when the file cannot hold it
or the image's tables would pass MAX_TABLE_BYTES. tifffile parses the same
IFDs with those tables hidden (one entry each) and decodes the tiles; every
image codec's declared size is checked against the tile first (codec_sizes).
CMYK and palette images are served as RGB.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import simplejpeg
import tifffile

from pyiip.errors import SourceError, TooLarge
from pyiip.read import codec_sizes, openjpeg
from pyiip.read.byte_source import ByteSource, ByteStream, LocalFile
from pyiip.read.source import ImageInfo, LevelInfo

JPEG = 7
# JPEG 2000 tiles (Aperio YCbCr and RGB, libtiff's): decoded by OpenJPEG, as .jp2 files are (read/openjpeg.py).
JPEG2000 = frozenset({33003, 33004, 33005, 34712})
# A pyramid halves at each level, so 64 levels cover any TIFF size; later IFDs are not looked at.
MAX_PAGES = 64
# Largest tile decoded at once, in bytes (tiles are usually 256 x 256): absurd tile sizes are refused.
MAX_TILE_BYTES = 1 << 28
# Tile tables one image may declare (16 bytes a tile in a BigTIFF: 16 million tiles, a 1-terapixel
# pyramid of 256-pixel tiles); a larger image is refused (413) before any table is read.
MAX_TABLE_BYTES = 1 << 28
# Any other tag value tifffile or this reader loads at open (descriptions, JPEG tables, colour maps).
MAX_TAG_BYTES = 1 << 24
# What an open image holds besides its tables and metadata (measured with tracemalloc): tifffile's
# objects for each IFD it parsed, and the reader with its 64 KB read buffer.
PAGE_BYTES = 8 * 1024
SOURCE_BYTES = 72 * 1024
_MAX_COUNT = 1 << 28  # larger stored tiles are treated as missing
_MAX_ENTRIES = 4096  # IFD entries (tifffile's own limit)
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_UNSIGNED = {3: "u2", 4: "u4", 13: "u4", 16: "u8", 18: "u8"}  # the types tile tables and SubIFD lists use
# Strip and tile tables and SubIFD lists: read here as arrays, shown to tifffile with one entry each.
_HIDDEN = frozenset({273, 279, 324, 325, 330})
# Codecs whose output tifffile sizes from the tile, not from the stream: Jetraw, EER.
_TILE_SIZED = frozenset({48124, 65000, 65001, 65002})
SEPARATED, PALETTE = 5, 3
_METADATA_TAGS = {
    270: "description",
    315: "artist",
    33432: "copyright",
    306: "datetime",
    305: "software",
    271: "make",
    272: "model",
    269: "documentname",
    285: "pagename",
}


class TileStore(Protocol):
    """Where decoded tiles are kept (cache.tiles.TileCache): keys are hashable, sizes in bytes."""

    max_read: int  # bytes of tiles one read may add

    def get(self, key: Hashable) -> np.ndarray | None: ...

    def put(self, key: Hashable, tile: np.ndarray, size: int) -> None: ...


class UnsupportedCodec(SourceError):
    """Tiles compressed with a codec imagecodecs lacks (libvips would show them black: not tried)."""


@dataclass(slots=True)
class _Level:
    info: LevelInfo
    page: tifffile.TiffPage
    offsets: np.ndarray
    counts: np.ndarray
    planes: int  # separate sample planes (1 when contiguous)
    jpegtables: bytes | None
    max_count: int  # the largest stored tile, in bytes (what one read may pread)
    header: Callable[[bytes], codec_sizes.Declared | None] | None  # reads what a tile's stream declares


@dataclass(frozen=True, slots=True)
class _Layout:
    """Byte order and field width of a classic TIFF (4-byte offsets) or a BigTIFF (8-byte)."""

    order: str
    big: bool

    @property
    def word(self) -> str:
        return "Q" if self.big else "I"

    @property
    def width(self) -> int:
        return 8 if self.big else 4


@dataclass(frozen=True, slots=True)
class _Entry:
    """One IFD entry, its values not read."""

    at: int  # position of the entry in the file
    type: int
    count: int
    field: bytes  # the values when they fit, else their offset

    @property
    def nbytes(self) -> int:
        return self.count * _TYPE_SIZES.get(self.type, 1)

    def position(self, layout: _Layout) -> int:
        """Where the values are: in the entry itself when they fit, else at the offset it holds."""
        if self.nbytes <= layout.width:
            return self.at + 4 + layout.width
        return struct.unpack(layout.order + layout.word, self.field)[0]


@dataclass(frozen=True, slots=True)
class _Ifd:
    offset: int
    entries: dict[int, _Entry]
    next: int


def _layout(data: ByteSource) -> tuple[_Layout, int]:
    """The file's layout and the offset of its first IFD."""
    header = data.pread(16, 0)
    order = {b"II": "<", b"MM": ">"}.get(header[:2])
    if order is None or len(header) < 8:
        raise SourceError("not a TIFF")
    (version,) = struct.unpack_from(order + "H", header, 2)
    if version == 42:
        return _Layout(order, False), struct.unpack_from(order + "I", header, 4)[0]
    if version == 43 and len(header) == 16:
        return _Layout(order, True), struct.unpack_from(order + "Q", header, 8)[0]
    raise SourceError("not a TIFF")


def _read_ifd(data: ByteSource, layout: _Layout, offset: int) -> _Ifd:
    """One IFD's entries, every value that a reader loads at open bounded before anything reads it."""
    count_size = 8 if layout.big else 2
    entry_size = 4 + 2 * layout.width
    if not 8 <= offset <= data.size - count_size:
        raise SourceError("TIFF directory offset is invalid")
    head = data.pread(count_size, offset)
    (count,) = struct.unpack(layout.order + ("Q" if layout.big else "H"), head)
    if count > _MAX_ENTRIES:
        raise SourceError("TIFF directory has too many entries")
    raw = data.pread(count * entry_size + layout.width, offset + count_size)
    if len(raw) != count * entry_size + layout.width:
        raise SourceError("TIFF directory is truncated")
    fmt = f"{layout.order}HH{layout.word}{layout.width}s"
    entries = {}
    for index in range(count):
        code, kind, n, field = struct.unpack_from(fmt, raw, index * entry_size)
        entry = _Entry(offset + count_size + index * entry_size, kind, n, field)
        if code in _HIDDEN and entry.nbytes > data.size:
            raise SourceError("TIFF table is larger than the file")
        if code not in _HIDDEN and MAX_TAG_BYTES < entry.nbytes <= data.size and _loaded(code):
            # (a value past the file's end tifffile ignores itself, unread)
            raise TooLarge(f"TIFF tag {code} holds more than {MAX_TAG_BYTES >> 20} MB")
        entries[code] = entry
    (following,) = struct.unpack_from(layout.order + layout.word, raw, count * entry_size)
    return _Ifd(offset, entries, following)


def _loaded(code: int) -> bool:
    """Whether a tag's value is read at open: by tifffile (its TAG_LOAD), or by this reader."""
    return code in tifffile.TIFF.TAG_LOAD or code in _METADATA_TAGS or code == 320


def _fit(data: ByteSource, layout: _Layout, entry: _Entry, count: int) -> None:
    """Refuse, before reading it, a table of unsigned integers shorter than ``count`` or past the file's end."""
    if entry.type not in _UNSIGNED:
        raise SourceError("TIFF tables hold non-integer offsets")  # a tag of a floating-point type
    if entry.count < count:
        raise SourceError("TIFF tile tables are incomplete")
    itemsize = _TYPE_SIZES[entry.type]
    if entry.position(layout) + count * itemsize > data.size:
        raise SourceError("TIFF table is larger than the file")


def _integers(data: ByteSource, layout: _Layout, entry: _Entry, count: int) -> np.ndarray:
    """The first ``count`` values of an unsigned integer entry, as a read-only native array."""
    _fit(data, layout, entry, count)
    code, nbytes = _UNSIGNED[entry.type], count * _TYPE_SIZES[entry.type]
    raw = data.pread(nbytes, entry.position(layout))
    if len(raw) != nbytes:
        raise SourceError("TIFF file is truncated")
    return np.frombuffer(raw, layout.order + code).astype(code, copy=False)


class _HiddenTables:
    """The file as tifffile is shown it: the entries in ``hidden`` hold a single zero.

    tifffile reads tile tables whole at open, as tuples of Python ints; this
    reader reads them itself, as arrays, once it has bounded them.
    """

    def __init__(self, data: ByteSource, layout: _Layout, hidden: list[_Entry]) -> None:
        self.name, self.size = data.name, data.size
        self._data = data
        blank = struct.pack(layout.order + layout.word, 1) + bytes(layout.width)
        self._patches = [(entry.at + 4, blank) for entry in hidden]

    def pread(self, count: int, offset: int) -> bytes:
        chunk = self._data.pread(count, offset)
        end = offset + len(chunk)
        touched = [(at, patch) for at, patch in self._patches if at < end and at + len(patch) > offset]
        if not touched:
            return chunk
        edited = bytearray(chunk)
        for at, patch in touched:
            start = max(at, offset)
            stop = min(at + len(patch), end)
            edited[start - offset : stop - offset] = patch[start - at : stop - at]
        return bytes(edited)

    def close(self) -> None:
        pass  # the file belongs to the TiffSource


def _tag(page: tifffile.TiffPage, code: int) -> Any:  # tifffile types tag values as Any
    tag = page.tags.get(code)
    return None if tag is None else tag.value


def _per_channel(
    value: float | tuple[float, ...] | list[float] | np.ndarray | None, channels: int
) -> tuple[float, ...] | None:
    if value is None:
        return None
    values = [float(v) for v in (value if isinstance(value, (tuple, list, np.ndarray)) else [value])]
    if not values:
        return None
    if len(values) < channels:
        values += [values[-1]] * (channels - len(values))
    return tuple(values[:channels])


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _check_declared(declared: codec_sizes.Declared | None, width: int, height: int, samples: int) -> None:
    """Refuse a tile's codec stream that declares more than its tile: the decoder would allocate all of it."""
    if declared is None:
        raise SourceError("TIFF tile has no readable image header")
    if declared.width > width or declared.height > height or declared.frames != 1 or declared.samples > max(4, samples):
        raise SourceError(
            f"TIFF tile declares {declared.width} x {declared.height} pixels, more than its {width} x {height} tile"
        )


def _cmyk_to_rgb(tile: np.ndarray) -> np.ndarray:
    """Inks to RGB the naive way, r = (max - c)(max - k) / max: no ICC profile, as most viewers without one."""
    top = np.iinfo(tile.dtype).max
    wide = np.uint32 if tile.dtype.itemsize == 1 else np.uint64
    white: np.ndarray = top - tile.astype(wide)
    return (white[:, :, :3] * white[:, :, 3:4] // top).astype(tile.dtype)


def _palette(table: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Indices to RGB through the colour map (``table``: one uint8 row per index)."""

    def convert(tile: np.ndarray) -> np.ndarray:
        return table[tile[:, :, 0]]

    return convert


class TiffSource:
    """An open pyramidal TIFF: tifffile parses the IFDs once, tiles are read by pread.

    Takes a path (a local file) or any ByteSource (e.g. ranges of a remote object).
    With ``tiles``, decoded tiles are cached under ``identity``, which names
    the version of the bytes: a local path's comes from its open descriptor
    (device, inode, mtime, size); a ByteSource's is given (a remote object's
    URL, ETag and size). Without an identity nothing is cached.
    """

    def __init__(
        self, source: str | ByteSource, tiles: TileStore | None = None, identity: Hashable | None = None
    ) -> None:
        try:
            self._bytes: ByteSource = LocalFile(source) if isinstance(source, str) else source
        except OSError as exc:  # deleted or replaced since it was resolved
            raise SourceError("image cannot be read") from exc
        self.path = self._bytes.name
        if isinstance(self._bytes, LocalFile):
            identity = self._bytes.identity
        self._tiles = tiles if identity is not None else None
        self._identity = identity
        self._tif: tifffile.TiffFile | None = None
        self._table_bytes = 0
        self.descriptors = 1 if isinstance(self._bytes, LocalFile) else 0
        try:
            layout, first = _layout(self._bytes)
            ifds = self._walk(layout, first)
            hidden = [e for ifd in ifds for code, e in ifd.entries.items() if code in _HIDDEN]
            stream = ByteStream(_HiddenTables(self._bytes, layout, hidden))
            self._tif = tifffile.TiffFile(io.BufferedReader(stream, 65536), name=self.path)
            self._levels = self._find_levels(layout, ifds)
            self.info = self._build_info()
            self._colour = self._colour_conversion()
        except (SourceError, TooLarge):
            self.close()
            raise
        except Exception as exc:  # tifffile raises many types on corrupt files
            self.close()
            raise SourceError("not a readable pyramidal TIFF") from exc
        # What this open image holds: its tables, its metadata, tifffile's objects for each IFD it parsed.
        metadata = sum(len(text) for text in self.info.metadata.values())
        self.cost = SOURCE_BYTES + self._table_bytes + metadata + PAGE_BYTES * len(ifds)

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
            self._tif = None
        self._bytes.close()

    def _walk(self, layout: _Layout, first: int) -> list[_Ifd]:
        """The IFDs a pyramid can use: the first and its SubIFDs when it has them, else the chain after it.

        At most MAX_PAGES of them: a chain of millions of IFDs costs no more than a pyramid's.
        A later IFD that cannot be read ends the walk (the levels before it are served).
        """
        ifds = [_read_ifd(self._bytes, layout, first)]
        subifds = ifds[0].entries.get(330)
        listed = None
        if subifds is not None:
            listed = [int(o) for o in _integers(self._bytes, layout, subifds, min(subifds.count, MAX_PAGES - 1))]
        seen = {first}
        while len(ifds) < MAX_PAGES:
            if listed is None:
                offset = ifds[-1].next
            elif len(ifds) <= len(listed):
                offset = listed[len(ifds) - 1]
            else:
                break
            if offset == 0 or offset in seen:
                break
            seen.add(offset)
            try:
                ifds.append(_read_ifd(self._bytes, layout, offset))
            except SourceError:
                break
        tables = sum(e.nbytes for ifd in ifds for code, e in ifd.entries.items() if code in (324, 325))
        if tables > MAX_TABLE_BYTES:
            raise TooLarge(f"TIFF tile tables need more than {MAX_TABLE_BYTES >> 20} MB")
        return ifds

    def _find_levels(self, layout: _Layout, ifds: list[_Ifd]) -> list[_Level]:
        tif = self._tif
        assert tif is not None  # opened by __init__ just before
        first = tif.pages.first
        if not first.is_tiled:
            raise SourceError("image is not tiled")
        levels = [self._level(first, layout, ifds[0])]
        for index, ifd in enumerate(ifds[1:], 1):
            tif.filehandle.seek(ifd.offset)
            try:
                page = tifffile.TiffPage(tif, index=index)
            except tifffile.TiffFileError:
                break
            if not page.is_tiled or page.samplesperpixel != first.samplesperpixel or page.imagedepth != 1:
                continue
            if page.imagewidth >= levels[-1].info.width and page.imagelength >= levels[-1].info.height:
                continue  # not a reduced level (a second page of the same size, a mask...)
            levels.append(self._level(page, layout, ifd))
        return levels

    def _level(self, page: tifffile.TiffPage, layout: _Layout, ifd: _Ifd) -> _Level:
        width, height = int(page.imagewidth), int(page.imagelength)
        tw, th = int(page.tilewidth), int(page.tilelength)
        if width <= 0 or height <= 0 or tw <= 0 or th <= 0 or tw % 16 or th % 16:
            raise SourceError("invalid TIFF geometry")
        if page.dtype is None or page.samplesperpixel < 1:
            raise SourceError("unsupported TIFF sample format")
        compression = int(page.compression)
        if compression not in tifffile.TIFF.DECOMPRESSORS:
            raise UnsupportedCodec(f"unsupported TIFF compression {compression}")
        if compression in tifffile.TIFF.IMAGE_COMPRESSIONS and not (
            compression in codec_sizes.PARSERS or compression in _TILE_SIZED
        ):
            # JPEG XR: its decoder allocates what the stream declares, which is not checked here.
            raise UnsupportedCodec(f"TIFF compression {compression} is not served")
        if tw * th * page.samplesperpixel * page.dtype.itemsize > MAX_TILE_BYTES:
            raise SourceError("TIFF tiles are too large")
        planes = page.samplesperpixel if page.planarconfig == 2 else 1
        info = LevelInfo(width, height, tw, th)
        needed = info.tiles_across * info.tiles_down * planes
        offsets = self._table(layout, ifd.entries.get(324), needed)
        counts = self._table(layout, ifd.entries.get(325), needed)
        page.decode  # noqa: B018 - build the decoder now, so a bad codec fails here
        largest = int(counts.max()) if needed else 0
        header = codec_sizes.PARSERS.get(compression)
        return _Level(info, page, offsets, counts, planes, page.jpegtables, min(largest, _MAX_COUNT), header)

    def _table(self, layout: _Layout, entry: _Entry | None, needed: int) -> np.ndarray:
        """The first ``needed`` entries of a tile table as an array, counted in this image's cost."""
        if entry is None:
            raise SourceError("TIFF tile tables are incomplete")
        table = _integers(self._bytes, layout, entry, needed)
        self._table_bytes += table.nbytes
        return table

    def _build_info(self) -> ImageInfo:
        first = self._levels[0].page
        photometric = int(first.photometric)
        channels = int(first.samplesperpixel)
        colorspace = {0: "grey", 1: "grey", 8: "lab"}.get(photometric, "rgb")
        dtype, bits = np.dtype(first.dtype), int(first.bitspersample)
        smin, smax = _per_channel(_tag(first, 340), channels), _per_channel(_tag(first, 341), channels)
        if photometric in (SEPARATED, PALETTE):
            # Served as RGB (see _colour_conversion): the sample ranges of inks or indices do not apply.
            channels, smin, smax = 3, None, None
            if photometric == PALETTE:
                dtype, bits = np.dtype(np.uint8), 8
        metadata = {}
        for code, name in _METADATA_TAGS.items():
            value = _tag(first, code)
            if value not in (None, "", b""):
                metadata[name] = _text(value)
        resolution = None
        xres, yres, unit = _tag(first, 282), _tag(first, 283), _tag(first, 296)
        if xres and yres:
            factor = 2.54 if int(unit or 2) == 3 else 1.0
            resolution = (
                float(xres[0]) / float(xres[1] or 1) * factor,
                float(yres[0]) / float(yres[1] or 1) * factor,
            )
        return ImageInfo(
            levels=tuple(level.info for level in self._levels),
            channels=channels,
            dtype=dtype,
            bits=bits,
            colorspace=colorspace,
            smin=smin,
            smax=smax,
            metadata=metadata,
            resolution=resolution,
        )

    def _colour_conversion(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """How decoded tiles become what ``info`` says: CMYK and palette tiles to RGB, others unchanged."""
        first = self._levels[0].page
        photometric = int(first.photometric)
        if photometric == SEPARATED:
            kind = cast(np.dtype, first.dtype).kind  # _level refused pages without a dtype
            if first.samplesperpixel != 4 or int(_tag(first, 332) or 1) != 1 or kind != "u":
                raise SourceError("only 4-ink CMYK TIFFs of integer samples are served")
            return _cmyk_to_rgb
        if photometric == PALETTE:
            colormap = first.colormap
            bits = int(first.bitspersample)
            if first.samplesperpixel != 1 or bits > 16 or colormap is None or colormap.shape != (3, 1 << bits):
                raise SourceError("TIFF colour map does not match its samples")
            table: np.ndarray = np.ascontiguousarray(colormap.T)
            if table.max() > 255:  # 16-bit entries, as the specification says (some writers store 8-bit ones)
                table = table >> 8
            return _palette(table.astype(np.uint8))
        return None

    def read_overhead(self, level: int, w: int, h: int) -> int:
        """Memory a read needs besides its result, for the request budget (render.memory_estimate).

        One tile at a time: its stored bytes, the decoded tile, and a padded or
        concatenated copy; plus the tile itself when the result is a view of it.
        """
        lv = self._levels[level]
        page = lv.page
        stored = page.samplesperpixel * cast(np.dtype, page.dtype).itemsize  # _level refused None
        pixel = max(stored, self.info.channels * self.info.dtype.itemsize)
        if self._colour is not None:
            pixel += 8 * stored  # the conversion's wide temporaries
        return lv.max_count + 3 * lv.info.tile_width * lv.info.tile_height * pixel

    def _raw(self, level: _Level, index: int) -> bytes:
        count, offset = level.counts.item(index), level.offsets.item(index)
        if count <= 0 or count > _MAX_COUNT:
            return b""
        try:
            data = self._bytes.pread(count, offset)
        except (OSError, OverflowError) as exc:  # EIO, or an offset past what the system takes
            raise SourceError("TIFF file cannot be read") from exc
        if len(data) != count:
            raise SourceError("TIFF file is truncated")
        return data

    def stored_jpeg(self, level: int, col: int, row: int) -> bytes | None:
        lv = self._levels[level]
        _x, _y, w, h = lv.info.tile_rect(col, row)
        page = lv.page
        if page.compression != JPEG or lv.planes != 1 or (w, h) != (lv.info.tile_width, lv.info.tile_height):
            return None  # edge tiles are stored padded: they must be cropped, so decoded
        if page.samplesperpixel not in (1, 3):
            return None
        data = self._raw(lv, row * lv.info.tiles_across + col)
        if not data.startswith(b"\xff\xd8"):
            return None
        tables = lv.jpegtables
        if tables and len(tables) > 4:
            # The tables stream ends with EOI and the tile starts with SOI:
            # join them into one stream any decoder reads (one copy: views, not slices).
            return b"".join((memoryview(tables)[:-2], memoryview(data)[2:]))
        return data

    def decode_tile(self, level: int, col: int, row: int) -> np.ndarray:
        """Tile (col, row) of ``level`` decoded afresh, never through the tile cache (what the cache must hold)."""
        return self._tile(self._levels[level], col, row)

    def _tile(self, lv: _Level, col: int, row: int) -> np.ndarray:
        """One tile as an (th, tw, c) array of ``info``'s channels (edge tiles still padded)."""
        index = row * lv.info.tiles_across + col
        if lv.planes == 1:
            tile = self._decode(lv, index)
        else:
            ntiles = lv.info.tiles_across * lv.info.tiles_down
            tile = np.concatenate([self._decode(lv, index + p * ntiles) for p in range(lv.planes)], axis=2)
        return tile if self._colour is None else self._colour(tile)

    def _fetch(self, level: int, lv: _Level, col: int, row: int, room: int) -> tuple[np.ndarray, int]:
        """A read-only tile, from the cache or decoded; stored when it fits in ``room``, the bytes
        the read may still add. Returns the tile and the room left."""
        tiles = self._tiles
        if tiles is None:
            tile = self._tile(lv, col, row)
            tile.flags.writeable = False
            return tile, room
        key = ("tile", self._identity, level, row * lv.info.tiles_across + col)
        cached = tiles.get(key)
        if cached is not None:
            return cached, room
        tile = self._tile(lv, col, row)
        tile.flags.writeable = False
        if tile.nbytes <= room:
            tiles.put(key, tile, tile.nbytes)
            room -= tile.nbytes
        return tile, room

    def _decode(self, lv: _Level, index: int) -> np.ndarray:
        data = self._raw(lv, index)
        page = lv.page
        th, tw = lv.info.tile_height, lv.info.tile_width
        spp = page.samplesperpixel if lv.planes == 1 else 1
        if not data:  # missing tile: iipsrv shows it empty
            return np.zeros((th, tw, spp), dtype=page.dtype)
        if lv.header is not None:
            _check_declared(lv.header(data), tw, th, spp)
        if page.compression == JPEG and page.dtype == np.uint8 and spp in (1, 3):
            stream = (lv.jpegtables[:-2] + data[2:]) if lv.jpegtables and len(lv.jpegtables) > 4 else data
            try:
                pixels = simplejpeg.decode_jpeg(stream, colorspace="GRAY" if spp == 1 else "RGB")
            except ValueError:
                pixels = None
            if pixels is not None and pixels.shape[:2] == (th, tw):
                return pixels
        segment: np.ndarray | None
        try:
            if page.compression in JPEG2000:
                segment = openjpeg.decode_stream(data, cast(np.dtype, page.dtype))
            else:
                segment, _index, _shape = page.decode(data, index, jpegtables=lv.jpegtables)
        except Exception as exc:
            raise SourceError("TIFF tile cannot be decoded") from exc
        if segment is None:
            return np.zeros((th, tw, spp), dtype=page.dtype)
        tile: np.ndarray = segment.reshape(segment.shape[-3:])
        if tile.shape[2] != spp:
            raise SourceError("TIFF tile does not hold the samples its page declares")
        if tile.shape[:2] != (th, tw):
            padded = np.zeros((th, tw, tile.shape[2]), dtype=tile.dtype)
            padded[: min(th, tile.shape[0]), : min(tw, tile.shape[1])] = tile[:th, :tw]
            tile = padded
        return tile

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        lv = self._levels[level]
        info = lv.info
        tw, th = info.tile_width, info.tile_height
        c0, r0 = x // tw, y // th
        c1, r1 = (x + w - 1) // tw, (y + h - 1) // th
        tiles = self._tiles
        if c0 == c1 and r0 == r1:
            # A whole tile is what a tile-aligned request reads: its encoded output is cached
            # instead, and a decoded copy (ten times that size) would only crowd the LRU.
            room = 0 if tiles is None or (x, y, w, h) == info.tile_rect(c0, r0) else tiles.max_read
            tile, _room = self._fetch(level, lv, c0, r0, room)
            return tile[y - r0 * th : y - r0 * th + h, x - c0 * tw : x - c0 * tw + w]
        room = 0 if tiles is None else tiles.max_read
        out = np.empty((h, w, self.info.channels), dtype=self.info.dtype)
        for row in range(r0, r1 + 1):
            for col in range(c0, c1 + 1):
                tx, ty = col * tw, row * th
                ax, ay = max(x, tx), max(y, ty)
                bx, by = min(x + w, tx + tw), min(y + h, ty + th)
                tile, room = self._fetch(level, lv, col, row, room)
                out[ay - y : by - y, ax - x : bx - x] = tile[ay - ty : by - ty, ax - tx : bx - tx]
        return out
