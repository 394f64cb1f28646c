"""IIIF Image API image information documents (info.json), versions 2.1 and 3.0.

Everything advertised is what the request parser and renderer really do:
the size limits are the ones image requests are checked against (MAX_CVT,
and the largest area the image renders in within MAX_REQUEST_MEMORY), tiles
and sizes are the stored pyramid levels, and the extra formats, qualities
and features are exactly those served.
"""

from __future__ import annotations

from pyiip import http
from pyiip.config import Settings, extra_info, preferred_formats
from pyiip.encode.encoders import MIME
from pyiip.parse.iiif import DEEP_QUALITY, FORMATS
from pyiip.process.bind import Limits, scale_factors
from pyiip.read.source import ImageInfo

PROTOCOL = "http://iiif.io/api/image"
LD_JSON = "application/ld+json"


def context(version: int) -> str:
    return f"http://iiif.io/api/image/{version}/context.json"


def profile_uri(version: int, settings: Settings) -> str:
    return f"http://iiif.io/api/image/{version}/{level(settings)}.json"


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
    """``color`` only for images that have colour (or can be given it by a colormap); ``bits16`` for
    images with more than 8 bits per sample."""
    if info.is_float or info.bits > 8:
        return ["color", "gray", "bitonal", DEEP_QUALITY]
    return ["color", "gray", "bitonal"] if info.channels >= 3 else ["gray", "bitonal"]


# What compliance level 2 requires beyond level 0 (Image API 3.0 and 2.1, "Compliance"), CORS among them.
LEVEL2_FEATURES = ("baseUriRedirect", "cors", "jsonldMediaType", "regionByPct", "regionByPx", "regionSquare",
                   "rotationBy90s", "sizeByConfinedWh", "sizeByH", "sizeByPct", "sizeByW", "sizeByWh")  # fmt: skip


def level(settings: Settings) -> str:
    """The compliance level claimed. Level 2 requires CORS: without Access-Control-Allow-Origin
    (CORS unset) it is level 0, whatever else is served."""
    return "level2" if settings.cors else "level0"


def extra_features(settings: Settings) -> list[str]:
    """The 3.0 ``extraFeatures``: beyond level 2, or at level 0 the rest of level 2 too, never ``cors``."""
    features = ["canonicalLinkHeader", "mirroring", "profileLinkHeader", "rotationArbitrary"]
    if settings.allow_upscaling:
        features.append("sizeUpscaling")
    if settings.cors:
        return features
    return sorted(features + [f for f in LEVEL2_FEATURES if f != "cors"])


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
        "profile": level(settings),
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
    # png is level 2 already, but OpenSeadragon picks formats from this list alone (iipsrv#292).
    doc["extraFormats"] = [f for f in FORMATS if f != "jpg"]
    preferred = preferred_formats(settings)
    if preferred:
        doc["preferredFormats"] = preferred
    doc["extraQualities"] = _qualities(info)
    doc["extraFeatures"] = extra_features(settings)
    doc.update(extra_info(settings))
    return doc


def info_v2(identifier_uri: str, info: ImageInfo, settings: Settings, limits: Limits) -> dict[str, object]:
    supports = [
        "baseUriRedirect",
        "canonicalLinkHeader",
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
    if settings.cors:
        supports.append("cors")
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
    doc["profile"] = [profile_uri(2, settings), service]
    rights, attribution = _rights(info, settings)
    if rights:
        doc["license"] = rights
    if attribution:
        doc["attribution"] = attribution
    doc.update(extra_info(settings))  # as iipsrv: the same keys in both versions
    return doc


def content_type(version: int, accept: str) -> str:
    """JSON-LD or plain JSON by the Accept header's q-values (``application/ld+json;q=0`` refuses JSON-LD).

    Ties go to the version's default: JSON-LD in 3.0 (its section 5.1), plain
    JSON in 2.1, which sends JSON-LD to a client that prefers it (its 5.1).
    """
    offers = (LD_JSON, "application/json") if version >= 3 else ("application/json", LD_JSON)
    if http.negotiate(accept, offers) == LD_JSON:
        return f'{LD_JSON};profile="{context(version)}"'
    return "application/json"


assert set(FORMATS) <= set(MIME), "every advertised format must have an encoder"
