"""``pyiip warm``: render the tiles of chosen levels into memcached before a burst of traffic.

A press release or a public-outreach page sends thousands of viewers to one
image at once, all asking for the same first few levels. Warming renders
those tiles ahead, into the same memcached the servers use, under the very
keys live requests make: each tile is asked for as an IIP ``JTL`` query with
default parameters through the IIP handler itself, so no second
description of a tile request exists that could drift from the live one.
IIIF tile requests for the same pixels map to the same keys.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from pyiip.config import Settings
from pyiip.http import Request
from pyiip.respond import iip
from pyiip.service import Service


class WarmError(Exception):
    """Warming cannot start: no memcached configured or reachable, bad levels."""


@dataclass
class WarmReport:
    tiles: int = 0
    rendered: int = 0  # rendered and stored
    cached: int = 0  # already in memcached (expiry refreshed)
    skipped: int = 0  # over memcached's item limit
    failed: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.tiles} tiles: {self.rendered} rendered and stored, {self.cached} already cached, "
            f"{self.skipped} too large for memcached, {self.failed} failed, {self.seconds:.1f} s"
        )


def parse_levels(text: str, count: int) -> list[int]:
    """``0-3,5``: IIP resolution numbers (0 = smallest, as in JTL), checked against ``count`` levels."""
    levels: set[int] = set()
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        low, dash, high = item.partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            raise WarmError(f"--levels: {item!r} is not a number or a range like 0-3") from None
        if not 0 <= first <= last < count:
            raise WarmError(f"--levels: {item!r} outside the image's resolutions 0-{count - 1}")
        levels.update(range(first, last + 1))
    if not levels:
        raise WarmError("--levels names no level")
    return sorted(levels)


def warm(
    settings: Settings,
    identifier: str,
    levels: str | Sequence[int] | None = None,
    *,
    progress: bool = True,
) -> WarmReport:
    """Render every tile of ``levels`` (all by default) of one image into memcached."""
    if not settings.memcached_servers.strip():
        raise WarmError("MEMCACHED_SERVERS is not set: there is no shared cache to warm")
    # This process serves nobody: no per-process LRU, only memcached.
    service = Service(dataclasses.replace(settings, max_image_cache_size=0.0))
    memcached = service.cache.memcached
    assert memcached is not None
    service.cache.touch_on_hit = True  # warming again re-arms the expiry of tiles already there
    try:
        _probe(service)
        image = service.image(identifier)
        count = len(image.info.levels)
        if levels is None:
            chosen = list(range(count))
        elif isinstance(levels, str):
            chosen = parse_levels(levels, count)
        else:
            chosen = parse_levels(",".join(str(level) for level in levels), count)
        tiles = []
        for res in chosen:
            lv = image.info.levels[count - 1 - res]
            tiles += [(res, index) for index in range(lv.tiles_across * lv.tiles_down)]
        return _run(service, identifier, tiles, progress)
    finally:
        service.clear()


def _probe(service: Service) -> None:
    memcached = service.cache.memcached
    assert memcached is not None
    for name, client in list(memcached.client.clients.items()):
        try:
            client.version()
        except Exception as exc:
            raise WarmError(f"memcached {name} is not reachable: {exc}") from None


def _run(service: Service, identifier: str, tiles: list[tuple[int, int]], progress: bool) -> WarmReport:
    from tqdm import tqdm

    memcached = service.cache.memcached
    assert memcached is not None
    report = WarmReport(tiles=len(tiles))
    started = time.perf_counter()
    fif = "FIF=" + quote(identifier.encode("utf-8", "surrogateescape"), safe="/")
    bar = tqdm(tiles, unit="tile", desc=identifier[-40:], disable=not progress, leave=True)
    for res, index in bar:
        hits, stores, skipped = memcached.hits, memcached.stores, memcached.skipped
        try:
            response = iip.handle(service, Request("GET", "/fcgi-bin/iipsrv.fcgi", f"{fif}&JTL={res},{index}"))
        except Exception:
            response = None
        if response is None or response.status != 200:
            report.failed += 1
        elif memcached.hits > hits:
            report.cached += 1
        elif memcached.skipped > skipped:
            report.skipped += 1
        elif memcached.stores > stores:
            report.rendered += 1
        else:
            report.failed += 1  # rendered, but the store failed
        if memcached.down:
            bar.close()
            raise WarmError(f"memcached {', '.join(sorted(memcached.down))} went away while warming ({report})")
    bar.close()
    _sync(service)
    report.seconds = time.perf_counter() - started
    return report


def _sync(service: Service) -> None:
    """One round trip per server: memcached has then applied every ``noreply`` store sent before it."""
    memcached = service.cache.memcached
    assert memcached is not None
    for client in list(memcached.client.clients.values()):
        try:
            client.version()
        except Exception as exc:
            raise WarmError(f"memcached failed at the end of warming: {exc}") from None
