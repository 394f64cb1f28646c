"""The IIP protocol of iipsrv, with the iipsrv-astro extensions VisiOmatic uses: running the commands.

``parse.iip`` reads the query into commands; this module runs them strictly
in query order against one session, as iipsrv: settings fold into the view
state and affect only the output commands after them, FIF opens the image
where it stands, and the first output command answers. Each pair is parsed
when its turn comes, so a bad value after the answering command is never
read and errors come in iipsrv's order. Replies follow the astro fork's
framing, which VisiOmatic parses.

A command reports an IIP error line (``Error/<N>:<code> <arg>``) by raising
``IIPError``; the session collects them, and they become the reply only
when no output command answers. Failures with an HTTP status (a bad number,
a missing file, a reply too large) are the exceptions of ``pyiip.errors``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from pyiip.errors import BadRequest, TooLarge, UnsupportedFormat
from pyiip.http import Request, Response
from pyiip.model import ImageRequest, Region
from pyiip.parse import iip as grammar
from pyiip.parse.iip import CVT, FIF, JTL, OBJ, PFL, PTL, TIL, VAL, WTL, Handoff, Unknown
from pyiip.process import pixels
from pyiip.process.bind import fitted_region, resolution_level, tile_region
from pyiip.process.budget import fit_budget
from pyiip.read.fits_header import without_implied_poles
from pyiip.read.image import OpenImage
from pyiip.service import Service

NETFPX = "application/vnd.netfpx"
IIP_SERVER_VERSION = "3.65"
OPT_COMMANDS = "CVT CNT QLT BIT JTL JTLS PTL TIL WID HEI RGN ROT MINMAX SHD CMP INV CTW GAM PFL VAL COL"
OPT_OBJECTS = "Horizontal-views Vertical-views Tile-size Bits-per-channel Min-Max-sample-values Resolutions"
# Memory per profile value on its way to JSON (a Python float, its text, the joined reply).
_PFL_BYTES_PER_VALUE = 128

QueryHandler = Callable[[Service, Request, str], Response]
NO_PROTOCOLS: Mapping[str, QueryHandler] = MappingProxyType({})


def error_line(code: str, argument: str) -> str:
    """``Error/<N>:<code> <arg>``, cut to 31 characters as iipsrv's 32-byte buffer does."""
    text = f"{code} {argument}"
    return f"Error/{len(text)}:{text}"[:31]


class IIPError(Exception):
    """An IIP error line: collected, and the reply only if no output command answers."""

    def __init__(self, code: str, argument: str) -> None:
        super().__init__(code, argument)
        self.line = error_line(code, argument)


@dataclass
class Session:
    """The state commands share, in query order: the view settings, the image, the OBJ reply so far."""

    service: Service
    request: Request
    protocols: Mapping[str, QueryHandler]
    view: grammar.View = field(default_factory=grammar.View)
    image: OpenImage | None = None
    identifier: str = ""
    protocol_line: bool = False
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def need_image(self, argument: str) -> OpenImage:
        """The image FIF opened, or error ``1 3`` naming ``argument``."""
        if self.image is None:
            raise IIPError("1 3", argument)
        return self.image

    @property
    def opened(self) -> OpenImage:
        """The image of an output command: ``handle`` answers ``1 3`` before it reads one with no image."""
        assert self.image is not None
        return self.image

    def image_response(
        self, body: bytes, mime: str, headers: list[tuple[str, str]] | None = None, etag: str = ""
    ) -> Response:
        assert self.image is not None
        return Response(200, body, mime, headers=headers or [], origin=self.image.resolved, etag=etag)

    def request_model(self, region: Region, size: tuple[int, int], fmt: str) -> ImageRequest:
        """The image request of an output command under the current view settings."""
        view = self.view
        return ImageRequest(
            region=region,
            size=size,
            rotation=view.rotation,
            mirror=view.mirror,
            color=view.color,
            format=fmt,
            quality=view.quality,
            display=view.display(self.opened.info.channels),
            depth=view.bits,
        )


def _fif(s: Session, c: FIF) -> None:
    s.identifier = c.identifier
    s.image = s.service.image(c.identifier)


def _handoff(s: Session, c: Handoff) -> Response:
    """``?IIIF=``, ``?DeepZoom=``, ``?Zoomify=`` first among the outputs: that protocol answers."""
    handler = s.protocols.get(c.key)
    if handler is None:
        raise IIPError("2 2", c.key)
    return handler(s.service, s.request, c.value)


def _unknown(s: Session, c: Unknown) -> None:
    raise IIPError("2 2", c.key)


# ---------------------------------------------------------------- metadata


def _minmax_line(image: OpenImage, overrides: dict[int, tuple[float, float]]) -> str:
    text = ""
    for channel, (low, high) in enumerate(image.minmax.tolist()):
        low, high = overrides.get(channel, (low, high))
        for value in (low, high):
            text += " %.9g " % float(np.float32(value))
    return "Min-Max-sample-values:" + text.rstrip(" ")


_METADATA = {
    "copyright": "copyright",
    "title": "documentname",
    "subject": "description",
    "author": "artist",
    "create-dtm": "datetime",
    "app-name": "software",
}
_EMPTY_METADATA = ("keywords", "comment", "last-author", "rev-number", "edit-time", "last-printed", "last-save-dtm")
_SUMMARY = ("copyright", "subject", "author", "create-dtm", "app-name")
_COLORSPACE = {"grey": "0 0 1 1 0", "rgb": "0 0 3 3 0 1 2", "lab": "1 0 4 3 0 1 2"}


def _metadata(name: str) -> Callable[[Session, OpenImage], str | None]:
    """The ``<name>/<len>:<value>`` line of a metadata field; none when it is empty."""

    def line(s: Session, image: OpenImage) -> str | None:
        value = image.info.metadata.get(_METADATA.get(name, ""), "")
        if name == "subject":
            value = without_implied_poles(value)  # the FITS header, as VisiOmatic v2 can read it
        if name == "copyright" and not value:
            value = s.service.settings.copyright  # COPYRIGHT: the default rights, as upstream
        if not value:
            return None
        return f"{name}/{len(value.encode('latin-1', 'replace'))}:{value}"

    return line


def _parts(names: tuple[str, ...]) -> Callable[[Session, OpenImage], str | None]:
    """basic-info and summary-info: the lines of their parts, in order."""

    def lines(s: Session, image: OpenImage) -> None:
        for name in names:
            _object(s, name)

    return lines


def _max_size(s: Session, image: OpenImage) -> str:
    w, h = image.info.width, image.info.height
    return f"Max-size:{h} {w}" if s.view.rotation in (90.0, 270.0) else f"Max-size:{w} {h}"


def _dpi(s: Session, image: OpenImage) -> str | None:
    return "DPI:%f %f" % image.info.resolution if image.info.resolution else None


# The objects that need an image: each gives its reply line, or None for no line.
ImageObject = Callable[[Session, OpenImage], str | None]
_IMAGE_OBJECTS: dict[str, ImageObject] = {
    "basic-info": _parts(("iip-server", "max-size", "resolution-number", "colorspace")),
    "summary-info": _parts(_SUMMARY),
    "max-size": _max_size,
    "resolution-number": lambda s, image: f"Resolution-number:{len(image.info.levels)}",
    "tile-size": lambda s, image: "Tile-size:%d %d" % image.info.tile_size,
    "bits-per-channel": lambda s, image: f"Bits-per-channel:{image.info.bits}",
    "min-max-sample-values": lambda s, image: _minmax_line(image, s.view.minmax),
    "resolutions": lambda s, image: (
        "Resolutions:" + ",".join(f"{lv.width} {lv.height}" for lv in reversed(image.info.levels))
    ),
    "horizontal-views": lambda s, image: "Horizontal-views:0",
    "vertical-views": lambda s, image: "Vertical-views:90",
    "dpi": _dpi,
    "colorspace": lambda s, image: f"Colorspace,0-{len(image.info.levels) - 1},0:{_COLORSPACE[image.info.colorspace]}",
    **{name: _metadata(name) for name in (*_METADATA, *_EMPTY_METADATA)},
}
# The objects that need no image.
_PLAIN_OBJECTS = {
    "iip-server": f"IIP-server:{IIP_SERVER_VERSION}",
    "iip-opt-comm": f"IIP-opt-comm:{OPT_COMMANDS}",
    "iip-opt-obj": f"IIP-opt-obj:{OPT_OBJECTS}",
}


def _object(s: Session, name: str) -> None:
    """One OBJ reply line (or none for an empty metadata field); ``3 2`` for an unknown object."""
    if name.startswith("iip,"):
        s.protocol_line = True
        return
    plain = _PLAIN_OBJECTS.get(name)
    if plain is not None:
        s.lines.append(plain)
        return
    reply = _IMAGE_OBJECTS.get(name) or (_IMAGE_OBJECTS["colorspace"] if "colorspace" in name else None)
    if reply is None:
        raise IIPError("3 2", name)
    line = reply(s, s.need_image(name))
    if line is not None:
        s.lines.append(line)


def _obj(s: Session, c: OBJ) -> None:
    _object(s, c.name)


def metadata_response(s: Session) -> Response:
    """The OBJ reply: protocol line first in the body (astro framing); any error replaces it all."""
    if s.errors:
        return error_response(s.errors)
    body = ("IIP:1.0" if s.protocol_line else "") + "\r\n" + "".join(line + "\r\n" for line in s.lines)
    origin = s.image.resolved if s.image else None
    return Response(200, body.encode("latin-1", "replace"), NETFPX, origin=origin)


def error_response(lines: list[str]) -> Response:
    body = "".join(line + "\r\n" for line in lines).encode("latin-1", "replace")
    headers = [("Content-Disposition", 'inline;filename="IIPisAMadGameClosedToOurUnderstanding.netfpx"')]
    return Response(400, body, NETFPX, headers=headers, cacheable=False)


# ---------------------------------------------------------------- output commands


def _jtl(s: Session, c: JTL) -> Response:
    """JTL, PTL, WTL: one tile (counted from the end when ROT=180, as iipsrv)."""
    image = s.opened
    index = c.tile
    if s.view.rotation == 180.0:
        lv = image.info.levels[resolution_level(image.info, c.resolution)]
        index = lv.tiles_across * lv.tiles_down - 1 - index
    region = tile_region(image.info, c.resolution, index)
    rendered = s.service.render(image, s.request_model(region, (region.w, region.h), c.FORMAT))
    return s.image_response(rendered.body, rendered.mime, etag=rendered.etag)


def _til(s: Session, c: TIL) -> Response:
    """Legacy multi-tile reply: each tile framed as ``Tile,res,n,0/len:`` + 8 type bytes + JPEG."""
    image = s.opened
    res = c.resolution
    lv = image.info.levels[resolution_level(image.info, res)]
    across = lv.tiles_across
    x0, x1 = sorted((c.start % across, c.end % across))
    y0, y1 = c.start // across, c.end // across
    if (x1 - x0 + 1) * (y1 - y0 + 1) > 1024:
        raise BadRequest("TIL spans too many tiles")
    body = bytearray()
    budget = s.service.settings.max_request_memory * 1024 * 1024
    for x in range(x0, x1 + 1):
        for y in range(y0, y1 + 1):
            index = y * across + x
            region = tile_region(image.info, res, index)
            data = s.service.render(image, ImageRequest(region=region, size=(region.w, region.h))).body
            if len(body) + len(data) > budget // 2:  # the reply is copied once more on its way out
                raise TooLarge("TIL reply would need more memory than MAX_REQUEST_MEMORY allows")
            body += f"Tile,{res},{index},0/{len(data) + 8}:".encode()
            body += b"\x02\x00\x00\x00\x00\x11\x00\x00" + data + b"\r\n"
    return s.image_response(bytes(body), NETFPX)


def _cvt(s: Session, c: CVT) -> Response:
    """The region at WID/HEI, capped by MAX_CVT as iipsrv, then shrunk until it fits MAX_REQUEST_MEMORY.

    VisiOmatic's snapshot asks for up to 40960 px and saves whatever comes back: the largest image that
    can be made is worth more to it than an error it cannot show.
    """
    image = s.opened
    view = s.view
    rgn = view.region
    region, size = fitted_region(image.info, (rgn.x, rgn.y, rgn.w, rgn.h), view.width, view.height, s.service.settings)
    size = s.service.fit_scale(image, region, size)  # a hook's MaxSize caps it as MAX_CVT does
    request = fit_budget(image, s.request_model(region, size, c.format), s.service.renderer.budget)
    if request is None:
        raise TooLarge("CVT: no output size of this region fits in MAX_REQUEST_MEMORY")
    rendered = s.service.render(image, request)
    out_w, out_h = request.size if s.view.rotation in (0.0, 180.0) else request.size[::-1]
    stem = os.path.splitext(os.path.basename(s.identifier))[0] or "image"
    stem = "".join(ch for ch in stem if ch.isalnum() or ch in "-_.") or "image"
    disposition = f'inline;filename="{stem}_{out_w}x{out_h}.{c.format}"'
    return s.image_response(rendered.body, rendered.mime, [("Content-Disposition", disposition)], rendered.etag)


def _pfl(s: Session, c: PFL) -> Response:
    """Line profile as JSON: horizontal or vertical runs, end point excluded, all channels per pixel."""
    image = s.opened
    level = resolution_level(image.info, c.resolution)
    lv = image.info.levels[level]
    x1, y1, x2, y2 = c.x1, c.y1, c.x2, c.y2
    for x, y in ((x1, y1), (x2, y2)):
        if not (0 <= x <= lv.width and 0 <= y <= lv.height):
            raise BadRequest("PFL coordinates outside the image")
    x1, y1 = min(x1, lv.width - 1), min(y1, lv.height - 1)
    w = min(x2, lv.width) - x1 if x2 > x1 else 1
    h = min(y2, lv.height) - y1 if x2 <= x1 and y2 > y1 else 1
    s.service.renderer.check_read(image, level, w, h, per_value=_PFL_BYTES_PER_VALUE)
    s.service.check_scale(image, Region(x1, y1, w, h, level), (w, h))  # a hook's MaxSize: values are pixels too
    data = image.source.read(level, x1, y1, w, h)
    body = '{\n\t"profile": [' + ",".join(_profile_items(data.reshape(-1))) + "]\n}"
    json.loads(body)  # the reply must stay valid JSON, whatever the data
    return s.image_response(body.encode(), "application/json")


def _val(s: Session, c: VAL) -> Response:
    """The raw sample of every channel at a FITS pixel (1-based, y up) as JSON ``{"values": [...]}``,
    NaN as null; a pixel outside the image has null values (the viewer asks wherever the pointer is)."""
    image = s.opened
    found = pixels.samples(image.source, np.array([c.x]), np.array([c.y]))[0]
    values = pixels.pick(found, (), image.info.channels)
    return s.image_response(json.dumps({"values": values}, allow_nan=False).encode(), "application/json")


def _real_samples(image: OpenImage, key: str) -> None:
    """PFL and VAL need real samples: no JSON number holds a complex one."""
    if image.info.dtype.kind == "c":
        raise UnsupportedFormat(f"{key.upper()} needs real samples: this image holds complex ones")


def _pfl_image(image: OpenImage, value: str) -> None:
    """PFL needs real samples and a resolution of the image, checked before its coordinates are read."""
    _real_samples(image, "pfl")
    resolution_level(image.info, grammar.pfl_resolution(value))


# What an output command checks of the image before all its value is read (an image-dependent failure
# wins over a malformed value, as iipsrv reads them).
_BEFORE_VALUE: dict[str, Callable[[OpenImage, str], None]] = {"pfl": _pfl_image, "val": _real_samples}


def _profile_items(values: np.ndarray) -> list[str]:
    """JSON numbers of the samples: 1-bit ones as 0 and 1, non-finite floats as null."""
    kind = values.dtype.kind
    if kind == "f":
        return ["null" if not math.isfinite(v) else "%.9f" % v for v in values.tolist()]
    if kind == "b":
        values = values.astype(np.uint8)
    return [str(v) for v in values.tolist()]


# What each command does: nothing returned lets the next command run; a Response answers the query.
RUN: dict[type, Callable[[Session, Any], Response | None]] = {
    FIF: _fif,
    OBJ: _obj,
    JTL: _jtl,
    PTL: _jtl,
    WTL: _jtl,
    TIL: _til,
    CVT: _cvt,
    PFL: _pfl,
    VAL: _val,
    Handoff: _handoff,
    Unknown: _unknown,
}


def handle(service: Service, request: Request, protocols: Mapping[str, QueryHandler] = NO_PROTOCOLS) -> Response:
    """Run the commands of one IIP query in order; the first output command answers.

    ``protocols`` hands ``?KEY=value`` forms of the other protocols (routes.QUERY_KEYS) their requests,
    when the key comes first among the query's output commands. An output command before any FIF is
    error ``1 3`` whatever its value, as iipsrv checks for the image before it reads the value
    (and PFL its samples, _BEFORE_VALUE).
    """
    session = Session(service, request, protocols)
    view = session.view
    for key, value in grammar.pairs(request.query):
        if key in grammar.OUTPUT_KEYS:
            if session.image is None:
                session.errors.append(error_line("1 3", value))
                continue
            check = _BEFORE_VALUE.get(key)
            if check is not None:
                check(session.image, value)
        command = grammar.command(key, value)
        kind = type(command)
        if kind in grammar.SETTINGS:
            view.apply(command)
            continue
        try:
            response = RUN[kind](session, command)
        except IIPError as error:
            session.errors.append(error.line)
            continue
        if response is not None:
            return response
    if session.lines or session.protocol_line or session.errors:
        return metadata_response(session)
    return error_response([error_line("2 1", request.query)])
