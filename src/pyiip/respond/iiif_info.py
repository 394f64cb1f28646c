"""IIIF Image API image information documents (info.json), versions 2.1 and 3.0.

Everything advertised is what the request parser and renderer really do:
the size limits are the ones image requests are checked against (MAX_CVT,
and the largest area the image renders in within MAX_REQUEST_MEMORY), tiles
and sizes are the stored pyramid levels, and the extra formats, qualities
and features are exactly those served.
"""

from __future__ import annotations

from pyiip.config import Settings
from pyiip.encode.encoders import MIME
from pyiip.parse.iiif import FORMATS
from pyiip.process.bind import Limits, scale_factors
from pyiip.read.source import ImageInfo

PROTOCOL = "http://iiif.io/api/image"


def context(version: int) -> str:
    return f"http://iiif.io/api/image/{version}/context.json"


def profile_uri(version: int) -> str:
    return f"http://iiif.io/api/image/{version}/level2.json"


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


def info_v3(identifier_uri: str, info: ImageInfo, settings: Settings, limits: Limits) -> dict[str, object]:
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
        doc["maxArea"] = max(1, limits.area)  # 0: nothing fits; 1 is the least IIIF can say
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


def info_v2(identifier_uri: str, info: ImageInfo, settings: Settings, limits: Limits) -> dict[str, object]:
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
        service["maxArea"] = max(1, limits.area)
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
