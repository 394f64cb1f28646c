"""What protocol handlers call: open images and render requests (through the caches).

A request is bound to its image's pyramid here (``process.bind``), once, on a
cache miss; the renderer executes the bound request.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable

from pyiip import hooks
from pyiip.cache.images import ImageStore, open_image_budget
from pyiip.cache.rendered import RenderCache
from pyiip.config import Settings
from pyiip.encode.encoders import MIME
from pyiip.errors import Forbidden
from pyiip.http import Origin
from pyiip.model import ImageRequest, Region
from pyiip.process.bind import Limits, bind
from pyiip.process.render import Rendered, Renderer
from pyiip.read.image import OpenImage
from pyiip.resolve.local import Resolver
from pyiip.resolve.remote import remote_store


class Service:
    """One per process: settings, the open-image store, the renderer, and the hook (PYIIP_HOOKS) if any.

    With a hook, the application names each request's caller (``begin``);
    every image a request opens is then authorized first, and the decision
    is kept for the request (``granted``): the render checks a MaxSize
    against it, and the caches that answer whole replies key on it.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hooks = hooks.load(settings.hooks) if settings.hooks else None  # a bad hook stops the start
        self.caller = hooks.HookRequest("", "")
        # this request's decisions: the name an image was opened under -> (decision, identifier asked)
        self.granted: dict[str, tuple[hooks.Decision, str]] = {}
        self.resolver = Resolver(settings, remote_store(settings))  # local files, or object storage
        self.cache = RenderCache(settings)  # per-process LRU, then memcached when configured
        # TIFF sources keep decoded tiles in that LRU too, under the same budget.
        self.store = ImageStore(
            self.resolver, settings.max_metadata_cache_size, self.cache.tiles, open_image_budget(settings)
        )
        self.renderer = Renderer(self.cache.options, settings.max_request_memory * 1024 * 1024)

    def image(self, identifier: str) -> OpenImage:
        if self.hooks is None:
            return self.store.get(identifier)
        decision, name = self.admit(identifier)
        image = self.store.get(name)
        self.granted[image.resolved.identifier] = (decision, identifier)
        return image

    def begin(self, caller: hooks.HookRequest) -> None:
        """A request starts (with a hook only): who asks, and none of its images granted yet."""
        self.caller = caller
        self.granted.clear()

    def authorize(self, identifier: str) -> hooks.Decision:
        """The hook's decision on ``identifier`` for this request's caller; a Deny raised as its error reply."""
        assert self.hooks is not None
        return self.hooks.decide(dataclasses.replace(self.caller, identifier=identifier))

    def admit(self, identifier: str) -> tuple[hooks.Decision, str]:
        """The decision on ``identifier`` (``authorize``), and the name to open (the hook's ``resolve``)."""
        assert self.hooks is not None
        return self.authorize(identifier), self.hooks.name(identifier)

    def decision(self, image: OpenImage) -> hooks.Decision | None:
        """This request's decision on an image it opened; None without a hook."""
        if self.hooks is None:
            return None
        return self.granted.get(image.resolved.identifier, (hooks.ALLOW, ""))[0]

    def identify(self, identifier: str) -> Hashable:
        """What a kept reply of ``identifier`` was made under: the file's identity and the decision (hook only)."""
        decision, name = self.admit(identifier)
        return (self.resolver.identity(name), decision)

    def kept_as(self, origin: Origin) -> tuple[str, Hashable]:
        """The identifier a kept reply is checked by, and what ``identify`` must then answer."""
        if self.hooks is None:
            return origin.identifier, origin.identity
        decision, asked = self.granted.get(origin.identifier, (hooks.ALLOW, origin.identifier))
        return asked, (origin.identity, decision)

    def capped(self, image: OpenImage, limits: Limits, width: int, height: int) -> Limits:
        """``limits`` (the server's) for a ``width`` x ``height`` region of ``image``, within a MaxSize decision."""
        decision = self.decision(image)
        if not isinstance(decision, hooks.MaxSize):
            return limits
        scale = decision.scale(image.info.width, image.info.height)
        w, h = max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))
        return Limits(
            w if limits.width is None else min(w, limits.width),
            h if limits.height is None else min(h, limits.height),
            w * h if limits.area is None else min(w * h, limits.area),
        )

    def _most(self, image: OpenImage, region: Region) -> tuple[int, int] | None:
        """The largest output of ``region`` (of its level) a MaxSize decision allows; None without one."""
        decision = self.decision(image)
        if not isinstance(decision, hooks.MaxSize):
            return None
        info = image.info
        level = info.levels[min(region.level, len(info.levels) - 1)]
        scale = decision.scale(info.width, info.height)
        return math.ceil(region.w * info.width / level.width * scale), math.ceil(
            region.h * info.height / level.height * scale
        )

    def check_scale(self, image: OpenImage, region: Region, size: tuple[int, int]) -> None:
        """403 when a MaxSize decision forbids showing ``region`` (of its level) at ``size``."""
        most = self._most(image, region)
        if most is not None and (size[0] > most[0] + 1 or size[1] > most[1] + 1):  # +1: rounding
            decision = self.decision(image)
            assert isinstance(decision, hooks.MaxSize)
            raise Forbidden(f"this image is limited to {decision.pixels} pixels on its longer side for this client")

    def fit_scale(self, image: OpenImage, region: Region, size: tuple[int, int]) -> tuple[int, int]:
        """``size`` shrunk (aspect kept) to what a MaxSize decision allows of ``region``: CVT, as MAX_CVT caps it."""
        most = self._most(image, region)
        if most is None or (size[0] <= most[0] and size[1] <= most[1]):
            return size
        factor = min(most[0] / size[0], most[1] / size[1])
        return max(1, int(size[0] * factor)), max(1, int(size[1] * factor))

    def render(self, image: OpenImage, request: ImageRequest) -> Rendered:
        if self.hooks is not None:
            self.check_scale(image, request.region, request.size)
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
