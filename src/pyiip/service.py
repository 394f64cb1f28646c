"""What protocol handlers call: open images and render requests (through the caches).

A request is bound to its image's pyramid here (``process.bind``), once, on a
cache miss; the renderer executes the bound request.
"""

from __future__ import annotations

from pyiip.cache.images import ImageStore, open_image_budget
from pyiip.cache.rendered import RenderCache
from pyiip.config import Settings
from pyiip.encode.encoders import MIME
from pyiip.model import ImageRequest, Region
from pyiip.process.bind import bind
from pyiip.process.render import Rendered, Renderer
from pyiip.read.image import OpenImage
from pyiip.resolve.local import Resolver
from pyiip.resolve.remote import remote_store


class Service:
    """One per process: settings, the open-image store, and the renderer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.resolver = Resolver(settings, remote_store(settings))  # local files, or object storage
        self.cache = RenderCache(settings)  # per-process LRU, then memcached when configured
        # TIFF sources keep decoded tiles in that LRU too, under the same budget.
        self.store = ImageStore(
            self.resolver, settings.max_metadata_cache_size, self.cache.tiles, open_image_budget(settings)
        )
        self.renderer = Renderer(self.cache.options, settings.max_request_memory * 1024 * 1024)

    def image(self, identifier: str) -> OpenImage:
        return self.store.get(identifier)

    def render(self, image: OpenImage, request: ImageRequest) -> Rendered:
        if image.resolved.opener is None:
            # A stored JPEG tile of a local file costs one pread: cheaper than the cache
            # keys and lookups, and it would only crowd the caches out.
            stored = self.renderer.passthrough(image, request)
            if stored is not None:
                return Rendered(stored, MIME["jpg"], _stored_etag(image, request.region))
            return self.cache.fetch(image, request, self._draw)  # stored tile ruled out already
        return self.cache.fetch(image, request, self._render)

    def _draw(self, image: OpenImage, request: ImageRequest) -> Rendered:
        """A cache miss whose stored tile is ruled out: bind it, then draw."""
        return self.renderer.draw(image, bind(image.info, request))

    def _render(self, image: OpenImage, request: ImageRequest) -> Rendered:
        """A cache miss of a remote image: its stored tile if it can go as it is, else bind and draw."""
        return self.renderer.render(image, bind(image.info, request))

    def clear(self) -> None:
        """Drop every cached entry (SIGHUP)."""
        self.store.clear()
        self.cache.clear()


def _stored_etag(image: OpenImage, region: Region) -> str:
    """Weak, like rendered images' tags: the file's version (its ctime too) and the tile's place name the bytes."""
    r = image.resolved
    return f'W/"t{r.mtime_ns:x}.{r.ctime_ns:x}.{r.size:x}.{r.inode:x}.{region.level}.{region.x}.{region.y}"'
