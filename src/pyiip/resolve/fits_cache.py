"""FITS files served directly: each is built once into a pyramidal cube kept in a cache directory.

The cube is what ``pyiip convert`` writes (a tiled float32 BigTIFF, the FITS header in its
ImageDescription), so every protocol then serves it through the TIFF reader at the usual cost
per tile. Measurements behind this choice are in docs/fits.md.

A cube is named by the FITS file's identity (device, inode, size, mtime_ns) and the builder's
format version: a replaced or rewritten FITS gets a new name, and the old cube ages out. The
directory is shared by every process of the host:

- one builder per cube: the process that takes ``<key>.lock`` (``flock``, non-blocking) starts
  the builder (``python -m pyiip.tools.fits_build``) in a child process that inherits the lock
  and holds it until it exits, so a crashed or killed builder frees it. The child runs under
  an address-space limit and a FITS_BUILD_TIMEOUT alarm, writes the cube under a temporary
  name and renames it into place: a reader sees a whole cube or none;
- the others (and the starting request) wait up to FITS_BUILD_WAIT, then get a 503 with
  Retry-After; a build that failed leaves ``<key>.error`` (its status and message) which
  answers every request for that file version for ERROR_TTL seconds instead of rebuilding;
- least recently used cubes are evicted past FITS_CACHE_SIZE (by mtime, touched at most once a
  minute on use) by the builder after each build.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from pyiip.config import Settings, UnusableDirectory, private_directory
from pyiip.errors import HTTPError, NotFound, SourceError, TooLarge, Unavailable
from pyiip.log import LOGGER
from pyiip.read import formats
from pyiip.read.formats import FITS_SUFFIXES

# Served by building a cube on first request: listed by the index like any image (read/formats.py).
formats.register(formats.FileType("FITS", FITS_SUFFIXES))  # by name only, as is_fits decides
FORMAT = 1  # the builder's output format: bumping it names every cube anew
TOUCH_INTERVAL = 60.0  # seconds: a cube used more recently than this is not touched again
ERROR_TTL = 300.0  # seconds a failed build answers for its file before one is tried again
POLL = 0.05  # seconds between looks at a build in progress
_ERRORS: dict[int, type[HTTPError]] = {404: SourceError, 413: TooLarge}


_LAST = "sStTzZ"  # how FITS suffixes end, and .tif, .jpg, .png... do not: the check is cheap per request


def is_fits(path: str) -> bool:
    """A FITS file by its name (what the index lists and the resolver builds)."""
    return path[-1:] in _LAST and path.lower().endswith(FITS_SUFFIXES)


def cache_directory(settings: Settings) -> str:
    """FITS_CACHE_DIR, or $TMPDIR/pyiip-fits-$UID."""
    return settings.fits_cache_dir or os.path.join(tempfile.gettempdir(), f"pyiip-fits-{os.getuid()}")


class FitsCache:
    """Cubes built from FITS files under one directory, at most FITS_CACHE_SIZE MB of them."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.fits_cache_size > 0
        self.directory = ""
        if self.enabled:
            try:
                self.directory = private_directory("FITS_CACHE_DIR", cache_directory(settings))
            except UnusableDirectory as error:
                if settings.fits_cache_dir:
                    raise  # a directory asked for: never ignored (one others could write to is never used)
                # The default cannot be made (a read-only $TMPDIR): images other than FITS must not suffer.
                LOGGER.warning("%s; FITS files are not served (set FITS_CACHE_DIR)", error)
                self.enabled = False
        self.max_bytes = int(settings.fits_cache_size * 1024 * 1024)
        self.timeout = settings.fits_build_timeout
        self.wait = settings.fits_build_wait
        self.max_request_memory = settings.max_request_memory
        self.builders = max(1, (os.cpu_count() or 1) // 2)  # builds at once on the host: half the cores

    def key(self, st: os.stat_result) -> str:
        """The cube's name for one version of a FITS file."""
        return f"{st.st_dev:x}-{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}-v{FORMAT}"

    def cube(self, fits_path: str, st: os.stat_result) -> tuple[str, os.stat_result]:
        """The built cube of this FITS file and its stat: built now, or waited for, or a 503."""
        if not self.enabled:
            raise NotFound("FITS files are not served here (no FITS_CACHE_SIZE or FITS_CACHE_DIR)")
        base = os.path.join(self.directory, self.key(st))
        found = self._ready(base)
        if found is not None:
            return found
        deadline = time.monotonic() + self.wait
        while True:
            self._failed(base)
            self._start(fits_path, base)
            found = self._ready(base)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                self._failed(base)
                raise Unavailable("the FITS file is being prepared: retry shortly", (("Retry-After", "5"),))
            time.sleep(POLL)

    def _ready(self, base: str) -> tuple[str, os.stat_result] | None:
        """The cube and its stat if built; its mtime is touched (at most once a minute) for the LRU."""
        path = base + ".tif"
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        if time.time() - st.st_mtime > TOUCH_INTERVAL:
            with contextlib.suppress(OSError):
                os.utime(path)
        return path, st

    def _failed(self, base: str) -> None:
        """Raise the error a recent build of this version left, if any."""
        try:
            with open(base + ".error", encoding="utf-8") as handle:
                if time.time() - os.fstat(handle.fileno()).st_mtime > ERROR_TTL:
                    return
                error = json.load(handle)
        except (OSError, ValueError):
            return
        if isinstance(error, dict):
            raise _ERRORS.get(error.get("status", 0), SourceError)(str(error.get("message", "")))

    def _start(self, fits_path: str, base: str) -> None:
        """Start a builder unless one holds the cube's lock or every builder slot is taken.

        The child inherits both locks and keeps them until it exits: at most ``builders`` builds
        run on the host at once, whatever number of FITS files are asked for.
        """
        lock = _take(base + ".lock")
        if lock is None:
            return  # building elsewhere
        slot = None
        try:
            if os.path.exists(base + ".tif"):
                return  # finished between our look and the lock
            slot = self._slot()
            if slot is None:
                return  # as many builds as allowed are running: wait for one to end
            with contextlib.suppress(FileNotFoundError):
                os.unlink(base + ".error")  # expired: try again
            try:
                child = subprocess.Popen(
                    [sys.executable, "-m", "pyiip.tools.fits_build", fits_path, base,
                     f"{self.timeout:g}", str(self.max_request_memory), str(self.max_bytes)],
                    pass_fds=(lock, slot),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    start_new_session=True,  # a signal to the server's process group does not stop a build
                )  # fmt: skip
            except OSError as exc:
                raise Unavailable(f"the FITS builder cannot start ({exc.strerror})") from None
            threading.Thread(target=child.wait, name="pyiip-fits-reaper", daemon=True).start()
            # Once per file version, like start-up: logged at VERBOSITY 1.
            LOGGER.warning("%s: building its cube, process %d", fits_path, child.pid)
        finally:
            os.close(lock)
            if slot is not None:
                os.close(slot)

    def _slot(self) -> int | None:
        """One of the host's builder slots, locked, or None when all are taken."""
        for number in range(self.builders):
            slot = _take(f"{self.directory}/builders-{number}.slot")
            if slot is not None:
                return slot
        return None


def _take(path: str) -> int | None:
    """A descriptor of ``path`` holding its exclusive lock, or None when another holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise Unavailable(f"the FITS cache cannot be written ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
