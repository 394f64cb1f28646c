"""The render cache's settings (cache.rendered)."""

from __future__ import annotations

from pyiip import config
from pyiip.cache.rendered import RenderCache


def test_image_cache_size_is_in_megabytes(settings):
    cache = RenderCache(config.load({"MAX_IMAGE_CACHE_SIZE": "2.5"}))
    assert cache.lru.max_bytes == int(2.5 * 1024 * 1024)
    assert cache.memcached is None  # memcached is off unless MEMCACHED_SERVERS is set
