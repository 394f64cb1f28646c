"""The memcached tier of the render cache: values are the MIME type, a newline and the image bytes."""

from __future__ import annotations

import time

from pyiip.cache.etags import key_etag
from pyiip.cache.memcached import Cluster, ClusterDown, parse_servers
from pyiip.config import ConfigError
from pyiip.encode.encoders import MIME
from pyiip.log import LOGGER
from pyiip.process.render import Rendered

# memcached refuses items over its item size (-I, 1 MB by default), key and
# item header included; leave room for them.
ITEM_LIMIT = 1024 * 1024 - 2048


# memcached reads an expiry over 30 days as a Unix time.
_RELATIVE_EXPIRY_MAX = 30 * 24 * 3600


KEY_PREFIX = "pyiip:"


_MIME_MAX = 128  # a value's MIME type and newline fit in its first bytes


# How each output format starts (WebP: "RIFF", a length, "WEBP"): a memcached value must start so.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "jpg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "tif": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    "gif": (b"GIF87a", b"GIF89a"),
    "webp": (b"RIFF",),
}


_FORMAT_OF_MIME = {mime: fmt for fmt, mime in MIME.items()}


def format_of_mime(mime: str) -> str | None:
    """The output format whose Content-Type is ``mime`` (pyiip's own types only), else None."""
    return _FORMAT_OF_MIME.get(mime)


# How each output format ends, where it has a fixed end: a value cut short is not taken.
_ENDINGS: dict[str, bytes] = {"jpg": b"\xff\xd9", "png": b"IEND\xaeB`\x82", "gif": b";"}


def looks_like(body: bytes | memoryview, fmt: str) -> bool:
    """Whether ``body`` starts (and, where the format says, ends) as an image in ``fmt`` does; an unknown format: never.

    Not a validation of the image (anyone writing to memcached can write a
    whole other image): what keeps a garbled or foreign value, or one cut
    short, from being sent as the requested type.
    """
    head = bytes(body[:12])
    if not head.startswith(_SIGNATURES.get(fmt, ())):
        return False
    if fmt == "webp":  # RIFF's own length: the bytes after its first 8
        return head[8:12] == b"WEBP" and int.from_bytes(head[4:8], "little") == len(body) - 8
    ending = _ENDINGS.get(fmt)
    return ending is None or bytes(body[-len(ending) :]) == ending


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
        value = self.fetch(key)
        if value is None:
            self.misses += 1
            return None
        head = value[:_MIME_MAX].tobytes()
        newline = head.find(b"\n")
        stored = format_of_mime(head[:newline].decode("latin-1")) if newline >= 0 else None
        body = value[newline + 1 :]
        if stored is None or (fmt is not None and (stored != fmt or not looks_like(body, fmt))):
            LOGGER.info("memcached value under %s is not a %s image: ignored", key, fmt or "pyiip")
            self.misses += 1
            return None
        self.hits += 1
        return Rendered(bytes(body), MIME[stored], key_etag(key.removeprefix(KEY_PREFIX)))  # the one copy

    def fetch(self, key: str) -> memoryview | None:
        """The raw value under ``key``; None for a miss or a failure (counted in ``errors`` only)."""
        try:
            return self.client.get(key)
        except Exception as exc:
            self._failed("get", exc)
            return None

    def store(self, key: str, value: bytes) -> bool:
        """Store a raw value unless it is over memcached's item limit; failures are not errors of the request."""
        if len(value) > self.item_limit:
            self.skipped += 1
            return False
        try:
            self.client.set(key, value, self._expiry())
        except Exception as exc:
            self._failed("set", exc)
            return False
        return True

    def set(self, key: str, entry: Rendered) -> None:
        """Store a rendering: its MIME type, a newline and its bytes."""
        if len(entry.body) + len(entry.mime) + 1 > self.item_limit:  # before the copy below
            self.skipped += 1
            return
        if self.store(key, entry.mime.encode("latin-1") + b"\n" + entry.body):
            self.stores += 1

    def touch(self, key: str) -> None:
        """Re-arm the expiry of an entry (``pyiip warm`` run again before MEMCACHED_TIMEOUT ends)."""
        try:
            self.client.touch(key, self._expiry())
        except Exception as exc:
            self._failed("touch", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        self.errors += 1
        if isinstance(exc, ClusterDown):
            return  # every server is already known to be down
        LOGGER.debug("memcached %s failed: %s", what, exc)

    def close(self) -> None:
        self.client.close()
