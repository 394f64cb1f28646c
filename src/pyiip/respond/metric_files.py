"""Per-process counter files that one scrape sums: the host's workers seen as one server.

Each process counts into its own memory-mapped file, ``<METRICS_DIR>/<pid>.metrics``:
a slot of 8 bytes per series, incremented in place (``values[i] += 1``:
as cheap as the dict increments it replaces, no lock, no system call). The
scrape, in whichever worker the web server picked, reads every file of the
directory and adds them up. Without a directory (an in-process call, a single
process) the same slots live in anonymous memory.

Layout: a header (series used, key bytes used), then SLOTS float64 values,
then the series' keys, each a 4-byte length and UTF-8 text. A key is
written before the header counts it, so a reader never sees half a series.
The first character of a key says how it is summed: ``c`` a counter and
``b`` a histogram bucket (summed, and kept when their process dies), ``g``
a gauge (summed over the live processes), ``x`` a gauge whose maximum
counts. A dead worker's counters are folded into ``archive.json`` under a
lock and its file removed, so totals never go down when a worker is
replaced, and the directory does not fill with files of old pids.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import struct
from collections.abc import Iterator

HEADER = struct.Struct("<QQ")  # series used, key bytes used
SLOTS = 8192
KEYS_AT = HEADER.size + SLOTS * 8
SIZE = 1 << 20  # sparse: only the pages written take room
SUFFIX = ".metrics"
ARCHIVE = "archive.json"
KEPT = "cb"  # the modes whose values outlive their process
SCRATCH = HEADER.size // 8 + SLOTS - 1  # where series beyond the capacity are counted, never shown


class Slots:
    """One process's series: ``index`` maps a key to its position in ``values`` (float64)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.pid = os.getpid()
        if path is None:
            self.map = mmap.mmap(-1, SIZE)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.ftruncate(fd, SIZE)
                self.map = mmap.mmap(fd, SIZE)
            finally:
                os.close(fd)
        self.values = memoryview(self.map).cast("d")
        self.index: dict[str, int] = {}
        self.key_bytes = 0

    def slot(self, key: str) -> int:
        """The position of ``key``'s value, added (at 0) when new."""
        found = self.index.get(key)
        return self._add(key) if found is None else found

    def _add(self, key: str) -> int:
        data = key.encode()
        used = len(self.index)
        at = KEYS_AT + self.key_bytes
        if used >= SLOTS - 1 or at + 4 + len(data) > SIZE:
            return SCRATCH  # thousands of series: a bug elsewhere, not worth failing a request
        self.map[at : at + 4 + len(data)] = struct.pack("<I", len(data)) + data
        self.key_bytes += 4 + len(data)
        position = HEADER.size // 8 + used
        self.index[key] = position
        HEADER.pack_into(self.map, 0, used + 1, self.key_bytes)  # last: the series exists from now on
        return position

    def snapshot(self) -> dict[str, float]:
        """The series and their values, without those set to NaN (no longer kept)."""
        values = self.values
        return {key: values[i] for key, i in self.index.items() if values[i] == values[i]}


def read(path: str) -> dict[str, float]:
    """Another process's series, read from its file (two reads, however many series)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        used, key_bytes = HEADER.unpack(os.pread(fd, HEADER.size, 0))
        used, key_bytes = min(used, SLOTS - 1), min(key_bytes, SIZE - KEYS_AT)
        values = struct.unpack(f"<{used}d", os.pread(fd, used * 8, HEADER.size))
        keys = os.pread(fd, key_bytes, KEYS_AT)
    finally:
        os.close(fd)
    out = {}
    at = 0
    for value in values:
        (length,) = struct.unpack_from("<I", keys, at)
        out[keys[at + 4 : at + 4 + length].decode("utf-8", "replace")] = value
        at += 4 + length
    return out


def add(total: dict[str, float], series: dict[str, float], modes: str = "cbgx") -> None:
    """Add ``series`` into ``total`` by each key's mode (``x``: the maximum)."""
    for key, value in series.items():
        if key[0] in modes and value == value:  # NaN: a series no longer kept
            known = total.get(key)
            if known is None:
                total[key] = value
            else:
                total[key] = max(known, value) if key[0] == "x" else known + value


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process has the pid now: its file is not ours to fold
        return True
    return True


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """The directory's lock: one process at a time folds dead workers' files into the archive."""
    fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load_archive(directory: str) -> dict[str, float]:
    try:
        with open(os.path.join(directory, ARCHIVE), encoding="utf-8") as file:
            kept = json.load(file)
    except (OSError, ValueError):
        return {}
    if not isinstance(kept, dict):
        return {}
    return {k: float(v) for k, v in kept.items() if k and k[0] in KEPT and isinstance(v, (int, float))}


def _fold(archive: dict[str, float], path: str) -> None:
    """Move a dead process's counters into ``archive`` and remove its file (the caller holds the lock)."""
    with contextlib.suppress(OSError, struct.error, ValueError):
        add(archive, read(path), KEPT)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _save_archive(directory: str, archive: dict[str, float]) -> None:
    temporary = os.path.join(directory, f".{ARCHIVE}.{os.getpid()}")
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(archive, file)
    os.replace(temporary, os.path.join(directory, ARCHIVE))


def open_slots(directory: str) -> Slots:
    """This process's file in ``directory``; a file left by a dead process with the same pid is folded first."""
    path = os.path.join(directory, f"{os.getpid()}{SUFFIX}")
    with _locked(directory):
        if os.path.lexists(path):
            archive = _load_archive(directory)
            _fold(archive, path)
            _save_archive(directory, archive)
        return Slots(path)


def collect(own: Slots) -> dict[str, float]:
    """Every process's series summed: ``own`` from memory, the others from their files, the dead from the archive."""
    total = own.snapshot()
    if own.path is None:
        return total
    directory = os.path.dirname(own.path)
    with _locked(directory):
        archive = _load_archive(directory)
        folded = False
        for name in os.listdir(directory):
            stem = name.removesuffix(SUFFIX)
            if stem == name or not stem.isdigit() or int(stem) == own.pid:
                continue
            path = os.path.join(directory, name)
            if _alive(int(stem)):
                with contextlib.suppress(OSError, struct.error, ValueError):  # gone meanwhile, or torn
                    add(total, read(path))
            else:
                _fold(archive, path)
                folded = True
        if folded:
            _save_archive(directory, archive)
    add(total, archive, KEPT)
    return total
