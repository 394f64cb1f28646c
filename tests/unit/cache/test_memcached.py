"""memcached's server list and key placement (cache.memcached), without a server."""

from __future__ import annotations

import pytest

from pyiip.cache.memcached import parse_servers
from pyiip.config import ConfigError


def test_parse_servers():
    assert parse_servers("a, b:11212,[::1]:5000 /run/mc.sock unix:/x ::1") == [
        ("a", 11211),
        ("b", 11212),
        ("::1", 5000),
        "/run/mc.sock",
        "/x",
        ("::1", 11211),
    ]
    assert parse_servers("") == []
    for bad in ("a:b", ":11211", "a:0", "a:70000"):
        with pytest.raises(ConfigError):
            parse_servers(bad)


def test_rendezvous_placement_is_even_and_consistent():
    """Keys spread evenly; dropping a server moves only its own keys (what a cluster needs)."""
    import hashlib

    from pymemcache.client.rendezvous import RendezvousHash

    from pyiip.cache.memcached import place

    nodes = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]
    keys = [f"pyiip:{i:032x}" for i in range(3000)]
    placed = {key: place(key, nodes) for key in keys}
    for node in nodes:
        assert 850 < list(placed.values()).count(node) < 1150
    remaining = [nodes[0], nodes[2]]
    moved = [key for key in keys if place(key, remaining) != placed[key]]
    assert all(placed[key] == nodes[1] for key in moved) and len(moved) == list(placed.values()).count(nodes[1])
    assert all(place(key, nodes[::-1]) == placed[key] for key in keys)

    # The placement pymemcache's HashClient gave (RendezvousHash, blake2b score): stored keys stay found.
    def score(text: str, seed: int) -> int:
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")

    ring = RendezvousHash(nodes=list(nodes), hash_function=score)
    assert all(ring.get_node(key) == placed[key] for key in keys)
