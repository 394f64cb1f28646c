"""ETags of rendered and stored images: derived from the cache key, or from the bytes.

A rendered image's tag travels in its ``Rendered`` and then its ``Response``
(``etag``), so a cache hit never digests anything again.
"""

from __future__ import annotations

import hashlib


def key_etag(digest: str) -> str:
    """The ETag of a rendered image: weak, and derived from its cache key.

    The key names everything the output depends on (file identity, canonical
    request, pyiip version, encoder settings), so equal tags mean equivalent
    images. Weak (``W/``) because the bytes themselves may differ between
    hosts or after a re-render with another codec build; a strong tag would
    need a digest of every body (~40 µs for a 20 KB tile), and If-None-Match
    compares weakly anyway. Byte ranges, the one use of strong tags, are not served.
    """
    return f'W/"{digest}"'


def content_etag(body: bytes) -> str:
    """A strong ETag for replies that are not rendered images (OBJ text, info.json): their digest."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
