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
also names the pyiip version and the settings that change the encoded bytes.

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
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, cast

from . import __version__
from .config import ConfigError, Settings
from .encode import MIME
from .images import OpenImage
from .memcached import Cluster, Unavailable, parse_servers
from .model import IDENTITY, ImageRequest
from .render import Rendered

LOGGER = logging.getLogger("pyiip")

# memcached refuses items over its item size (-I, 1 MB by default), key and
# item header included; leave room for them.
ITEM_LIMIT = 1024 * 1024 - 2048
# memcached reads an expiry over 30 days as a Unix time.
_RELATIVE_EXPIRY_MAX = 30 * 24 * 3600
KEY_PREFIX = "pyiip:"
DIGEST_HEADS = 1024  # files whose key prefix is kept hashed
_MIME_MAX = 128  # a value's MIME type and newline fit in its first bytes


class Body(bytes):
    """Encoded bytes that carry their ETag, so a cache hit never digests anything again.

    A ``bytes`` subclass passes unchanged through every protocol handler into
    the Response, where ``Application.finish`` reads ``etag``.
    """

    etag: str


def tagged(body: bytes | memoryview, etag: str) -> Body:
    tagged_body = Body(body)
    tagged_body.etag = etag
    return tagged_body


def key_etag(digest: str) -> str:
    """The ETag of a rendered image: weak, and derived from its cache key.

    The key names everything the output depends on (file identity, canonical
    request, pyiip version, encoder settings), so equal tags mean equivalent
    images. Weak (``W/``) because the bytes themselves may differ between
    hosts or after a re-render with another codec build; a strong tag would
    need a digest of every body (~40 µs for a 20 KB tile), and If-None-Match
    compares weakly anyway. Byte ranges, the one use of strong tags, are not served.
    """
    return f'W/"{digest}"'


def content_etag(body: bytes) -> str:
    """A strong ETag for replies that are not rendered images (OBJ text, info.json): their digest."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def response_etag(body: bytes) -> str:
    """The ETag of a reply body: the one a rendered image carries, else the body's digest."""
    etag = getattr(body, "etag", None)
    return etag if etag is not None else content_etag(body)


_sizeof = sys.getsizeof
_LEAVES = frozenset({str, bytes, int, float, bool, type(None)})
_SHARED = {id(IDENTITY)}  # the default display every plain request refers to: one object, not one per entry


def footprint(value: object) -> int:
    """The bytes ``value`` holds with its parts (strings, bytes, tuples, lists, slotted objects): an entry's cost.

    A part shared with other entries is counted in each (but the default
    display), so the sum errs high; an object of another kind counts its
    own size only. Called when an entry is stored (a render, a reply kept),
    never on a hit: a few µs for a tile, ~15 for a reply.
    """
    kind = type(value)
    if kind in _LEAVES:
        return _sizeof(value)
    if kind is tuple or kind is list:
        return _sizeof(value) + _parts(cast(Iterable[object], value))  # mypy does not narrow on ``kind``
    if id(value) in _SHARED:
        return 0
    size = _sizeof(value)
    if isinstance(value, memoryview):
        return size + value.nbytes
    attributes = getattr(value, "__dict__", None)  # a Body's etag
    if attributes is not None:
        size += _parts(attributes.values())
    return size + _parts([getattr(value, name, None) for name in getattr(kind, "__slots__", ())])


def _parts(values: Iterable[object]) -> int:
    return sum([_sizeof(v) if type(v) in _LEAVES else footprint(v) for v in values])


RENDERED_FIXED = 1024  # a plain ImageRequest, the key's tuple, Rendered, a Body's etag: ~700 bytes


def rendered_size(key: tuple[Hashable, ImageRequest], rendered: Rendered) -> int:
    """What the entry holds, without walking the request (~1 µs, not ~10): every render and memcached hit pay it.

    The fixed part errs high; display parameters, unbounded in number, are walked.
    """
    identity, request = key
    size = RENDERED_FIXED + footprint(identity) + _sizeof(rendered.body)
    if not request.display.is_identity:
        size += footprint(request.display)
    return size


# How each output format starts (WebP: "RIFF", a length, "WEBP"): a memcached value must start so.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "jpg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "tif": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    "gif": (b"GIF87a", b"GIF89a"),
    "webp": (b"RIFF",),
}
_FORMAT_OF_MIME = {mime: fmt for fmt, mime in MIME.items()}


def looks_like(body: bytes | memoryview, fmt: str) -> bool:
    """Whether ``body`` starts as an image in ``fmt`` does (an unknown format: never)."""
    head = bytes(body[:12])
    if not head.startswith(_SIGNATURES.get(fmt, ())):
        return False
    return fmt != "webp" or head[8:12] == b"WEBP"


class LRUCache:
    """Encoded images and decoded tiles under one byte budget (MAX_IMAGE_CACHE_SIZE, in MB as in iipsrv).

    One budget for both kinds, as iipsrv's tile cache holds its compressed
    and raw tiles together: whichever was used least recently goes first.
    Keys of the two kinds never collide: rendered images are keyed
    ``(identity, request)``, tiles ``("tile", identity, level, index)``.
    ``put`` is told the entry's size in bytes. An entry bigger than a
    quarter of the budget is not kept, so one large CVT cannot flush the
    whole working set of tiles. ``hits``, ``misses`` and ``evictions`` are
    plain counters for /metrics; ``get`` counts, ``find`` (the tiles' lookup,
    which TileCache counts apart) does not.
    """

    ENTRY_OVERHEAD = 256  # key, entry and dict slot, roughly

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self.max_entry = self.max_bytes // 4
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any:
        item = self._entries.get(key)
        if item is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return item[0]

    def find(self, key: Hashable) -> Any:
        """``get`` without counting."""
        item = self._entries.get(key)
        if item is None:
            return None
        self._entries.move_to_end(key)
        return item[0]

    def put(self, key: Hashable, entry: Any, size: int) -> bool:
        """Keep ``entry`` (``size`` bytes), evicting the least recently used; False when it is too large."""
        size += self.ENTRY_OVERHEAD
        if size > self.max_entry:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._entries[key] = (entry, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _key, (_dropped, dropped_size) = self._entries.popitem(last=False)
            self.bytes -= dropped_size
            self.evictions += 1
        return True

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


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


class MemcachedCache:
    """Rendered images in a memcached cluster (memcached.py): hits, misses and stores counted for /metrics.

    A value is the MIME type, a newline and the encoded bytes; ``get``
    takes it only as the requested format's bytes. Per-call
    timeouts are short (a slow memcached must not stall a request more than
    that); a failing server is left out for ``dead_timeout`` seconds, its
    outage logged once and its return once. The processes are
    single-threaded, so one connection per server, no pool. Sets are
    ``noreply``: no round trip.
    """

    def __init__(
        self,
        servers: str,
        expire: int = 86400,
        *,
        timeout: float = 0.2,
        dead_timeout: float = 5.0,
        item_limit: int = ITEM_LIMIT,
    ) -> None:
        self.servers = parse_servers(servers)
        if not self.servers:
            raise ConfigError("MEMCACHED_SERVERS names no server")
        self.expire = expire
        self.item_limit = item_limit
        self.client = Cluster(self.servers, timeout=timeout, dead_timeout=dead_timeout, max_value=item_limit)
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.skipped = 0  # values over the item limit
        self.errors = 0

    @property
    def names(self) -> list[str]:
        return list(self.client.clients)

    @property
    def down(self) -> set[str]:
        """Names of the servers in an outage, logged once."""
        return self.client.down

    def _expiry(self) -> int:
        if self.expire > _RELATIVE_EXPIRY_MAX:
            return int(time.time()) + self.expire
        return self.expire

    def get(self, key: str, fmt: str | None = None) -> Rendered | None:
        """The entry under ``key`` as a ``fmt`` image, or None for a miss, a failure or a value that is not one.

        The value's stored type must be pyiip's type of ``fmt`` (without
        ``fmt``: one of pyiip's types) and its bytes must start as that
        format does; the Content-Type is pyiip's constant, never the
        value's bytes. Anything else (written by another party, or garbled)
        is a miss, logged at VERBOSITY >= 2, and rendered afresh.
        """
        try:
            value = self.client.get(key)
        except Exception as exc:
            self._failed("get", exc)
            self.misses += 1
            return None
        if value is None:
            self.misses += 1
            return None
        head = value[:_MIME_MAX].tobytes()
        newline = head.find(b"\n")
        stored = _FORMAT_OF_MIME.get(head[:newline].decode("latin-1")) if newline >= 0 else None
        body = value[newline + 1 :]
        if stored is None or (fmt is not None and (stored != fmt or not looks_like(body, fmt))):
            LOGGER.info("memcached value under %s is not a %s image: ignored", key, fmt or "pyiip")
            self.misses += 1
            return None
        self.hits += 1
        return Rendered(tagged(body, key_etag(key.removeprefix(KEY_PREFIX))), MIME[stored])  # the one copy

    def set(self, key: str, entry: Rendered) -> None:
        """Store, unless the value is over memcached's item limit; failures are not errors of the request."""
        if len(entry.body) + len(entry.mime) + 1 > self.item_limit:
            self.skipped += 1
            return
        value = entry.mime.encode("latin-1") + b"\n" + entry.body
        try:
            self.client.set(key, value, self._expiry())
        except Exception as exc:
            self._failed("set", exc)
            return
        self.stores += 1

    def touch(self, key: str) -> None:
        """Re-arm the expiry of an entry (``pyiip warm`` run again before MEMCACHED_TIMEOUT ends)."""
        try:
            self.client.touch(key, self._expiry())
        except Exception as exc:
            self._failed("touch", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        self.errors += 1
        if isinstance(exc, Unavailable):
            return  # every server is already known to be down
        LOGGER.debug("memcached %s failed: %s", what, exc)

    def close(self) -> None:
        self.client.close()


def render_namespace(settings: Settings) -> str:
    """What, besides the request and the file, changes the encoded bytes: shared memcached keys must differ."""
    return repr(
        (
            __version__,
            settings.jpeg_quality,
            settings.png_quality,
            settings.webp_quality,
            settings.interpolation,
            settings.codec_passthrough,
        )
    )


class RenderCache:
    """The two tiers in front of the renderer: per-process LRU, then memcached (when configured).

    The LRU also holds decoded tiles (``tiles``) and whole replies (``replies``, asked before any parsing).
    """

    def __init__(self, settings: Settings, memcached: MemcachedCache | None = None) -> None:
        self.lru = LRUCache(int(settings.max_image_cache_size * 1024 * 1024))
        # Decoded tiles share the LRU's budget; ImageStore hands this to the TIFF sources it opens.
        self.tiles = TileCache(self.lru) if self.lru.max_bytes else None
        from .replies import Replies  # which counts its entries with footprint, from here

        self.replies = Replies(self.lru)
        if memcached is None and settings.memcached_servers.strip():
            memcached = MemcachedCache(settings.memcached_servers, settings.memcached_timeout)
        self.memcached = memcached
        self.namespace = render_namespace(settings)
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
        rendered = Rendered(tagged(rendered.body, key_etag(digest.removeprefix(KEY_PREFIX))), rendered.mime)
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
