"""A bounded disk cache of fixed-size blocks of remote objects, shared by the processes of one host.

Remote images are read in aligned blocks (``REMOTE_BLOCK_SIZE``); each block
fetched is kept as one file, named by a digest of the object's version (URL,
ETag, size, block size) and the block index, so a changed object can never be
served old bytes: its blocks simply have other names, and the old ones age out.

Several single-threaded processes write into the same directory without any
lock on the hot path: a block is written to a temporary file and renamed into
place, so a reader sees a whole block or none; a reader whose file vanishes
under it (evicted by another process) opens the file it had, or misses.
Reads touch a file's mtime (at most once a minute), and eviction, least
recently used first, runs in whichever process has written a sixteenth of
the budget since its last scan, under a non-blocking ``flock`` so only one
process scans at a time. The bound can be overshot by at most that much per
process between scans.

Nothing here can fail a request: a full disk evicts (logged once a minute), an
unusable directory turns the cache into a no-op (logged once), a truncated
file is a miss. A directory another user could write to is refused at
start-up (ConfigError, config.private_directory): blocks planted there would
be served as image bytes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import tempfile
import time

from pyiip.config import Settings, UnusableDirectory, private_directory

LOGGER = logging.getLogger("pyiip")

TOUCH_INTERVAL = 60.0  # seconds: an mtime fresher than this is not touched again on a hit
STALE_TEMP = 3600.0  # seconds: temp files older than this are debris of a crashed writer
LOW_WATER = 0.9  # eviction brings the total down to this fraction of the budget


def directory_of(settings: Settings) -> str:
    """BLOCK_CACHE_DIR, else this user's own directory under $TMPDIR."""
    return settings.block_cache_dir or os.path.join(tempfile.gettempdir(), f"pyiip-blocks-{os.getuid()}")


def check_settings(settings: Settings) -> None:
    """The start-up check, before any worker starts: ConfigError when the settings' block cache (remote images,
    BLOCK_CACHE_SIZE > 0) has a directory another user could write to. A directory that cannot be made is no
    start-up error: the cache turns itself off, logged."""
    if (settings.remote_url_template or settings.s3_bucket) and settings.block_cache_size > 0:
        with contextlib.suppress(UnusableDirectory):
            private_directory("BLOCK_CACHE_DIR", directory_of(settings))


class BlockCache:
    """Blocks on disk under ``directory``, at most ``max_bytes`` in total (LRU by mtime)."""

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = os.path.abspath(directory)
        self.max_bytes = max(0, int(max_bytes))
        self._scan_every = max(1, self.max_bytes // 16)
        self._written = self._scan_every  # scan at the first write: the directory may be over budget already
        self._broken = False
        self._full_logged = -1e9
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.evictions = 0
        if self.max_bytes:
            try:
                private_directory("BLOCK_CACHE_DIR", self.directory)
            except UnusableDirectory as exc:
                self._disable(exc)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and not self._broken

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name[:2], name)

    def get(self, name: str, length: int) -> bytes | None:
        """The block stored under ``name`` if it has exactly ``length`` bytes, else None."""
        if not self.enabled:
            return None
        path = self._path(name)
        try:
            with open(path, "rb") as handle:
                st = os.fstat(handle.fileno())
                if st.st_size != length:
                    raise ValueError("block has the wrong size")
                data = handle.read(length + 1)
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                os.unlink(path)
            self.misses += 1
            return None
        if len(data) != length:
            self.misses += 1
            return None
        if time.time() - st.st_mtime > TOUCH_INTERVAL:
            with contextlib.suppress(OSError):
                os.utime(path)
        self.hits += 1
        return data

    def put(self, name: str, data: bytes) -> None:
        """Store a block (whole and validated by the caller): temp file, then an atomic rename."""
        if not self.enabled or len(data) > self.max_bytes:
            return
        path = self._path(name)
        temp = f"{path}.{os.getpid()}.tmp"
        try:
            try:
                handle = open(temp, "wb")  # noqa: SIM115 - closed below, before the rename
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                handle = open(temp, "wb")  # noqa: SIM115
            with handle:
                handle.write(data)
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self._full(exc)
            else:
                self._disable(exc)
            return
        self.stores += 1
        self._written += len(data)
        if self._written >= self._scan_every:
            self.trim()

    def trim(self) -> None:
        """Evict least recently used blocks until the total is under the low-water mark."""
        self._written = 0
        try:
            lock = os.open(os.path.join(self.directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self._disable(exc)
            return
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return  # another process is scanning right now
            entries, total = self._scan()
            if total <= self.max_bytes:
                return
            entries.sort()
            target = int(self.max_bytes * LOW_WATER)
            for _mtime, size, path in entries:
                if total <= target:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    self.evictions += 1
                total -= size
        finally:
            os.close(lock)

    def _scan(self) -> tuple[list[tuple[float, int, str]], int]:
        entries: list[tuple[float, int, str]] = []
        total = 0
        now = time.time()
        try:
            shards = [e.path for e in os.scandir(self.directory) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return entries, 0
        for shard in shards:
            with contextlib.suppress(OSError), os.scandir(shard) as listing:
                for entry in listing:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if entry.name.endswith(".tmp"):
                        if now - st.st_mtime > STALE_TEMP:
                            with contextlib.suppress(OSError):
                                os.unlink(entry.path)
                        continue
                    entries.append((st.st_mtime, st.st_size, entry.path))
                    total += st.st_size
        return entries, total

    def usage(self) -> int:
        """Bytes stored now (a directory scan: for tests and tools, not the request path)."""
        return self._scan()[1]

    def _full(self, exc: OSError) -> None:
        """A full disk (shared with other data, or a budget set too high): evict, log once a minute."""
        now = time.monotonic()
        if now - self._full_logged > 60:
            self._full_logged = now
            LOGGER.error("block cache %s: %s; evicting (lower BLOCK_CACHE_SIZE?)", self.directory, exc.strerror)
        if self._written:
            self.trim()

    def _disable(self, exc: OSError | UnusableDirectory) -> None:
        if not self._broken:
            self._broken = True
            LOGGER.error("block cache %s disabled: %s", self.directory, getattr(exc, "strerror", None) or exc)

    def stats(self) -> dict[str, int]:
        return {
            "block_cache_hits": self.hits,
            "block_cache_misses": self.misses,
            "block_cache_stores": self.stores,
            "block_cache_evictions": self.evictions,
        }
