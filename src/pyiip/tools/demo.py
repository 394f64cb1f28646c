"""Demo data: a synthetic g/r/i sky as a VisiOmatic cube (made from FITS), an RGB JPEG pyramid, a FITS example.

Real survey images are large downloads with licences to track; a synthetic field with a real
WCS exercises the same paths (float cube with cuts and FITS header for VisiOmatic, YCbCr JPEG
tiles for IIIF and plain IIP) and is made in seconds. Everything is vectorised: stars are
rendered as small stamps, galaxies as stamps of a Sersic profile, the RGB image by libvips.
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pyiip.tools.atomic import replacing
from pyiip.tools.convert import convert
from pyiip.tools.progress import vips_bar

if TYPE_CHECKING:  # imported lazily by the functions that use them
    import pyvips
    from astropy.io import fits

__all__ = ["write_demo_data"]

# The COSMOS field centre, so the WCS points at a real, well-known patch of sky.
_RA, _DEC = 150.1191, 2.2058
_SCALE = 0.2 / 3600  # degrees per pixel (0.2 arcsec, a typical wide-field imager)
_BANDS = ("g", "r", "i")
_FWHM = {"g": 3.9, "r": 3.5, "i": 3.2}  # seeing in pixels: bluer is blurrier
_SKY, _NOISE, _SATURATION = 100.0, 5.0, 65000.0
_MOFFAT_BETA = 2.5
CUTOUT = 1024  # pixels a side of the FITS example kept beside the cube


@dataclass(slots=True)
class _Sky:
    """Sources shared by all bands; only their fluxes differ from band to band."""

    star_x: np.ndarray
    star_y: np.ndarray
    star_flux: np.ndarray  # r band
    star_colour: np.ndarray  # g - r in magnitudes
    gal_x: np.ndarray
    gal_y: np.ndarray
    gal_flux: np.ndarray
    gal_colour: np.ndarray
    gal_re: np.ndarray
    gal_n: np.ndarray
    gal_q: np.ndarray
    gal_pa: np.ndarray


def _catalogue(size: int, rng: np.random.Generator) -> _Sky:
    area = (size / 8192) ** 2
    nstar = max(50, int(3000 * area))
    # Power-law counts N(>F) ~ F^-1 between 150 ADU (about 2 sigma at the peak) and saturation.
    flux = np.minimum(150.0 * (1 - rng.random(nstar)) ** -1.0, 3e7)
    ngal = max(4, int(40 * area))
    n = rng.uniform(0.7, 4.5, ngal)
    re = np.exp(rng.uniform(math.log(4), math.log(40), ngal)) * min(1.0, size / 4096)
    gal_flux = np.exp(rng.uniform(math.log(2e4), math.log(1e6), ngal))
    x, y = rng.uniform(0, size, ngal), rng.uniform(0, size, ngal)
    # One big elliptical near the centre gives the eye something to zoom into.
    x[0], y[0], n[0], re[0], gal_flux[0] = size * 0.45, size * 0.55, 4.0, size / 60, 5e7 * area
    return _Sky(
        star_x=rng.uniform(0, size, nstar),
        star_y=rng.uniform(0, size, nstar),
        star_flux=flux,
        star_colour=rng.normal(0.7, 0.35, nstar),
        gal_x=x,
        gal_y=y,
        gal_flux=gal_flux,
        gal_colour=np.where(n > 2.5, 1.0, 0.4) + rng.normal(0, 0.1, ngal),
        gal_re=re,
        gal_n=n,
        gal_q=rng.uniform(0.35, 1.0, ngal),
        gal_pa=rng.uniform(0, math.pi, ngal),
    )


def _band_factor(colour: np.ndarray, band: str) -> np.ndarray:
    """Flux relative to r for a g - r colour (r - i taken as 0.4 (g - r))."""
    magnitude = {"g": colour, "r": 0 * colour, "i": -0.4 * colour}[band]
    return 10 ** (-0.4 * magnitude)


def _add(image: np.ndarray, stamp: np.ndarray, x0: int, y0: int) -> None:
    """Add a stamp whose corner is at (x0, y0), clipped to the image."""
    h, w = image.shape
    sh, sw = stamp.shape
    ya, yb, xa, xb = max(y0, 0), min(y0 + sh, h), max(x0, 0), min(x0 + sw, w)
    if ya < yb and xa < xb:
        image[ya:yb, xa:xb] += stamp[ya - y0 : yb - y0, xa - x0 : xb - x0]


def _stars(image: np.ndarray, sky: _Sky, band: str) -> None:
    """Moffat stars, rendered in batches of equal stamp size (one numpy call per batch)."""
    alpha = _FWHM[band] / (2 * math.sqrt(2 ** (1 / _MOFFAT_BETA) - 1))
    flux = sky.star_flux * _band_factor(sky.star_colour, band)
    peak = flux * (_MOFFAT_BETA - 1) / (math.pi * alpha**2)
    # Radius where the profile falls to 0.2 ADU, rounded up to a power of two to batch stamps.
    radius = alpha * np.sqrt(np.maximum((peak / 0.2) ** (1 / _MOFFAT_BETA) - 1, 1))
    bucket = np.clip(2 ** np.ceil(np.log2(np.maximum(radius, 4))), 4, 256).astype(int)
    for r in np.unique(bucket):
        index = np.flatnonzero(bucket == r)
        cx, cy = sky.star_x[index], sky.star_y[index]
        x0, y0 = np.floor(cx).astype(int) - r, np.floor(cy).astype(int) - r
        grid = np.arange(2 * r + 1, dtype=np.float32)
        dx = grid[None, None, :] - (cx - x0)[:, None, None].astype(np.float32)
        dy = grid[None, :, None] - (cy - y0)[:, None, None].astype(np.float32)
        stamps = (1 + (dx * dx + dy * dy) / np.float32(alpha**2)) ** np.float32(-_MOFFAT_BETA)
        # Truncate smoothly at radius r, so no stamp shows a square edge under harsh cuts.
        stamps -= np.float32((1 + r * r / alpha**2) ** -_MOFFAT_BETA)
        np.maximum(stamps, 0, out=stamps)
        stamps *= peak[index][:, None, None].astype(np.float32)
        for stamp, x, y in zip(stamps, x0, y0, strict=True):
            _add(image, stamp, int(x), int(y))


def _galaxies(image: np.ndarray, sky: _Sky, band: str) -> None:
    """Elliptical Sersic profiles, normalised to their total flux, slightly softened at the core."""
    flux = sky.gal_flux * _band_factor(sky.gal_colour, band)
    for i in range(len(flux)):
        n, re, q = sky.gal_n[i], sky.gal_re[i], sky.gal_q[i]
        b = 2 * n - 1 / 3 + 4 / (405 * n)
        # Surface brightness at Re from the total flux, then the radius where it drops to 0.1 ADU.
        intensity = flux[i] / (2 * math.pi * q * re * re * n * math.exp(b) * b ** (-2 * n) * math.gamma(2 * n))
        extent = re * (1 + math.log(max(intensity / 0.1, 1.0)) / b) ** n
        r = int(min(max(extent, 3 * re), image.shape[0] / 8)) + 2
        cx, cy = sky.gal_x[i], sky.gal_y[i]
        x0, y0 = int(cx) - r, int(cy) - r
        grid = np.arange(2 * r + 1, dtype=np.float32)
        dx, dy = grid[None, :] - np.float32(cx - x0), grid[:, None] - np.float32(cy - y0)
        cos, sin = math.cos(sky.gal_pa[i]), math.sin(sky.gal_pa[i])
        u, v = dx * cos + dy * sin, (dy * cos - dx * sin) / np.float32(q)
        radius = np.sqrt(u * u + v * v + np.float32(_FWHM[band] / 2) ** 2) / np.float32(re)
        stamp = np.exp(np.float32(-b) * (radius ** np.float32(1 / n) - 1))
        edge = math.exp(-b * (((r - 1) / re) ** (1 / n) - 1))  # the profile where the stamp ends
        stamp -= np.float32(edge)
        np.maximum(stamp, 0, out=stamp)
        stamp *= np.float32(flux[i] / stamp.sum())
        _add(image, stamp, x0, y0)


def _header(size: int, band: str) -> fits.Header:
    from astropy.io import fits

    header = fits.Header()
    header["OBJECT"] = ("COSMOS synthetic", "pyiip demo field (not real data)")
    header["TELESCOP"] = "pyiip"
    header["INSTRUME"] = ("synthetic", "generated by pyiip.demo")
    header["FILTER"] = (band, "filter band")
    header["EXPTIME"] = (600.0, "exposure time (s)")
    header["GAIN"] = (1.0, "e-/ADU")
    header["SATURATE"] = (_SATURATION, "saturation level (ADU)")
    header["SEEING"] = (_FWHM[band] * 0.2, "FWHM (arcsec)")
    header["BUNIT"] = "ADU"
    header["RADESYS"] = "ICRS"
    header["EQUINOX"] = 2000.0
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CUNIT1"], header["CUNIT2"] = "deg", "deg"
    header["CRVAL1"], header["CRVAL2"] = _RA, _DEC
    header["CRPIX1"], header["CRPIX2"] = size / 2 + 0.5, size / 2 + 0.5
    header["CD1_1"], header["CD1_2"] = -_SCALE, 0.0
    header["CD2_1"], header["CD2_2"] = 0.0, _SCALE
    return header


def _band(size: int, band: str, sky: _Sky, seed: int) -> np.ndarray:
    """One band's image: sky level and noise, galaxies, then stars, clipped at saturation."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((size, size), dtype=np.float32)
    image *= np.float32(_NOISE)
    image += np.float32(_SKY)
    _galaxies(image, sky, band)
    _stars(image, sky, band)
    np.minimum(image, np.float32(_SATURATION), out=image)
    return image


def _write_fits(path: Path, data: np.ndarray, header: fits.Header) -> None:
    from astropy.io import fits

    with replacing(path) as partial:
        fits.PrimaryHDU(data, header).writeto(partial)


def _cutout_header(size: int, cut: int) -> fits.Header:
    """The centre cut x cut of the field as a 3-D cube: planes labelled CHAN0001... as convert reads them."""
    header = _header(size, _BANDS[0])
    del header["FILTER"]
    offset = (size - cut) // 2
    header["CRPIX1"] -= offset
    header["CRPIX2"] -= offset
    for index, band in enumerate(_BANDS, 1):
        header[f"CHAN{index:04d}"] = (band, "filter of this plane")
    return header


def rgb_image(size: int, noise: float = 0.0) -> pyvips.Image:
    """A colourful, textured RGB image built lazily by libvips (never whole in numpy).

    The smooth colour fields are computed at 1/8 scale and enlarged, which is what keeps
    an 8192 px image to seconds; full-resolution Perlin noise adds the fine texture JPEG has to encode.
    """
    import pyvips

    small = max(16, -(-size // 8))
    xyz = pyvips.Image.xyz(small, small)
    x, y = xyz[0], xyz[1]
    k = 360.0 / small  # vips sin/cos take degrees: k * x goes once across the image
    centre = ((x - small * 0.6) ** 2 + (y - small * 0.4) ** 2) ** 0.5
    texture = pyvips.Image.perlin(small, small, cell_size=max(4, small // 32), seed=1)
    r = (x * (3 * k)).sin() * 80 + 128 + texture * 50
    g = (y * (2 * k)).cos() * 80 + 128 + (centre * (5 * k)).sin() * 40
    b = (x + y) * (200.0 / (2 * small)) + 40 + texture * 40
    base = r.bandjoin([g, b]).cast("uchar").resize(8, kernel="linear").crop(0, 0, size, size)
    fine = pyvips.Image.perlin(size, size, cell_size=max(4, size // 1024), seed=2) * 30
    if noise:  # sensor noise: what makes JPEG work as hard as on a real photograph
        fine = fine + pyvips.Image.gaussnoise(size, size, sigma=noise, mean=0, seed=3)
    return (base + fine).cast("uchar").copy(interpretation="srgb")


def _write_rgb(path: Path, size: int, progress: bool) -> None:
    image = rgb_image(size)
    with replacing(path) as partial, vips_bar(image, path.name, progress):
        image.tiffsave(str(partial), tile=True, pyramid=True, compression="jpeg", Q=85,
                       tile_width=256, tile_height=256, bigtiff=True)  # fmt: skip


def write_demo_data(directory: Path, *, size: int = 6144, progress: bool = True) -> list[Path]:
    """Write cube.tif (a g/r/i VisiOmatic cube), rgb.tif and cutout.fits; return the paths.

    The full-size FITS bands are convert's inputs only, written to a hidden temporary directory
    and removed (three 6144^2 float32 files are 450 MB, which the server would build a second
    cube of). What is kept of them is cutout.fits, the field's centre (CUTOUT pixels a side) as
    one FITS cube: the example for ``pyiip convert``, served directly too (resolve/fits_cache.py).
    The output is deterministic for a given size.
    """
    if size < 64:
        raise ValueError(f"demo size must be at least 64, not {size}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240501)
    sky = _catalogue(size, rng)
    cut = min(size, CUTOUT)
    offset = (size - cut) // 2
    planes = []
    cube, rgb, cutout = directory / "cube.tif", directory / "rgb.tif", directory / "cutout.fits"
    with tempfile.TemporaryDirectory(prefix=".demo-", dir=directory) as temporary:
        bands = [Path(temporary) / f"{band}.fits" for band in _BANDS]
        iterator = zip(_BANDS, bands, strict=True)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(list(iterator), desc="demo FITS", unit="band", file=sys.stderr)
        for seed, (band, path) in enumerate(iterator):
            image = _band(size, band, sky, seed)
            planes.append(image[offset : offset + cut, offset : offset + cut].copy())
            _write_fits(path, image, _header(size, band))
            del image
        # Uncompressed: noise-dominated floats shrink little, and raw tiles cost no decoding to serve.
        convert(bands, cube, compression="none", progress=progress)
    _write_fits(cutout, np.stack(planes), _cutout_header(size, cut))
    _write_rgb(rgb, size, progress)
    return [cube, rgb, cutout]
