"""The benchmark images, made once and cached under bench/data/ (generation takes minutes).

- ``rgb_jpeg.tif``: 10000 x 10000 RGB, 256 px tiles, JPEG Q90 (libvips writes Q >= 90 as RGB,
  no chroma subsampling, as in the iipsrv baseline), a pyramid halving down to one tile.
- ``rgb_deflate.tif``: the same pixels, deflate.
- ``cube.tif``: an 8000 x 8000 float32 astronomy image (sky, noise, stars, galaxies), written by
  ``pyiip convert`` uncompressed, with display cuts in SMin/SMaxSampleValue and the FITS header.
- ``rgb_jpeg-1.tif``... : hard links to those files under other names (no disk space), so a URL
  list can name many more distinct tiles than the caches of either server hold.
- ``rgb_lossless.jp2``, ``rgb_lossy.jp2``: the RGB pixels as JPEG 2000 (OpenJPEG through imagecodecs:
  reversible 5/3, and irreversible 9/7 at 40 dB PSNR), codestream tiles of 1024, 7 resolutions (down to
  157 px), TLM markers (tile-part lengths: a reader finds a tile without walking the ones before it);
  ``rgb_lossy.jhc``: the same lossy image as an HTJ2K codestream (OpenJPH), the same way.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RGB_SIZE = 10000
FLOAT_SIZE = 8000
TILE = 256
ALIASES = 9  # names per image: rgb_jpeg.tif, rgb_jpeg-1.tif ... rgb_jpeg-8.tif (hard links)
IMAGES = ("rgb_jpeg.tif", "rgb_deflate.tif", "cube.tif")
JPEG2000 = ("rgb_lossless.jp2", "rgb_lossy.jp2", "rgb_lossy.jhc")
JP2_TILE = 1024  # codestream tiles: a window decodes the code-blocks of the tiles it touches
JP2_RESOLUTIONS = 7


@dataclass(frozen=True, slots=True)
class Pyramid:
    """An image's identifier and its level sizes, full resolution first."""

    name: str
    levels: tuple[tuple[int, int], ...]
    tile: int = TILE

    @property
    def size(self) -> tuple[int, int]:
        return self.levels[0]

    def aliases(self, count: int) -> list[str]:
        """The identifier and ``count - 1`` of its hard-linked aliases."""
        stem, _, ext = self.name.rpartition(".")
        return [self.name] + [f"{stem}-{k}.{ext}" for k in range(1, count)]


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _rgb_source(size: int):
    """The demo's colourful, textured RGB image, with sensor noise so JPEG has work to do."""
    from pyiip.tools.demo import rgb_image

    return rgb_image(size, noise=1.5)


def _save_pyramid(image, path: Path, compression: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    options = {"Q": 90} if compression == "jpeg" else {}
    image.tiffsave(
        str(partial),
        tile=True,
        pyramid=True,
        tile_width=TILE,
        tile_height=TILE,
        compression=compression,
        bigtiff=True,
        **options,
    )
    os.replace(partial, path)


def _make_rgb(directory: Path) -> None:
    import pyvips

    source = directory / ".rgb_source.v"
    started = time.monotonic()
    _log(f"making the {RGB_SIZE} x {RGB_SIZE} RGB source (a few minutes on a busy machine)")
    _rgb_source(RGB_SIZE).write_to_file(str(source))
    try:
        image = pyvips.Image.new_from_file(str(source))
        for name, compression in (("rgb_jpeg.tif", "jpeg"), ("rgb_deflate.tif", "deflate")):
            if not (directory / name).exists():
                _log(f"writing {name}")
                _save_pyramid(image, directory / name, compression)
    finally:
        source.unlink(missing_ok=True)
    _log(f"RGB pyramids made in {time.monotonic() - started:.0f} s")


def write_cube_fits(path: Path) -> None:
    """The FITS the cube is converted from, the same every time (fixed seeds): bench/visiomatic_peer.py
    serves it to VisiOmatic v3, which reads FITS."""
    import numpy as np

    # The demo's synthetic sky (Moffat stars, Sersic galaxies, a real WCS); private helpers of the
    # same project, used for one band at the benchmark's size.
    from pyiip.tools.demo import _band, _catalogue, _header, _write_fits

    sky = _catalogue(FLOAT_SIZE, np.random.default_rng(20261123))
    _write_fits(path, _band(FLOAT_SIZE, "r", sky, 1), _header(FLOAT_SIZE, "r"))


def _make_cube(directory: Path) -> None:
    from pyiip.tools.convert import convert

    started = time.monotonic()
    fits = directory / ".cube_r.fits"
    _log(f"making the {FLOAT_SIZE} x {FLOAT_SIZE} float32 cube")
    try:
        write_cube_fits(fits)
        convert([fits], directory / "cube.tif", compression="none", progress=sys.stderr.isatty())
    finally:
        fits.unlink(missing_ok=True)
    _log(f"cube made in {time.monotonic() - started:.0f} s")


def _write_jpeg2000(pixels, path: Path) -> None:
    """HTJ2K through imagecodecs (OpenJPH); JPEG 2000 through glymur (OpenJPEG: imagecodecs writes no tiles)."""
    import glymur
    import imagecodecs

    tile = (JP2_TILE, JP2_TILE)
    if path.suffix == ".jhc":
        ht = imagecodecs.htj2k_encode(pixels, 0.01, tile=tile, resolutions=JP2_RESOLUTIONS, reversible=False, tlm=True)
        path.write_bytes(bytes(ht))
        return
    lossless = "lossless" in path.name
    options = {} if lossless else {"psnr": [40]}
    glymur.Jp2k(
        str(path), data=pixels, tilesize=tile, numres=JP2_RESOLUTIONS, irreversible=not lossless, tlm=True, **options
    )


def _make_jpeg2000(directory: Path) -> None:
    """The JPEG 2000 and HTJ2K files, from the full-resolution pixels of rgb_deflate.tif."""
    import tifffile

    started = time.monotonic()
    pixels = tifffile.imread(directory / "rgb_deflate.tif", key=0)
    for name in JPEG2000:
        if not (directory / name).exists():
            _log(f"writing {name}")
            partial = directory / f".{name}.partial{Path(name).suffix}"  # glymur writes what the suffix says
            _write_jpeg2000(pixels, partial)
            os.replace(partial, directory / name)
    _log(f"JPEG 2000 files made in {time.monotonic() - started:.0f} s")


def jpeg2000_levels(width: int, height: int) -> tuple[tuple[int, int], ...]:
    """A codestream's resolutions as pyiip serves them: ceil(W / 2^r) wide, the largest first."""
    return tuple((-(-width // 2**r), -(-height // 2**r)) for r in range(JP2_RESOLUTIONS))


def levels_of(path: Path) -> tuple[tuple[int, int], ...]:
    """(width, height) of each tiled page, largest first: the pyramid as both servers read it."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        sizes = [(p.imagewidth, p.imagelength) for p in tif.pages if p.is_tiled]
    return tuple(sorted(sizes, reverse=True))


def ensure(directory: Path) -> dict[str, Pyramid]:
    """Make what is missing under ``directory`` and return the pyramids by file name."""
    directory.mkdir(parents=True, exist_ok=True)
    if not all((directory / n).exists() for n in ("rgb_jpeg.tif", "rgb_deflate.tif")):
        _make_rgb(directory)
    if not (directory / "cube.tif").exists():
        _make_cube(directory)
    if not all((directory / n).exists() for n in JPEG2000):
        _make_jpeg2000(directory)
    pyramids = {name: Pyramid(name, jpeg2000_levels(RGB_SIZE, RGB_SIZE)) for name in JPEG2000}
    for name in IMAGES:
        pyramid = Pyramid(name, levels_of(directory / name))
        for link in pyramid.aliases(ALIASES)[1:]:
            target = directory / link
            if not target.exists() or not os.path.samefile(target, directory / name):
                target.unlink(missing_ok=True)
                os.link(directory / name, target)
        pyramids[name] = pyramid
    return pyramids


if __name__ == "__main__":
    for pyramid in ensure(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "data")).values():
        print(pyramid.name, pyramid.levels)
