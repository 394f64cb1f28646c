"""Images in object storage (http(s):// URL templates, S3), read by HTTP range requests.

A request never copies a whole image: the first ranged GET of an object
(``bytes=0-`` one block, not a HEAD, which pre-signed URLs refuse) gives its
ETag, size and first block, which holds the TIFF header; tifffile then reads
the IFDs it needs and the renderer only the tiles it covers, all as aligned
blocks (``REMOTE_BLOCK_SIZE``) kept in a small per-process memory LRU and a
bounded disk cache shared by the host's processes (block_cache.py).

The object's version (URL, ETag, size) is the image's identity, so every
cache above (open images, rendered tiles in the LRU and in memcached, blocks)
is keyed on it: a replaced object gets new keys everywhere, and hosts reading
the same object store compute the same memcached keys. The version is
re-validated after ``REMOTE_METADATA_TTL`` seconds (a conditional GET that is
a body-less 304 when nothing changed).

Every reply's status and headers are checked before a byte of its body is
read: 206 with the Content-Range asked for, a Content-Length (if any) of
that many bytes, the object's size, the same ETag (reads also send If-Match,
so a replaced object answers 412). Then exactly that many bytes are read,
whatever the framing, and a longer body is dropped with its connection, never
read. A 200 to a range request (a server ignoring ranges, or an error page
sent as 200) is an error whose body is not read, as are the bodies of error
replies (only a short announced one is drained, to keep the connection). A
changed object fails the request with a 503 to retry and drops the cached
version, so the next request sees the new one.

``REMOTE_TIMEOUT`` is a deadline for each object-store request as a whole:
connecting, sending, the status line, the headers and the body, and the
retries with their pauses. Every socket operation gets the time left as its
timeout, so a store that drips bytes fails the request (503) once
``REMOTE_TIMEOUT`` has passed, however steadily it sends. A client request
can need several object-store requests (the first block, IFDs, tiles), each
with its own deadline; name resolution (getaddrinfo) is not bounded by it.

Which object an identifier names (and that it cannot name another host) is
resolve/remote.py's job; the HTTP exchange under its deadline is range_client.py's.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Protocol

from pyiip import __version__
from pyiip.config import Settings
from pyiip.errors import HTTPError, NotFound, SourceError, Unavailable
from pyiip.read.block_cache import BlockCache, directory_of
from pyiip.read.range_client import Connections, ObjectAddress, UpstreamReply
from pyiip.read.resolved import Resolved

LOGGER = logging.getLogger("pyiip")

RETRIES = 2  # after a connection error, a timeout or a 429/5xx
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RUN_BLOCKS = 64  # blocks fetched by one GET at most
MEMORY_BYTES = 8 * 1024 * 1024  # blocks kept in memory per process
MAX_VERSIONS = 10000  # object versions remembered per process
STALE_GRACE = 5.0  # seconds an expired version is still used while the origin fails
READY_OBJECT = ".readyz"  # what /readyz asks the store for (+ FILESYSTEM_SUFFIX): need not exist
READY_TIMEOUT = 2.0
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)\s*$")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)\s*$")


class UpstreamError(HTTPError):
    """The object store answered something unusable (a 200 to a range request, a short body, a denial)."""

    status, reason = 502, "Bad Gateway"


class UpstreamUnavailable(Unavailable):
    """The object store cannot be reached or keeps failing: retry later."""


class UpstreamChanged(Unavailable):
    """The object changed while being read: nothing was cached, the next request sees the new version."""


@dataclass(frozen=True, slots=True)
class Version:
    """One version of an object: what the caches key on."""

    name: str
    etag: str  # the ETag as sent, or "lm:" + Last-Modified when there is none
    size: int
    mtime: float
    digest: str  # names its blocks in the block caches

    @property
    def if_match(self) -> tuple[str, str] | None:
        """The precondition that makes a replaced object answer 412 instead of other bytes."""
        if self.etag.startswith('"'):
            return ("If-Match", self.etag)  # If-Match compares strongly: never with a W/ tag
        if self.etag.startswith("lm:"):
            return ("If-Unmodified-Since", self.etag[3:])
        return None


# --- identifiers --------------------------------------------------------------------------------


# --- locations ----------------------------------------------------------------------------------


# --- connections --------------------------------------------------------------------------------


# --- the store ----------------------------------------------------------------------------------


def _etag(headers: http.client.HTTPMessage) -> str:
    etag = (headers.get("ETag") or "").strip()
    if etag:
        return etag
    modified = (headers.get("Last-Modified") or "").strip()
    return "lm:" + modified if modified else ""


def _mtime(headers: http.client.HTTPMessage) -> float:
    try:
        return parsedate_to_datetime(headers["Last-Modified"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError, OverflowError):
        return time.time()  # never 0: If-Modified-Since would then match anything


def _content_range(headers: http.client.HTTPMessage) -> tuple[int, int, int] | None:
    match = _CONTENT_RANGE.match(headers.get("Content-Range") or "")
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


def _pause(attempt: int, deadline: float) -> bool:
    """Sleep before retry ``attempt`` if the deadline leaves time for the pause and more; else False."""
    pause = 0.05 * 4 ** (attempt - 1)
    if time.monotonic() + pause >= deadline:
        return False
    time.sleep(pause)
    return True


class Location(Protocol):
    """Where identifiers' objects live (resolve/remote.py: a URL template, an S3 bucket): names them, signs requests."""

    def locate(self, identifier: str) -> ObjectAddress: ...

    def headers(self, target: ObjectAddress, headers: dict[str, str], deadline: float) -> dict[str, str]: ...


class RemoteObject:
    """A ByteSource over one version of a remote object: pread by blocks, through the caches."""

    def __init__(self, store: RemoteStore, target: ObjectAddress, version: Version) -> None:
        self._store, self._target, self._version = store, target, version
        self.name = version.name
        self.size = version.size
        self.failure: HTTPError | None = None  # the first failed read, for open_source to check

    def pread(self, count: int, offset: int) -> bytes:
        try:
            return self._store.read(self._target, self._version, count, offset)
        except HTTPError as exc:
            if self.failure is None:
                self.failure = exc
            raise

    def close(self) -> None:
        pass  # connections and blocks belong to the store


class RemoteStore:
    """Resolves identifiers to object versions and reads their blocks; one per process."""

    def __init__(self, location: Location, settings: Settings) -> None:
        self.location = location
        self.block_size = settings.remote_block_size * 1024
        self.ttl = settings.remote_metadata_ttl
        self.timeout = settings.remote_timeout
        self.connections = Connections()
        self.blocks = BlockCache(directory_of(settings), int(settings.block_cache_size * 1024 * 1024))
        self._memory: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._memory_bytes = 0
        self._versions: OrderedDict[str, tuple[Version, float]] = OrderedDict()
        self.requests = 0  # GETs sent (retries included)
        self.fetched = 0  # body bytes received
        self.memory_hits = 0
        self.probes = 0
        self.not_modified = 0
        self.changed = 0

    # identifiers -> versions

    def resolve(self, identifier: str) -> Resolved:
        """The current version of the identifier's object, as the Resolved every cache keys on."""
        target = self.location.locate(identifier)
        version = self.version(target)
        return Resolved(
            version.name,
            version.mtime,
            version.size,
            0,
            int(version.mtime * 1e9),
            version=version.etag,
            opener=partial(RemoteObject, self, target, version),
            identifier=identifier,
        )

    def version(self, target: ObjectAddress) -> Version:
        now = time.monotonic()
        cached = self._versions.get(target.name)
        if cached is not None and cached[1] > now:
            self._versions.move_to_end(target.name)
            return cached[0]
        old = cached[0] if cached is not None else None
        try:
            version = self._probe(target, old)
        except NotFound:
            self._versions.pop(target.name, None)
            raise
        except (UpstreamError, UpstreamUnavailable):
            if old is None:
                raise
            LOGGER.warning("%s: cannot revalidate, using version %s for %g s more", target.name, old.etag, STALE_GRACE)
            self._versions[target.name] = (old, now + STALE_GRACE)
            return old
        self._versions[target.name] = (version, now + self.ttl)
        self._versions.move_to_end(target.name)
        while len(self._versions) > MAX_VERSIONS:
            self._versions.popitem(last=False)
        return version

    def forget(self, name: str) -> None:
        self._versions.pop(name, None)

    def _probe(self, target: ObjectAddress, old: Version | None) -> Version:
        """A GET of the first block: the object's ETag and size, and its header bytes, in one round trip.

        With a version already known it is conditional (If-None-Match): an
        unchanged object costs a body-less 304.
        """
        self.probes += 1
        headers = {"Range": f"bytes=0-{self.block_size - 1}"}
        if old is not None and old.etag and not old.etag.startswith("lm:"):
            headers["If-None-Match"] = old.etag
        reply = self._get(target, headers, partial(self._first_block_length, target))
        if reply.status == 304 and old is not None:
            self.not_modified += 1
            return old
        if reply.status == 416:
            unsatisfied = _UNSATISFIED_RANGE.match(reply.headers.get("Content-Range") or "")
            if unsatisfied is not None and unsatisfied[1] == "0":
                raise SourceError("not a readable image")  # an empty object
        self._expect_partial(target, reply)
        bounds = _content_range(reply.headers)
        assert bounds is not None  # a 206 here passed _first_block_length
        size = bounds[2]
        etag = _etag(reply.headers)
        if not etag:
            LOGGER.warning(
                "%s has neither ETag nor Last-Modified: a replacement of the same size goes unseen", target.name
            )
        key = repr((target.name, etag, size, self.block_size))
        digest = hashlib.blake2b(key.encode("utf-8", "backslashreplace"), digest_size=20).hexdigest()
        version = Version(target.name, etag, size, _mtime(reply.headers), digest)
        if old is not None and old.etag != etag:
            LOGGER.info("%s changed: version %s replaces %s", target.name, etag, old.etag)
        self._keep(version, 0, reply.body)
        return version

    def _first_block_length(self, target: ObjectAddress, response: http.client.HTTPResponse) -> int:
        """The body a probe's 206 must have: the first block, or the whole object when it is smaller."""
        bounds = _content_range(response.headers)
        if bounds is None or bounds[0] != 0 or bounds[2] <= 0 or bounds[1] != min(self.block_size, bounds[2]) - 1:
            raise self._bad(target, f"Content-Range {response.headers.get('Content-Range')!r} for the first block")
        return self._announced(target, response, bounds[1] + 1)

    # blocks

    def read(self, target: ObjectAddress, version: Version, count: int, offset: int) -> bytes:
        """``count`` bytes at ``offset`` (fewer only at the end of the object)."""
        end = min(offset + count, version.size)
        if count <= 0 or offset >= end:
            return b""
        size = self.block_size
        first, last = offset // size, (end - 1) // size
        blocks: dict[int, bytes] = {}
        missing: list[int] = []
        for index in range(first, last + 1):
            data = self._cached(version, index)
            if data is None:
                missing.append(index)
            else:
                blocks[index] = data
        run: list[int] = []
        for index in missing:
            if run and (index != run[-1] + 1 or len(run) >= MAX_RUN_BLOCKS):
                blocks.update(self._fetch(target, version, run[0], run[-1]))
                run = []
            run.append(index)
        if run:
            blocks.update(self._fetch(target, version, run[0], run[-1]))
        base = first * size
        if first == last:
            return blocks[first][offset - base : end - base]
        return b"".join(blocks[i] for i in range(first, last + 1))[offset - base : end - base]

    def _block_length(self, version: Version, index: int) -> int:
        return min(self.block_size, version.size - index * self.block_size)

    def _cached(self, version: Version, index: int) -> bytes | None:
        key = (version.digest, index)
        data = self._memory.get(key)
        if data is not None:
            self._memory.move_to_end(key)
            self.memory_hits += 1
            return data
        data = self.blocks.get(f"{version.digest}.{index}", self._block_length(version, index))
        if data is not None:
            self._remember(key, data)
        return data

    def _remember(self, key: tuple[str, int], data: bytes) -> None:
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_bytes -= len(old)
        self._memory[key] = data
        self._memory_bytes += len(data)
        while self._memory_bytes > MEMORY_BYTES and len(self._memory) > 1:
            _key, dropped = self._memory.popitem(last=False)
            self._memory_bytes -= len(dropped)

    def _keep(self, version: Version, first: int, data: bytes) -> None:
        """Cache validated bytes starting at block ``first``: whole blocks only."""
        size = self.block_size
        for position in range(0, len(data), size):
            index = first + position // size
            block = data[position : position + size]
            if len(block) != self._block_length(version, index):
                break
            self._remember((version.digest, index), block)
            self.blocks.put(f"{version.digest}.{index}", block)

    def _fetch(self, target: ObjectAddress, version: Version, first: int, last: int) -> dict[int, bytes]:
        """Blocks ``first``..``last`` in one range GET, validated against ``version`` before anything is kept."""
        start = first * self.block_size
        end = min((last + 1) * self.block_size, version.size) - 1
        headers = {"Range": f"bytes={start}-{end}"}
        condition = version.if_match
        if condition is not None:
            headers[condition[0]] = condition[1]
        reply = self._get(target, headers, partial(self._run_length, target, version, start, end))
        if reply.status in (412, 416):
            raise self._changed(target, version, f"status {reply.status}")
        self._expect_partial(target, reply)
        self._keep(version, first, reply.body)
        size = self.block_size
        return {first + i: reply.body[i * size : (i + 1) * size] for i in range(last - first + 1)}

    def _run_length(
        self, target: ObjectAddress, version: Version, start: int, end: int, response: http.client.HTTPResponse
    ) -> int:
        """The body a block run's 206 must have: bytes ``start``..``end`` of ``version``, or it is refused."""
        bounds = _content_range(response.headers)
        if bounds is not None and bounds[2] != version.size:
            raise self._changed(target, version, f"size {bounds[2]} instead of {version.size}")
        etag = _etag(response.headers)
        if etag != version.etag:
            raise self._changed(target, version, f"ETag {etag} instead of {version.etag}")
        if bounds is None or bounds[:2] != (start, end):
            raise self._bad(target, f"Content-Range {response.headers.get('Content-Range')!r} for {start}-{end}")
        return self._announced(target, response, end - start + 1)

    # HTTP

    def _get(
        self, target: ObjectAddress, headers: dict[str, str], check: Callable[[http.client.HTTPResponse], int]
    ) -> UpstreamReply:
        """A GET, retried after connection errors, timeouts and 429/5xx; then the status is checked.

        REMOTE_TIMEOUT is a deadline for the whole exchange, retries and
        their pauses included: a store that hangs or drips fails the request
        (503) once it passes, and a retry starts only while time is left.
        Only a 206's body is read, as long as ``check`` says from its headers
        (which may refuse it, and are not retried: the store answered).
        """
        headers = {**headers, "User-Agent": f"pyiip/{__version__}", "Accept-Encoding": "identity"}
        deadline = time.monotonic() + self.timeout
        body_length = partial(self._body_length, target, check)
        failure = ""
        reply: UpstreamReply | None = None
        for attempt in range(RETRIES + 1):
            if attempt and not _pause(attempt, deadline):
                break
            self.requests += 1
            try:
                signed = self.location.headers(target, headers, deadline)  # may wait for credentials, until deadline
                reply = self.connections.get(target, signed, deadline, body_length)
            except TimeoutError:
                failure = f"no whole reply within REMOTE_TIMEOUT ({self.timeout:g} s)"
                continue
            except (OSError, http.client.HTTPException) as exc:
                failure = f"{type(exc).__name__}: {exc}"
                continue
            self.fetched += len(reply.body)
            if reply.status not in RETRY_STATUSES:
                break
            failure = f"status {reply.status}"
        if reply is None or reply.status in RETRY_STATUSES:
            LOGGER.error("%s: image store unavailable (%s)", target.name, failure)
            raise UpstreamUnavailable("image store unavailable", (("Retry-After", "5"),))
        if reply.status in (404, 410):
            self.forget(target.name)
            raise NotFound("image not found")
        if reply.status in (401, 403):
            LOGGER.warning("%s: access denied by the image store (status %d)", target.name, reply.status)
            raise UpstreamError("image store refused access")
        return reply

    def _body_length(
        self,
        target: ObjectAddress,
        check: Callable[[http.client.HTTPResponse], int],
        response: http.client.HTTPResponse,
    ) -> int:
        """Body bytes to read: what ``check`` expects of an unencoded 206, nothing of any other reply."""
        if response.status != 206:
            return 0
        encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise self._bad(target, f"Content-Encoding {encoding}")
        return check(response)

    def _announced(self, target: ObjectAddress, response: http.client.HTTPResponse, length: int) -> int:
        """``length``, unless the reply's Content-Length announces another body."""
        if response.length is not None and response.length != length:
            raise self._bad(target, f"Content-Length {response.length} for {length} bytes asked")
        return length

    def _expect_partial(self, target: ObjectAddress, reply: UpstreamReply) -> None:
        if reply.status == 200:
            raise self._bad(target, "a 200 answered a range request (ranges unsupported, or an error page)")
        if reply.status != 206:
            raise self._bad(target, f"status {reply.status}")

    def _bad(self, target: ObjectAddress, why: str) -> UpstreamError:
        LOGGER.error("%s: unusable reply from the image store: %s", target.name, why)
        return UpstreamError("bad reply from the image store")

    def _changed(self, target: ObjectAddress, version: Version, why: str) -> UpstreamChanged:
        self.changed += 1
        self.forget(target.name)
        LOGGER.warning("%s changed while being read (%s): request failed, version dropped", target.name, why)
        return UpstreamChanged("image changed while being read: retry", (("Retry-After", "1"),))

    def readable(self) -> str:
        """The empty string when the store answers a one-byte GET of READY_OBJECT readably, else why not.

        For readiness (/readyz): the object need not exist (404 is an answer), but a
        store that cannot be reached, fails (5xx, 429) or refuses access (401, 403; an
        S3 bucket answers 403 for a missing key without s3:ListBucket) is not readable.
        One try, READY_TIMEOUT at most, not REMOTE_TIMEOUT with retries: a probe must not
        hold the worker.
        """
        target = self.location.locate(READY_OBJECT)
        headers = {"Range": "bytes=0-0", "User-Agent": f"pyiip/{__version__}", "Accept-Encoding": "identity"}
        deadline = time.monotonic() + min(self.timeout, READY_TIMEOUT)
        try:
            signed = self.location.headers(target, headers, deadline)
            reply = self.connections.get(target, signed, deadline, lambda _: 0)
        except Unavailable:  # no credentials within the deadline (read/credentials.py)
            return "object store: no credentials"
        except TimeoutError:
            return f"object store: no answer within {min(self.timeout, READY_TIMEOUT):g} s"
        except (OSError, http.client.HTTPException) as exc:
            return f"object store unreachable ({type(exc).__name__})"
        if reply.status in (200, 206, 404, 416):
            return ""
        if reply.status in (401, 403):
            return f"object store refused access (status {reply.status})"
        return f"object store failing (status {reply.status})"

    def stats(self) -> dict[str, int]:
        return {
            "remote_requests": self.requests,
            "remote_bytes": self.fetched,
            "remote_probes": self.probes,
            "remote_not_modified": self.not_modified,
            "remote_changed": self.changed,
            "remote_memory_hits": self.memory_hits,
            **self.blocks.stats(),
        }

    def close(self) -> None:
        self.connections.close()
