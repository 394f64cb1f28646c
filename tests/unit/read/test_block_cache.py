"""The on-disk block cache of remote images (read.block_cache): round trips, LRU, shared directories."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pyiip.read.block_cache import BlockCache


def test_blocks_round_trip_and_bad_files_are_misses(tmp_path: Path) -> None:
    cache = BlockCache(str(tmp_path / "c"), 1 << 20)
    cache.put("ab12.0", b"x" * 1000)
    assert cache.get("ab12.0", 1000) == b"x" * 1000
    assert cache.get("ab12.0", 999) is None  # a block of the wrong size is dropped
    assert cache.get("ab12.0", 1000) is None
    assert cache.get("ab12.1", 10) is None
    assert not list((tmp_path / "c").rglob("*.tmp"))


def test_eviction_is_least_recently_used_and_bounded(tmp_path: Path) -> None:
    block = 10_000
    cache = BlockCache(str(tmp_path / "c"), 100_000)
    for i in range(8):
        cache.put(f"aa{i:02d}.0", bytes([i]) * block)
    old = time.time() - 1000
    for i in range(8):  # make the order of use explicit: 0 is the oldest, 7 the newest...
        os.utime(tmp_path / "c" / "aa" / f"aa{i:02d}.0", (old + i, old + i))
    cache.get("aa00.0", block)  # ...but 0 was just read: it counts as recent
    for i in range(8, 14):
        cache.put(f"aa{i:02d}.0", bytes([i]) * block)
    cache.trim()
    assert cache.usage() <= 100_000
    assert cache.get("aa00.0", block) == bytes([0]) * block
    assert cache.get("aa01.0", block) is None and cache.get("aa13.0", block) is not None
    assert cache.evictions > 0


def test_several_processes_share_one_directory(tmp_path: Path) -> None:
    directory = str(tmp_path / "shared")
    budget = 64 * 4096
    children = []
    for _worker in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            status = 0
            try:
                cache = BlockCache(directory, budget)
                for i in range(200):
                    name = f"{(i * 7) % 150:04x}.{i % 3}"
                    payload = name.encode().ljust(4096, b".")
                    found = cache.get(name, 4096)
                    if found is not None and found != payload:
                        status = 1
                    cache.put(name, payload)
            except Exception:
                status = 2
            os._exit(status)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    cache = BlockCache(directory, budget)
    # Each process may overshoot by a sixteenth of the budget between its scans.
    assert cache.usage() <= budget * (1 + 4 / 16)
    cache.trim()
    assert cache.usage() <= budget
    assert not list(Path(directory).rglob("*.tmp"))


def test_an_unusable_directory_disables_the_cache_without_failing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = BlockCache(str(blocker / "blocks"), 1 << 20)
    cache.put("ab.0", b"data")
    assert cache.get("ab.0", 4) is None and not cache.enabled
    assert BlockCache(str(tmp_path / "zero"), 0).get("ab.0", 4) is None
