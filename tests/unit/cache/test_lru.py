"""The LRU cache (cache.lru): least recently used out first, within a byte budget."""

from __future__ import annotations

from pyiip.cache.lru import LRUCache
from pyiip.process.render import Rendered


def entry(size: int) -> Rendered:
    return Rendered(b"x" * size, "image/jpeg")


def put(lru: LRUCache, key, rendered: Rendered) -> None:
    lru.put(key, rendered, len(rendered.body))


def test_lru_evicts_least_recently_used_within_budget():
    overhead = LRUCache.ENTRY_OVERHEAD
    lru = LRUCache(4 * (1000 + overhead) * 4)  # room for 16 entries; one entry may take a quarter
    for key in range(16):
        put(lru, key, entry(1000))
    assert len(lru) == 16 and lru.bytes == 16 * (1000 + overhead)
    assert lru.get(0) is not None  # 0 becomes the most recently used
    put(lru, 16, entry(1000))
    assert lru.get(1) is None and lru.get(0) is not None and lru.evictions == 1
    assert (lru.hits, lru.misses) == (2, 1)
    put(lru, 99, entry(lru.max_bytes))  # over a quarter of the budget: not kept, nothing flushed
    assert lru.get(99) is None and len(lru) == 16
    put(lru, 0, entry(10))  # replacing an entry keeps the byte count right
    assert lru.bytes == 15 * (1000 + overhead) + 10 + overhead
    lru.clear()
    assert len(lru) == 0 and lru.bytes == 0


def test_zero_budget_keeps_nothing():
    lru = LRUCache(0)
    put(lru, "a", entry(1))
    assert lru.get("a") is None and len(lru) == 0
