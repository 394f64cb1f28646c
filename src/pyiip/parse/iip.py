"""The IIP grammar of iipsrv and iipsrv-astro: a query to typed commands, and back.

``parse(query)`` reads a query into commands in query order, as iipsrv runs
them: split on ``&`` only (CTW values hold ``;``), keys lower-cased, a bare
key such as VisiOmatic's ``&INV`` valued by its own name, empty keys and
values dropped, repeated keys kept, unknown keys kept as ``Unknown`` (iipsrv
answers them with error ``2 2`` only when no output command answers).
``unparse(commands)`` prints the canonical query back, so that
``parse(unparse(commands)) == commands``.

Nothing here opens an image or reads a setting: the image-dependent checks
(resolution in range, tile in the grid, PFL on complex samples) belong to the
responder, which runs the commands. ``command(key, value)`` parses one pair,
so the responder can parse lazily and keep iipsrv's order of errors (a bad
value after the answering command is never read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from pyiip.errors import BadRequest
from pyiip.model import COLORMAPS, IDENTITY, Display
from pyiip.parse import numbers

MAX_TWIST = 16
CVT_FORMATS = {"jpeg": "jpg", "jpg": "jpg", "png": "png", "webp": "webp", "tif": "tif", "tiff": "tif", "avif": "avif"}
COLORS = {"grey": "gray", "gray": "gray", "binary": "bitonal"}
# The keys an IIIF, DeepZoom or Zoomify request reads its display parameters from (display_query).
DISPLAY_KEYS = ("minmax", "gam", "cnt", "cmp", "inv", "ctw", "shd", "qlt")
# ``?KEY=value`` forms of the other protocols, handed their (raw) value.
HANDOFF_KEYS = {"iiif": "IIIF", "deepzoom": "DeepZoom", "zoomify": "Zoomify"}
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
Matrix = tuple[tuple[float, ...], ...]


# ---------------------------------------------------------------- tokenizer and decoder


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


def pairs(query: str) -> list[tuple[str, str]]:
    """The query's (key, value) pairs as commands read them: ``JTLS=xangle,res,tile,yangle`` is the
    ``JTL=res,tile`` it runs (views do not apply to single images), and runs only with all four values."""
    found = split_query(query)
    if "jtls" not in query.lower():
        return found  # the common case, without a second loop
    out = []
    for key, value in found:
        if key == "jtls":
            parts = value.split(",")
            if len(parts) != 4:
                continue
            key, value = "jtl", f"{parts[1]},{parts[2]}"
        out.append((key, value))
    return out


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
    raw = value.encode("latin-1", "replace")
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


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/,:;!()*")


def quote(text: str) -> str:
    """The inverse of ``unquote``: UTF-8 bytes (surrogates as the bytes they stand for), ``%XX`` but for safe ones."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in text.encode("utf-8", "surrogateescape"))


# ---------------------------------------------------------------- number readers


def _integer(name: str, text: str) -> int:
    """An IIP integer: a C int, as iipsrv's atoi reads it."""
    return numbers.integer(name, text, *numbers.C_INT)


def _numbers(name: str, text: str, count: int, bounds: tuple[float, float]) -> list[float]:
    parts = text.split(",")
    if len(parts) != count:
        raise BadRequest(f"{name} needs {count} comma-separated numbers")
    return [numbers.real(name, p, *bounds) for p in parts]


def _real(value: float) -> str:
    """A float as text that reads back to the same float (the shortest repr, ``1`` for 1.0)."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)


def parse_twist(text: str) -> Matrix:
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


# ---------------------------------------------------------------- commands


class _Single:
    """A command of one value, printed ``KEY=value`` (a real in its shortest form that reads back)."""

    __slots__ = ()
    KEY: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Any]]

    def __str__(self) -> str:
        value = getattr(self, fields(self)[0].name)
        return f"{self.KEY}={_real(value) if isinstance(value, float) else value}"


@dataclass(frozen=True, slots=True)
class FIF:
    """Open the image ``identifier`` (decoded): every command after it works on that image."""

    identifier: str

    def __str__(self) -> str:
        return f"FIF={quote(self.identifier)}"


@dataclass(frozen=True, slots=True)
class OBJ(_Single):
    """One metadata object, by its lower-cased name (unknown names are the responder's ``3 2``)."""

    KEY: ClassVar[str] = "OBJ"
    name: str


@dataclass(frozen=True, slots=True)
class MINMAX:
    """The display range of a 1-based channel (channels below 1 change nothing)."""

    channel: int
    low: float
    high: float

    def __str__(self) -> str:
        return f"MINMAX={self.channel}:{_real(self.low)},{_real(self.high)}"


@dataclass(frozen=True, slots=True)
class GAM(_Single):
    """The gamma exponent of the display pipeline."""

    KEY: ClassVar[str] = "GAM"
    gamma: float


@dataclass(frozen=True, slots=True)
class CNT(_Single):
    """The contrast factor of the display pipeline."""

    KEY: ClassVar[str] = "CNT"
    contrast: float


@dataclass(frozen=True, slots=True)
class CMP:
    """A colormap, or None for ``grey`` and any unknown name (colormapping off)."""

    colormap: str | None

    def __str__(self) -> str:
        return f"CMP={self.colormap or 'grey'}"


@dataclass(frozen=True, slots=True)
class INV:
    """Invert the display (any value: VisiOmatic sends the bare key)."""

    def __str__(self) -> str:
        return "INV"


@dataclass(frozen=True, slots=True)
class CTW:
    """The colour twist matrix, one row per output channel."""

    matrix: Matrix

    def __str__(self) -> str:
        return "CTW=" + ";".join(",".join(_real(c) for c in row) for row in self.matrix)


@dataclass(frozen=True, slots=True)
class SHD:
    """Hill shading from these horizontal and vertical angles."""

    horizontal: float
    vertical: float

    def __str__(self) -> str:
        return f"SHD={_real(self.horizontal)},{_real(self.vertical)}"


@dataclass(frozen=True, slots=True)
class RGN:
    """The CVT region as fractions of the image, clamped to 0..1; anything else than four numbers
    with a positive width and height is the whole image, as iipsrv."""

    x: float = 0.0
    y: float = 0.0
    w: float = 1.0
    h: float = 1.0

    def __str__(self) -> str:
        return "RGN=" + ",".join(_real(v) for v in (self.x, self.y, self.w, self.h))


@dataclass(frozen=True, slots=True)
class WID(_Single):
    """The CVT output width (0: unset; negative values read as 0)."""

    KEY: ClassVar[str] = "WID"
    width: int


@dataclass(frozen=True, slots=True)
class HEI(_Single):
    """The CVT output height (0: unset; negative values read as 0)."""

    KEY: ClassVar[str] = "HEI"
    height: int


@dataclass(frozen=True, slots=True)
class ROT:
    """Rotation, a multiple of 90 in 0..270 (other angles are 0), after a mirror if ``!``."""

    angle: float
    mirror: bool = False

    def __str__(self) -> str:
        return f"ROT={'!' if self.mirror else ''}{_real(self.angle)}"


@dataclass(frozen=True, slots=True)
class QLT(_Single):
    """JPEG/WebP quality, clamped to 0..100 (``QLT=layer:quality`` reads the quality)."""

    KEY: ClassVar[str] = "QLT"
    quality: int


@dataclass(frozen=True, slots=True)
class BIT(_Single):
    """Bits per sample of the output, 8 or 16 (a pyiip extension: iipsrv 1.3 always sends 8): ``BIT=16&CVT=png``."""

    KEY: ClassVar[str] = "BIT"
    bits: int


@dataclass(frozen=True, slots=True)
class COL:
    """Output colour: ``gray``, ``bitonal`` or ``default``."""

    color: str

    def __str__(self) -> str:
        return "COL=" + {"gray": "grey", "bitonal": "binary"}.get(self.color, "default")


@dataclass(frozen=True, slots=True)
class SDS:
    """Views of image sequences: single TIFF images have none, so the value is not read."""

    def __str__(self) -> str:
        return "SDS"


@dataclass(frozen=True, slots=True)
class LYR(_Single):
    """JPEG 2000 quality layers, 0 or more: checked as iipsrv does; TIFF pixels have none."""

    KEY: ClassVar[str] = "LYR"
    layers: int


@dataclass(frozen=True, slots=True)
class JTL:
    """One tile of resolution ``resolution`` (0 = smallest), row-major ``tile`` index, as JPEG."""

    KEY: ClassVar[str] = "JTL"
    FORMAT: ClassVar[str] = "jpg"
    resolution: int
    tile: int

    def __str__(self) -> str:
        return f"{self.KEY}={self.resolution},{self.tile}"


@dataclass(frozen=True, slots=True)
class PTL(JTL):
    """One tile as PNG."""

    KEY: ClassVar[str] = "PTL"
    FORMAT: ClassVar[str] = "png"


@dataclass(frozen=True, slots=True)
class WTL(JTL):
    """One tile as WebP."""

    KEY: ClassVar[str] = "WTL"
    FORMAT: ClassVar[str] = "webp"


@dataclass(frozen=True, slots=True)
class TIL:
    """The legacy multi-tile reply: the tiles of the rectangle from tile ``start`` to tile ``end``."""

    resolution: int
    start: int
    end: int

    def __str__(self) -> str:
        return f"TIL={self.resolution},{self.start}-{self.end}"


@dataclass(frozen=True, slots=True)
class CVT:
    """The region (RGN) at the size (WID/HEI) in ``format``; unknown formats are JPEG, as iipsrv."""

    format: str

    def __str__(self) -> str:
        return "CVT=" + ("jpeg" if self.format == "jpg" else self.format)


@dataclass(frozen=True, slots=True)
class PFL:
    """A line profile at resolution ``resolution``: from (x1, y1) to (x2, y2), end excluded."""

    resolution: int
    x1: int
    y1: int
    x2: int
    y2: int

    def __str__(self) -> str:
        return f"PFL={self.resolution}:{self.x1},{self.y1}-{self.x2},{self.y2}"


@dataclass(frozen=True, slots=True)
class VAL:
    """The raw sample of every channel at FITS pixel (x, y): 1-based, y up (pyiip's, after VisiOmatic v3's)."""

    x: int
    y: int

    def __str__(self) -> str:
        return f"VAL={self.x},{self.y}"


@dataclass(frozen=True, slots=True)
class Handoff:
    """``?IIIF=``, ``?DeepZoom=``, ``?Zoomify=``: the raw value, for that protocol's handler."""

    key: str
    value: str

    def __str__(self) -> str:
        return f"{HANDOFF_KEYS[self.key]}={self.value}"


@dataclass(frozen=True, slots=True)
class Unknown:
    """A key iipsrv does not know (lower-cased): error ``2 2`` unless an output command answers."""

    key: str

    def __str__(self) -> str:
        return self.key


Command = (
    FIF | OBJ | MINMAX | GAM | CNT | CMP | INV | CTW | SHD | RGN | WID | HEI | ROT | QLT | BIT | COL | SDS | LYR
    | JTL | TIL | CVT | PFL | VAL | Handoff | Unknown
)  # fmt: skip


# ---------------------------------------------------------------- value parsers


def _minmax(value: str) -> MINMAX:
    channel, sep, rest = value.partition(":")
    if not sep:
        raise BadRequest("MINMAX needs channel:min,max")
    index = _integer("MINMAX", channel)
    low, high = _numbers("MINMAX", rest, 2, SAMPLE)
    return MINMAX(index, low, high)


def _cmp(value: str) -> CMP:
    name = value.lower()
    return CMP(name if name in COLORMAPS else None)  # "grey" switches colormapping off


def _shd(value: str) -> SHD:
    h, v = _numbers("SHD", value, 2, ANGLE)
    return SHD(h, v)


def _rgn(value: str) -> RGN:
    try:
        x, y, w, h = (min(1.0, max(0.0, numbers.real("RGN", p))) for p in value.split(","))
    except (ValueError, BadRequest):
        return RGN()  # iipsrv: anything but four numbers means the whole image
    return RGN(x, y, w, h) if w > 0 and h > 0 else RGN()


def _rot(value: str) -> ROT:
    angle = numbers.real("ROT", value.lstrip("!"), *ANGLE)
    return ROT(angle % 360 if angle % 90 == 0 else 0.0, value.startswith("!"))


def _lyr(value: str) -> LYR:
    layers = _integer("LYR", value)
    if layers < 0:
        raise BadRequest("LYR needs a number of layers, 0 or more")
    return LYR(layers)


def _tile(kind: type[JTL]) -> Callable[[str], JTL]:
    def parse_tile(value: str) -> JTL:
        res, sep, tile = value.partition(",")
        if not sep:
            raise BadRequest("JTL needs resolution,tile")
        return kind(_integer("JTL", res), _integer("JTL", tile))

    return parse_tile


def _til(value: str) -> TIL:
    res, _sep, span = value.partition(",")
    resolution = _integer("TIL", res)
    start_text, dash, end_text = span.partition("-")
    start = _integer("TIL", start_text)
    return TIL(resolution, start, _integer("TIL", end_text) if dash else start)


def pfl_resolution(value: str) -> int:
    """The resolution of a PFL value, read alone: the responder checks it against the image before
    the coordinates are read, as iipsrv does."""
    res, sep, _coords = value.partition(":")
    if not sep:
        raise BadRequest("PFL needs res:x1,y1-x2,y2")
    return _integer("PFL", res)


def _bit(value: str) -> BIT:
    bits = _integer("BIT", value)
    if bits not in (8, 16):
        raise BadRequest("BIT must be 8 or 16")
    return BIT(bits)


def _pfl(value: str) -> PFL:
    resolution = pfl_resolution(value)
    start, dash, end = value.partition(":")[2].partition("-")
    x1, y1 = (int(v) for v in _numbers("PFL", start, 2, numbers.C_INT))
    x2, y2 = (int(v) for v in _numbers("PFL", end, 2, numbers.C_INT)) if dash else (x1, y1)
    return PFL(resolution, x1, y1, x2, y2)


def _val(value: str) -> VAL:
    parts = value.split(",")
    if len(parts) != 2:
        raise BadRequest("VAL needs x,y")
    return VAL(_integer("VAL", parts[0]), _integer("VAL", parts[1]))


PARSERS: dict[str, Callable[[str], Command]] = {
    "fif": lambda v: FIF(unquote(v)),
    "obj": lambda v: OBJ(v.lower()),
    "minmax": _minmax,
    "gam": lambda v: GAM(numbers.real("GAM", v, *GAMMA)),
    "cnt": lambda v: CNT(numbers.real("CNT", v, *CONTRAST)),
    "cmp": _cmp,
    "inv": lambda v: INV(),
    "ctw": lambda v: CTW(parse_twist(v)),
    "shd": _shd,
    "rgn": _rgn,
    "wid": lambda v: WID(max(0, _integer("WID", v))),
    "hei": lambda v: HEI(max(0, _integer("HEI", v))),
    "rot": _rot,
    "qlt": lambda v: QLT(max(0, min(100, _integer("QLT", v.rpartition(":")[2])))),
    "bit": _bit,
    "col": lambda v: COL(COLORS.get(v.lower(), "default")),
    "sds": lambda v: SDS(),
    "lyr": _lyr,
    "jtl": _tile(JTL),
    "ptl": _tile(PTL),
    "wtl": _tile(WTL),
    "til": _til,
    "cvt": lambda v: CVT(CVT_FORMATS.get(v.lower(), "jpg")),
    "pfl": _pfl,
    "val": _val,
}
# The output commands: each needs an image, and the first that answers ends the query.
OUTPUT_KEYS = frozenset(("jtl", "ptl", "wtl", "til", "cvt", "pfl", "val"))


def command(key: str, value: str) -> Command:
    """The command of one (lower-cased key, value) pair; a value it cannot read is a 400 naming the key."""
    parser = PARSERS.get(key)
    if parser is not None:
        return parser(value)
    if key in HANDOFF_KEYS:
        return Handoff(key, value)
    return Unknown(key)


def commands(query: str) -> Iterator[Command]:
    """The commands of ``query`` one at a time, in query order."""
    return (command(key, value) for key, value in pairs(query))


def parse(query: str) -> list[Command]:
    """The commands of ``query`` in query order; the first value it cannot read is a 400."""
    return list(commands(query))


def unparse(commands: Iterable[Command]) -> str:
    """The canonical query of ``commands``: ``parse(unparse(c)) == c``."""
    return "&".join(str(c) for c in commands)


# ---------------------------------------------------------------- the view state


@dataclass
class View:
    """The settings the commands before an output command left, folded in query order."""

    minmax: dict[int, tuple[float, float]] = field(default_factory=dict)
    gamma: float = 1.0
    contrast: float = 1.0
    colormap: str | None = None
    invert: bool = False
    twist: Matrix | None = None
    shade: tuple[float, float] | None = None
    region: RGN = RGN()
    width: int = 0
    height: int = 0
    rotation: float = 0.0
    mirror: bool = False
    quality: int | None = None
    bits: int = 8
    color: str = "default"

    def apply(self, setting: Command) -> None:
        """Fold one setting (a command in SETTINGS) in (a later one of the same key wins; MINMAX per channel)."""
        _APPLY[type(setting)](self, setting)

    def display(self, channels: int) -> Display:
        """The display parameters, for an image of ``channels`` channels (0-based MINMAX overrides).

        Overrides of channels the image lacks change nothing: left out, they never reach a cache key.
        """
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


def _set_minmax(view: View, c: MINMAX) -> None:
    if c.channel >= 1:  # 1-based, as iipsrv-astro and VisiOmatic
        view.minmax[c.channel - 1] = (c.low, c.high)


def _set_rot(view: View, c: ROT) -> None:
    view.rotation, view.mirror = c.angle, c.mirror


def _set(attribute: str, field_name: str) -> Callable[[View, Any], None]:
    def set_attribute(view: View, c: Any) -> None:
        setattr(view, attribute, getattr(c, field_name))

    return set_attribute


def _nothing(view: View, c: SDS | LYR) -> None:
    """SDS and LYR change nothing a TIFF image shows."""


def _set_twist(view: View, c: CTW) -> None:
    view.twist = c.matrix


def _set_shade(view: View, c: SHD) -> None:
    view.shade = (c.horizontal, c.vertical)


def _set_invert(view: View, c: INV) -> None:
    view.invert = True


def _set_region(view: View, c: RGN) -> None:
    view.region = c


_APPLY: dict[type, Callable[[View, Any], None]] = {
    MINMAX: _set_minmax,
    GAM: _set("gamma", "gamma"),
    CNT: _set("contrast", "contrast"),
    CMP: _set("colormap", "colormap"),
    INV: _set_invert,
    CTW: _set_twist,
    SHD: _set_shade,
    RGN: _set_region,
    WID: _set("width", "width"),
    HEI: _set("height", "height"),
    ROT: _set_rot,
    QLT: _set("quality", "quality"),
    BIT: _set("bits", "bits"),
    COL: _set("color", "color"),
    SDS: _nothing,
    LYR: _nothing,
}
SETTINGS = frozenset(_APPLY)


def view(query: str, keys: Iterable[str] = DISPLAY_KEYS) -> View:
    """The view state of the ``keys`` settings of ``query``; other pairs are not read (cache busters, ``IIIF=``)."""
    wanted = frozenset(keys)
    state = View()
    for key, value in split_query(query):
        if key in wanted:
            state.apply(command(key, value))
    return state
