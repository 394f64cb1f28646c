"""16-bit output: source samples onto 0..65535 for a PNG or TIFF (``ImageRequest.depth == 16``).

Scientific users want the data, not a display of it: a 16-bit pyramid goes
out with its stored values, and every other type with more than 8 bits
(16-bit signed, 32-bit integers, float cubes) is MINMAX-normalised, the way
the display pipeline starts: ``(v - min) / (max - min)`` per channel, with
the request's MINMAX overrides over the image's range (the same one a JPEG
of it uses), clipped to 0..1, times 65535, rounded; NaN gives 0. A uint16
image with a MINMAX in the request is normalised the same way. The other
display parameters (colour maps, gamma, contrast...) make 8-bit pictures:
they are refused here, as are the colour conversions of the 8-bit path.
"""

from __future__ import annotations

import numpy as np

from pyiip.errors import BadRequest
from pyiip.model import DEEP_FORMATS, Display, ImageRequest
from pyiip.process.display import effective_minmax
from pyiip.read.source import ImageInfo

_TOP = 65535.0
_DEGENERATE = 1e-30  # iipsrv's rule for an empty range: scale by 1e30 instead


def check(info: ImageInfo, request: ImageRequest) -> None:
    """Refuse a 16-bit request the image or the format cannot honour (a 400, before any read)."""
    if request.format not in DEEP_FORMATS:
        raise BadRequest(f"16-bit output is {' or '.join(DEEP_FORMATS)}, not {request.format}")
    if info.bits <= 8 and not info.is_float:
        raise BadRequest("16-bit output needs an image with more than 8 bits per sample")
    if request.color not in ("default", "color"):
        raise BadRequest("16-bit output keeps the image's colours: no gray or bitonal")
    display = request.display
    if Display(minmax=display.minmax) != display:
        raise BadRequest("16-bit output takes MINMAX only of the display parameters")


def samples(pixels: np.ndarray, minmax: np.ndarray, display: Display) -> np.ndarray:
    """(h, w, c) uint16: ``pixels`` as stored when they are uint16 and no MINMAX is asked, else normalised."""
    if pixels.dtype == np.uint16 and not display.minmax:
        return pixels
    channels = pixels.shape[2]
    lohi = np.array(effective_minmax(minmax, pixels.dtype, channels, display), dtype=np.float64)
    low, span = lohi[:, 0], lohi[:, 1] - lohi[:, 0]
    scale = np.where(np.abs(span) > _DEGENERATE, _TOP / np.where(span == 0, 1, span), _TOP / _DEGENERATE)
    values = pixels.astype(np.float64)  # one working copy, changed in place: a float cube's CVT is large
    values -= low
    values *= scale
    np.clip(np.nan_to_num(values, copy=False, nan=0.0), 0.0, _TOP, out=values)
    return np.rint(values, out=values).astype(np.uint16)
