"""VisiOmatic v3's ``INFO`` reply: the v3 server's TiledModel, for any image pyiip serves.

The v3 client reads the pyramid (full_size, tile_size, tile_levels), the
channels, the display defaults it sends back only when the user changes them,
each channel's display cuts (images[0].min_max) and the FITS header (its
WCS). The v3 server builds these from the FITS file; here they come from the
served raster: the header from the cube's 80-character cards, the cuts from
the image's own display range (its SMin/SMaxSampleValue, as IIP's
Min-Max-sample-values), and the background level and MAD (the client can
subtract the level from pixel values) from nine full-resolution tiles spread
over the image, read once per reply.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

from pyiip.parse import visiomatic as grammar
from pyiip.read.image import OpenImage

FORMAT_VERSION = "3.0"


def _json_value(value: Any) -> Any:
    """A header value as JSON: booleans, numbers and strings as they are, anything else (blank, complex) as text."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None if value is None or str(value) == "" else str(value)


def header(image: OpenImage) -> dict[str, Any]:
    """The FITS header of the image description as a keyword -> value dict; empty when there is none."""
    text = image.info.metadata.get("description", "")
    if not text.startswith(("SIMPLE  =", "XTENSION=")):
        return {}  # not FITS cards (a TIFF's own description)
    text = text.ljust(-(-len(text) // 80) * 80)  # the last card's trailing blanks may be gone
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-standard cards are read as they are
        try:
            cards = fits.Header.fromstring(text)
        except (ValueError, IndexError):
            return {}
        return {key: _json_value(value) for key, value in cards.items() if key}


def _sky_samples(image: OpenImage) -> np.ndarray:
    """Every other pixel of up to 3 x 3 full-resolution tiles spread over the image, as (n, channels) floats."""
    meta = image.info
    level = meta.levels[0]
    cols = sorted({round(i * (level.tiles_across - 1) / 2) for i in range(3)})
    rows = sorted({round(i * (level.tiles_down - 1) / 2) for i in range(3)})
    parts = [image.source.read(0, *level.tile_rect(col, row))[::2, ::2] for row in rows for col in cols]
    return np.concatenate([part.reshape(-1, meta.channels) for part in parts]).astype(np.float64)


def background(image: OpenImage) -> tuple[list[float], list[float]]:
    """Each channel's background level and median absolute deviation, from full-resolution samples.

    Pixels further than 3 MADs from the median are dropped, once; the level is the mode estimate
    3.5 median - 2.5 mean of what remains, as astronomers estimate a sky background.
    """
    data = _sky_samples(image)
    levels, mads = [], []
    for channel in range(image.info.channels):
        values = data[:, channel]
        values = values[np.isfinite(values)]
        if not values.size:
            levels.append(0.0)
            mads.append(0.0)
            continue
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        kept = values[np.abs(values - median) <= 3 * mad] if mad > 0 else values
        median = float(np.median(kept))
        levels.append(3.5 * median - 2.5 * float(kept.mean()))
        mads.append(float(np.median(np.abs(kept - median))))
    return levels, mads


def info(image: OpenImage, identifier: str, quality: int) -> dict[str, Any]:
    """The INFO reply's fields, in the v3 server's order; ``quality`` is the server's JPEG quality."""
    meta = image.info
    fits_header = header(image)
    width, height = meta.width, meta.height
    tile = meta.tile_size[0]
    levels, mads = background(image)
    cuts = [[_json_value(float(low)), _json_value(float(high))] for low, high in image.minmax.tolist()]
    return {
        "type": "visiomatic",
        "version": FORMAT_VERSION,
        "image_name": os.path.basename(identifier),
        "object_name": str(fits_header.get("OBJECT", "")),
        "full_size": [width, height],
        "tile_size": [tile, tile],
        "tile_levels": len(meta.levels),
        "channels": meta.channels,
        "bits_per_channel": meta.bits,
        "brightness": grammar.BRIGHTNESS,
        "contrast": grammar.CONTRAST,
        "color_saturation": grammar.COLOR_SATURATION,
        "gamma": grammar.GAMMA,
        "quality": quality,
        "header": fits_header,
        "images": [
            {
                "size": [width, height, meta.channels],
                "dataslice": [[1, width, 1], [1, height, 1]],
                "detslice": [[1, width, 1], [1, height, 1]],
                "background_level": levels,
                "background_mad": mads,
                "min_max": cuts,
                "header": fits_header,
            }
        ],
    }
