"""The IIP protocol of iipsrv, with the iipsrv-astro extensions VisiOmatic uses.

The query is split on ``&`` only (CTW values hold ``;``), bare keys such as
``&INV`` keep counting, and commands run strictly in query order against one
session state, as in iipsrv: settings affect only the output commands after
them. Replies follow the astro fork's framing, which VisiOmatic parses.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from pyiip.errors import BadRequest, TooLarge, UnsupportedFormat
from pyiip.http import Request, Response
from pyiip.model import COLORMAPS, IDENTITY, Display, ImageRequest
from pyiip.parse import numbers
from pyiip.process.bind import fitted_region, resolution_level, tile_region
from pyiip.read.image import OpenImage
from pyiip.service import Service

NETFPX = "application/vnd.netfpx"
IIP_SERVER_VERSION = "3.65"
OPT_COMMANDS = "CVT CNT QLT JTL JTLS PTL TIL WID HEI RGN ROT MINMAX SHD CMP INV CTW GAM PFL COL"
OPT_OBJECTS = "Horizontal-views Vertical-views Tile-size Bits-per-channel Min-Max-sample-values Resolutions"
CVT_FORMATS = {"jpeg": "jpg", "jpg": "jpg", "png": "png", "webp": "webp", "tif": "tif", "tiff": "tif"}
MAX_TWIST = 16
# Memory per profile value on its way to JSON (a Python float, its text, the joined reply).
_PFL_BYTES_PER_VALUE = 128
# Ranges of the real-valued parameters (why: see numbers). Inside them the display
# pipeline's arithmetic stays finite: GAM is an exponent (0 makes every pixel white, a
# negative one sends black to infinity), CNT a factor of the output, MINMAX values fit
# the float32 iipsrv-astro keeps them in, CTW weights times the tables' scale (< 2**100)
# fit a float32.
GAMMA = (0.0, 100.0)
CONTRAST = (0.0, 1000.0)
SAMPLE = (-float(np.finfo(np.float32).max), float(np.finfo(np.float32).max))
TWIST = (-1e6, 1e6)
ANGLE = (-360.0, 360.0)

QueryHandler = Callable[[Service, Request, str], Response]
NO_PROTOCOLS: Mapping[str, QueryHandler] = MappingProxyType({})


def split_query(query: str) -> list[tuple[str, str]]:
    """iipsrv's tokenizer: ``&`` only, lower-cased keys, bare keys valued by their own name, empty values dropped."""
    pairs = []
    for token in query.split("&"):
        key, sep, value = token.partition("=")
        if not sep:
            value = token
        if key and value:
            pairs.append((key.lower(), value))
    return pairs


def without_key(query: str, key: str) -> str:
    """The query without its ``key=`` parameters (any case): what a protocol reached through
    ``?IIIF=``, ``?DeepZoom=`` or ``?Zoomify=`` reads its display parameters from."""
    prefix = key.lower() + "="
    return "&".join(t for t in query.split("&") if not t.lower().startswith(prefix))


def unquote(value: str) -> str:
    """iipsrv's URL decoder: ``+`` is a space, ``%XX`` a byte, a stray ``%`` stays literal.

    Bytes are UTF-8 (invalid sequences kept as surrogates, so odd file names
    still round-trip to the filesystem). A decoded NUL is refused.
    """
    if "%" not in value and "+" not in value and value.isascii():
        if "\x00" in value:
            raise BadRequest("invalid character in request")
        return value  # nothing to decode: the common case, kept cheap
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x2B:
            out.append(0x20)
        elif c == 0x25 and i + 2 < n and _is_hex(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 2
        else:
            out.append(c)
        i += 1
    if 0 in out:
        raise BadRequest("invalid character in request")
    return out.decode("utf-8", "surrogateescape")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(chr(b) in "0123456789abcdefABCDEF" for b in pair)


def error_line(code: str, argument: str) -> str:
    """``Error/<N>:<code> <arg>``, cut to 31 characters as iipsrv's 32-byte buffer does."""
    text = f"{code} {argument}"
    return f"Error/{len(text)}:{text}"[:31]


def _integer(name: str, text: str) -> int:
    """An IIP integer: a C int, as iipsrv's atoi reads it."""
    return numbers.integer(name.upper(), text, *numbers.C_INT)


def _numbers(name: str, text: str, count: int, bounds: tuple[float, float]) -> list[float]:
    parts = text.split(",")
    if len(parts) != count:
        raise BadRequest(f"{name.upper()} needs {count} comma-separated numbers")
    return [numbers.real(name.upper(), p, *bounds) for p in parts]


def parse_twist(text: str) -> tuple[tuple[float, ...], ...]:
    """CTW matrix: rows by ``;``, coefficients by ``,``, square brackets optional."""
    body = unquote(text).strip()
    if body.startswith("["):
        body = body[1:]
    if body.endswith("]"):
        body = body[:-1]
    rows = [row for row in body.split(";") if row.strip()]
    if not rows or len(rows) > MAX_TWIST:
        raise BadRequest("CTW needs 1 to 16 rows")
    matrix = []
    for row in rows:
        coefficients = row.split(",")
        if len(coefficients) > MAX_TWIST:
            raise BadRequest("CTW rows hold at most 16 coefficients")
        matrix.append(tuple(numbers.real("CTW", c, *TWIST) for c in coefficients))
    return tuple(matrix)


@dataclass
class Session:
    """The view state commands share, in query order."""

    service: Service
    request: Request
    image: OpenImage | None = None
    identifier: str = ""
    minmax: dict[int, tuple[float, float]] = field(default_factory=dict)
    gamma: float = 1.0
    contrast: float = 1.0
    colormap: str | None = None
    invert: bool = False
    twist: tuple[tuple[float, ...], ...] | None = None
    shade: tuple[float, float] | None = None
    region: tuple[float, float, float, float] | None = None
    width: int = 0
    height: int = 0
    rotation: float = 0.0
    mirror: bool = False
    quality: int | None = None
    color: str = "default"
    layers: int = 0
    protocol_line: bool = False
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def display(self) -> Display:
        # Overrides of channels the image lacks change nothing: left out, they never reach a cache key.
        channels = self.image.info.channels if self.image is not None else 0
        minmax = tuple((c, lo, hi) for c, (lo, hi) in sorted(self.minmax.items()) if c < channels)
        if not minmax and self._plain_display():
            return IDENTITY
        return Display(
            minmax=minmax,
            gamma=self.gamma,
            contrast=self.contrast,
            colormap=self.colormap,
            invert=self.invert,
            twist=self.twist,
            shade=self.shade,
        )

    def _plain_display(self) -> bool:
        return (
            self.gamma == 1.0
            and self.contrast == 1.0
            and self.colormap is None
            and not self.invert
            and self.twist is None
            and self.shade is None
        )

    def need_image(self, argument: str) -> OpenImage | None:
        if self.image is None:
            self.errors.append(error_line("1 3", argument))
        return self.image

    def image_response(
        self, body: bytes, mime: str, headers: list[tuple[str, str]] | None = None, etag: str = ""
    ) -> Response:
        assert self.image is not None
        return Response(200, body, mime, headers=headers or [], origin=self.image.resolved, etag=etag)


# ---------------------------------------------------------------- settings


def _fif(s: Session, value: str) -> None:
    s.identifier = unquote(value)
    s.image = s.service.image(s.identifier)


def _minmax(s: Session, value: str) -> None:
    channel, sep, rest = value.partition(":")
    if not sep:
        raise BadRequest("MINMAX needs channel:min,max")
    index = _integer("minmax", channel) - 1  # 1-based, as iipsrv-astro and VisiOmatic
    low, high = _numbers("minmax", rest, 2, SAMPLE)
    if index >= 0:
        s.minmax[index] = (low, high)


def _gam(s: Session, value: str) -> None:
    s.gamma = numbers.real("GAM", value, *GAMMA)


def _cnt(s: Session, value: str) -> None:
    s.contrast = numbers.real("CNT", value, *CONTRAST)


def _cmp(s: Session, value: str) -> None:
    name = value.lower()
    s.colormap = name if name in COLORMAPS else None  # "grey" switches colormapping off


def _inv(s: Session, value: str) -> None:
    s.invert = True


def _ctw(s: Session, value: str) -> None:
    s.twist = parse_twist(value)


def _shd(s: Session, value: str) -> None:
    h, v = _numbers("shd", value, 2, ANGLE)
    s.shade = (h, v)


def _rgn(s: Session, value: str) -> None:
    try:
        x, y, w, h = (min(1.0, max(0.0, numbers.real("RGN", p))) for p in value.split(","))
    except (ValueError, BadRequest):
        s.region = None  # iipsrv: anything but four numbers means the whole image
        return
    s.region = (x, y, w, h) if w > 0 and h > 0 else None


def _wid(s: Session, value: str) -> None:
    s.width = max(0, _integer("wid", value))


def _hei(s: Session, value: str) -> None:
    s.height = max(0, _integer("hei", value))


def _rot(s: Session, value: str) -> None:
    s.mirror = value.startswith("!")
    angle = numbers.real("ROT", value.lstrip("!"), *ANGLE)
    s.rotation = angle % 360 if angle % 90 == 0 else 0.0


def _qlt(s: Session, value: str) -> None:
    s.quality = max(0, min(100, _integer("qlt", value.rpartition(":")[2])))


def _col(s: Session, value: str) -> None:
    s.color = {"grey": "gray", "gray": "gray", "binary": "bitonal"}.get(value.lower(), "default")


def _ignored(s: Session, value: str) -> None:
    """SDS: views do not apply to single TIFF images."""


def _lyr(s: Session, value: str) -> None:
    """JPEG 2000 quality layers: checked, and capped by MAX_LAYERS as iipsrv does; TIFF pixels have none."""
    layers = _integer("lyr", value)
    if layers < 0:
        raise BadRequest("LYR needs a number of layers, 0 or more")
    limit = s.service.settings.max_layers
    s.layers = min(layers, limit) if limit > 0 else layers


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


def _metadata_line(s: Session, image: OpenImage, name: str) -> str | None:
    value = image.info.metadata.get(_METADATA.get(name, ""), "")
    if name == "copyright" and not value:
        value = s.service.settings.copyright  # COPYRIGHT: the default rights, as upstream
    if not value:
        return None
    return f"{name}/{len(value.encode('latin-1', 'replace'))}:{value}"


def _object(s: Session, name: str) -> None:
    """One OBJ reply line (or none for an empty metadata field), or an IIP error."""
    if name.startswith("iip,"):
        s.protocol_line = True
        return
    if name == "iip-server":
        s.lines.append(f"IIP-server:{IIP_SERVER_VERSION}")
        return
    if name == "iip-opt-comm":
        s.lines.append(f"IIP-opt-comm:{OPT_COMMANDS}")
        return
    if name == "iip-opt-obj":
        s.lines.append(f"IIP-opt-obj:{OPT_OBJECTS}")
        return
    known = (
        name in _METADATA
        or name in _EMPTY_METADATA
        or name
        in (
            "basic-info",
            "summary-info",
            "max-size",
            "resolution-number",
            "tile-size",
            "bits-per-channel",
            "min-max-sample-values",
            "resolutions",
            "horizontal-views",
            "vertical-views",
            "dpi",
        )
        or "colorspace" in name
    )
    if not known:
        s.errors.append(error_line("3 2", name))
        return
    image = s.need_image(name)
    if image is None:
        return
    info = image.info
    levels = info.levels
    if name == "basic-info":
        for part in ("iip-server", "max-size", "resolution-number", "colorspace"):
            _object(s, part)
    elif name == "summary-info":
        for part in _SUMMARY:
            _object(s, part)
    elif name == "max-size":
        w, h = info.width, info.height
        if s.rotation in (90.0, 270.0):
            w, h = h, w
        s.lines.append(f"Max-size:{w} {h}")
    elif name == "resolution-number":
        s.lines.append(f"Resolution-number:{len(levels)}")
    elif name == "tile-size":
        s.lines.append("Tile-size:%d %d" % info.tile_size)
    elif name == "bits-per-channel":
        s.lines.append(f"Bits-per-channel:{info.bits}")
    elif name == "min-max-sample-values":
        s.lines.append(_minmax_line(image, s.minmax))
    elif name == "resolutions":
        s.lines.append("Resolutions:" + ",".join(f"{lv.width} {lv.height}" for lv in reversed(levels)))
    elif name == "horizontal-views":
        s.lines.append("Horizontal-views:0")
    elif name == "vertical-views":
        s.lines.append("Vertical-views:90")
    elif name == "dpi":
        if info.resolution:
            s.lines.append("DPI:%f %f" % info.resolution)
    elif "colorspace" in name:
        s.lines.append(f"Colorspace,0-{len(levels) - 1},0:{_COLORSPACE[info.colorspace]}")
    else:
        line = _metadata_line(s, image, name)
        if line is not None:
            s.lines.append(line)


def _obj(s: Session, value: str) -> None:
    _object(s, value.lower())


def metadata_response(s: Session) -> Response:
    """The OBJ reply: protocol line first in the body (astro framing); any error replaces it all."""
    if s.errors:
        return error_response(s.errors)
    body = ("IIP:1.0" if s.protocol_line else "") + "\r\n" + "".join(line + "\r\n" for line in s.lines)
    source = s.image.resolved if s.image else None
    return Response(200, body.encode("latin-1", "replace"), NETFPX, origin=source)


def error_response(lines: list[str]) -> Response:
    body = "".join(line + "\r\n" for line in lines).encode("latin-1", "replace")
    headers = [("Content-Disposition", 'inline;filename="IIPisAMadGameClosedToOurUnderstanding.netfpx"')]
    return Response(400, body, NETFPX, headers=headers, cacheable=False)


# ---------------------------------------------------------------- output commands


def _tile_request(s: Session, res: int, index: int, fmt: str) -> ImageRequest:
    assert s.image is not None
    if s.rotation == 180.0:
        lv = s.image.info.levels[resolution_level(s.image.info, res)]
        index = lv.tiles_across * lv.tiles_down - 1 - index
    region = tile_region(s.image.info, res, index)
    return ImageRequest(
        region=region,
        size=(region.w, region.h),
        rotation=s.rotation,
        mirror=s.mirror,
        color=s.color,
        format=fmt,
        quality=s.quality,
        display=s.display,
    )


def _tile_numbers(name: str, value: str) -> tuple[int, int]:
    res, sep, tile = value.partition(",")
    if not sep:
        raise BadRequest(f"{name.upper()} needs resolution,tile")
    return _integer(name, res), _integer(name, tile)


def _jtl_like(fmt: str) -> Callable[[Session, str], Response | None]:
    def run(s: Session, value: str) -> Response | None:
        image = s.need_image(value)
        if image is None:
            return None
        res, index = _tile_numbers("jtl", value)
        rendered = s.service.render(image, _tile_request(s, res, index, fmt))
        return s.image_response(rendered.body, rendered.mime, etag=rendered.etag)

    return run


def _jtls(s: Session, value: str) -> Response | None:
    parts = value.split(",")
    if len(parts) != 4:
        return None  # iipsrv runs JTLS only with all four values
    return _jtl_like("jpg")(s, f"{parts[1]},{parts[2]}")


def _til(s: Session, value: str) -> Response | None:
    """Legacy multi-tile reply: each tile framed as ``Tile,res,n,0/len:`` + 8 type bytes + JPEG."""
    image = s.need_image(value)
    if image is None:
        return None
    res_text, _sep, span = value.partition(",")
    res = _integer("til", res_text)
    start_text, dash, end_text = span.partition("-")
    start = _integer("til", start_text)
    end = _integer("til", end_text) if dash else start
    lv = image.info.levels[resolution_level(image.info, res)]
    across = lv.tiles_across
    x0, x1 = sorted((start % across, end % across))
    y0, y1 = start // across, end // across
    if (x1 - x0 + 1) * (y1 - y0 + 1) > 1024:
        raise BadRequest("TIL spans too many tiles")
    body = bytearray()
    budget = s.service.settings.max_request_memory * 1024 * 1024
    for x in range(x0, x1 + 1):
        for y in range(y0, y1 + 1):
            index = y * across + x
            request = ImageRequest(region=tile_region(image.info, res, index), size=(0, 0))
            request = replace(request, size=(request.region.w, request.region.h))
            data = s.service.render(image, request).body
            if len(body) + len(data) > budget // 2:  # the reply is copied once more on its way out
                raise TooLarge("TIL reply would need more memory than MAX_REQUEST_MEMORY allows")
            body += f"Tile,{res},{index},0/{len(data) + 8}:".encode()
            body += b"\x02\x00\x00\x00\x00\x11\x00\x00" + data + b"\r\n"
    return s.image_response(bytes(body), NETFPX)


def _cvt(s: Session, value: str) -> Response | None:
    image = s.need_image(value)
    if image is None:
        return None
    fmt = CVT_FORMATS.get(value.lower(), "jpg")
    region, size = fitted_region(image.info, s.region, s.width, s.height, s.service.settings)
    request = ImageRequest(
        region=region,
        size=size,
        rotation=s.rotation,
        mirror=s.mirror,
        color=s.color,
        format=fmt,
        quality=s.quality,
        display=s.display,
    )
    rendered = s.service.render(image, request)
    out_w, out_h = size if s.rotation in (0.0, 180.0) else size[::-1]
    stem = os.path.splitext(os.path.basename(s.identifier))[0] or "image"
    stem = "".join(c for c in stem if c.isalnum() or c in "-_.") or "image"
    disposition = f'inline;filename="{stem}_{out_w}x{out_h}.{fmt}"'
    return s.image_response(rendered.body, rendered.mime, [("Content-Disposition", disposition)], rendered.etag)


def _pfl(s: Session, value: str) -> Response | None:
    """Line profile as JSON: horizontal or vertical runs, end point excluded, all channels per pixel."""
    image = s.need_image(value)
    if image is None:
        return None
    if image.info.dtype.kind == "c":  # no JSON number holds one
        raise UnsupportedFormat("PFL needs real samples: this image holds complex ones")
    res_text, sep, coords = value.partition(":")
    if not sep:
        raise BadRequest("PFL needs res:x1,y1-x2,y2")
    level = resolution_level(image.info, _integer("pfl", res_text))
    lv = image.info.levels[level]
    start, dash, end = coords.partition("-")
    x1, y1 = (int(v) for v in _numbers("pfl", start, 2, numbers.C_INT))
    x2, y2 = (int(v) for v in _numbers("pfl", end, 2, numbers.C_INT)) if dash else (x1, y1)
    for x, y in ((x1, y1), (x2, y2)):
        if not (0 <= x <= lv.width and 0 <= y <= lv.height):
            raise BadRequest("PFL coordinates outside the image")
    x1, y1 = min(x1, lv.width - 1), min(y1, lv.height - 1)
    w = min(x2, lv.width) - x1 if x2 > x1 else 1
    h = min(y2, lv.height) - y1 if x2 <= x1 and y2 > y1 else 1
    s.service.renderer.check_read(image, level, w, h, per_value=_PFL_BYTES_PER_VALUE)
    if x2 > x1:
        data = image.source.read(level, x1, y1, min(x2, lv.width) - x1, 1)
    elif y2 > y1:
        data = image.source.read(level, x1, y1, 1, min(y2, lv.height) - y1)
    else:
        data = image.source.read(level, x1, y1, 1, 1)
    body = '{\n\t"profile": [' + ",".join(_profile_items(data.reshape(-1))) + "]\n}"
    json.loads(body)  # the reply must stay valid JSON, whatever the data
    return s.image_response(body.encode(), "application/json")


def _profile_items(values: np.ndarray) -> list[str]:
    """JSON numbers of the samples: 1-bit ones as 0 and 1, non-finite floats as null."""
    kind = values.dtype.kind
    if kind == "f":
        return ["null" if not math.isfinite(v) else "%.9f" % v for v in values.tolist()]
    if kind == "b":
        values = values.astype(np.uint8)
    return [str(v) for v in values.tolist()]


SETTINGS: dict[str, Callable[[Session, str], None]] = {
    "fif": _fif,
    "obj": _obj,
    "minmax": _minmax,
    "gam": _gam,
    "cnt": _cnt,
    "cmp": _cmp,
    "inv": _inv,
    "ctw": _ctw,
    "shd": _shd,
    "rgn": _rgn,
    "wid": _wid,
    "hei": _hei,
    "rot": _rot,
    "qlt": _qlt,
    "col": _col,
    "sds": _ignored,
    "lyr": _lyr,
}
OUTPUTS: dict[str, Callable[[Session, str], Response | None]] = {
    "jtl": _jtl_like("jpg"),
    "ptl": _jtl_like("png"),
    "wtl": _jtl_like("webp"),
    "jtls": _jtls,
    "til": _til,
    "cvt": _cvt,
    "pfl": _pfl,
}


def handle(service: Service, request: Request, protocols: Mapping[str, QueryHandler] = NO_PROTOCOLS) -> Response:
    """Run the commands of one IIP query in order; the first output command answers.

    ``protocols`` hands ``?KEY=value`` forms of the other protocols (routes.QUERY_KEYS) their requests,
    when the key comes first among the query's output commands.
    """
    pairs = split_query(request.query)
    session = Session(service, request)
    for key, value in pairs:
        if key in protocols:
            return protocols[key](service, request, value)
        setting = SETTINGS.get(key)
        if setting is not None:
            setting(session, value)
            continue
        output = OUTPUTS.get(key)
        if output is None:
            session.errors.append(error_line("2 2", key))
            continue
        response = output(session, value)
        if response is not None:
            return response
    if session.lines or session.protocol_line or session.errors:
        return metadata_response(session)
    return error_response([error_line("2 1", request.query)])
