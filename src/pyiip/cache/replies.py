"""Whole replies to repeated requests, answered before any protocol parsing.

iipsrv answers a memcached hit before it parses the query; this is the same
short cut in the process itself. A GET or HEAD answered before (same
method, path, query, host and scheme) gets the same status line, headers
and body back once its image is checked to be the one the reply was made
from: the identifier is resolved again (the resolver's realpath cache and
one ``stat``, or the version object storage keeps) and the identities must
match, so a replaced image is never answered from here.

What else a reply may depend on: the settings (a reload builds a new cache),
and the request headers its handlers read, which the entry records and
compares, as HTTP's Vary does. Only 200 replies made from an image are kept
(``Response.origin``); errors, listings and metrics are made from other
state. Conditional requests take the long way: their answer depends on the
validator they send, and it is cheap there.

Entries live in the per-process LRU under the same byte budget
(MAX_IMAGE_CACHE_SIZE) as rendered images and decoded tiles, each at the
cost of every byte it holds: key, header values it varies on, head and
body. A reply is kept the second time its request comes, not the first:
most requests of a viewer come once (each tile of a pan), and keeping those
would cost every such request the store and push decoded tiles and
rendered images, which other requests use, out of the budget. What
remembers the first coming holds a hash per request, not the request: a
fixed few hundred kilobytes however long the requests are. A request
longer than ``MAX_KEY`` characters, or varying on header values as long,
is not kept: no viewer asks such things twice.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from pyiip.cache.lru import LRUCache, footprint
from pyiip.http import EnvironHeaders, Origin, Reply, Request, Response

# What a kept entry holds besides its strings' and bytes' lengths: the tuples, the Reply, and the
# object headers of its strings and bytes (~50 bytes each); per header pair, its tuple, two strings and
# the list's slot. Strings are counted a byte a character (header values and the request target are
# latin-1), but the identifier: up to 4.
ENTRY_FIXED = 1024
PAIR_FIXED = 176
SEEN = 8192  # hashes of requests asked once, remembered so their second coming is kept
MAX_KEY = 4096  # characters of path, query and host (or of varying header values) a kept reply may have


class Replies:
    """The kept replies, with hit, miss and store counters for /metrics (tier ``reply``)."""

    def __init__(self, lru: LRUCache) -> None:
        self.lru = lru
        self._seen: set[int] = set()  # hash() of the keys: a collision only keeps a reply one coming early
        self.hits = 0
        self.misses = 0
        self.stores = 0

    def key(self, request: Request) -> tuple[str, ...] | None:
        """The request's key, or None when its reply is not to be kept or looked up."""
        if (
            not self.lru.max_bytes
            or request.method not in ("GET", "HEAD")
            or not isinstance(request.headers, EnvironHeaders)
            or request.header("if-none-match")
            or request.header("if-modified-since")
            or len(request.path) + len(request.query) + len(request.host) + len(request.script_name) > MAX_KEY
        ):
            return None
        return ("reply", request.method, request.path, request.query, request.host, request.scheme, request.script_name)

    def get(self, key: Hashable, request: Request, identify: Callable[[str], Hashable]) -> Reply | None:
        """The kept reply, if its varying headers are the same and its image has not changed.

        ``identify`` is Resolver.identity: what the identifier names now.
        """
        entry = self.lru.find(key)
        if entry is not None:
            identifier, identity, vary, reply = entry
            headers = request.headers
            if all(headers.get(name) == value for name, value in vary):
                try:
                    current = identify(identifier)
                except Exception:  # gone, refused, denied, unreachable, a failing hook: the long way says so
                    current = None
                if current == identity:
                    self.hits += 1
                    return reply
        self.misses += 1
        return None

    def put(
        self,
        key: tuple[str, ...],
        request: Request,
        response: Response,
        reply: Reply,
        kept_as: Callable[[Origin], tuple[str, Hashable]],
    ) -> None:
        """Keep a 200 reply made from an image, asked for the second time, varying on the headers its handlers read.

        ``kept_as`` (Service.kept_as) names what ``get``'s ``identify`` must
        answer again: the file's identity and, with a hook, the caller's
        decision, so a denied or size-limited caller is never answered here
        with a reply made for another.
        """
        origin = response.origin
        if origin is None or response.status != 200 or not response.cacheable:
            return
        seen = self._seen
        digest = hash(key)
        if digest not in seen:
            if len(seen) >= SEEN:
                seen.clear()
            seen.add(digest)
            return
        headers = request.headers
        assert isinstance(headers, EnvironHeaders)  # key() said so
        vary = tuple((name, headers.get(name)) for name in dict.fromkeys(headers.asked))
        if sum(len(value) for _name, value in vary) > MAX_KEY:
            return
        identifier, identity = kept_as(origin)
        if self.lru.put(key, (identifier, identity, vary, reply), entry_size(key, identifier, identity, vary, reply)):
            self.stores += 1


def entry_size(
    key: tuple[str, ...], identifier: str, identity: Hashable, vary: tuple[tuple[str, str], ...], reply: Reply
) -> int:
    """The bytes a kept entry holds, erring high, without walking it (``footprint`` took ~15 µs a store).

    Makes the reply's CGI head now (FastCGI sends it on every hit), so that its bytes are counted.
    """
    head = reply.cgi_head()
    return (
        ENTRY_FIXED
        + sum([len(part) for part in key])
        + 4 * len(identifier)
        + footprint(identity)
        + sum([PAIR_FIXED + len(name) + len(value) for name, value in (*vary, *reply.headers)])
        + len(reply.body)
        + len(head)
    )
