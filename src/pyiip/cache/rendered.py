"""Caches of encoded images: a per-process LRU in front of an optional memcached cluster.

The per-process LRU also holds decoded tiles (TileCache, read by TiffSource
below the renderer), under the same byte budget, as iipsrv's tile cache does.

Both tiers are keyed on the canonical request (the protocol-neutral model,
so IIP and IIIF asking for the same pixels share one entry) together with
the source file's identity (path, mtime_ns, size, inode, ctime_ns): a
replaced or rewritten image gets new keys, even when its size and mtime
were put back, so a stale rendering is never served, and nothing has to be
invalidated.

Every byte an entry holds counts against the budget: its key (a long path,
query or header value is as costly as pixels), its head and its body
(``footprint``).

The per-process LRU is the hot path (the "same tile again" case): its key is
a plain tuple in a dict, hashed, never serialised. Only memcached, which is
shared between processes and hosts, needs a string key: a blake2b digest of
the key's repr, which is canonical because the model holds plain values and
also names the pyiip version and the renderer's RenderOptions (every setting that changes bytes).

memcached can never fail a request: a server that refuses, times out or
dies is left out for ``dead_timeout`` seconds (its keys go to the others,
or are simply rendered), logged once, and tried again after (memcached.py).
Nor can it choose what a reply says: anyone who reaches memcached can write
to it, so a value is only a body, taken when it starts as the requested
format does; the Content-Type comes from the request (``MemcachedCache.get``).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Callable, Hashable
from typing import Any

from pyiip import __version__
from pyiip.cache.etags import key_etag
from pyiip.cache.lru import LRUCache, footprint
from pyiip.cache.replies import Replies
from pyiip.cache.shared_replies import SharedReplies
from pyiip.cache.tier import KEY_PREFIX, MemcachedCache
from pyiip.cache.tiles import TileCache
from pyiip.config import Settings, render_options
from pyiip.model import ImageRequest, RenderOptions
from pyiip.process.render import Rendered
from pyiip.read.image import OpenImage

LOGGER = logging.getLogger("pyiip")

DIGEST_HEADS = 1024  # files whose key prefix is kept hashed


RENDERED_FIXED = 1024  # a plain ImageRequest, the key's tuple, Rendered and its etag: ~700 bytes


def rendered_size(key: tuple[Hashable, ImageRequest], rendered: Rendered) -> int:
    """What the entry holds, without walking the request (~1 µs, not ~10): every render and memcached hit pay it.

    The fixed part errs high; display parameters, unbounded in number, are walked.
    """
    identity, request = key
    size = RENDERED_FIXED + footprint(identity) + sys.getsizeof(rendered.body)
    if not request.display.is_identity:
        size += footprint(request.display)
    return size


def render_namespace(options: RenderOptions) -> str:
    """What, besides the request and the file, changes the encoded bytes: shared memcached keys must differ.

    The pyiip version and the renderer's whole options value (its repr names
    every field), so no byte-changing setting can be left out of the key.
    """
    return repr((__version__, options))


class RenderCache:
    """The two tiers in front of the renderer: per-process LRU, then memcached (when configured).

    The LRU also holds decoded tiles (``tiles``) and whole replies (``replies``, asked before any
    parsing); with memcached, so does ``shared`` (whole replies every process finds).
    """

    def __init__(self, settings: Settings, memcached: MemcachedCache | None = None) -> None:
        self.lru = LRUCache(int(settings.max_image_cache_size * 1024 * 1024))
        # Decoded tiles share the LRU's budget; ImageStore hands this to the TIFF sources it opens.
        self.tiles = TileCache(self.lru) if self.lru.max_bytes else None
        self.replies = Replies(self.lru)
        if memcached is None and settings.memcached_servers.strip():
            memcached = MemcachedCache(settings.memcached_servers, settings.memcached_timeout)
        self.memcached = memcached
        # Whole replies in the same memcached, asked before any parsing (the application does).
        self.shared = None if memcached is None else SharedReplies(memcached, settings)
        # The renderer takes this same value (Service): what it reads is exactly what the keys name.
        self.options = render_options(settings)
        self.namespace = render_namespace(self.options)
        self.touch_on_hit = False  # set by ``pyiip warm``
        self._digest_heads: dict[Hashable, Any] = {}  # file identity -> blake2b of the key text before the request

    def digest(self, image: OpenImage, request: ImageRequest) -> str:
        """The memcached key: short, printable, the same in every process and host that renders alike."""
        # The digest of repr((namespace, identity, request)); the part before the request is
        # hashed once per file, which saves a third of the ~13 µs.
        identity = image.resolved.identity
        head = self._digest_heads.get(identity)
        if head is None:
            if len(self._digest_heads) >= DIGEST_HEADS:
                self._digest_heads.clear()
            text = "(" + repr(self.namespace) + ", " + repr(identity) + ", "
            head = hashlib.blake2b(text.encode("utf-8", "backslashreplace"), digest_size=16)
            self._digest_heads[identity] = head
        hasher = head.copy()
        hasher.update((repr(request) + ")").encode("utf-8", "backslashreplace"))
        return KEY_PREFIX + hasher.hexdigest()

    def fetch(
        self,
        image: OpenImage,
        request: ImageRequest,
        render: Callable[[OpenImage, ImageRequest], Rendered],
    ) -> Rendered:
        """The cached rendering of ``request``, rendered and stored on a miss (errors are never stored)."""
        lru = self.lru
        key = (image.resolved.identity, request)
        if lru.max_bytes:
            found = lru.get(key)
            if found is not None:
                return found
        digest = self.digest(image, request)
        memcached = self.memcached
        if memcached is not None:
            found = memcached.get(digest, request.format)
            if found is not None:
                if self.touch_on_hit:
                    memcached.touch(digest)
                self._keep(key, found, rendered_size(key, found))
                return found
        rendered = render(image, request)
        rendered = Rendered(rendered.body, rendered.mime, key_etag(digest.removeprefix(KEY_PREFIX)))
        self._keep(key, rendered, rendered_size(key, rendered))
        if memcached is not None:
            memcached.set(digest, rendered)
        return rendered

    def _keep(self, key: Hashable, value: Any, size: int | None = None) -> None:
        """Put ``value`` in the LRU at the cost of every byte it and its key hold (``size`` when known)."""
        if self.lru.max_bytes:
            self.lru.put(key, value, footprint((key, value)) if size is None else size)

    def made(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value kept under ``key``, else ``make()``'s, kept (info.json bodies): no lookup counted."""
        found = self.lru.find(key)
        if found is None:
            found = make()
            self._keep(key, found)
        return found

    def stats(self) -> dict[str, int]:
        """Counters for /metrics."""
        out = {
            "lru_hits": self.lru.hits,
            "lru_misses": self.lru.misses,
            "lru_evictions": self.lru.evictions,
            "lru_entries": len(self.lru),
            "lru_bytes": self.lru.bytes,
        }
        replies = self.replies
        out.update(reply_hits=replies.hits, reply_misses=replies.misses, reply_stores=replies.stores)
        if self.tiles is not None:  # lookups of decoded tiles, in the same LRU (its entries and bytes count both)
            out.update(tile_hits=self.tiles.hits, tile_misses=self.tiles.misses, tile_stores=self.tiles.stores)
        shared = self.shared
        if shared is not None:
            out.update(shared_hits=shared.hits, shared_misses=shared.misses, shared_stores=shared.stores)
        if self.memcached is not None:
            mc = self.memcached
            out.update(
                memcached_hits=mc.hits,
                memcached_misses=mc.misses,
                memcached_stores=mc.stores,
                memcached_skipped=mc.skipped,
                memcached_errors=mc.errors,
                memcached_down=len(mc.down),
            )
        return out

    def clear(self) -> None:
        """Empty the LRU and drop memcached connections (SIGHUP); memcached entries need no flush."""
        self.lru.clear()
        self._digest_heads.clear()
        if self.memcached is not None:
            self.memcached.close()
