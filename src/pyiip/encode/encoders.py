"""Encoders from pixel arrays to the output formats.

JPEG goes through simplejpeg (libjpeg-turbo); PNG, WebP and AVIF through
imagecodecs; TIFF through tifffile; GIF through libvips. All work on in-memory arrays, no files.
Arrays are uint8, or uint16 for PNG and TIFF (16-bit output, model.DEEP_FORMATS).
"""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pyvips
import simplejpeg
import tifffile

from pyiip.errors import UnsupportedFormat

MIME = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "tif": "image/tiff",
    "gif": "image/gif",
    "avif": "image/avif",
}


def _contiguous(pixels: np.ndarray) -> np.ndarray:
    """A C-ordered array with positive strides: numpy calls a mirrored one-pixel-wide view contiguous
    (its negative stride is on a length-1 axis), which the codecs then refuse."""
    if pixels.flags.c_contiguous and min(pixels.strides, default=0) >= 0:
        return pixels
    return np.array(pixels, order="C", copy=True)


def _flatten(pixels: np.ndarray, keep_alpha: bool) -> np.ndarray:
    """Keep 1 or 3 channels (2 or 4 with alpha where the format has it), as iipsrv does."""
    channels = pixels.shape[2]
    if channels in (1, 3) or (keep_alpha and channels in (2, 4)):
        return pixels
    if channels == 2:
        return pixels[:, :, :1]
    return pixels[:, :, :3]


def encode(pixels: np.ndarray, fmt: str, quality: int, *, png_level: int = 1, chroma: str = "420") -> bytes:
    """Encode an (h, w, c) uint8 array (uint16 for PNG and TIFF); ``quality`` is the format's 0-100 quality,
    -1 lossless for WebP and AVIF; ``chroma`` the JPEG colour subsampling ("420", or "444" for none)."""
    if fmt == "jpg":
        pixels = _contiguous(_flatten(pixels, keep_alpha=False))
        gray = pixels.shape[2] == 1
        return simplejpeg.encode_jpeg(
            pixels,
            quality=max(1, min(100, quality)),
            colorspace="GRAY" if gray else "RGB",
            colorsubsampling="Gray" if gray else chroma,
        )
    if fmt == "png":
        pixels = _contiguous(_flatten(pixels, keep_alpha=True))
        # imagecodecs' stubs say bytes | bytearray: a bytearray comes back only when passed as out=.
        return imagecodecs.png_encode(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, level=png_level)  # type: ignore[return-value]
    if fmt == "webp":
        pixels = _flatten(pixels, keep_alpha=True)
        if pixels.shape[2] < 3:  # libwebp takes RGB(A) only
            pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
        lossless = quality < 0
        level = 100 if lossless else quality
        # As png_encode: bytes unless given out=.
        return imagecodecs.webp_encode(_contiguous(pixels), level=level, lossless=lossless)  # type: ignore[return-value]
    if fmt == "tif":
        pixels = _flatten(pixels, keep_alpha=True)
        buffer = io.BytesIO()
        photometric = "minisblack" if pixels.shape[2] < 3 else "rgb"
        tifffile.imwrite(
            buffer,
            pixels[:, :, 0] if pixels.shape[2] == 1 else pixels,
            photometric=photometric,
            compression="deflate",
            extrasamples=("unassalpha",) if pixels.shape[2] in (2, 4) else None,
        )
        return buffer.getvalue()
    if fmt == "avif":
        return _avif(_contiguous(_flatten(pixels, keep_alpha=True)), quality)
    if fmt == "gif":
        # libvips quantises to a 256-colour palette (cgif), keeping alpha as transparency.
        pixels = _contiguous(_flatten(pixels, keep_alpha=True))
        return pyvips.Image.new_from_array(pixels).gifsave_buffer()
    raise UnsupportedFormat(f"unsupported output format {fmt!r}")


def _avif(pixels: np.ndarray, quality: int) -> bytes:
    """As iipsrv's AVIFCompressor: the fastest speed, 4:2:0 (4:4:4 when lossless, 4:0:0 for grey)."""
    lossless = quality < 0
    if pixels.shape[2] < 3:  # libavif takes grey without alpha only
        pixels, layout = pixels[:, :, 0], imagecodecs.AVIF.PIXEL_FORMAT.YUV400
    else:
        layout = imagecodecs.AVIF.PIXEL_FORMAT.YUV444 if lossless else imagecodecs.AVIF.PIXEL_FORMAT.YUV420
    level = imagecodecs.AVIF.QUALITY.LOSSLESS if lossless else quality
    # As png_encode: bytes unless given out=.
    return imagecodecs.avif_encode(  # type: ignore[return-value]
        pixels, level=level, speed=imagecodecs.AVIF.SPEED.FASTEST, pixelformat=layout, numthreads=1
    )
