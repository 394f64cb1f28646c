"""VisiOmatic v3's display formulas: raw samples to 8-bit pixels as its own server computes them.

Per channel, v = (sample - min) * contrast / (max - min) + 0.01 * contrast * brightness,
a NaN sample counting as min (and an infinite one as the largest float32), so
brightness is an offset after the scaling and contrast acts before the gamma.
Mono mode (CHAN) takes one channel; colour mode mixes every channel into red,
green and blue with the MIX weights (interpolated over the channels, times
3 / channels: ``mix_matrix``). Then v is clipped to 0..1, raised to 1 / GAM
(GAM is a display gamma: the inverse of IIP's), scaled by 255.49 and
truncated; INV takes 255 minus the level, and in mono mode a colour map
(OpenCV's, ``opencv_colormaps``) turns the level into RGB.

As the v3 server: the arithmetic is float32; a channel whose max <= min
scales by 1e30 in mono mode and by contrast / 1e30 in colour mode; without
MIX every channel has weight 1. Unlike it, MINMAX and MIX of one request
never change the defaults of the next (the v3 server keeps them in the
image object it shares between requests), and a mono channel's MINMAX is
found wherever it stands in the query (v3 reads only the first MINMAX).
This is a separate module from ``display`` (iipsrv-astro's pipeline), whose
formulas differ at every step.
"""

from __future__ import annotations

import numpy as np

from pyiip.model import VisiomaticDisplay
from pyiip.process.opencv_colormaps import TABLES

MAXFAC = 1.0e30  # the v3 server's factor for a degenerate range
LEVELS = 255.49


def mix_matrix(channels: int, mix: tuple[tuple[int, float, float, float], ...]) -> tuple[tuple[float, ...], ...]:
    """The 3 x channels weights of colour mode from MIX entries (1-based channel, red, green, blue).

    Each colour's weights are interpolated linearly between the channels named (constant beyond the
    first and last), then multiplied by 3 / channels, in float32; no MIX gives every weight 1.
    """
    if not mix:
        return tuple((1.0,) * channels for _ in range(3))
    entries = sorted(mix, key=lambda entry: entry[0])
    where = [entry[0] - 1 for entry in entries]
    index = np.arange(channels, dtype=np.float64)
    rows = []
    for colour in range(3):
        weights = [np.float32(entry[colour + 1]) for entry in entries]
        row = np.interp(index, where, weights) * 3 / channels
        rows.append(tuple(row.astype(np.float32).tolist()))
    return tuple(rows)


def _cuts(defaults: np.ndarray, channels: int, overrides: tuple[tuple[int, float, float], ...]) -> list[list[float]]:
    rows = np.asarray(defaults, dtype=np.float64).reshape(-1, 2)[:channels].tolist()
    rows += [[0.0, 1.0]] * (channels - len(rows))
    for channel, low, high in overrides:
        if 0 <= channel < channels:
            rows[channel] = [low, high]
    return rows


def _scaled(plane: np.ndarray, low: float, factor: float, offset: float, out: np.ndarray) -> np.ndarray:
    """out = nan_to_num(plane - low) * factor + offset, in float32 (call under np.errstate)."""
    np.subtract(plane, np.float32(low), out=out, casting="unsafe")
    np.nan_to_num(out, copy=False, nan=0.0)
    out *= np.float32(factor)
    out += np.float32(offset)
    return out


def _levels(values: np.ndarray, inverse_gamma: float, invert: bool) -> np.ndarray:
    """uint8(255.49 * clip(values, 0, 1) ** inverse_gamma), inverted if asked; ``values`` is overwritten."""
    np.clip(values, np.float32(0.0), np.float32(1.0), out=values)
    if inverse_gamma != 1.0:
        np.power(values, np.float32(inverse_gamma), out=values)
    values *= np.float32(LEVELS)
    levels = values.astype(np.uint8)
    if invert:
        np.subtract(np.uint8(255), levels, out=levels)
    return levels


def apply(data: np.ndarray, defaults: np.ndarray, display: VisiomaticDisplay) -> np.ndarray:
    """Raw (h, w, c) samples of any real type to C-contiguous (h, w, 1) grey or (h, w, 3) RGB uint8.

    ``defaults`` holds the image's (c, 2) display cuts; ``display.minmax`` overrides them.
    """
    if data.ndim == 2:
        data = data[:, :, None]
    h, w, channels = data.shape
    cuts = _cuts(defaults, channels, display.minmax)
    contrast = display.contrast
    offset = 0.01 * contrast * display.brightness
    inverse = 1.0 / display.gamma if display.gamma > 0.01 else 0.01
    with np.errstate(all="ignore"):
        if display.channel is not None:
            channel = display.channel
            low, high = cuts[channel]
            factor = contrast / (high - low) if high - low > 0 else MAXFAC
            plane = _scaled(data[:, :, channel], low, factor, offset, np.empty((h, w), np.float32))
            levels = _levels(plane, inverse, display.invert)
            table = TABLES.get(display.colormap)
            return levels[:, :, None] if table is None else np.take(table, levels, axis=0)
        planes = np.empty((channels, h * w), np.float32)
        for channel, (low, high) in enumerate(cuts):
            factor = contrast / (high - low if high - low > 0 else MAXFAC)
            _scaled(data[:, :, channel], low, factor, offset, planes[channel].reshape(h, w))
        weights = np.asarray(display.mix, dtype=np.float32).reshape(3, channels)
        rgb = _levels(weights @ planes, inverse, display.invert)
    return np.ascontiguousarray(rgb.T).reshape(h, w, 3)
