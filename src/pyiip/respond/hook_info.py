"""What a hook (PYIIP_HOOKS) changes in an info.json: a MaxSize's limits, extra members, an Auth 2.0 probe service.

The body is kept (iiif._info) under the image's identity and the caller's
decision: two callers with different decisions never share one.
"""

from __future__ import annotations

import math
from typing import Any

from pyiip.config import SERVER_KEYS
from pyiip.hooks import HookImage, MaxSize
from pyiip.process.bind import Limits
from pyiip.read.image import OpenImage
from pyiip.service import Service


def hook_image(service: Service, image: OpenImage) -> HookImage:
    name = image.resolved.identifier
    asked = service.granted.get(name, (None, name))[1]
    return HookImage(asked, name, image.info.width, image.info.height)


def _capped(doc: dict[str, Any], version: int, image: OpenImage, service: Service) -> None:
    """maxWidth, maxHeight and maxArea within the decision's; the sizes and tile scale factors that fit them."""
    width, height = image.info.width, image.info.height
    declared = doc if version >= 3 else doc["profile"][1]
    server = Limits(declared.get("maxWidth"), declared.get("maxHeight"), declared.get("maxArea"))
    limits = service.capped(image, server, width, height)
    declared.update(maxWidth=limits.width, maxHeight=limits.height, maxArea=limits.area)
    sizes = [size for size in doc.get("sizes", []) if limits.allows(size["width"], size["height"])]
    doc["sizes"] = sizes or [dict(zip(("width", "height"), limits.fit(width, height, False), strict=True))]
    for tiles in doc.get("tiles", []):
        factors = tiles["scaleFactors"]
        tiles["scaleFactors"] = [
            f for f in factors if limits.allows(math.ceil(width / f), math.ceil(height / f))
        ] or factors[-1:]


def amend(doc: dict[str, Any], version: int, image: OpenImage, service: Service) -> dict[str, Any]:
    """``doc`` as this request's caller may see it, with the hook's members and probe service."""
    hooks = service.hooks
    assert hooks is not None
    if isinstance(service.decision(image), MaxSize):
        _capped(doc, version, image, service)
    view = hook_image(service, image)
    if hooks.extra_info is not None:
        extra = hooks.extra_info(view)
        if not isinstance(extra, dict) or SERVER_KEYS & set(extra):
            raise TypeError(f"{hooks.spec}: extra_info must return a dict without the keys the server writes")
        doc.update(extra)
    if hooks.probe_service is not None:
        probe = hooks.probe_service(view)
        if probe is not None:
            if not isinstance(probe, dict) or probe.get("type") != "AuthProbeService2" or "id" not in probe:
                raise TypeError(f"{hooks.spec}: probe_service must return None or an AuthProbeService2 dict with an id")
            present = doc.get("service")
            services = present if isinstance(present, list) else [present] if present else []
            doc["service"] = [*services, probe]
    return doc
