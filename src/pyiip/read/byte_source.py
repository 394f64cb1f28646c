"""Where a file's bytes come from: a local file by pread, or (later) ranges of a remote object.

Readers ask for (offset, count) ranges only, so a source that fetches byte
ranges never has to copy a whole image before serving a tile of it.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class ByteSource(Protocol):
    """Random access to the bytes of one immutable version of a file."""

    name: str
    size: int

    def pread(self, count: int, offset: int) -> bytes:
        """Up to ``count`` bytes at ``offset``; fewer only at the end of the file."""
        ...

    def close(self) -> None: ...


class LocalFile:
    """A local file kept open; pread needs no seek, so the descriptor is never shared state."""

    def __init__(self, path: str) -> None:
        self.name = path
        self._fd: int | None = os.open(path, os.O_RDONLY)
        st = os.fstat(self._fd)
        self.size = st.st_size
        # The version of the bytes this descriptor reads, whatever name opened it: hard links share
        # it, a file replaced or rewritten gets another (the key of TiffSource's cached tiles), even
        # one rewritten in place with its size and mtime put back: its ctime moved.
        self.identity = ("file", st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)

    def pread(self, count: int, offset: int) -> bytes:
        if self._fd is None:
            raise ValueError("file is closed")
        return os.pread(self._fd, count, offset)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ByteStream(io.RawIOBase):
    """A seekable file object over a ByteSource, for parsers that want one (tifffile)."""

    def __init__(self, source: ByteSource) -> None:
        super().__init__()
        self._source = source
        self._position = 0
        self.name = source.name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._source.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._source.pread(len(view), self._position)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)
