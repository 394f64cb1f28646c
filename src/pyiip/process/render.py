"""From a bound request to encoded bytes: read, resample, process, orient, encode.

Executes the plan ``process.bind`` chose, and reads no configuration: the
settings that change bytes come in one ``RenderOptions`` value, which is also
part of the render cache key. Knows nothing of protocols: a tile request is simply a region that
coincides with one stored tile, which is what lets stored JPEG tiles be sent
without decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyvips

from pyiip.encode.encoders import MIME, encode
from pyiip.errors import BadRequest, HTTPError, TooLarge
from pyiip.model import Display, ImageRequest, RenderOptions, VisiomaticDisplay
from pyiip.process import deep, display_v3
from pyiip.process.bind import Bound, Plan
from pyiip.process.display import apply_display, needs_processing
from pyiip.read.image import OpenImage
from pyiip.read.source import ImageInfo

_VIPS_FORMAT = {
    np.dtype(np.uint8): "uchar",
    np.dtype(np.int8): "char",
    np.dtype(np.uint16): "ushort",
    np.dtype(np.int16): "short",
    np.dtype(np.uint32): "uint",
    np.dtype(np.int32): "int",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}


@dataclass(frozen=True, slots=True)
class Rendered:
    """Encoded bytes, their Content-Type and ETag ("" until a cache or the stored tile's place names one)."""

    body: bytes
    mime: str
    etag: str = ""


def _resize(pixels: np.ndarray, width: int, height: int, nearest: bool) -> np.ndarray:
    """Resample to exactly width x height with libvips (shrink then reduce: good and fast)."""
    h, w, bands = pixels.shape
    if (w, h) == (width, height):
        return pixels
    fmt = _VIPS_FORMAT.get(pixels.dtype)
    if fmt is None:
        pixels, fmt = pixels.astype(np.float32), "float"
    pixels = np.ascontiguousarray(pixels)
    image = pyvips.Image.new_from_memory(pixels.data, w, h, bands, fmt)
    # Levels are chosen so the scale stays within (0.5, 1] when reducing: bilinear (iipsrv's
    # INTERPOLATION=1) is enough there and several times cheaper than Lanczos on float cubes.
    kernel = "nearest" if nearest else "linear"
    image = image.resize(width / w, vscale=height / h, kernel=kernel)
    if (image.width, image.height) != (width, height):
        image = image.gravity("north-west", width, height, extend="copy")
    out = image.numpy()
    return out.reshape(height, width, bands)


# Output formats with an alpha channel: arbitrary rotations get a transparent background there.
_ALPHA_FORMATS = ("png", "webp", "tif", "gif", "avif")


def _orient(pixels: np.ndarray, mirror: bool, rotation: float, transparent: bool = False) -> np.ndarray:
    """Mirror, then rotate clockwise (libvips ``rotate`` turns clockwise, as IIIF wants).

    Arbitrary angles enlarge the canvas to the rotated bounding box; the corners
    are transparent when the format has alpha (IIIF's recommendation), else white.
    """
    if mirror:
        pixels = pixels[:, ::-1]
    turns = rotation / 90.0
    if turns == int(turns):
        k = int(turns) % 4
        return np.rot90(pixels, k=-k) if k else pixels
    bands, top = pixels.shape[2], np.iinfo(pixels.dtype).max  # uint8, or uint16 for 16-bit output
    if transparent and bands in (1, 3):
        opaque = np.full((*pixels.shape[:2], 1), top, dtype=pixels.dtype)
        pixels, bands = np.concatenate([pixels, opaque], axis=2), bands + 1
    background = [0] * bands if transparent and bands in (2, 4) else [top] * bands
    image = pyvips.Image.new_from_array(np.ascontiguousarray(pixels))
    rotated = image.rotate(rotation, background=background)
    return rotated.numpy().reshape(rotated.height, rotated.width, bands).astype(pixels.dtype)


def _gray(pixels: np.ndarray) -> np.ndarray:
    if pixels.shape[2] < 3:
        return pixels[:, :, :1]
    rgb = pixels[:, :, :3].astype(np.uint32)
    # iipsrv's integer luma weights (0.299, 0.587, 0.114 in 22-bit fixed point).
    grey = (1254097 * rgb[:, :, 0] + 2462056 * rgb[:, :, 1] + 478151 * rgb[:, :, 2]) >> 22
    return grey.astype(np.uint8)[:, :, None]


def _color(pixels: np.ndarray, color: str) -> np.ndarray:
    if color == "gray":
        return _gray(pixels)
    if color == "bitonal":
        return np.where(_gray(pixels) > 127, 255, 0).astype(np.uint8)
    if color == "color" and pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return pixels


# The largest side each encoder can write (MAX_CVT=-1 or a scroll image can ask for more).
_MAX_SIDE = {"jpg": 65500, "webp": 16383, "gif": 65535, "png": (1 << 31) - 1, "tif": (1 << 31) - 1, "avif": 65536}


def rotated_size(width: int, height: int, rotation: float) -> tuple[int, int]:
    """Output size after a clockwise rotation: swapped by 90 and 270, the bounding box otherwise."""
    if rotation % 180 == 0:
        return width, height
    if rotation % 90 == 0:
        return height, width
    angle = math.radians(rotation)
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    return math.ceil(width * cos + height * sin), math.ceil(width * sin + height * cos)


# How libvips, libjpeg, libpng, libwebp and imagecodecs word a failed allocation.
_OUT_OF_MEMORY = ("out of memory", "out_of_memory", "cannot allocate", "memory allocation failed")
# Encoder working memory per output pixel (measured on RGB; GIF quantises through libvips).
_ENCODE_BYTES = {"jpg": 4, "png": 9, "webp": 20, "tif": 6, "gif": 32, "avif": 16}


def read_overhead(source: object, level: int, w: int, h: int) -> int:
    """Bytes a source needs beyond the (h, w, c) array it returns (decoded tiles, decode buffers)."""
    method = getattr(source, "read_overhead", None)
    return int(method(level, w, h)) if method is not None else w * h * 8


def memory_estimate(info: ImageInfo, chosen: Plan, request: ImageRequest, overhead: int) -> int:
    """Peak bytes of one render: the largest stage, each counted with the arrays it holds.

    Coefficients are measured (peak RSS of real requests, tests/test_limits.py
    checks they stay above it): resampling holds the read pixels, a contiguous
    copy and libvips' result twice; the display pipeline works in float
    planes; orientation and the encoders hold a few RGBA copies of the output.
    """
    channels, item = info.channels, info.dtype.itemsize
    out_w, out_h = request.size
    out_px = out_w * out_h
    raw = chosen.w * chosen.h * channels * item
    work_item = item if info.dtype in _VIPS_FORMAT else 4
    resized = out_px * channels * work_item
    stages = [raw + overhead]
    if (chosen.w, chosen.h) != (out_w, out_h):
        stages.append(2 * raw + 3 * resized)
    display = request.display
    if isinstance(display, VisiomaticDisplay) or needs_processing(info.dtype, display):
        if isinstance(display, Display):
            rows = len(display.twist) if display.twist else 0
            planes = min(3, channels) + (2 if rows > 3 or channels > 3 else 0)
        else:  # VisiOmatic v3's colour mode: a float32 plane per channel, and the mix's three
            planes = channels + 2
        stages.append(resized + out_px * (16 + 8 * planes))
    post = min(channels, 4) * request.depth // 8  # the processed uint8 (or uint16) pixels
    if request.color in ("gray", "bitonal") and (channels >= 3 or display.colormap):
        post += 28  # integer luma in uint32 temporaries
    turned = 1
    if request.rotation % 90:
        turned = 2  # an arbitrary angle enlarges the canvas up to twice, with an alpha band
        post += 24
    elif request.rotation or request.mirror:
        post += 4  # the contiguous copy the encoder makes of a rotated view
    post += _ENCODE_BYTES.get(request.format, 32) * turned
    stages.append(out_px * post)
    return max(stages)


class Renderer:
    """Renders bound requests with fixed options, under a per-request memory budget."""

    def __init__(self, options: RenderOptions, budget: int) -> None:
        self.options = options
        self.budget = budget  # bytes: MAX_REQUEST_MEMORY

    def quality(self, request: ImageRequest) -> int:
        if request.quality is not None:
            return request.quality
        options = self.options
        return {"jpg": options.jpeg_quality, "webp": options.webp_quality, "avif": options.avif_quality}.get(
            request.format, 100
        )

    def passthrough(self, image: OpenImage, request: ImageRequest) -> bytes | None:
        """The stored JPEG tile, when the request is exactly that tile unchanged."""
        region = request.region
        levels = image.info.levels
        if not (
            self.options.codec_passthrough
            and request.format == "jpg"
            and request.quality is None
            and request.rotation == 0
            and not request.mirror
            and request.color in ("default", "color")
            and request.size == (region.w, region.h)
            and 0 <= region.level < len(levels)
            and isinstance(request.display, Display)
            and not needs_processing(image.info.dtype, request.display)
        ):
            return None
        lv = levels[region.level]
        if region.x % lv.tile_width or region.y % lv.tile_height:
            return None
        col, row = region.x // lv.tile_width, region.y // lv.tile_height
        if col >= lv.tiles_across or row >= lv.tiles_down:
            return None
        if lv.tile_rect(col, row) != (region.x, region.y, region.w, region.h):
            return None
        if request.color == "color" and image.info.channels == 1:
            return None
        return image.source.stored_jpeg(region.level, col, row)

    def check_limits(self, image: OpenImage, request: ImageRequest, chosen: Plan) -> None:
        """Refuse, before reading a pixel, what would exceed the per-request memory budget.

        Output-size limits (MAX_CVT, IIIF maxWidth) are applied when the request
        is bound (``process.bind``), since each protocol answers them differently.
        """
        out_w, out_h = request.size
        if out_w <= 0 or out_h <= 0:
            raise BadRequest("output size must be positive")
        if request.depth != 8:
            deep.check(image.info, request)
        side = _MAX_SIDE.get(request.format)
        if side is not None and max(rotated_size(out_w, out_h, request.rotation)) > side:
            raise BadRequest(f"{request.format.upper()} images are at most {side} pixels a side")
        overhead = read_overhead(image.source, chosen.level, chosen.w, chosen.h)
        if memory_estimate(image.info, chosen, request, overhead) > self.budget:
            raise TooLarge("request needs more memory than MAX_REQUEST_MEMORY allows")

    def check_read(self, image: OpenImage, level: int, w: int, h: int, per_value: int = 0) -> None:
        """The budget check of a raw read (PFL): the pixels, the reader's working memory, ``per_value`` bytes each."""
        info = image.info
        values = w * h * info.channels
        needed = values * (info.dtype.itemsize + per_value) + read_overhead(image.source, level, w, h)
        if needed > self.budget:
            raise TooLarge("request needs more memory than MAX_REQUEST_MEMORY allows")

    def render(self, image: OpenImage, bound: Bound) -> Rendered:
        """The stored JPEG tile when it can go as it is, else the pixels drawn and encoded."""
        stored = self.passthrough(image, bound.request)
        if stored is not None:
            return Rendered(stored, MIME["jpg"])
        return self.draw(image, bound)

    def draw(self, image: OpenImage, bound: Bound) -> Rendered:
        """Read, resample, process, orient and encode: the work a cache saves."""
        request, chosen = bound.request, bound.plan
        self.check_limits(image, request, chosen)
        try:
            pixels = image.source.read(chosen.level, chosen.x, chosen.y, chosen.w, chosen.h)
            out_w, out_h = request.size
            pixels = _resize(pixels, out_w, out_h, nearest=self.options.interpolation == 0)
            display = request.display
            chroma = "420"
            if isinstance(display, VisiomaticDisplay):
                pixels = display_v3.apply(pixels, image.minmax, display)
                chroma = "444"  # as VisiOmatic v3's server: colour maps and mixes of noise keep their hues
            elif request.depth == 16:
                pixels = deep.samples(pixels, image.minmax, display)
            elif needs_processing(pixels.dtype, display):
                pixels = apply_display(pixels, image.minmax, display)
            pixels = _color(pixels, request.color)
            pixels = _orient(pixels, request.mirror, request.rotation, request.format in _ALPHA_FORMATS)
            quality = self.quality(request)
            body = encode(pixels, request.format, quality, png_level=self.options.png_quality, chroma=chroma)
        except (HTTPError, MemoryError):
            raise
        except Exception as exc:
            # libvips and the codecs report a failed allocation (MAX_PROCESS_MEMORY) in their own errors.
            if any(sign in str(exc).lower() for sign in _OUT_OF_MEMORY):
                raise MemoryError(str(exc)) from exc
            raise
        return Rendered(body, MIME[request.format])
