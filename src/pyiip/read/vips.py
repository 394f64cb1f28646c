"""Non-pyramidal images (JPEG, PNG, WebP, flat TIFF) through pyvips (JPEG 2000 has its own reader: jp2.py).

The renderer wants a pyramid, so one is offered without ever holding a
large image in numpy: levels come from the format's own reduced
resolutions when it has them (JPEG DCT shrink-on-load, WebP scale-on-load,
TIFF pages or SubIFDs), then from a virtual
pyramid of halvings that libvips computes lazily on access. ``read`` crops
the level's libvips image, so only the requested rectangle reaches numpy.
"""

from __future__ import annotations

import functools
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
import pyvips
import tifffile

from pyiip.errors import SourceError, TooLarge
from pyiip.read import formats
from pyiip.read.source import ImageInfo, ImageSource, LevelInfo

TILE = 256
# Levels at most this many pixels are kept decoded in memory once used, so
# thumbnails and overview tiles do not recompute a chain of halvings.
MATERIALIZE_PIXELS = 2048 * 2048
# Decoded pixels the open non-pyramidal images of one process may keep between requests; past it the
# least recently used give theirs back (and decode again when next asked), whatever the open-image LRU holds.
# A level decoded whole (a loader that cannot read regions) larger than this is never decoded.
DECODED_BUDGET = 512 * 1024 * 1024
_RECENT: OrderedDict[int, VipsSource] = OrderedDict()

_DTYPES = {
    "uchar": np.uint8,
    "char": np.int8,
    "ushort": np.uint16,
    "short": np.int16,
    "uint": np.uint32,
    "int": np.int32,
    "float": np.float32,
    "double": np.float64,
}
_ITEM_SIZE = {**{name: np.dtype(kind).itemsize for name, kind in _DTYPES.items()}, "complex": 8, "dpcomplex": 16}
# Interpretations whose pixels are not what a viewer shows: convert once, lazily.
_TO_SRGB = ("cmyk", "lab", "labq", "labs", "lch", "cmc", "xyz", "yxy", "hsv")  # not scrgb: float data stays numbers
# libvips' VIPS_FOREIGN_PARTIAL: the loader reads any region without decoding the whole image first.
_PARTIAL = 1
# Loaders that close the file once they have decoded a whole image; the others keep it open while it is in use.
_RELEASE_FILE = ("jpegload", "pngload", "tiffload")
# Python objects an open image keeps per level (its entry, LevelInfo and share of ImageInfo): tracemalloc
# measures about 550 bytes.
LEVEL_BYTES = 1024
# Pages of a TIFF looked at for reduced levels: a pyramid has a few dozen at most.
MAX_PAGES = 256
# libvips' operation cache would keep loaders, their decoded pixels and their files beyond close() and
# out of every count here (100 operations by default): the open sources hold what they use, nothing else.
pyvips.cache_set_max(0)


# The flat types listed as served, each when this libvips build has its loader (a TIFF is served by any build).
_LOADED = (
    (formats.FileType("JPEG", (".jpg", ".jpeg"), (b"\xff\xd8\xff",)), "jpegload"),
    (formats.FileType("PNG", (".png",), (b"\x89PNG\r\n\x1a\n",)), "pngload"),
    (formats.FileType("WebP", (".webp",)), "webpload"),  # RIFF, its first bytes, starts WAV and AVI too
)
for _kind, _loader in _LOADED:
    if pyvips.type_find("VipsOperation", _loader):
        formats.register(_kind)

_METADATA = {"image-description": "description", "exif-ifd0-Copyright": "copyright", "exif-ifd0-Artist": "artist"}


@dataclass(slots=True)
class _Level:
    info: LevelInfo
    make: Callable[[], pyvips.Image]
    image: pyvips.Image | None = None
    in_memory: bool = False
    virtual: bool = False  # computed from the level above, not decoded from the file
    whole: bool = False  # its loader decodes all of it before any crop (it cannot read regions)


def _halves(previous: LevelInfo, width: int, height: int) -> bool:
    """Whether width x height can be the level after ``previous`` (half its width, less high)."""
    return previous.width // 2 - 1 <= width <= (previous.width + 1) // 2 + 1 and 1 <= height < previous.height


def _page_sizes(path: str) -> list[tuple[int, int]]:
    """(width, height) of the first MAX_PAGES pages of a TIFF, in one pass over its IFD chain."""
    try:
        with tifffile.TiffFile(path) as tif:
            pages = cast(Iterable[tifffile.TiffPage], tif.pages)  # TiffFrames only when pages.useframes is set
            return [(page.imagewidth, page.imagelength) for page in itertools.islice(pages, MAX_PAGES)]
    except Exception:  # whatever tifffile cannot parse gives no page levels: the computed halvings remain
        return []


def _prepare(image: pyvips.Image, rotate: bool) -> pyvips.Image:
    """Make a loaded image displayable: upright, in sRGB or grey, of a plain numeric type."""
    if rotate:
        image = image.autorot()
    if image.coding != "none":
        image = image.decode()
    if image.interpretation in _TO_SRGB:
        image = image.colourspace("srgb")
    if image.format not in _DTYPES:
        raise SourceError("unsupported pixel type")
    return image


def _field(image: pyvips.Image, name: str) -> object | None:
    return image.get(name) if image.get_typeof(name) else None


class VipsSource:
    """An image libvips reads, seen as a pyramid of (native or virtual) levels."""

    def __init__(self, path: str, tile: int = TILE, tile_height: int | None = None) -> None:
        self.path = path
        self.tile = tile
        self.tile_height = tile_height or tile
        try:
            header, whole = self._probe({})
            self._loader = str(_field(header, "vips-loader") or "")
            # Bytes per pixel of what the loader decodes, before any conversion to sRGB.
            self._decoded_pixel = header.bands * _ITEM_SIZE[header.format]
            orientation = _field(header, "orientation")
            self._rotate = isinstance(orientation, int) and orientation > 1
            first = _prepare(header, self._rotate)
            make = functools.partial(self._open, whole)
            self._levels: list[_Level] = [_Level(self._level_info(first), make, first, whole=whole)]
            self._add_native_levels()
            self._native = len(self._levels)  # levels decoded from the file; the rest are computed
            for entry in self._levels:
                entry.image = None  # opened again on first read: only levels in use are held
            self._add_virtual_levels()
        except pyvips.Error as exc:
            raise SourceError("unsupported image type") from exc
        self.info = self._build_info(first, header)

    # ------------------------------------------------------------ structure

    def _level_info(self, image: pyvips.Image) -> LevelInfo:
        return LevelInfo(image.width, image.height, self.tile, self.tile_height)

    def _probe(self, options: dict[str, object]) -> tuple[pyvips.Image, bool]:
        """The header of one version of the image (its pixels are never read), and whether it is decoded whole.

        libvips calls an interlaced PNG partial, but decodes all of it into its own buffer on the first read.
        """
        image, extra = pyvips.Image.new_from_file(self.path, access="random", revalidate=True, flags=True, **options)
        return image, not extra["flags"] & _PARTIAL or bool(_field(image, "interlaced"))

    def _open(self, whole: bool, **options: object) -> pyvips.Image:
        """Open for random access; a level decoded whole is decoded into memory.

        Never into a temporary file (libvips' choice past VIPS_DISC_THRESHOLD): that file would stay open,
        deleted, as long as the image, out of every budget. The memory is what read_overhead counts.
        """
        # revalidate: libvips caches loads by file name, and would give the pixels of a file since
        # rewritten or replaced; a VipsSource is opened for each version (its identity) of the file.
        image = pyvips.Image.new_from_file(self.path, access="random", revalidate=True, memory=whole, **options)
        return _prepare(image, self._rotate)

    def _native_candidates(self) -> list[tuple[dict[str, object], tuple[int, int] | None]]:
        """Loader options giving successively smaller versions of the image, cheapest first, with their size
        when it is known without opening them."""
        loader = self._loader
        if loader.startswith("jpegload"):
            return [({"shrink": s}, None) for s in (2, 4, 8)]
        if loader.startswith("webpload"):
            return [({"scale": 1 / s}, None) for s in (2, 4, 8, 16, 32, 64)]
        if loader.startswith("tiffload"):
            first = self._levels[0].image
            assert first is not None
            subifds = _field(first, "n-subifds")
            if isinstance(subifds, int) and subifds > 0:
                return [({"subifd": i}, None) for i in range(min(subifds, MAX_PAGES))]
            pages = _field(first, "n-pages")
            if not isinstance(pages, int) or pages < 2:
                return []
            # libvips walks the IFD chain again for every page it opens: read all sizes in one pass instead.
            return [({"page": i}, size) for i, size in enumerate(_page_sizes(self.path)) if i > 0]
        return []

    def _add_native_levels(self) -> None:
        """Keep each reduced version that is about half the previous level, in order."""
        for options, size in self._native_candidates():
            previous = self._levels[-1].info
            if max(previous.width, previous.height) <= self.tile:
                return
            if size is not None and not (_halves(previous, *size) or _halves(previous, *size[::-1])):
                continue  # not the next halving even if turned upright: not worth opening
            try:
                header, whole = self._probe(options)
                candidate = _prepare(header, self._rotate)
            except pyvips.Error:
                return
            if not _halves(previous, candidate.width, candidate.height):
                continue  # not the next halving (a thumbnail page, a mask...)
            if candidate.bands != self._levels[0].image.bands:  # type: ignore[union-attr]
                continue
            make = functools.partial(self._open, whole, **options)
            self._levels.append(_Level(self._level_info(candidate), make, candidate, whole=whole))

    def _add_virtual_levels(self) -> None:
        """Halvings computed by libvips from the level above, floor-sized as TIFF pyramids are."""
        while max(self._levels[-1].info.width, self._levels[-1].info.height) > self.tile:
            above = len(self._levels) - 1
            prev = self._levels[above].info
            w, h = max(1, prev.width // 2), max(1, prev.height // 2)
            self._levels.append(
                _Level(
                    LevelInfo(w, h, self.tile, self.tile_height),
                    functools.partial(self._halve, above, w, h),
                    virtual=True,
                )
            )

    def _halve(self, above: int, width: int, height: int) -> pyvips.Image:
        source = self._image(above)
        shrunk = source.shrink(source.width / width, source.height / height)
        if (shrunk.width, shrunk.height) != (width, height):
            shrunk = shrunk.crop(0, 0, min(width, shrunk.width), min(height, shrunk.height))
            shrunk = shrunk.gravity("north-west", width, height, extend="copy")
        return shrunk

    def _image(self, level: int) -> pyvips.Image:
        entry = self._levels[level]
        if entry.image is None:
            if entry.whole and self._level_bytes(level) > DECODED_BUDGET:
                # Reads the request budget did not check (the display range computed at open) stop here too.
                raise TooLarge("image too large to decode whole: serve it as a tiled pyramidal TIFF")
            entry.image = entry.make()
        if level > 0 and not entry.in_memory and entry.info.width * entry.info.height <= MATERIALIZE_PIXELS:
            entry.image = entry.image.copy_memory()
            entry.in_memory = True
        _keep_within_budget(self)
        return entry.image

    def _level_bytes(self, index: int) -> int:
        """Bytes of one level decoded: as the loader decodes it when read from the file, else as served."""
        entry = self._levels[index]
        if index < self._native and not entry.in_memory:
            pixel = self._decoded_pixel
        else:
            pixel = self.info.channels * self.info.dtype.itemsize if hasattr(self, "info") else 4
        return entry.info.width * entry.info.height * pixel

    def decoded_bytes(self) -> int:
        """Pixels this image may hold decoded: levels read from the file, and those kept in memory."""
        return sum(
            self._level_bytes(index)
            for index, entry in enumerate(self._levels)
            if entry.image is not None and (index < self._native or entry.in_memory)
        )

    @property
    def cost(self) -> int:
        """Bytes this open image holds: its decoded pixels and its table of levels."""
        return self.decoded_bytes() + len(self._levels) * LEVEL_BYTES

    @property
    def descriptors(self) -> int:
        """Files this open image holds open: one per level read from the file and in use, but for loaders
        that close the file once they have decoded it."""
        releases = self._loader.startswith(_RELEASE_FILE)
        return sum(
            1
            for entry in self._levels[: self._native]
            if entry.image is not None and not entry.in_memory and not (entry.whole and releases)
        )

    def release(self) -> None:
        """Drop every decoded level; each is made again from the file when next read."""
        for entry in self._levels:
            entry.image = None
            entry.in_memory = False

    def _build_info(self, first: pyvips.Image, header: pyvips.Image) -> ImageInfo:
        dtype = np.dtype(_DTYPES[first.format])
        bits = int(cast(int | None, _field(header, "bits-per-sample")) or dtype.itemsize * 8)  # an int field
        metadata = {}
        for field, name in _METADATA.items():
            value = _field(header, field)
            if isinstance(value, str) and value.strip():
                metadata[name] = value.strip()
        return ImageInfo(
            levels=tuple(level.info for level in self._levels),
            channels=first.bands,
            dtype=dtype,
            bits=bits if dtype.kind in "ui" else dtype.itemsize * 8,
            colorspace="grey" if first.bands < 3 else "rgb",
            metadata=metadata,
        )

    # ------------------------------------------------------------ pixels

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Decode only the rectangle (libvips reads or computes just what the crop covers)."""
        try:
            pixels = self._image(level).crop(x, y, w, h).numpy()
        except pyvips.Error as exc:
            raise SourceError("image cannot be decoded") from exc
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        return pixels

    def read_overhead(self, level: int, w: int, h: int) -> int:
        """Memory a read needs besides its result, for the request budget (render.memory_estimate).

        libvips' result is copied into numpy; levels small enough are decoded
        once and kept; a loader without random access (JPEG, PNG, WebP...)
        decodes its whole level into memory first: all of it is counted, so a
        small file that declares a huge image is refused before it is decoded.
        """
        pixel = self.info.channels * self.info.dtype.itemsize
        cost = w * h * pixel
        index = level
        while index >= 0:
            entry = self._levels[index]
            if entry.in_memory:
                break
            if index > 0 and entry.info.width * entry.info.height <= MATERIALIZE_PIXELS:
                cost += entry.info.width * entry.info.height * pixel
            if not entry.virtual:
                if entry.whole:
                    cost += self._level_bytes(index)
                break
            index -= 1
        return cost

    def stored_jpeg(self, level: int, col: int, row: int) -> bytes | None:
        return None  # no stored tiles: everything is encoded from pixels

    def close(self) -> None:
        _RECENT.pop(id(self), None)
        for entry in self._levels:
            entry.image = None


def _keep_within_budget(source: VipsSource) -> None:
    """Mark ``source`` most recently used; release the least recently used others beyond DECODED_BUDGET."""
    _RECENT[id(source)] = source
    _RECENT.move_to_end(id(source))
    total = sum(s.decoded_bytes() for s in _RECENT.values())
    while total > DECODED_BUDGET and len(_RECENT) > 1:
        _key, oldest = _RECENT.popitem(last=False)
        total -= oldest.decoded_bytes()
        oldest.release()


class SingleLevelTiff:
    """A tiled TIFF without reduced levels: its own reader at full resolution, libvips halvings below.

    Full-resolution tiles keep the TIFF reader's exact reads and stored-JPEG
    pass-through, and the image keeps its TIFF metadata (SMin/SMaxSampleValue,
    the FITS header); thumbnails and overviews no longer need the whole image
    in memory. The halvings use the TIFF's tile size, since IIP clients assume
    one tile size for every level.
    """

    direct_levels = 1  # levels read from the file; the others are computed from level 0

    def __init__(self, base: ImageSource, path: str) -> None:
        self.base = base
        tw, th = base.info.tile_size
        self.halvings = VipsSource(path, tile=tw, tile_height=th)
        levels = (base.info.levels[0], *self.halvings.info.levels[1:])
        self.info = replace(base.info, levels=levels)

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        if level == 0:
            return self.base.read(0, x, y, w, h)
        return self.halvings.read(level, x, y, w, h)

    def stored_jpeg(self, level: int, col: int, row: int) -> bytes | None:
        return self.base.stored_jpeg(level, col, row) if level == 0 else None

    @property
    def cost(self) -> int:
        return self.base.cost + self.halvings.cost

    @property
    def descriptors(self) -> int:
        return self.base.descriptors + self.halvings.descriptors

    def read_overhead(self, level: int, w: int, h: int) -> int:
        source = self.base if level == 0 else self.halvings
        method = getattr(source, "read_overhead", None)
        return method(level, w, h) if method is not None else w * h * 8

    def close(self) -> None:
        self.base.close()
        self.halvings.close()


def with_reduced_levels(source: ImageSource, path: str) -> ImageSource:
    """``source`` itself when it has reduced levels or is small, else wrapped in SingleLevelTiff."""
    info = source.info
    tw, th = info.tile_size
    if len(info.levels) > 1 or (info.width <= tw and info.height <= th):
        return source
    try:
        wrapped = SingleLevelTiff(source, path)
    except SourceError:
        return source  # libvips cannot read it: full-resolution reads still work
    if (wrapped.halvings.info.width, wrapped.halvings.info.height) != (info.width, info.height):
        wrapped.halvings.close()
        return source
    return wrapped
