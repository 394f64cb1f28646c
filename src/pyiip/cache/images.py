"""The per-process store of open images: resolve, open once, keep a bounded number.

Entries are keyed on the file identity (path, mtime, size, inode), so a
replaced file is reopened and its stale metadata never served.
"""

from __future__ import annotations

import resource
from collections import OrderedDict

import numpy as np

from pyiip.config import Settings
from pyiip.log import LOGGER
from pyiip.process import display
from pyiip.read.image import OpenImage, open_source
from pyiip.read.source import ImageSource
from pyiip.read.tiff import TileStore
from pyiip.resolve.local import Resolver

# Pixels read, at most, to compute a default display range at open time.
MINMAX_SAMPLE_PIXELS = 1 << 20


def _minmax_sample(source: ImageSource) -> np.ndarray:
    """The smallest level whole, or when it is large (a single-level image) a grid of windows over it.

    Bounded whatever the file says, so opening an image never reads a whole
    gigapixel level into memory.
    """
    info = source.info
    # Computed levels (libvips halvings of a single-level TIFF) would read all of level 0: sample it instead.
    level = min(len(info.levels), getattr(source, "direct_levels", len(info.levels))) - 1
    small = info.levels[level]
    if small.width * small.height <= MINMAX_SAMPLE_PIXELS:
        return source.read(level, 0, 0, small.width, small.height).reshape(-1, info.channels)
    grid = 8
    side = int((MINMAX_SAMPLE_PIXELS // (grid * grid)) ** 0.5)
    ws, hs = min(small.width, side), min(small.height, side)
    xs = sorted({(small.width - ws) * i // (grid - 1) for i in range(grid)})
    ys = sorted({(small.height - hs) * j // (grid - 1) for j in range(grid)})
    windows = [source.read(level, x, y, ws, hs).reshape(-1, info.channels) for y in ys for x in xs]
    return np.concatenate(windows)


def default_minmax(source: ImageSource) -> np.ndarray:
    """Per-channel display range: TIFF tags, the type's range, or computed once from the smallest level."""
    info = source.info
    minmax = display.default_minmax(info.dtype, info.channels, info.smin, info.smax)
    missing = np.isnan(minmax)
    if missing.any():
        data = _minmax_sample(source).astype(np.float64).reshape(-1, info.channels)
        finite = np.where(np.isfinite(data), data, np.nan)
        with np.errstate(all="ignore"):
            low = np.nanmin(finite, axis=0) if finite.size else np.zeros(info.channels)
            high = np.nanmax(finite, axis=0) if finite.size else np.ones(info.channels)
        computed = np.stack([np.nan_to_num(low, nan=0.0), np.nan_to_num(high, nan=1.0)], axis=1)
        minmax = np.where(missing, computed, minmax)
    return minmax


def open_image_budget(settings: Settings) -> int:
    """Bytes the open images of a process may hold: a quarter of MAX_REQUEST_MEMORY (256 MB by default).

    They stay between requests, on top of one request's peak and the caches: a quarter keeps a worker
    well under MAX_PROCESS_MEMORY's floor (MAX_REQUEST_MEMORY + 512 MB), and still holds a thousand
    ordinary pyramids (about 0.2 MB each) or forty 131072^2 ones (6 MB of tile tables each).
    """
    return settings.max_request_memory * (1 << 20) // 4


def descriptor_limit() -> int:
    """Descriptors the open images may hold: half the process's limit, the rest for connections and caches."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (1 << 20) if soft == resource.RLIM_INFINITY else max(1, soft // 2)


class ImageStore:
    """Bounded LRU of open images: MAX_METADATA_CACHE_SIZE entries (-1 unlimited), ``budget`` bytes, and
    half the process's descriptors.

    0 (iipsrv: no metadata cache) keeps only the image in use open. ``tiles``
    (the Service's TileCache) is handed to every TIFF source it opens. The
    bytes and descriptors of the open images are summed when an image is
    opened (a source's cost can grow as it is read); the least recently used
    are closed until both fit, the image just opened always kept.
    """

    def __init__(self, resolver: Resolver, capacity: int, tiles: TileStore | None, budget: int) -> None:
        self.resolver = resolver
        self.capacity = 1 if capacity == 0 else capacity
        self.tiles = tiles
        self.budget = budget
        self.descriptor_limit = descriptor_limit()
        self._short_of_descriptors = False  # logged once
        self._open: OrderedDict[str, OpenImage] = OrderedDict()

    def get(self, identifier: str) -> OpenImage:
        resolved = self.resolver.resolve(identifier)
        entry = self._open.get(resolved.path)
        if entry is not None and entry.resolved.identity == resolved.identity:
            self._open.move_to_end(resolved.path)
            if entry.resolved.identifier != identifier:
                # Another name of the same file (a symlink, "./x"): the reply must name what this
                # request asked for, which a kept reply resolves again (replies.py).
                return OpenImage(resolved, entry.source, entry.minmax)
            return entry
        if entry is not None:
            self._drop(resolved.path)
        if resolved.opener is not None:
            source = open_source(resolved.opener(), self.tiles, resolved.identity)
        else:
            source = open_source(resolved.path, self.tiles)
        try:
            entry = OpenImage(resolved, source, default_minmax(source))
        except Exception:
            source.close()
            raise
        self._open[resolved.path] = entry
        self._evict()
        return entry

    def _evict(self) -> None:
        """Close the least recently used images until the count, the bytes and the descriptors fit."""
        cost = sum(e.source.cost for e in self._open.values())
        descriptors = sum(e.source.descriptors for e in self._open.values())
        while len(self._open) > 1:
            short = descriptors > self.descriptor_limit
            if not (short or cost > self.budget or 0 < self.capacity < len(self._open)):
                return
            if short and not self._short_of_descriptors:
                self._short_of_descriptors = True
                LOGGER.warning(
                    "open images hold %d file descriptors, over %d (half of RLIMIT_NOFILE): closing the least "
                    "recently used; raise `ulimit -n` to keep more open",
                    descriptors,
                    self.descriptor_limit,
                )
            path, oldest = next(iter(self._open.items()))
            cost -= oldest.source.cost
            descriptors -= oldest.source.descriptors
            self._drop(path)

    def _drop(self, path: str) -> None:
        entry = self._open.pop(path, None)
        if entry is not None:
            entry.source.close()

    def clear(self) -> None:
        for path in list(self._open):
            self._drop(path)
