"""IIIF Image API image information documents (info.json), versions 2.1 and 3.0.

Everything advertised is what the request parser and renderer really do:
the size limits are the ones image requests are checked against, tiles
and sizes are the stored pyramid levels, and the extra formats, qualities
and features are exactly those served.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyiip.config import Settings
from pyiip.encode.encoders import MIME
from pyiip.parse.iiif import FORMATS
from pyiip.process.tiling import scale_factors
from pyiip.read.source import ImageInfo

PROTOCOL = "http://iiif.io/api/image"
# Bytes of request memory one output pixel may need (read + resize + encode, see Renderer.check_limits).
_BYTES_PER_PIXEL = 108


def context(version: int) -> str:
    return f"http://iiif.io/api/image/{version}/context.json"


def profile_uri(version: int) -> str:
    return f"http://iiif.io/api/image/{version}/level2.json"


@dataclass(frozen=True, slots=True)
class Limits:
    """Server-imposed output limits: maxWidth/maxHeight from MAX_CVT, maxArea from it or the memory budget."""

    width: int | None
    height: int | None
    area: int | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        side = settings.max_output_side
        budget = settings.max_request_memory * 1024 * 1024 // _BYTES_PER_PIXEL
        if side is None:
            # Upscaling needs a declared limit (IIIF 3 section 5.7): the memory budget is the real one.
            return cls(None, None, budget)
        return cls(side, side, side * side)

    def allows(self, width: int, height: int) -> bool:
        return (
            (self.width is None or width <= self.width)
            and (self.height is None or height <= self.height)
            and (self.area is None or width * height <= self.area)
        )

    def fit(self, width: int, height: int, upscale: bool) -> tuple[int, int]:
        """The largest size of this aspect ratio within the limits (IIIF ``max`` and ``^max``)."""
        scale = math.inf if upscale else 1.0
        if self.width is not None:
            scale = min(scale, self.width / width)
        if self.height is not None:
            scale = min(scale, self.height / height)
        if self.area is not None:
            scale = min(scale, math.sqrt(self.area / (width * height)))
        if scale == math.inf or scale == 1.0:
            return width, height
        rounded = max(1, round(width * scale)), max(1, round(height * scale))
        if self.allows(*rounded):
            return rounded
        return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def _sizes(info: ImageInfo, limits: Limits) -> list[dict[str, int]]:
    """Reduced pyramid levels within the limits, smallest first (the full size is ``max``)."""
    sizes = [
        {"width": lv.width, "height": lv.height}
        for lv in reversed(info.levels[1:])
        if limits.allows(lv.width, lv.height)
    ]
    if not sizes and limits.allows(info.width, info.height):
        sizes.append({"width": info.width, "height": info.height})
    return sizes


def _tiles(info: ImageInfo) -> list[dict[str, object]]:
    tw, th = info.tile_size
    return [{"width": tw, "height": th, "scaleFactors": scale_factors(info)}]


def _qualities(info: ImageInfo) -> list[str]:
    """``color`` only for images that have colour (or can be given it by a colormap)."""
    return ["color", "gray", "bitonal"] if info.channels >= 3 or info.is_float or info.bits > 8 else ["gray", "bitonal"]


def _features(settings: Settings) -> list[str]:
    features = ["canonicalLinkHeader", "mirroring", "profileLinkHeader", "rotationArbitrary"]
    if settings.allow_upscaling:
        features.append("sizeUpscaling")
    return features


def _rights(info: ImageInfo, settings: Settings) -> tuple[str | None, str | None]:
    """(rights URI, attribution text): the image's own copyright first, then COPYRIGHT."""
    text = (info.metadata.get("copyright") or settings.copyright or "").strip()
    if not text:
        return None, None
    if text.startswith(("http://", "https://")) and " " not in text:
        return text, None
    return None, text


def info_v3(identifier_uri: str, info: ImageInfo, settings: Settings) -> dict[str, object]:
    limits = Limits.from_settings(settings)
    doc: dict[str, object] = {
        "@context": context(3),
        "id": identifier_uri,
        "type": "ImageService3",
        "protocol": PROTOCOL,
        "profile": "level2",
        "width": info.width,
        "height": info.height,
    }
    if limits.width is not None:
        doc["maxWidth"] = limits.width
        doc["maxHeight"] = limits.height
    if limits.area is not None:
        doc["maxArea"] = limits.area
    sizes = _sizes(info, limits)
    if sizes:
        doc["sizes"] = sizes
    doc["tiles"] = _tiles(info)
    rights, _attribution = _rights(info, settings)
    if rights:
        doc["rights"] = rights  # v3 has no free-text attribution: that belongs in a Manifest
    doc["extraFormats"] = [f for f in FORMATS if f not in ("jpg", "png")]
    doc["extraQualities"] = _qualities(info)
    doc["extraFeatures"] = _features(settings)
    return doc


def info_v2(identifier_uri: str, info: ImageInfo, settings: Settings) -> dict[str, object]:
    limits = Limits.from_settings(settings)
    supports = [
        "baseUriRedirect",
        "canonicalLinkHeader",
        "cors",
        "jsonldMediaType",
        "mirroring",
        "profileLinkHeader",
        "regionByPct",
        "regionByPx",
        "regionSquare",
        "rotationArbitrary",
        "rotationBy90s",
        "sizeByConfinedWh",
        "sizeByDistortedWh",
        "sizeByH",
        "sizeByPct",
        "sizeByW",
        "sizeByWh",
    ]
    if settings.allow_upscaling:
        supports.append("sizeAboveFull")
    service: dict[str, object] = {
        "formats": list(FORMATS),
        "qualities": ["default", *_qualities(info)],
        "supports": sorted(supports),
    }
    if limits.width is not None:
        service["maxWidth"] = limits.width
        service["maxHeight"] = limits.height
    if limits.area is not None:
        service["maxArea"] = limits.area
    doc: dict[str, object] = {
        "@context": context(2),
        "@id": identifier_uri,
        "protocol": PROTOCOL,
        "width": info.width,
        "height": info.height,
    }
    sizes = _sizes(info, limits)
    if sizes:
        doc["sizes"] = sizes
    doc["tiles"] = _tiles(info)
    doc["profile"] = [profile_uri(2), service]
    rights, attribution = _rights(info, settings)
    if rights:
        doc["license"] = rights
    if attribution:
        doc["attribution"] = attribution
    return doc


def content_type(version: int, accept: str) -> str:
    """JSON-LD when asked for (and by default in 3.0, as its section 5.1 says); else plain JSON (2.1 section 5.1)."""
    accept = accept.lower()
    ld = f'application/ld+json;profile="{context(version)}"'
    if "application/ld+json" in accept:
        return ld
    if version >= 3 and "application/json" not in accept:
        return ld
    return "application/json"


assert set(FORMATS) <= set(MIME), "every advertised format must have an encoder"
