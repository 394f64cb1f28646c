"""Test images made on the fly: small pyramids with known pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyvips
import tifffile


def rgb_pattern(width: int, height: int, seed: int = 1) -> np.ndarray:
    """Smooth colour gradients with mild texture: realistic for JPEG, easy to compare."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 127 + 100 * np.sin(x / 97.0)
    g = 127 + 100 * np.cos(y / 61.0)
    b = (x + y) / (width + height) * 255
    noise = rng.normal(0, 3, (height, width, 3))
    return np.clip(np.dstack([r, g, b]) + noise, 0, 255).astype(np.uint8)


def levels_of(data: np.ndarray, tile: int) -> list[np.ndarray]:
    """Floor-halved levels by decimation, down to one tile."""
    levels = [data]
    while max(levels[-1].shape[:2]) > tile:
        prev = levels[-1]
        h, w = prev.shape[0] // 2, prev.shape[1] // 2
        levels.append(np.ascontiguousarray(prev[: h * 2 : 2, : w * 2 : 2]))
    return levels


def write_tifffile_pyramid(
    path: Path,
    data: np.ndarray,
    *,
    tile: int = 256,
    compression: str | None = None,
    subifds: bool = False,
    smin: list[float] | None = None,
    smax: list[float] | None = None,
    description: str | None = None,
) -> list[np.ndarray]:
    """A pyramid written with tifffile, as an IFD chain or as SubIFDs; returns the levels."""
    levels = levels_of(data, tile)
    channels = data.shape[2] if data.ndim == 3 else 1
    extratags = []
    if smin is not None:
        extratags.append((340, "d", channels, smin, True))
    if smax is not None:
        extratags.append((341, "d", channels, smax, True))
    photometric = "rgb" if channels == 3 and data.dtype == np.uint8 else "minisblack"
    options = dict(
        tile=(tile, tile),
        compression=compression,
        photometric=photometric,
        planarconfig="contig" if channels > 1 else None,
    )

    def plane(level: np.ndarray) -> np.ndarray:
        return level[:, :, 0] if level.ndim == 3 and channels == 1 else level

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(
            plane(levels[0]),
            subifds=len(levels) - 1 if subifds else None,
            description=description,
            extratags=extratags,
            metadata=None,
            **options,
        )
        for level in levels[1:]:
            tif.write(plane(level), subfiletype=1, metadata=None, **options)
    return levels


def write_vips_pyramid(path: Path, data: np.ndarray, *, compression: str = "jpeg", quality: int = 85, **kw) -> None:
    """A pyramid as libvips writes it (reduced levels are floor-halved by averaging)."""
    pyvips.Image.new_from_array(data).tiffsave(
        str(path),
        tile=True,
        pyramid=True,
        tile_width=256,
        tile_height=256,
        compression=compression,
        Q=quality,
        bigtiff=True,
        **kw,
    )
