"""Pyramidal (Big)TIFF reader: tifffile parses the structure once, tiles come by pread.

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
"""

from __future__ import annotations

import io
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import simplejpeg
import tifffile

from .byte_source import ByteSource, ByteStream, LocalFile
from .errors import SourceError
from .source import ImageInfo, LevelInfo

JPEG = 7
# A pyramid halves at each level, so 64 levels cover any TIFF size; later pages are not looked at.
MAX_PAGES = 64
# Largest tile decoded at once, in bytes (tiles are usually 256 x 256): absurd tile sizes are refused.
MAX_TILE_BYTES = 1 << 28
_MAX_COUNT = 1 << 28  # larger stored tiles are treated as missing
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
    """Where decoded tiles are kept (cache.TileCache): keys are hashable, sizes in bytes."""

    max_read: int  # bytes of tiles one read may add

    def get(self, key: Hashable) -> np.ndarray | None: ...

    def put(self, key: Hashable, tile: np.ndarray, size: int) -> None: ...


class UnsupportedCodec(SourceError):
    """Tiles compressed with a codec imagecodecs lacks (libvips would show them black: not tried)."""


@dataclass(slots=True)
class _Level:
    info: LevelInfo
    page: tifffile.TiffPage
    offsets: tuple[int, ...]
    counts: tuple[int, ...]
    planes: int  # separate sample planes (1 when contiguous)
    jpegtables: bytes | None
    max_count: int  # the largest stored tile, in bytes (what one read may pread)


def _tag(page: tifffile.TiffPage, code: int):
    tag = page.tags.get(code)
    return None if tag is None else tag.value


def _per_channel(value, channels: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    values = [float(v) for v in (value if isinstance(value, (tuple, list, np.ndarray)) else [value])]
    if not values:
        return None
    if len(values) < channels:
        values += [values[-1]] * (channels - len(values))
    return tuple(values[:channels])


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


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
        try:
            self._tif = tifffile.TiffFile(io.BufferedReader(ByteStream(self._bytes), 65536), name=self.path)
            self._levels = self._find_levels()
            self.info = self._build_info()
        except SourceError:
            self.close()
            raise
        except Exception as exc:  # tifffile raises many types on corrupt files
            self.close()
            raise SourceError("not a readable pyramidal TIFF") from exc

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
            self._tif = None
        self._bytes.close()

    def _find_levels(self) -> list[_Level]:
        pages = self._tif.pages
        if not len(pages):
            raise SourceError("TIFF has no image")
        first = pages[0]
        if not first.is_tiled:
            raise SourceError("image is not tiled")
        candidates = [first]
        if first.subifds:
            candidates += [p for p in first.pages[:MAX_PAGES] if isinstance(p, tifffile.TiffPage)]
        else:
            for index in range(1, MAX_PAGES):  # not len(pages): it walks every IFD of the chain
                try:
                    candidates.append(pages[index])
                except IndexError:
                    break
        levels: list[_Level] = []
        for page in candidates:
            if not isinstance(page, tifffile.TiffPage) or not page.is_tiled:
                continue
            if page.samplesperpixel != first.samplesperpixel or page.imagedepth != 1:
                continue
            if levels and (page.imagewidth >= levels[-1].info.width and page.imagelength >= levels[-1].info.height):
                continue  # not a reduced level (a second page of the same size, a mask...)
            levels.append(self._level(page))
        return levels

    @staticmethod
    def _level(page: tifffile.TiffPage) -> _Level:
        width, height = int(page.imagewidth), int(page.imagelength)
        tw, th = int(page.tilewidth), int(page.tilelength)
        if width <= 0 or height <= 0 or tw <= 0 or th <= 0 or tw % 16 or th % 16:
            raise SourceError("invalid TIFF geometry")
        if page.dtype is None or page.samplesperpixel < 1:
            raise SourceError("unsupported TIFF sample format")
        if page.compression not in tifffile.TIFF.DECOMPRESSORS:
            raise UnsupportedCodec(f"unsupported TIFF compression {int(page.compression)}")
        if tw * th * page.samplesperpixel * page.dtype.itemsize > MAX_TILE_BYTES:
            raise SourceError("TIFF tiles are too large")
        planes = page.samplesperpixel if page.planarconfig == 2 else 1
        info = LevelInfo(width, height, tw, th)
        needed = info.tiles_across * info.tiles_down * planes
        offsets, counts = tuple(page.dataoffsets), tuple(page.databytecounts)
        if not all(isinstance(v, (int, np.integer)) for v in offsets + counts):
            raise SourceError("TIFF tile tables hold non-integer offsets")  # a tag of a floating-point type
        offsets, counts = tuple(int(v) for v in offsets), tuple(int(v) for v in counts)
        if len(offsets) < needed or len(counts) < needed:
            raise SourceError("TIFF tile tables are incomplete")
        page.decode  # noqa: B018 - build the decoder now, so a bad codec fails here
        largest = max(counts[:needed], default=0)
        return _Level(info, page, offsets, counts, planes, page.jpegtables, min(int(largest), _MAX_COUNT))

    def _build_info(self) -> ImageInfo:
        first = self._levels[0].page
        channels = int(first.samplesperpixel)
        photometric = int(first.photometric)
        colorspace = {0: "grey", 1: "grey", 8: "lab"}.get(photometric, "rgb")
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
            dtype=np.dtype(first.dtype),
            bits=int(first.bitspersample),
            colorspace=colorspace,
            smin=_per_channel(_tag(first, 340), channels),
            smax=_per_channel(_tag(first, 341), channels),
            metadata=metadata,
            resolution=resolution,
        )

    def read_overhead(self, level: int, w: int, h: int) -> int:
        """Memory a read needs besides its result, for the request budget (render.memory_estimate).

        One tile at a time: its stored bytes, the decoded tile, and a padded or
        concatenated copy; plus the tile itself when the result is a view of it.
        """
        lv = self._levels[level]
        tile = lv.info.tile_width * lv.info.tile_height * self.info.channels * self.info.dtype.itemsize
        return lv.max_count + 3 * tile

    def _raw(self, level: _Level, index: int) -> bytes:
        count, offset = level.counts[index], level.offsets[index]
        if count <= 0 or count > _MAX_COUNT:
            return b""
        if offset < 0:
            raise SourceError("TIFF tile offset is invalid")
        try:
            data = self._bytes.pread(count, offset)
        except OSError as exc:  # EIO, or an offset past what the system takes
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
            # join them into one stream any decoder reads.
            return tables[:-2] + data[2:]
        return data

    def _tile(self, lv: _Level, col: int, row: int) -> np.ndarray:
        """One tile as an (th, tw, c) array (edge tiles still padded)."""
        index = row * lv.info.tiles_across + col
        if lv.planes == 1:
            return self._decode(lv, index)
        ntiles = lv.info.tiles_across * lv.info.tiles_down
        return np.concatenate([self._decode(lv, index + p * ntiles) for p in range(lv.planes)], axis=2)

    def _fetch(self, level: int, lv: _Level, col: int, row: int, room: int) -> tuple[np.ndarray, int]:
        """A read-only tile, from the cache or decoded; stored when it fits in ``room``, the bytes
        the read may still add. Returns the tile and the room left."""
        tiles = self._tiles
        if tiles is None:
            tile = self._tile(lv, col, row)
            tile.flags.writeable = False
            return tile, room
        key = ("tile", self._identity, level, row * lv.info.tiles_across + col)
        tile = tiles.get(key)
        if tile is not None:
            return tile, room
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
        if page.compression == JPEG and page.dtype == np.uint8 and spp in (1, 3):
            stream = (lv.jpegtables[:-2] + data[2:]) if lv.jpegtables and len(lv.jpegtables) > 4 else data
            try:
                pixels = simplejpeg.decode_jpeg(stream, colorspace="GRAY" if spp == 1 else "RGB")
            except ValueError:
                pixels = None
            if pixels is not None and pixels.shape[:2] == (th, tw):
                return pixels
        try:
            segment, _index, _shape = page.decode(data, index, jpegtables=lv.jpegtables)
        except Exception as exc:
            raise SourceError("TIFF tile cannot be decoded") from exc
        if segment is None:
            return np.zeros((th, tw, spp), dtype=page.dtype)
        tile = segment.reshape(segment.shape[-3:])
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
