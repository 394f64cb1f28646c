"""IIIF Image API 3.0 and 2.1 paths -> typed requests, and back to text.

``parse(path, version)`` reads what follows the endpoint prefix (and the
version segment): ``{id}/info.json``, ``{id}/{region}/{size}/{rotation}/{quality}.{format}``
or the bare ``{id}`` (the base URI, which redirects to info.json); ``str()``
of every value prints it back in the normalised form (numbers without
trailing zeros, ``360`` as ``0``). The spec's canonical form depends on the
image (``full`` for a region that covers it, sizes as ``w,h``): the respond
layer computes those values and prints them with the same ``str()``.

Each of the four parameter segments is percent-decoded before it is read
(IIIF 3.0 section 9 lets clients encode ``^ ! , :`` and the dot, and
browsers send ``^`` as ``%5E``): the path is split on its literal slashes
first, so the identifier keeps its own rules (``%2F`` inside it stays part
of it). A segment that still holds ``%`` once decoded (double encoding) or an
escape that is not two hex digits is a 400. ``str()`` prints the decoded,
canonical form.

Parsing is pure: nothing here opens an image or reads a setting, so a
malformed request is a 400 whether or not the identifier exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, unquote_to_bytes

from pyiip.errors import BadRequest, NotFound
from pyiip.model import FORMATS
from pyiip.parse import numbers

# The default colours at 16 bits per sample, as PNG or TIFF (process.deep), for sources with more than 8.
DEEP_QUALITY = "bits16"
QUALITIES = ("default", "color", "gray", "bitonal", DEEP_QUALITY)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})?")
_INT = r"\d+"
_FLOAT = r"\d+(?:\.\d*)?|\.\d+"
_REGION_PX = re.compile(rf"^({_INT}),({_INT}),({_INT}),({_INT})$")
_REGION_PCT = re.compile(rf"^pct:({_FLOAT}),({_FLOAT}),({_FLOAT}),({_FLOAT})$")
_SIZE_WH = re.compile(rf"^(!)?({_INT})?,({_INT})?$")
_SIZE_PCT = re.compile(rf"^pct:({_FLOAT})$")
_ROTATION = re.compile(rf"^(!)?({_FLOAT})$")


def number(value: float) -> str:
    """A decimal as the specs print it: an integer when it is one, else at most six places, no trailing zeros."""
    return str(int(value)) if value == int(value) else f"{value:.6f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------- parameters


# The values built on every tile request (specs, Params, Image) are immutable through ``Final`` fields
# and their own ``__init__`` rather than ``frozen=True``: a frozen dataclass's generated __init__ sets
# each field through object.__setattr__, ~1 µs per object even compiled, where mypyc makes this form a
# native constructor (~35 ns) with read-only attributes (docs/performance.md, "IIIF tile-aligned").
# The dataclass decorator still gives them equality, hashing and repr.
@dataclass(init=False, unsafe_hash=True, slots=True)
class RegionSpec:
    """A IIIF region as parsed: ``values`` are pixels (px) or percentages (pct) of the full image."""

    kind: Final[str]  # "full", "square", "px" or "pct"
    values: Final[tuple[float, float, float, float]]

    def __init__(self, kind: str, values: tuple[float, float, float, float] = (0, 0, 0, 0)) -> None:
        self.kind = kind
        self.values = values

    def __str__(self) -> str:
        if self.kind == "px":
            return ",".join(str(int(v)) for v in self.values)
        if self.kind == "pct":
            return "pct:" + ",".join(number(v) for v in self.values)
        return self.kind


@dataclass(init=False, unsafe_hash=True, slots=True)
class SizeSpec:
    """A IIIF size as parsed, before it is bound to a region's pixels (``process.bind.output_size``)."""

    kind: Final[str]  # "max", "w", "h", "wh", "fit" (!w,h) or "pct"
    width: Final[int]
    height: Final[int]
    percent: Final[float]
    upscale: Final[bool]  # the ^ prefix
    keyword: Final[str]  # "full" or "max", for the v2 canonical form

    def __init__(
        self,
        kind: str,
        width: int = 0,
        height: int = 0,
        percent: float = 0.0,
        upscale: bool = False,
        keyword: str = "max",
    ) -> None:
        self.kind = kind
        self.width = width
        self.height = height
        self.percent = percent
        self.upscale = upscale
        self.keyword = keyword

    def __str__(self) -> str:
        return size_text(self.kind, self.width, self.height, self.upscale, self.keyword, self.percent)


def size_text(kind: str, width: int, height: int, upscale: bool, keyword: str = "max", percent: float = 0.0) -> str:
    """A size as IIIF prints it (``SizeSpec``'s text, also the canonical size without building one)."""
    if kind == "max":
        body = keyword
    elif kind == "w":
        body = f"{width},"
    elif kind == "h":
        body = f",{height}"
    elif kind == "pct":
        body = f"pct:{number(percent)}"
    else:  # "wh", or "fit" (!w,h)
        body = f"{'!' if kind == 'fit' else ''}{width},{height}"
    return "^" + body if upscale else body


@dataclass(init=False, unsafe_hash=True, slots=True)
class Params:
    """``{region}/{size}/{rotation}/{quality}.{format}``: the rotation is in [0, 360), ``mirror`` its ``!``."""

    region: Final[RegionSpec]
    size: Final[SizeSpec]
    mirror: Final[bool]
    rotation: Final[float]
    quality: Final[str]
    format: Final[str]

    def __init__(  # the field's name: dataclasses.replace passes it by keyword
        self,
        region: RegionSpec,
        size: SizeSpec,
        mirror: bool,
        rotation: float,
        quality: str,
        format: str,  # noqa: A002
    ) -> None:
        self.region = region
        self.size = size
        self.mirror = mirror
        self.rotation = rotation
        self.quality = quality
        self.format = format

    def __str__(self) -> str:
        return self.text()

    def text(self, region: str | None = None, size: str | None = None) -> str:
        """The parameters as text, with the texts ``region`` and ``size`` in place of their own when
        given (the canonical form: no spec built on every image request)."""
        rotation = ("!" if self.mirror else "") + number(self.rotation)
        return f"{region or self.region}/{size or self.size}/{rotation}/{self.quality}.{self.format}"


def parse_region(text: str) -> RegionSpec:
    if text in ("full", "square"):
        return RegionSpec(text)
    match = _REGION_PX.match(text)
    if match:
        x, y, w, h = (numbers.integer("region", v, 0, numbers.MAX_PIXELS) for v in match.groups())
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
        return SizeSpec("pct", 0, 0, percent, upscale)
    match = _SIZE_WH.match(body)
    if match:
        bang, w, h = match.groups()
        width, height = (numbers.integer("size", v or "0", 0, numbers.MAX_PIXELS) for v in (w, h))
        if (w is not None and width == 0) or (h is not None and height == 0):
            raise BadRequest("size must be at least one pixel")
        if w and h:
            return SizeSpec("fit" if bang else "wh", width, height, 0.0, upscale)
        if not bang and (w or h):
            return SizeSpec("w" if w else "h", width, height, 0.0, upscale)
    raise BadRequest(f"invalid size {text[:60]!r}")


def parse_rotation(text: str) -> tuple[bool, float]:
    """(mirror, angle in [0, 360))."""
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


def decode_param(segment: str) -> str:
    """One parameter segment percent-decoded (ASCII only: no parameter has another character).

    ``%5Emax`` is ``^max``, ``0%2c0%2C9%2C9`` is ``0,0,9,9``; ``%255E`` (an
    encoded ``%``) and a ``%`` without two hex digits are refused rather than
    guessed at.
    """
    if "%" not in segment:
        return segment  # the usual case: no regular expression on the tile path

    def byte(match: re.Match[str]) -> str:
        code = match.group(1)
        if code is None:
            raise BadRequest(f"invalid percent-escape in {segment[:60]!r}")
        char = chr(int(code, 16))
        if char == "%" or not " " < char < "\x7f":
            raise BadRequest(f"invalid character {match.group(0)!r} in {segment[:60]!r}")
        return char

    return _ESCAPE.sub(byte, segment)


def parse_params(region: str, size: str, rotation: str, quality_format: str, version: int) -> Params:
    mirror, angle = parse_rotation(rotation)
    quality, fmt = parse_quality_format(quality_format)
    return Params(parse_region(region), parse_size(size, version), mirror, angle, quality, fmt)


# ---------------------------------------------------------------- paths


@dataclass(frozen=True, slots=True)
class Base:
    """``{id}``: the image's base URI. ``encoded`` is the identifier as the URL spells it (kept for links)."""

    identifier: str
    encoded: str

    def __str__(self) -> str:
        return self.encoded


@dataclass(frozen=True, slots=True)
class Info:
    """``{id}/info.json``."""

    identifier: str
    encoded: str

    def __str__(self) -> str:
        return f"{self.encoded}/info.json"


@dataclass(init=False, unsafe_hash=True, slots=True)
class Image:
    """``{id}/{region}/{size}/{rotation}/{quality}.{format}``."""

    identifier: Final[str]
    encoded: Final[str]
    params: Final[Params]

    def __init__(self, identifier: str, encoded: str, params: Params) -> None:
        self.identifier = identifier
        self.encoded = encoded
        self.params = params

    def __str__(self) -> str:
        return f"{self.encoded}/{self.params}"


Request = Base | Info | Image


def decode(segment: str) -> str:
    """Percent-decode an identifier (UTF-8, odd bytes kept as surrogates); ``+`` stays a plus."""
    if "%" not in segment and segment.isascii():
        if "\x00" in segment:
            raise BadRequest("invalid character in identifier")
        return segment  # the usual case: nothing to decode
    raw = unquote_to_bytes(segment.encode("latin-1", "replace"))
    if b"\x00" in raw:
        raise BadRequest("invalid character in identifier")
    return raw.decode("utf-8", "surrogateescape")


def _segments(path: str) -> list[str]:
    segments = path.split("/")
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash on the base URI
    if not segments or segments == [""]:
        raise NotFound("no image identifier")
    return segments


def parse_base(path: str) -> Base:
    """The whole of ``path`` as an identifier: ``.../dir/a/b/c/name.tif`` may be one with slashes."""
    encoded = "/".join(_segments(path))
    return Base(decode(encoded), encoded)


def parse(path: str, version: int) -> Request:
    """``path`` (still percent-encoded) after the prefix, read with the grammar of IIIF ``version`` (2 or 3).

    The identifier may hold slashes (sub-directories): the last four segments
    are the parameters, each decoded on its own. The identifier is decoded
    before the parameters are read, so an invalid character in it is the 400
    that wins.
    """
    segments = _segments(path)
    last = segments[-1]  # decoded: info%2Ejson and default%2Ejpg name what is asked
    if len(segments) >= 5:
        last = decode_param(last)  # a 400 here is retried as a base URI with slashes (respond.iiif)
    elif "%" in last:
        last = unquote(last)  # only info.json is read from it: an identifier keeps its own rules
    if last == "info.json" and len(segments) > 1:
        encoded = "/".join(segments[:-1])
        return Info(decode(encoded), encoded)
    if len(segments) >= 5 and "." in last:
        encoded = "/".join(segments[:-4])
        identifier = decode(encoded)
        region, size, rotation = (decode_param(segment) for segment in segments[-4:-1])
        return Image(identifier, encoded, parse_params(region, size, rotation, last, version))
    return parse_base(path)
