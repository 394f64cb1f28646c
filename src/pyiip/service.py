"""What protocol handlers call: open images and render requests (through the caches)."""

from __future__ import annotations

from .cache import RenderCache
from .config import Settings
from .images import ImageStore, OpenImage
from .model import ImageRequest
from .render import Rendered, Renderer
from .resolver import Resolver


class Service:
    """One per process: settings, the open-image store, and the renderer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.resolver = Resolver(settings)
        self.store = ImageStore(self.resolver, settings.max_metadata_cache_size)
        self.renderer = Renderer(settings)
        self.cache = RenderCache(settings)  # per-process LRU, then memcached when configured

    def image(self, identifier: str) -> OpenImage:
        return self.store.get(identifier)

    def render(self, image: OpenImage, request: ImageRequest) -> Rendered:
        return self.cache.fetch(image, request, self.renderer.render)

    def clear(self) -> None:
        """Drop every cached entry (SIGHUP)."""
        self.store.clear()
        self.cache.clear()
