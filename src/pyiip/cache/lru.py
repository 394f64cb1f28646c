"""The byte-budgeted LRU every per-process cache uses, and ``footprint``, the size it charges an entry."""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any, ClassVar, cast

from pyiip.model import IDENTITY

_sizeof = sys.getsizeof

_LEAVES = frozenset({str, bytes, int, float, bool, type(None)})


_SHARED = {id(IDENTITY)}  # the default display every plain request refers to: one object, not one per entry


def footprint(value: object) -> int:
    """The bytes ``value`` holds with its parts (strings, bytes, tuples, lists, slotted objects): an entry's cost.

    A part shared with other entries is counted in each (but the default
    display), so the sum errs high; an object of another kind counts its
    own size only. Called when an entry is stored (a render, a reply kept),
    never on a hit: a few µs for a tile, ~15 for a reply.
    """
    kind = type(value)
    if kind in _LEAVES:
        return _sizeof(value)
    if kind is tuple or kind is list:
        return _sizeof(value) + _parts(cast(Iterable[object], value))  # mypy does not narrow on ``kind``
    if id(value) in _SHARED:
        return 0
    size = _sizeof(value)
    if isinstance(value, memoryview):
        return size + value.nbytes
    attributes = getattr(value, "__dict__", None)  # instances of classes without __slots__
    if attributes is not None:
        size += _parts(attributes.values())
    return size + _parts([getattr(value, name, None) for name in getattr(kind, "__slots__", ())])


def _parts(values: Iterable[object]) -> int:
    return sum([_sizeof(v) if type(v) in _LEAVES else footprint(v) for v in values])


class LRUCache:
    """Encoded images and decoded tiles under one byte budget (MAX_IMAGE_CACHE_SIZE, in MB as in iipsrv).

    One budget for both kinds, as iipsrv's tile cache holds its compressed
    and raw tiles together: whichever was used least recently goes first.
    Keys of the two kinds never collide: rendered images are keyed
    ``(identity, request)``, tiles ``("tile", identity, level, index)``.
    ``put`` is told the entry's size in bytes. An entry bigger than a
    quarter of the budget is not kept, so one large CVT cannot flush the
    whole working set of tiles. ``hits``, ``misses`` and ``evictions`` are
    plain counters for /metrics; ``get`` counts, ``find`` (the tiles' lookup,
    which TileCache counts apart) does not.
    """

    ENTRY_OVERHEAD: ClassVar[int] = 256  # key, entry and dict slot, roughly (ClassVar: a class's, compiled too)

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self.max_entry = self.max_bytes // 4
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any:
        item = self._entries.get(key)
        if item is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return item[0]

    def find(self, key: Hashable) -> Any:
        """``get`` without counting."""
        item = self._entries.get(key)
        if item is None:
            return None
        self._entries.move_to_end(key)
        return item[0]

    def put(self, key: Hashable, entry: Any, size: int) -> bool:
        """Keep ``entry`` (``size`` bytes), evicting the least recently used; False when it is too large."""
        size += self.ENTRY_OVERHEAD
        if size > self.max_entry:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._entries[key] = (entry, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _key, (_dropped, dropped_size) = self._entries.popitem(last=False)
            self.bytes -= dropped_size
            self.evictions += 1
        return True

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
