"""Non-pyramidal images (JPEG, PNG, WebP, flat TIFF, JPEG 2000 where libvips reads it) through pyvips.

The renderer wants a pyramid, so one is offered without ever holding a
large image in numpy: levels come from the format's own reduced
resolutions when it has them (JPEG DCT shrink-on-load, WebP scale-on-load,
TIFF pages or SubIFDs, JPEG 2000 resolution levels), then from a virtual
pyramid of halvings that libvips computes lazily on access. ``read`` crops
the level's libvips image, so only the requested rectangle reaches numpy.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pyvips

from .errors import SourceError
from .source import ImageInfo, ImageSource, LevelInfo

TILE = 256
# Levels at most this many pixels are kept decoded in memory once used, so
# thumbnails and overview tiles do not recompute a chain of halvings.
MATERIALIZE_PIXELS = 2048 * 2048
# Decoded pixels the open non-pyramidal images of one process may keep between requests; past it the
# least recently used give theirs back (and decode again when next asked), whatever the open-image LRU holds.
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
# Interpretations whose pixels are not what a viewer shows: convert once, lazily.
_TO_SRGB = ("cmyk", "lab", "labq", "labs", "lch", "cmc", "xyz", "yxy", "hsv")  # not scrgb: float data stays numbers
# Loaders that read any region without decoding the whole image first.
_PARTIAL_LOADERS = ("tiffload", "jp2kload", "vipsload", "openslideload")


def _disc_threshold() -> int:
    """libvips' VIPS_DISC_THRESHOLD (default 100 MB): larger full decodes go to a temporary file."""
    text = os.environ.get("VIPS_DISC_THRESHOLD", "").strip().lower()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    try:
        if text and text[-1] == "b":
            text = text[:-1]
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text) if text else 100 << 20
    except ValueError:
        return 100 << 20


DISC_THRESHOLD = _disc_threshold()
_METADATA = {"image-description": "description", "exif-ifd0-Copyright": "copyright", "exif-ifd0-Artist": "artist"}


@dataclass(slots=True)
class _Level:
    info: LevelInfo
    make: Callable[[], pyvips.Image]
    image: pyvips.Image | None = None
    in_memory: bool = False
    virtual: bool = False  # computed from the level above, not decoded from the file


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
            header = pyvips.Image.new_from_file(path, access="random")
            self._loader = str(_field(header, "vips-loader") or "")
            orientation = _field(header, "orientation")
            self._rotate = isinstance(orientation, int) and orientation > 1
            first = _prepare(header, self._rotate)
            self._levels: list[_Level] = [_Level(self._level_info(first), self._open, first)]
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

    def _open(self, **options: object) -> pyvips.Image:
        return _prepare(pyvips.Image.new_from_file(self.path, access="random", **options), self._rotate)

    def _native_candidates(self) -> list[dict[str, object]]:
        """Loader options giving successively smaller versions of the image, cheapest first."""
        loader = self._loader
        if loader.startswith("jpegload"):
            return [{"shrink": s} for s in (2, 4, 8)]
        if loader.startswith("webpload"):
            return [{"scale": 1 / s} for s in (2, 4, 8, 16, 32, 64)]
        if loader.startswith("tiffload"):
            first = self._levels[0].image
            assert first is not None
            subifds = _field(first, "n-subifds")
            if isinstance(subifds, int) and subifds > 0:
                return [{"subifd": i} for i in range(subifds)]
            pages = _field(first, "n-pages")
            return [{"page": i} for i in range(1, pages)] if isinstance(pages, int) else []
        if loader.startswith("jp2kload"):
            return [{"page": i} for i in range(1, 32)]
        return []

    def _add_native_levels(self) -> None:
        """Keep each reduced version that is about half the previous level, in order."""
        for options in self._native_candidates():
            previous = self._levels[-1].info
            if max(previous.width, previous.height) <= self.tile:
                return
            try:
                candidate = self._open(**options)
            except pyvips.Error:
                return
            w, h = candidate.width, candidate.height
            if not (previous.width // 2 - 1 <= w <= (previous.width + 1) // 2 + 1 and 1 <= h < previous.height):
                continue  # not the next halving (a thumbnail page, a mask...)
            if candidate.bands != self._levels[0].image.bands:  # type: ignore[union-attr]
                continue
            self._levels.append(_Level(self._level_info(candidate), lambda o=options: self._open(**o), candidate))

    def _add_virtual_levels(self) -> None:
        """Halvings computed by libvips from the level above, floor-sized as TIFF pyramids are."""
        while max(self._levels[-1].info.width, self._levels[-1].info.height) > self.tile:
            above = len(self._levels) - 1
            prev = self._levels[above].info
            w, h = max(1, prev.width // 2), max(1, prev.height // 2)
            self._levels.append(
                _Level(
                    LevelInfo(w, h, self.tile, self.tile_height),
                    lambda a=above, w=w, h=h: self._halve(a, w, h),
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
            entry.image = entry.make()
        if level > 0 and not entry.in_memory and entry.info.width * entry.info.height <= MATERIALIZE_PIXELS:
            entry.image = entry.image.copy_memory()
            entry.in_memory = True
        _keep_within_budget(self)
        return entry.image

    def decoded_bytes(self) -> int:
        """Pixels this image may hold decoded: levels read from the file, and those kept in memory."""
        item = self.info.channels * self.info.dtype.itemsize if hasattr(self, "info") else 4
        return sum(
            entry.info.width * entry.info.height * item
            for index, entry in enumerate(self._levels)
            if entry.image is not None and (index < self._native or entry.in_memory)
        )

    @property
    def cost(self) -> int:
        """Bytes this open image holds: its decoded pixels."""
        return self.decoded_bytes()

    @property
    def descriptors(self) -> int:
        """Files libvips may hold open for it: one per level read from the file and in use."""
        return sum(1 for entry in self._levels[: self._native] if entry.image is not None)

    def release(self) -> None:
        """Drop every decoded level; each is made again from the file when next read."""
        for entry in self._levels:
            entry.image = None
            entry.in_memory = False

    def _build_info(self, first: pyvips.Image, header: pyvips.Image) -> ImageInfo:
        dtype = np.dtype(_DTYPES[first.format])
        bits = int(_field(header, "bits-per-sample") or dtype.itemsize * 8)
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
        decodes its whole level first, in memory up to libvips' disc threshold.
        """
        bands, item = self.info.channels, self.info.dtype.itemsize
        cost = w * h * bands * item
        index = level
        while index >= 0:
            entry = self._levels[index]
            if entry.in_memory:
                break
            size = entry.info.width * entry.info.height * bands * item
            if index > 0 and entry.info.width * entry.info.height <= MATERIALIZE_PIXELS:
                cost += size
            if not entry.virtual:
                if not self._loader.startswith(_PARTIAL_LOADERS):
                    cost += min(size, DISC_THRESHOLD)
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

    def read_overhead(self, level: int, w: int, h: int) -> int:
        source = self.base if level == 0 else self.halvings
        method = getattr(source, "read_overhead", None)
        return method(level, w, h) if method is not None else w * h * 8

    @property
    def cost(self) -> int:
        return self.base.cost + self.halvings.cost

    @property
    def descriptors(self) -> int:
        return self.base.descriptors + self.halvings.descriptors

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
