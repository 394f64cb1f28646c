"""The query grammar of VisiOmatic v3's own server (its FastAPI ``/api`` endpoint): a query to one request, and back.

``parse(query)`` reads the query as FastAPI does: ``&``-separated pairs
decoded as forms are (``+`` a space, ``%XX`` UTF-8), case-sensitive keys,
a bare key (``&INFO``, ``&INV``) holding the empty string, the last value of
a repeated scalar key, every value of the list keys (CHAN, MINMAX, MIX),
unknown keys ignored. Each value is checked as the v3 server declares it
(ranges, lengths, patterns) and every failure is reported at once, as
FastAPI's 422 body lists them (``Invalid.details``). ``unparse(request)``
prints the canonical query back: ``parse(unparse(r)) == r``.

Where the v3 server fails on a value it declared valid (a JTL that is not
``z,index`` is a 500 there), the value is refused here with a 422 naming it.
Nothing here opens an image: what depends on the image (channels that
exist, tiles in the grid) is the responder's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote

from pyiip.errors import HTTPError

# The v3 server's defaults (its settings.py), which its INFO reply announces to the client.
BRIGHTNESS = 0.0
CONTRAST = 1.0
COLOR_SATURATION = 1.5
GAMMA = 2.2
COLORMAPS = ("grey", "jet", "cold", "cool", "hot")
MAX_LIST = 100  # MINMAX and MIX values at most, as the v3 server declares them

_INT = re.compile(r"[ \t]*[+-]?[0-9]+[ \t]*")
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
_WEIGHT = r"[+-]?[0-9]+\.?[0-9]*"
_SIGNED = r"[+-]?[0-9]+"
TILE = re.compile(r"([0-9]+),([0-9]+)")
MINMAX = re.compile(rf"([0-9]+):({_NUMBER}),({_NUMBER})")
MIX = re.compile(rf"([0-9]+):({_WEIGHT}),({_WEIGHT}),({_WEIGHT})")
SEGMENT = re.compile(rf"({_SIGNED}),({_SIGNED}):({_SIGNED}),({_SIGNED})")
POINT = re.compile(rf"({_SIGNED}),({_SIGNED})")
Segment = tuple[int, int, int, int]


class Invalid(HTTPError):
    """Values the v3 server's declarations refuse: a 422 whose body lists each, FastAPI's way."""

    status, reason = 422, "Unprocessable Content"

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__(str(details[0]["msg"]))
        self.details = details


@dataclass(frozen=True, slots=True)
class V3Request:
    """One request of the v3 protocol, with the server's defaults for what it leaves out.

    ``channels`` are 1-based as sent (CHAN: the mono channel for tiles, the channels measured by
    VAL and PFL); ``minmax`` and ``mix`` are as sent, in order; coordinates of ``profile`` and
    ``value`` are FITS pixels (1-based, y up), those of ``region`` full-resolution raster pixels
    counted from 1 at the top-left corner, as the client's snapshot sends them. ``quality`` None
    is the server's JPEG quality.
    """

    identifier: str | None = None
    info: bool = False
    obj: bool = False
    channels: tuple[int, ...] = ()
    colormap: str = "grey"
    contrast: float = CONTRAST
    gamma: float = GAMMA
    brightness: float = BRIGHTNESS
    quality: int | None = None
    invert: bool = False
    tile: tuple[int, int] | None = None
    minmax: tuple[tuple[int, float, float], ...] = ()
    mix: tuple[tuple[int, float, float, float], ...] = ()
    profile: Segment | None = None
    region: Segment | None = None
    value: tuple[int, int] | None = None
    binning: int = 1


def _error(key: str, kind: str, msg: str, value: Any, index: int | None = None, **ctx: Any) -> dict[str, Any]:
    """One entry of FastAPI's 422 ``detail`` list (pydantic's error types)."""
    loc: list[Any] = ["query", key] if index is None else ["query", key, index]
    entry: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx:
        entry["ctx"] = ctx
    return entry


def _integer(key: str, text: str, low: float = -math.inf, high: float = math.inf, index: int | None = None) -> int:
    if not _INT.fullmatch(text):
        raise _Refused(
            _error(
                key, "int_parsing", "Input should be a valid integer, unable to parse string as an integer", text, index
            )
        )
    return int(_bounded(key, int(text), text, low, high))


def _real(key: str, text: str, low: float, high: float) -> float:
    try:
        number = float(text)
    except ValueError:
        raise _Refused(
            _error(key, "float_parsing", "Input should be a valid number, unable to parse string as a number", text)
        ) from None
    return float(_bounded(key, number, text, low, high))


def _bounded(key: str, number: float, text: str, low: float, high: float) -> float:
    """``number`` if low <= number <= high (NaN is neither), else the bound it fails, as pydantic names it."""
    if not number >= low:
        raise _Refused(
            _error(key, "greater_than_equal", f"Input should be greater than or equal to {_shown(low)}", text, ge=low)
        )
    if not number <= high:
        raise _Refused(
            _error(key, "less_than_equal", f"Input should be less than or equal to {_shown(high)}", text, le=high)
        )
    return number


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _string(key: str, text: str, low: int, high: int, pattern: re.Pattern[str] | None = None) -> re.Match[str] | None:
    """Length, then pattern, as pydantic checks a constrained string."""
    if len(text) < low:
        raise _Refused(
            _error(key, "string_too_short", f"String should have at least {low} characters", text, min_length=low)
        )
    if len(text) > high:
        raise _Refused(
            _error(key, "string_too_long", f"String should have at most {high} characters", text, max_length=high)
        )
    if pattern is None:
        return None
    found = pattern.fullmatch(text)
    if found is None:
        raise _Refused(
            _error(
                key,
                "string_pattern_mismatch",
                f"String should match pattern '{pattern.pattern}'",
                text,
                pattern=pattern.pattern,
            )
        )
    return found


class _Refused(Exception):
    def __init__(self, detail: dict[str, Any]) -> None:
        super().__init__(detail["msg"])
        self.detail = detail


def _segment(key: str) -> Callable[[str], Segment]:
    def read(text: str) -> Segment:
        found = _string(key, text, 7, 39, SEGMENT)
        assert found is not None
        x1, y1, x2, y2 = (int(g) for g in found.groups())
        return x1, y1, x2, y2

    return read


def _identifier(text: str) -> str:
    if text.startswith("..") or "\n" in text[:-1]:  # the v3 pattern: no "..", one line
        raise _Refused(_error("FIF", "value_error", "Value error, string does not match the FIF pattern", text))
    _string("FIF", text, 1, 1024)
    return text


def _tile(text: str) -> tuple[int, int]:
    _string("JTL", text, 3, 14)
    found = TILE.fullmatch(text)
    if found is None:
        raise _Refused(
            _error(
                "JTL",
                "string_pattern_mismatch",
                f"String should match pattern '{TILE.pattern}'",
                text,
                pattern=TILE.pattern,
            )
        )
    return int(found.group(1)), int(found.group(2))


def _value(text: str) -> tuple[int, int]:
    found = _string("VAL", text, 3, 32, POINT)
    assert found is not None
    return int(found.group(1)), int(found.group(2))


def _colormap(text: str) -> str:
    if text not in COLORMAPS:
        listed = ", ".join(f"'{name}'" for name in COLORMAPS[:-1]) + f" or '{COLORMAPS[-1]}'"
        raise _Refused(_error("CMP", "literal_error", f"Input should be {listed}", text, expected=listed))
    return text


# Scalar keys: (field, reader). The last value of a repeated key is the one read, as FastAPI does.
_SCALARS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "FIF": ("identifier", _identifier),
    "obj": ("obj", lambda text: True),
    "INFO": ("info", lambda text: True),
    "INV": ("invert", lambda text: True),
    "BIN": ("binning", lambda text: _integer("BIN", text, 1, 65536)),
    "CMP": ("colormap", _colormap),
    "CNT": ("contrast", lambda text: _real("CNT", text, 0.0, 1000.0)),
    "GAM": ("gamma", lambda text: _real("GAM", text, 0.2, 5.0)),
    "BRT": ("brightness", lambda text: _real("BRT", text, -100.0, 100.0)),
    "QLT": ("quality", lambda text: _integer("QLT", text, 0, 100)),
    "JTL": ("tile", _tile),
    "PFL": ("profile", _segment("PFL")),
    "RGN": ("region", _segment("RGN")),
    "VAL": ("value", _value),
}


def _minmax(found: re.Match[str]) -> tuple[int, float, float]:
    return int(found.group(1)), float(found.group(2)), float(found.group(3))


def _mix(found: re.Match[str]) -> tuple[int, float, float, float]:
    return int(found.group(1)), float(found.group(2)), float(found.group(3)), float(found.group(4))


# List keys whose every value must match a pattern: (field, pattern, reader of a match).
_PATTERNED: dict[str, tuple[str, re.Pattern[str], Callable[[re.Match[str]], Any]]] = {
    "MINMAX": ("minmax", MINMAX, _minmax),
    "MIX": ("mix", MIX, _mix),
}


def _patterned(key: str, values: list[str]) -> tuple[Any, ...]:
    pattern, read = _PATTERNED[key][1:]
    items = []
    for text in values:
        found = pattern.fullmatch(text)
        if found is None:
            raise _Refused(_error(key, "value_error", f"Value error, string does not match the {key} pattern", values))
        items.append(read(found))
    if len(items) > MAX_LIST:
        raise _Refused(
            _error(
                key,
                "too_long",
                f"List should have at most {MAX_LIST} items after validation, not {len(items)}",
                values,
                field_type="List",
                max_length=MAX_LIST,
                actual_length=len(items),
            )
        )
    return tuple(items)


def parse(query: str) -> V3Request:
    """The request of ``query``; every value the v3 server would refuse is in the one ``Invalid`` raised."""
    scalars: dict[str, str] = {}
    lists: dict[str, list[str]] = {"CHAN": [], "MINMAX": [], "MIX": []}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in lists:
            lists[key].append(value)
        elif key in _SCALARS:
            scalars[key] = value
    fields: dict[str, Any] = {}
    details: list[dict[str, Any]] = []
    for key, text in scalars.items():
        name, read = _SCALARS[key]
        try:
            fields[name] = read(text)
        except _Refused as refused:
            details.append(refused.detail)
    channels = []
    for index, text in enumerate(lists["CHAN"]):
        try:
            channels.append(_integer("CHAN", text, index=index))
        except _Refused as refused:
            details.append(refused.detail)
    fields["channels"] = tuple(channels)
    for key in _PATTERNED:
        if lists[key]:
            try:
                fields[_PATTERNED[key][0]] = _patterned(key, lists[key])
            except _Refused as refused:
                details.append(refused.detail)
    if details:
        raise Invalid(details)
    return V3Request(**fields)


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)


def _positional(value: float) -> str:
    """A MIX weight as its pattern wants it (no exponent), reading back to the same float."""
    return _number(value) if value.is_integer() and abs(value) < 1e16 else format(Decimal(repr(value)), "f")


def unparse(request: V3Request) -> str:
    """The canonical query of ``request``: ``parse(unparse(r)) == r``."""
    parts = [] if request.identifier is None else ["FIF=" + quote(request.identifier, safe="/")]
    for flag, key in ((request.info, "INFO"), (request.obj, "obj"), (request.invert, "INV")):
        if flag:
            parts.append(key)
    parts += [f"CHAN={c}" for c in request.channels]
    if request.colormap != "grey":
        parts.append(f"CMP={request.colormap}")
    for key, value, default in (
        ("CNT", request.contrast, CONTRAST),
        ("GAM", request.gamma, GAMMA),
        ("BRT", request.brightness, BRIGHTNESS),
    ):
        if value != default:
            parts.append(f"{key}={_number(value)}")
    if request.quality is not None:
        parts.append(f"QLT={request.quality}")
    parts += [f"MINMAX={c}:" + quote(f"{_number(lo)},{_number(hi)}", safe=",") for c, lo, hi in request.minmax]
    parts += [f"MIX={c}:" + ",".join(_positional(w) for w in weights) for c, *weights in request.mix]
    if request.tile is not None:
        parts.append("JTL=%d,%d" % request.tile)
    for key, segment in (("PFL", request.profile), ("RGN", request.region)):
        if segment is not None:
            parts.append(f"{key}=%d,%d:%d,%d" % segment)
    if request.value is not None:
        parts.append("VAL=%d,%d" % request.value)
    if request.binning != 1:
        parts.append(f"BIN={request.binning}")
    return "&".join(parts)
