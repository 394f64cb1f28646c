"""Map an image identifier to a file under FILESYSTEM_PREFIX, and nowhere else.

iipsrv concatenates prefix + path + suffix and strips ``../``; we keep the
concatenation (so existing prefixes and suffixes mean the same) but decide
safety on the resolved real path: it must lie inside the root directory,
whatever dots, encodings, absolute paths or symlinks the identifier uses.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Hashable

from pyiip.config import Settings
from pyiip.errors import BadRequest, Forbidden, NotFound
from pyiip.read.remote import RemoteStore
from pyiip.read.resolved import Resolved, local_identity
from pyiip.resolve.fits_cache import FitsCache, is_fits

MAX_IDENTIFIER = 1024
# realpath costs tens of µs (an lstat per component): its result is reused
# for a moment. What is reused was checked to lie inside the root and is
# opened by its real path, so a symlink changed meanwhile cannot lead out.
REALPATH_TTL = 2.0
REALPATH_ENTRIES = 4096
REALPATH_BYTES = 1 << 20  # and its strings: long identifiers must not make it ~10 MB
_REALPATH_ENTRY = 200  # bytes an entry holds besides its characters (two str heads, tuple, float, dict slot)


_READ_ALL = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def _readable(st: os.stat_result, path: str) -> bool:
    """Whether this process may read the file: a file everyone may read (0644) costs no system call.

    Others are asked of the kernel (access(2)), which knows the process's
    ids, groups, capabilities and the file's ACLs.
    """
    return st.st_mode & _READ_ALL == _READ_ALL or os.access(path, os.R_OK)


class Resolver:
    """FILESYSTEM_PREFIX / FILESYSTEM_SUFFIX resolution with containment checks.

    With ``remote`` (the Service passes resolve.remote.remote_store(settings)), identifiers name objects in
    object storage instead.
    """

    def __init__(self, settings: Settings, remote: RemoteStore | None = None) -> None:
        self.prefix = settings.filesystem_prefix
        self.suffix = settings.filesystem_suffix
        # The directory nothing may escape: the prefix itself when it names a
        # directory, else the directory holding the prefix's partial name.
        base = self.prefix or os.getcwd() + os.sep
        root = base if base.endswith(os.sep) else os.path.dirname(base) or "."
        self.root = os.path.realpath(root)
        self.remote = remote  # images in object storage, when REMOTE_URL_TEMPLATE or S3_BUCKET is set
        self.fits = FitsCache(settings) if remote is None else None  # FITS files, served from their built cubes
        self._real: dict[str, tuple[str, float]] = {}
        self._real_bytes = 0

    def candidate(self, identifier: str) -> str:
        """The real path an identifier names, refusing anything outside the root."""
        now = time.monotonic()
        known = self._real.get(identifier)
        if known is not None and known[1] > now:
            return known[0]
        real = self._check(identifier)
        cost = len(identifier) + len(real) + _REALPATH_ENTRY
        if len(self._real) >= REALPATH_ENTRIES or self._real_bytes + cost > REALPATH_BYTES:
            self._real.clear()
            self._real_bytes = 0
        self._real[identifier] = (real, now + REALPATH_TTL)
        self._real_bytes += cost
        return real

    def _check(self, identifier: str) -> str:
        if not identifier:
            raise BadRequest("no image given")
        if len(identifier) > MAX_IDENTIFIER:
            raise BadRequest("image identifier too long")
        if "\x00" in identifier:
            raise BadRequest("invalid character in image identifier")
        joined = (self.prefix or self.root + os.sep) + identifier + self.suffix
        lexical = os.path.normpath(joined)
        if not self._inside(os.path.abspath(lexical)):
            raise Forbidden("image path outside the image root")
        real = os.path.realpath(joined)
        if not self._inside(real):
            raise Forbidden("image path outside the image root")
        return real

    def resolve(self, identifier: str) -> Resolved:
        """Resolve and stat: a missing or non-regular file is a 404 that names no path."""
        if self.remote is not None:
            return self.remote.resolve(identifier)
        real, st = self._stat(identifier)
        return Resolved(
            real, st.st_mtime, st.st_size, st.st_ino, st.st_mtime_ns, ctime_ns=st.st_ctime_ns, identifier=identifier
        )

    def identity(self, identifier: str) -> Hashable:
        """``resolve(identifier).identity``, without building the Resolved: a kept reply checks it per hit."""
        if self.remote is not None:
            return self.remote.resolve(identifier).identity
        real, st = self._stat(identifier)
        return local_identity(real, st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)

    def _stat(self, identifier: str) -> tuple[str, os.stat_result]:
        """The real path and its stat; a missing, non-regular or unreadable file is a 404 that names no path.

        Every request (a kept reply's too) comes here, so a file made
        unreadable (``chmod 000``) stops being served at once, from every cache.
        A FITS file gives its built cube's path (built or waited for here) with
        the FITS file's own stat: the cube is touched for the LRU, which must
        not change the identity every cache keys on.
        """
        real = self.candidate(identifier)
        try:
            st = os.stat(real)
        except (OSError, ValueError):
            raise NotFound("image not found") from None
        if not stat.S_ISREG(st.st_mode) or not _readable(st, real):
            raise NotFound("image not found")
        if self.fits is not None and is_fits(real):
            return self.fits.cube(real, st)[0], st
        return real, st

    def _inside(self, path: str) -> bool:
        root = self.root
        return path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep)
