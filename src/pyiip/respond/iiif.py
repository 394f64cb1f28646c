"""The IIIF Image API, versions 3.0 and 2.1, at level 2 plus the optional features.

Routes: ``/iiif/3/{id}/...`` and ``/iiif/2/{id}/...`` fix the version;
``/iiif/{id}/...`` (iipsrv's URI_MAP style) and ``?IIIF={id}/...`` use
IIIF_VERSION unless the Accept header names another version's context, as
iipsrv does. Parameters are parsed (pyiip.parse.iiif) before the image is
opened, so a malformed request is a 400 whether or not the identifier
exists; this module maps them onto the image's pixels and limits and
translates them into the shared model: nothing below it knows IIIF.

The astro display parameters of IIP ride along as a query string on image
requests (``...default.jpg?MINMAX=1:0,100&CMP=jet``), see display_query, or
after a ``;`` in the identifier (``cube.tif;CMP=jet/info.json``), which
viewers carry into every tile URL they build from the info.json ``id``.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from pyiip.cache.etags import content_etag
from pyiip.errors import BadRequest, NotFound, TooLarge
from pyiip.http import Request, Response, media_ranges
from pyiip.model import ImageRequest
from pyiip.parse.iiif import DEEP_QUALITY, Base, Image, Info, Params, parse_base, size_text
from pyiip.parse.iiif import parse as parse_path
from pyiip.parse.iip import split_query, without_key
from pyiip.process.bind import Limits, grid_region, output_size, region_rect
from pyiip.process.budget import image_limits
from pyiip.read.image import OpenImage
from pyiip.respond import hook_info
from pyiip.respond.display_query import DISPLAY_KEYS, display_from_query
from pyiip.respond.iiif_info import content_type, info_v2, info_v3, profile_uri
from pyiip.service import Service

PREFIX = "/iiif/"
DISPLAY_SEPARATOR = ";"
VERSIONS = (2, 3)
_ACCEPT_VERSION = re.compile(r"iiif\.io/api/image/(\d)/context\.json")


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
            spec = size_text("max", 0, 0, upscaled)
        else:
            spec = size_text("wh", width, height, upscaled)
    elif (width, height) == (w, h):
        spec = size_text("max", 0, 0, False, keyword="full")
    elif round(h * width / w) != height:
        spec = size_text("wh", width, height, False)  # a distorting size
    else:
        spec = size_text("w", width, 0, False)
    return params.text(region, spec)


# ---------------------------------------------------------------- requests


def negotiated_version(request: Request, default: int) -> int:
    """iipsrv's rule, with q-values: the Accept range naming a version's context.json with the highest q.

    A range with ``q=0`` refuses that version; ties go to ``default`` (IIIF_VERSION), then to header order.
    """
    accept = request.header("accept")
    if "context.json" not in accept:
        return default  # the usual case: no parse
    best, best_q = default, 0.0
    for _kind, params, q in media_ranges(accept):
        found = _ACCEPT_VERSION.search(params.get("profile", ""))
        if found is None or int(found.group(1)) not in VERSIONS:
            continue
        version = int(found.group(1))
        if q > best_q or (q == best_q and version == default):
            best, best_q = version, q
    return best


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
        keys = {key for key, _value in split_query(display)}
        if not (separator and name) or name.endswith("/") or "/" in display or not keys & set(DISPLAY_KEYS):
            raise  # a display suffix ends the identifier and names IIP display parameters
        return service.image(name), display


def _link(version: int, base: str, canonical: str | None, service: Service) -> tuple[str, str]:
    """One Link header with both relations (the 1.0.5 validator reads only the first Link header)."""
    links = f'<{profile_uri(version, service.settings)}>;rel="profile"'
    if canonical:
        links += f', <{base}/{canonical}>;rel="canonical"'
    return ("Link", links)


def _info(service: Service, request: Request, info: Info, version: int, base: str, negotiated: bool) -> Response:
    image, display = open_image(service, info.identifier)
    display_from_query(display, image)  # a bad value is a 400 here already
    uri = request.header("x-iiif-id") or base  # iipsrv: a proxy may name the id itself
    limits = image_limits(image, service.settings)

    def make() -> tuple[bytes, str]:
        build = info_v3 if version >= 3 else info_v2
        document = build(uri, image.info, service.settings, limits)
        if service.hooks is not None:
            document = hook_info.amend(document, version, image, service)
        text = json.dumps(document, indent=2).encode()
        return text, content_etag(text)  # its ETag is kept with it: no digest per reply

    # Kept in the per-process LRU, its key and body counted in the budget: the pure-Python JSON
    # encoder (indented output) cost ~200 µs of a ~250 µs reply; the file identity keeps it fresh,
    # the caller's decision (a hook's) keeps callers apart.
    key = ("info", image.resolved.identity, version, uri, service.decision(image))
    body, etag = service.cache.made(key, make)
    headers = [_link(version, base, None, service)]
    if negotiated:
        headers.append(("Vary", "Accept"))
    mime = content_type(version, request.header("accept"))
    return Response(200, body, mime, headers=headers, origin=image.resolved, etag=etag)


def build_request(
    image: OpenImage, params: Params, version: int, service: Service, request: Request, query: str
) -> tuple[ImageRequest, str]:
    """The model request and its canonical IIIF parameters."""
    info = image.info
    settings = service.settings
    rect = x, y, w, h = region_rect(params.region, info.width, info.height)
    limits = image_limits(image, settings)
    if not limits.area:
        raise TooLarge("no output of this image fits in MAX_REQUEST_MEMORY")
    if service.hooks is not None:
        limits = service.capped(image, limits, w, h)
    size = width, height = output_size(params.size, w, h, limits, version, settings.allow_upscaling)
    display, quality = display_from_query(query, image)
    deep = params.quality == DEEP_QUALITY  # the default colours at 16 bits (process.deep checks the rest)
    model = ImageRequest(
        region=grid_region(info, x, y, w, h, width, height),  # no *args: a native call when compiled
        size=size,
        rotation=params.rotation,
        mirror=params.mirror,
        color="default" if deep else params.quality,
        format=params.format,
        quality=quality,
        display=display,
        depth=16 if deep else 8,
    )
    return model, canonical_params(params, rect, size, (info.width, info.height), limits, version)


def _image(
    service: Service, request: Request, parsed: Image, version: int, base: str, query: str, negotiated: bool
) -> Response:
    image, display = open_image(service, parsed.identifier)
    if display:
        query = f"{display}&{query}" if query else display  # the URL's own query string wins
    model, canonical = build_request(image, parsed.params, version, service, request, query)
    rendered = service.render(image, model)
    headers = [_link(version, base, canonical, service)]
    if negotiated:
        headers.append(("Vary", "Accept"))
    return Response(200, rendered.body, rendered.mime, headers=headers, origin=image.resolved, etag=rendered.etag)


def _redirect(service: Service, parsed: Base, base: str) -> Response:
    open_image(service, parsed.identifier)  # 404 for an unknown identifier, not a redirect to one
    location = base + "/info.json"
    return Response(303, b"", "text/plain; charset=utf-8", headers=[("Location", location)], cacheable=False)


def respond(
    service: Service, request: Request, path: str, version: int, origin: str, query: str, negotiated: bool
) -> Response:
    """``path`` is still percent-encoded; ``origin`` is the public URL up to where it starts."""
    try:
        parsed = parse_path(path, version)  # 400 before any file
    except BadRequest as error:
        # ".../dir/a/b/c/name.tif" may be the base URI of an identifier with slashes.
        whole = parse_base(path)
        try:
            return _redirect(service, whole, origin + whole.encoded)
        except (NotFound, BadRequest):
            raise error from None
    base = origin + parsed.encoded
    if isinstance(parsed, Info):
        return _info(service, request, parsed, version, base, negotiated)
    if isinstance(parsed, Image):
        return _image(service, request, parsed, version, base, query, negotiated)
    return _redirect(service, parsed, base)


# ---------------------------------------------------------------- routes


def handle_path(service: Service, request: Request) -> Response:
    """``/iiif/{2|3}/{id}/...`` with a fixed version, ``/iiif/{id}/...`` with the negotiated one."""
    rest = request.path[len(PREFIX) :]
    head, slash, tail = rest.partition("/")
    settings = service.settings
    origin = public_origin(request, settings.base_url, request.path)
    if head in ("2", "3") and slash and tail:
        return respond(service, request, tail, int(head), origin + PREFIX + head + "/", request.query, False)
    version = negotiated_version(request, settings.iiif_version)
    return respond(service, request, rest, version, origin + PREFIX, request.query, True)


def handle_query(service: Service, request: Request, value: str) -> Response:
    """iipsrv's ``?IIIF={id}/...`` form; the id keeps the query's own spelling of the key."""
    settings = service.settings
    version = negotiated_version(request, settings.iiif_version)
    key = next((t.partition("=")[0] for t in request.query.split("&") if t.lower().startswith("iiif=")), "IIIF")
    raw = re.sub("%2[fF]", "/", value) if "%2" in value else value  # iipsrv decodes the whole value
    raw = raw.lstrip("/")  # before splitting
    lead = "/" * (len(value) - len(value.lstrip("/")))
    if settings.base_url and "?" in settings.base_url:
        start = settings.base_url + lead  # iipsrv style: BASE_URL ends with "...?IIIF="
    else:
        start = public_origin(request, settings.base_url, request.path) + request.path + f"?{key}={lead}"
    # With no other parameter there is nothing to keep (the usual tile URL): no split and join.
    query = without_key(request.query, "iiif") if "&" in request.query else ""
    return respond(service, request, raw.replace("+", "%20"), version, start, query, negotiated=True)
