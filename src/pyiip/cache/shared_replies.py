"""Whole image replies in memcached, found before any parsing, as iipsrv keys its memcached on the query.

The render tier (rendered.py) finds a tile in memcached only after the
request is parsed, its image resolved and opened, and its canonical key
built: most of what a hit costs. This tier is keyed on what the client
sent (path and query, with the settings that shape replies), so a hit
costs one memcached get, one ``stat`` of the image and the reply's
headers, like a kept reply (replies.py) shared by every process and host.

What it stores, and how a hit is checked, follows from memcached being
writable by anyone who reaches it:

- Only replies whose every header the server can make again: a 200 image
  body made from an image, that read no request header (no Vary) and
  carries no header of its handler's beyond its type and ETag (IIP and
  Zoomify tiles, IIP regions; not IIIF images, whose ``Link`` names the
  API, nor CVT downloads with their file name). The reply is rebuilt from
  pyiip's own constants: the Content-Type is the format's, taken only when
  the body starts as that format does, and the ETag must look like one.
- The value names the identifier and the identity of the file it was made
  from; a hit resolves the identifier again and must find that same
  identity (a digest), so a replaced, removed or unreadable image is never
  answered from here, as with the kept replies.
- Anything else, a value that does not parse, a foreign or garbled one,
  is a miss: the long way answers and its reply overwrites the value.

Not used with PYIIP_HOOKS (a reply may be for one caller only), nor for
conditional requests (the kept replies' ``key`` rules apply).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Callable, Hashable
from typing import NamedTuple

from pyiip import __version__
from pyiip.cache.tier import KEY_PREFIX, MemcachedCache, format_of_mime, looks_like
from pyiip.config import Settings
from pyiip.http import Request, Response
from pyiip.log import LOGGER

MAGIC = b"pyiip-reply/1 "
_HEAD_MAX = 512  # the first line's bytes: magic, token, mtime, etag, type, identifier length
TOKENS = 1024  # identities whose token is kept
MAX_IDENTIFIER = 16384  # bytes of a stored identifier (replies.MAX_KEY characters, UTF-8)
_ETAG = re.compile(rb'(?:W/)?"[0-9A-Za-z_.:+/=-]{1,128}"')

# Settings that change no reply's bytes, only how the process runs: hosts and processes differing in
# them still share entries (the memcached list may name the same servers in another order).
OPERATIONAL = frozenset(
    {
        "verbosity",
        "logfile",
        "log_format",
        "metrics_dir",
        "memcached_servers",
        "memcached_timeout",
        "client_timeout",
        "max_process_memory",
        "remote_timeout",
        "block_cache_dir",
        "block_cache_size",
        "fits_cache_dir",
        "fits_build_wait",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    }
)


def namespace(settings: Settings) -> str:
    """The pyiip version and every setting that can shape a reply: processes differing in one never share."""
    shaping = [(f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings) if f.name not in OPERATIONAL]
    return repr((__version__, shaping))


def identity_token(identity: Hashable) -> bytes:
    """A fixed-size digest of a file's identity (its path, times, size, inode; an object's URL and ETag)."""
    return hashlib.blake2b(repr(identity).encode("utf-8", "backslashreplace"), digest_size=16).hexdigest().encode()


class _Foreign(Exception):
    """A value that is not a reply this tier stored: garbled, cut short, or written by another party."""


class StoredOrigin(NamedTuple):
    """The image a shared reply was made from, as ``http.Origin``: Last-Modified, and the kept replies' check."""

    identifier: str
    identity: Hashable
    mtime: float


class SharedReplies:
    """The memcached tier of whole replies, with hit, miss and store counters for /metrics (tier ``shared``)."""

    def __init__(self, memcached: MemcachedCache, settings: Settings) -> None:
        self.memcached = memcached
        self._head = hashlib.blake2b(namespace(settings).encode("utf-8", "backslashreplace"), digest_size=16)
        self._tokens: dict[Hashable, bytes] = {}  # identity -> identity_token: a hit's check, without the digest
        self.hits = 0
        self.misses = 0
        self.stores = 0

    def _token(self, identity: Hashable) -> bytes:
        token = self._tokens.get(identity)
        if token is None:
            if len(self._tokens) >= TOKENS:
                self._tokens.clear()
            token = self._tokens[identity] = identity_token(identity)
        return token

    def key(self, request: Request) -> str:
        """The memcached key of ``request``'s reply: path and query under the namespace (GET and HEAD share it)."""
        hasher = self._head.copy()
        hasher.update(f"{request.path}?{request.query}".encode("utf-8", "surrogateescape"))
        return KEY_PREFIX + "reply-" + hasher.hexdigest()

    def get(self, key: str, identity: Callable[[str], Hashable]) -> Response | None:
        """The stored reply under ``key`` if it checks out against the image now (``identity``: Resolver.identity).

        A value that is not one pyiip stored is logged (VERBOSITY >= 2); a
        stored one whose image changed or went is a plain miss.
        """
        value = self.memcached.fetch(key)
        response = None
        if value is not None:
            try:
                response = self._checked(value, identity)
            except _Foreign as exc:
                LOGGER.info("memcached value under %s is not a reply pyiip stored (%s): ignored", key, exc)
        if response is None:
            self.misses += 1
        else:
            self.hits += 1
        return response

    def _checked(self, value: memoryview, identity: Callable[[str], Hashable]) -> Response | None:
        head = value[:_HEAD_MAX].tobytes()
        newline = head.find(b"\n")
        if not head.startswith(MAGIC) or newline < 0:
            raise _Foreign("no header")
        fields = head[len(MAGIC) : newline].split(b" ")
        if len(fields) != 5:
            raise _Foreign("header fields")
        token, mtime_text, etag, mime, length = fields
        fmt = format_of_mime(mime.decode("latin-1"))
        if fmt is None or not _ETAG.fullmatch(etag) or not length.isdigit() or int(length) > MAX_IDENTIFIER:
            raise _Foreign("type, ETag or length")
        start = newline + 1 + int(length)
        body = value[start:]
        if len(value) < start or not looks_like(body, fmt):
            raise _Foreign(f"not a whole {fmt} image")
        try:
            mtime = float(mtime_text)
            identifier = value[newline + 1 : start].tobytes().decode("utf-8")
        except ValueError:
            raise _Foreign("time or identifier") from None
        if not math.isfinite(mtime):
            raise _Foreign("time")
        try:
            now = identity(identifier)
        except Exception:  # gone, refused, unreachable: the long way says so
            return None
        if self._token(now) != token:
            return None
        origin = StoredOrigin(identifier, now, mtime)
        return Response(200, body.tobytes(), mime.decode("latin-1"), origin=origin, etag=etag.decode("latin-1"))

    def put(self, key: str, response: Response, etag: str) -> None:
        """Store ``response`` (its ETag as sent) when the server can make every header of it again; else nothing."""
        origin = response.origin
        fmt = format_of_mime(response.content_type)
        if (
            origin is None
            or response.status != 200
            or not response.cacheable
            or response.headers
            or fmt is None
            or not looks_like(response.body, fmt)
            or not _ETAG.fullmatch(etag.encode("latin-1", "replace"))
        ):
            return
        identifier = origin.identifier.encode("utf-8", "surrogateescape")
        if len(identifier) > MAX_IDENTIFIER:
            return
        head = b"%s%s %r %s %s %d\n" % (
            MAGIC,
            self._token(origin.identity),
            float(origin.mtime),
            etag.encode("latin-1"),
            response.content_type.encode("latin-1"),
            len(identifier),
        )
        if self.memcached.store(key, head + identifier + response.body):
            self.stores += 1
