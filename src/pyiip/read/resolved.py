"""What a resolver hands the readers: where an image's bytes are, and the version every cache keys on.

read/ defines it and resolve/ fills it in, so the readers never import the resolvers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyiip.read.byte_source import ByteSource


@dataclass(frozen=True, slots=True)
class Resolved:
    """A servable file and the identity that keys every cache entry made from it."""

    path: str
    mtime: float
    size: int
    inode: int
    mtime_ns: int
    # Remote objects (remote.py): their ETag, and how to open them; ``path`` is then their URL.
    version: str = ""
    ctime_ns: int = 0  # a local file's: any write, touch or chmod moves it, whatever mtime is set back to
    opener: Callable[[], ByteSource] | None = field(default=None, compare=False, repr=False)
    identifier: str = field(default="", compare=False)  # what was asked for: resolving it again revalidates

    @property
    def identity(self) -> tuple[str, int | str, int, int, int]:
        """Changes whenever the file is replaced or rewritten (a remote object: its URL, ETag and size).

        A file rewritten in place with its size and mtime put back (``cp``
        into the same inode then ``touch -d``, ``rsync --inplace -t``) keeps
        neither its ctime: every cache, memcached included, then misses. A
        remote identity names no host-local detail, so hosts sharing memcached share its entries.
        """
        if self.opener is not None:
            return (self.path, self.version, self.size, 0, 0)
        return local_identity(self.path, self.mtime_ns, self.size, self.inode, self.ctime_ns)


def local_identity(path: str, mtime_ns: int, size: int, inode: int, ctime_ns: int) -> tuple[str, int, int, int, int]:
    return (path, mtime_ns, size, inode, ctime_ns)
