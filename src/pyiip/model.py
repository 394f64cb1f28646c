"""The protocol-neutral request model.

IIP, IIIF, DeepZoom and Zoomify parsers all translate into these frozen
values; everything below them (resolver, reader, pipeline, encoder, cache)
sees only this model, so one canonical request has one cache key whatever
protocol asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

COLORMAPS = ("jet", "hot", "cold", "red", "green", "blue")
# The output formats the encoders write, in the order info.json lists them (IIIF names: ``tif``, not ``tiff``).
FORMATS = ("jpg", "png", "webp", "tif", "gif", "avif")
# The formats that carry 16 bits per sample (``ImageRequest.depth``).
DEEP_FORMATS = ("png", "tif")


# Region and ImageRequest, built on every tile request, are immutable through ``Final`` fields and
# their own ``__init__`` rather than ``frozen=True``, whose generated __init__ sets each field with
# object.__setattr__ (~1 µs per object); mypy refuses any assignment, the decorator still gives
# equality, hashing (they are cache keys) and repr (docs/performance.md, "IIIF tile-aligned").
@dataclass(init=False, unsafe_hash=True, slots=True)
class Region:
    """A rectangle in the pixel grid of pyramid level ``level`` (0 = full size).

    Tile protocols address a level directly, so their regions stay exact
    even where level sizes are rounded down.
    """

    x: Final[int]
    y: Final[int]
    w: Final[int]
    h: Final[int]
    level: Final[int]

    def __init__(self, x: int, y: int, w: int, h: int, level: int = 0) -> None:
        self.x = x
        self.y = y
        self.w = w
        self.h = h
        self.level = level


@dataclass(frozen=True, slots=True)
class Display:
    """Per-channel display parameters of the iipsrv-astro pipeline.

    ``minmax`` holds (channel, min, max) overrides with 0-based channels;
    ``twist`` is the CTW matrix, one row per output channel.
    """

    minmax: tuple[tuple[int, float, float], ...] = ()
    gamma: float = 1.0
    contrast: float = 1.0
    colormap: str | None = None
    invert: bool = False
    twist: tuple[tuple[float, ...], ...] | None = None
    shade: tuple[float, float] | None = None

    @property
    def is_identity(self) -> bool:
        """True when the pipeline would not change pixel values of 8-bit data."""
        return self == IDENTITY


IDENTITY = Display()


@dataclass(frozen=True, slots=True)
class VisiomaticDisplay:
    """VisiOmatic v3's display (its server's formulas, process.display_v3), resolved for one image.

    ``channel`` is the 0-based channel of mono mode, None in colour mode, where
    ``mix`` holds three rows (red, green, blue) of one weight per channel;
    ``minmax`` holds (channel, min, max) overrides with 0-based channels;
    ``gamma`` is a display gamma (values are raised to 1/gamma); ``colormap``
    is one of OpenCV's ("grey" for none). A distinct type: its renderings can
    never share a cache key with IIP's.
    """

    channel: int | None = None
    minmax: tuple[tuple[int, float, float], ...] = ()
    mix: tuple[tuple[float, ...], ...] = ()
    brightness: float = 0.0
    contrast: float = 1.0
    gamma: float = 2.2
    colormap: str = "grey"
    invert: bool = False

    @property
    def is_identity(self) -> bool:
        """Never: every sample goes through the scaling."""
        return False


@dataclass(init=False, unsafe_hash=True, slots=True)
class ImageRequest:
    """One rendered image: which pixels, at which size, how processed and encoded.

    ``size`` is the output size before rotation; ``rotation`` is clockwise
    degrees, applied after ``mirror`` (IIIF order). ``quality`` is None for
    the encoder's default (JPEG_QUALITY etc.). ``depth`` is the output's bits
    per sample: 8, or 16 for a PNG or TIFF of a source with more than 8 bits
    (process.deep says how its values are mapped).
    """

    region: Final[Region]
    size: Final[tuple[int, int]]
    rotation: Final[float]
    mirror: Final[bool]
    color: Final[str]
    format: Final[str]
    quality: Final[int | None]
    display: Final[Display | VisiomaticDisplay]
    depth: Final[int]

    def __init__(  # the field's name: dataclasses.replace passes it by keyword
        self,
        region: Region,
        size: tuple[int, int],
        rotation: float = 0.0,
        mirror: bool = False,
        color: str = "default",
        format: str = "jpg",  # noqa: A002
        quality: int | None = None,
        display: Display | VisiomaticDisplay = IDENTITY,
        depth: int = 8,
    ) -> None:
        self.region = region
        self.size = size
        self.rotation = rotation
        self.mirror = mirror
        self.color = color
        self.format = format
        self.quality = quality
        self.display = display
        self.depth = depth


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Every setting that changes a rendering's bytes, and all the renderer reads of the configuration.

    Built once from the settings (``config.render_options``). The render
    cache key holds it whole next to the request, so an option added here is
    in the key without anyone having to remember it.
    """

    jpeg_quality: int = 75
    png_quality: int = 1
    webp_quality: int = 50
    avif_quality: int = 50  # -1 lossless, as iipsrv's AVIF_QUALITY
    interpolation: int = 1  # 0 nearest neighbour, 1 bilinear (iipsrv's INTERPOLATION)
    codec_passthrough: bool = True  # stored JPEG tiles go out as they are
