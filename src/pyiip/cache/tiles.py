"""Decoded TIFF tiles kept in the LRU, under the same byte budget as the rendered images."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pyiip.cache.lru import LRUCache, footprint


class TileCache:
    """Decoded tiles in the LRU of rendered images (TiffSource's ``tiles``): one budget for both.

    An unaligned region (IIIF ``x,y,w,h/256,/...``, CVT, IIP ``RGN``) reads
    parts of several tiles, which its neighbours read again; decoding a
    JPEG tile is most of such a request. TiffSource builds the keys
    (``("tile", identity, level, index)``, the identity naming the bytes it
    reads) and stores each tile read-only, so no caller can change the pixels
    another request gets. ``max_read`` bounds what one read may add (a
    quarter of the budget, as one entry), so a large CVT does not flush the
    tiles and images of everyone else.
    """

    def __init__(self, lru: LRUCache) -> None:
        self.lru = lru
        self.max_read = lru.max_entry
        self.hits = 0
        self.misses = 0
        self.stores = 0

    def get(self, key: Hashable) -> Any:
        tile = self.lru.find(key)
        if tile is None:
            self.misses += 1
        else:
            self.hits += 1
        return tile

    def put(self, key: Hashable, tile: Any, size: int) -> None:
        """Keep ``tile`` (``size`` bytes of pixels) at the cost of its pixels and its key."""
        if self.lru.put(key, tile, size + footprint(key)):
            self.stores += 1
