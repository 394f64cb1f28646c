"""The IIIF Image API, versions 3.0 and 2.1, at level 2 plus the optional features.

Routes: ``/iiif/3/{id}/...`` and ``/iiif/2/{id}/...`` fix the version;
``/iiif/{id}/...`` (iipsrv's URI_MAP style) and ``?IIIF={id}/...`` use
IIIF_VERSION unless the Accept header names another version's context, as
iipsrv does. Parameters are parsed before the image is opened, so a
malformed request is a 400 whether or not the identifier exists, then
translated into the shared model: nothing below this module knows IIIF.

The astro display parameters of IIP ride along as a query string on image
requests (``...default.jpg?MINMAX=1:0,100&CMP=jet``), see display_query, or
after a ``;`` in the identifier (``cube.tif;CMP=jet/info.json``), which
viewers carry into every tile URL they build from the info.json ``id``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from pyiip.cache.etags import content_etag
from pyiip.errors import BadRequest, NotFound
from pyiip.http import Request, Response
from pyiip.model import ImageRequest, RegionSpec, SizeSpec
from pyiip.parse import numbers
from pyiip.process.bind import Limits, grid_region, output_size, region_rect
from pyiip.read.image import OpenImage
from pyiip.respond import iip
from pyiip.respond.display_query import DISPLAY_KEYS, display_from_query
from pyiip.respond.iiif_info import FORMATS, QUALITIES, content_type, info_v2, info_v3, profile_uri
from pyiip.service import Service

PREFIX = "/iiif/"
DISPLAY_SEPARATOR = ";"
VERSIONS = (2, 3)
_INT = r"\d+"
_FLOAT = r"\d+(?:\.\d*)?|\.\d+"
_REGION_PX = re.compile(rf"^({_INT}),({_INT}),({_INT}),({_INT})$")
_REGION_PCT = re.compile(rf"^pct:({_FLOAT}),({_FLOAT}),({_FLOAT}),({_FLOAT})$")
_SIZE_WH = re.compile(rf"^(!)?({_INT})?,({_INT})?$")
_SIZE_PCT = re.compile(rf"^pct:({_FLOAT})$")
_ROTATION = re.compile(rf"^(!)?({_FLOAT})$")
_ACCEPT_VERSION = re.compile(r"iiif\.io/api/image/(\d)/context\.json")


# ---------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class Params:
    region: RegionSpec
    size: SizeSpec
    mirror: bool
    rotation: float
    quality: str
    format: str


def parse_region(text: str) -> RegionSpec:
    if text in ("full", "square"):
        return RegionSpec(text)
    match = _REGION_PX.match(text)
    if match:
        x, y, w, h = (numbers.integer("region", v, *numbers.PIXELS) for v in match.groups())
        if w <= 0 or h <= 0:
            raise BadRequest("region width and height must be positive")
        return RegionSpec("px", (x, y, w, h))
    match = _REGION_PCT.match(text)
    if match:
        xp, yp, wp, hp = (numbers.real("region", v, 0.0, numbers.MAX_PERCENT) for v in match.groups())
        if wp <= 0 or hp <= 0:
            raise BadRequest("region width and height must be positive")
        return RegionSpec("pct", (xp, yp, wp, hp))
    raise BadRequest(f"invalid region {text[:60]!r}")


def parse_size(text: str, version: int) -> SizeSpec:
    """v3 forms, ``^`` included; v2 forms (``full``, and no ``^``: v2 upscales without it)."""
    upscale = text.startswith("^") and version >= 3
    body = text[1:] if upscale else text
    if body == "max" or (body == "full" and version == 2 and not upscale):
        return SizeSpec("max", upscale=upscale, keyword=body)
    match = _SIZE_PCT.match(body)
    if match:
        percent = numbers.real("size", match.group(1), 0.0, numbers.MAX_PERCENT)
        if percent <= 0:
            raise BadRequest("size percentage must be positive")
        return SizeSpec("pct", percent=percent, upscale=upscale)
    match = _SIZE_WH.match(body)
    if match:
        bang, w, h = match.groups()
        width, height = (numbers.integer("size", v or "0", *numbers.PIXELS) for v in (w, h))
        if (w is not None and width == 0) or (h is not None and height == 0):
            raise BadRequest("size must be at least one pixel")
        if w and h:
            return SizeSpec("fit" if bang else "wh", width, height, upscale=upscale)
        if not bang and (w or h):
            return SizeSpec("w" if w else "h", width, height, upscale=upscale)
    raise BadRequest(f"invalid size {text[:60]!r}")


def parse_rotation(text: str) -> tuple[bool, float]:
    match = _ROTATION.match(text)
    if not match:
        raise BadRequest(f"invalid rotation {text[:60]!r}")
    angle = numbers.real("rotation", match.group(2), 0.0, 360.0)
    return match.group(1) is not None, angle % 360


def parse_quality_format(text: str) -> tuple[str, str]:
    quality, dot, fmt = text.rpartition(".")
    if not dot:
        raise BadRequest("the image request needs a format, as in default.jpg")
    if quality not in QUALITIES:
        raise BadRequest(f"unsupported quality {quality[:40]!r}")
    if fmt not in FORMATS:
        raise BadRequest(f"unsupported format {fmt[:20]!r}")
    return quality, fmt


def parse_params(region: str, size: str, rotation: str, quality_format: str, version: int) -> Params:
    mirror, angle = parse_rotation(rotation)
    quality, fmt = parse_quality_format(quality_format)
    return Params(parse_region(region), parse_size(size, version), mirror, angle, quality, fmt)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.6f}".rstrip("0").rstrip(".")


def canonical_params(
    params: Params,
    rect: tuple[int, int, int, int],
    size: tuple[int, int],
    full: tuple[int, int],
    limits: Limits,
    version: int,
) -> str:
    """The canonical {region}/{size}/{rotation}/{quality}.{format} of IIIF 3 section 4.8 / 2.1 section 4.7."""
    x, y, w, h = rect
    region = "full" if (x, y, w, h) == (0, 0, *full) else f"{x},{y},{w},{h}"
    width, height = size
    if version >= 3:
        upscaled = width > w or height > h
        if (width, height) == limits.fit(w, h, upscale=upscaled):
            text = "^max" if upscaled else "max"
        else:
            text = f"{'^' if upscaled else ''}{width},{height}"
    elif (width, height) == (w, h):
        text = "full"
    elif round(h * width / w) != height:
        text = f"{width},{height}"  # a distorting size
    else:
        text = f"{width},"
    rotation = ("!" if params.mirror else "") + _number(params.rotation)
    return f"{region}/{text}/{rotation}/{params.quality}.{params.format}"


# ---------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Target:
    """What a IIIF URL asks for: ``base`` is the public URI of the image (the info.json ``id``)."""

    version: int
    identifier: str
    base: str
    kind: str  # "info", "image" or "redirect"
    params: tuple[str, ...] = ()


def _decode(segment: str) -> str:
    """Percent-decode one path segment (UTF-8, odd bytes kept as surrogates); ``+`` stays a plus."""
    raw = unquote_to_bytes(segment.encode("latin-1", "replace"))
    if b"\x00" in raw:
        raise BadRequest("invalid character in identifier")
    return raw.decode("utf-8", "surrogateescape")


def negotiated_version(request: Request, default: int) -> int:
    """iipsrv's rule: an Accept header naming a version's context.json picks that version."""
    for found in _ACCEPT_VERSION.findall(request.header("accept")):
        if int(found) in VERSIONS:
            return int(found)
    return default


def public_origin(request: Request, base_url: str, path: str) -> str:
    """scheme://host (plus any mount point) the client used, before ``path``.

    BASE_URL names the public URL for proxies: either of the server root
    (``https://example.org/images``, whatever prefix the proxy strips) or,
    as with iipsrv, of the endpoint itself (``https://example.org/iiif/``),
    in which case its path is already the start of ``path``.
    """
    if not base_url:
        return request.base
    parts = urlsplit(base_url)
    mount = parts.path.rstrip("/")
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme else ""
    if mount and (path == mount or path.startswith(mount + "/")):
        return origin
    return origin + mount


def split_target(raw: str, version: int, origin_path: str) -> Target:
    """Split ``{identifier}[/info.json | /{region}/{size}/{rotation}/{quality}.{format}]``.

    ``raw`` is still percent-encoded; ``origin_path`` is the public URL up to
    where ``raw`` starts. The identifier may hold slashes (sub-directories):
    the last four segments are the parameters.
    """
    segments = raw.split("/")
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash on the base URI
    if not segments or segments == [""]:
        raise NotFound("no image identifier")
    if segments[-1] == "info.json" and len(segments) > 1:
        id_raw = "/".join(segments[:-1])
        return Target(version, _decode(id_raw), origin_path + id_raw, "info")
    if len(segments) >= 5 and "." in segments[-1]:
        id_raw = "/".join(segments[:-4])
        return Target(version, _decode(id_raw), origin_path + id_raw, "image", tuple(segments[-4:]))
    id_raw = "/".join(segments)
    return Target(version, _decode(id_raw), origin_path + id_raw, "redirect")


def open_image(service: Service, identifier: str) -> tuple[OpenImage, str]:
    """The image, and the display query the identifier may carry after ``;``.

    ``cube.tif;CMP=jet&MINMAX=1:0,200`` serves cube.tif with those IIP display
    parameters: in the identifier they survive viewers that build tile URLs
    from the info.json ``id`` and drop query strings. Only used when the
    whole identifier names no file.
    """
    try:
        return service.image(identifier), ""
    except NotFound:
        name, separator, display = identifier.partition(DISPLAY_SEPARATOR)
        keys = {key for key, _value in iip.split_query(display)}
        if not (separator and name) or name.endswith("/") or "/" in display or not keys & set(DISPLAY_KEYS):
            raise  # a display suffix ends the identifier and names IIP display parameters
        return service.image(name), display


def _link(target: Target, canonical: str | None) -> tuple[str, str]:
    """One Link header with both relations (the 1.0.5 validator reads only the first Link header)."""
    links = f'<{profile_uri(target.version)}>;rel="profile"'
    if canonical:
        links += f', <{target.base}/{canonical}>;rel="canonical"'
    return ("Link", links)


def _info(service: Service, request: Request, target: Target, negotiated: bool) -> Response:
    image, display = open_image(service, target.identifier)
    display_from_query(service, request, display, image)  # a bad value is a 400 here already
    uri = request.header("x-iiif-id") or target.base  # iipsrv: a proxy may name the id itself

    def make() -> tuple[bytes, str]:
        build = info_v3 if target.version >= 3 else info_v2
        text = json.dumps(build(uri, image.info, service.settings), indent=2).encode()
        return text, content_etag(text)  # its ETag is kept with it: no digest per reply

    # Kept in the per-process LRU, its key and body counted in the budget: the pure-Python JSON
    # encoder (indented output) cost ~200 µs of a ~250 µs reply; the file identity keeps it fresh.
    body, etag = service.cache.made(("info", image.resolved.identity, target.version, uri), make)
    headers = [_link(target, None)]
    if negotiated:
        headers.append(("Vary", "Accept"))
    mime = content_type(target.version, request.header("accept"))
    return Response(200, body, mime, headers=headers, origin=image.resolved, etag=etag)


def build_request(
    image: OpenImage, params: Params, version: int, service: Service, request: Request, query: str
) -> tuple[ImageRequest, str]:
    """The model request and its canonical IIIF parameters."""
    info = image.info
    settings = service.settings
    rect = region_rect(params.region, info.width, info.height)
    limits = Limits.from_settings(settings)
    size = output_size(params.size, rect[2], rect[3], limits, version, settings.allow_upscaling)
    display, quality = display_from_query(service, request, query, image)
    model = ImageRequest(
        region=grid_region(info, *rect, *size),
        size=size,
        rotation=params.rotation,
        mirror=params.mirror,
        color=params.quality,
        format=params.format,
        quality=quality,
        display=display,
    )
    return model, canonical_params(params, rect, size, (info.width, info.height), limits, version)


def _image(service: Service, request: Request, target: Target, query: str, negotiated: bool) -> Response:
    try:
        region, size, rotation, quality_format = target.params  # an "image" target has four
        params = parse_params(region, size, rotation, quality_format, target.version)  # 400 before any file
    except BadRequest as error:
        # ".../dir/a/b/c/name.tif" may be the base URI of an identifier with slashes.
        identifier = "/".join([target.identifier, *(_decode(p) for p in target.params)])
        whole = Target(target.version, identifier, target.base + "/" + "/".join(target.params), "redirect")
        try:
            return _redirect(service, whole)
        except (NotFound, BadRequest):
            raise error from None
    image, display = open_image(service, target.identifier)
    query = "&".join(part for part in (display, query) if part)  # the URL's own query string wins
    model, canonical = build_request(image, params, target.version, service, request, query)
    rendered = service.render(image, model)
    headers = [_link(target, canonical)]
    if negotiated:
        headers.append(("Vary", "Accept"))
    return Response(200, rendered.body, rendered.mime, headers=headers, origin=image.resolved, etag=rendered.etag)


def _redirect(service: Service, target: Target) -> Response:
    open_image(service, target.identifier)  # 404 for an unknown identifier, not a redirect to one
    location = target.base + "/info.json"
    return Response(303, b"", "text/plain; charset=utf-8", headers=[("Location", location)], cacheable=False)


def respond(service: Service, request: Request, target: Target, query: str, negotiated: bool) -> Response:
    if target.kind == "info":
        return _info(service, request, target, negotiated)
    if target.kind == "image":
        return _image(service, request, target, query, negotiated)
    return _redirect(service, target)


# ---------------------------------------------------------------- routes


def handle_path(service: Service, request: Request) -> Response:
    """``/iiif/{2|3}/{id}/...`` with a fixed version, ``/iiif/{id}/...`` with the negotiated one."""
    rest = request.path[len(PREFIX) :]
    head, slash, tail = rest.partition("/")
    settings = service.settings
    origin = public_origin(request, settings.base_url, request.path)
    if head in ("2", "3") and slash and tail:
        target = split_target(tail, int(head), origin + PREFIX + head + "/")
        negotiated = False
    else:
        version = negotiated_version(request, settings.iiif_version)
        target = split_target(rest, version, origin + PREFIX)
        negotiated = True
    return respond(service, request, target, request.query, negotiated)


def handle_query(service: Service, request: Request, value: str) -> Response:
    """iipsrv's ``?IIIF={id}/...`` form; the id keeps the query's own spelling of the key."""
    settings = service.settings
    version = negotiated_version(request, settings.iiif_version)
    key = next((t.partition("=")[0] for t in request.query.split("&") if t.lower().startswith("iiif=")), "IIIF")
    raw = re.sub("%2[fF]", "/", value).lstrip("/")  # iipsrv decodes the whole value before splitting
    lead = "/" * (len(value) - len(value.lstrip("/")))
    if settings.base_url and "?" in settings.base_url:
        start = settings.base_url + lead  # iipsrv style: BASE_URL ends with "...?IIIF="
    else:
        start = public_origin(request, settings.base_url, request.path) + request.path + f"?{key}={lead}"
    target = split_target(raw.replace("+", "%20"), version, start)
    query = iip.without_key(request.query, "iiif")
    return respond(service, request, target, query, negotiated=True)
