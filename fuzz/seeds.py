"""Shared by the fuzz targets: a small image root, seed requests, seed TIFFs and JPEG 2000 files, and the
checks a reader must pass on a mutated file.

Everything is generated (a few hundred kilobytes), so the targets need no
data set and run the same on any machine.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import tifffile

IMAGES = ("rgb.tif", "cube.tif", "tall.tif", "flat.png")
BUDGET = 64 << 20  # the memory check reads go through here (the server's, with a small MAX_REQUEST_MEMORY)


class MemoryBytes:
    """A ByteSource over bytes in memory."""

    def __init__(self, data: bytes) -> None:
        self.name, self.size, self._data = "fuzz", len(data), data

    def pread(self, count: int, offset: int) -> bytes:
        return self._data[offset : offset + count]

    def close(self) -> None:
        pass


def check_source(source, source_error: type[Exception]) -> None:
    """What an opened mutation must survive: a corner of every level read (within BUDGET, else the server
    would answer 413) gives the declared shape or ``source_error``, and so does asking for a stored JPEG."""
    try:
        info = source.info
        if not info.levels or info.channels < 1:
            raise AssertionError("opened without levels or channels")
        for level, lv in enumerate(info.levels):
            w, h = min(lv.width, 64), min(lv.height, 64)
            if w * h * info.channels * info.dtype.itemsize + source.read_overhead(level, w, h) > BUDGET:
                continue
            try:
                pixels = source.read(level, 0, 0, w, h)
                if pixels.shape != (h, w, info.channels):
                    raise AssertionError(f"read {pixels.shape}, wanted {(h, w, info.channels)}")
                source.stored_jpeg(level, 0, 0)
            except source_error:
                pass
    finally:
        source.close()


def _levels(data: np.ndarray, tile: int = 64) -> list[np.ndarray]:
    levels = [data]
    while max(levels[-1].shape[:2]) > tile:
        levels.append(np.ascontiguousarray(levels[-1][::2, ::2]))
    return levels


def pyramid_bytes(data: np.ndarray, *, compression: str | None = None, subifds: bool = False, **kw) -> bytes:
    """A small tiled pyramid (64-pixel tiles) as bytes."""
    levels = _levels(data)
    buffer = io.BytesIO()
    channels = data.shape[2] if data.ndim == 3 else 1
    options = dict(tile=(64, 64), compression=compression, metadata=None, **kw)
    if channels == 3 and data.dtype == np.uint8:
        options["photometric"] = "rgb"
    else:
        options["photometric"] = "minisblack"
    with tifffile.TiffWriter(buffer, bigtiff=kw.pop("bigtiff", False)) as tif:
        tif.write(levels[0], subifds=len(levels) - 1 if subifds else None, **options)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, **options)
    return buffer.getvalue()


def _rgb(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([x * 255 // width, y * 255 // height, (x + y) % 256]).astype(np.uint8)


def seed_tiffs() -> dict[str, bytes]:
    """Valid TIFFs of every layout the reader handles: the starting points for mutation."""
    rng = np.random.default_rng(0)
    cube = rng.normal(100, 5, (96, 128, 3)).astype(np.float32)
    grey16 = (np.arange(100 * 90) * 7 % 65536).astype(np.uint16).reshape(90, 100)
    cuts = [(340, "d", 3, [90.0] * 3, True), (341, "d", 3, [130.0] * 3, True)]
    return {
        "rgb_jpeg": pyramid_bytes(_rgb(160, 120), compression="jpeg"),
        "rgb_deflate_subifd": pyramid_bytes(_rgb(130, 70), compression="zlib", subifds=True),
        "grey16_lzw": pyramid_bytes(grey16, compression="lzw"),
        "float_cube": pyramid_bytes(cube, extratags=cuts),
        "float_planar": pyramid_bytes(cube, planarconfig="separate"),
        "grey_raw": pyramid_bytes(np.full((70, 70), 7, np.uint8)),
    }


def seed_jpeg2000() -> dict[str, bytes]:
    """Valid JPEG 2000 and HTJ2K files (imagecodecs' OpenJPEG and OpenJPH encoders), untiled and tiled."""
    import imagecodecs

    rgb = _rgb(96, 80)
    return {
        "lossless.jp2": bytes(imagecodecs.jpeg2k_encode(rgb, codecformat="jp2", reversible=True, resolutions=3)),
        "lossy.j2k": bytes(imagecodecs.jpeg2k_encode(rgb[:, :, 0], codecformat="j2k", level=40, reversible=False)),
        "tiled.jhc": bytes(imagecodecs.htj2k_encode(rgb, tile=(32, 32), reversible=True, resolutions=3)),
        "lossy.jhc": bytes(imagecodecs.htj2k_encode(rgb, 0.01, reversible=False)),
    }


def image_root() -> Path:
    """A temporary directory with the images the parser target asks for (removed at exit by the OS tmp cleaner)."""
    root = Path(tempfile.mkdtemp(prefix="pyiip-fuzz-"))
    seeds = seed_tiffs()
    (root / "rgb.tif").write_bytes(seeds["rgb_jpeg"])
    (root / "cube.tif").write_bytes(seeds["float_cube"])
    tall = (np.arange(4000) % 251).astype(np.uint8).reshape(4000, 1)
    tifffile.imwrite(root / "tall.tif", tall, tile=(256, 16), compression="zlib", metadata=None)
    import pyvips

    pyvips.Image.new_from_array(_rgb(90, 60)).pngsave(str(root / "flat.png"))
    (root / "sub").mkdir()
    (root / "sub" / "rgb.tif").write_bytes(seeds["rgb_deflate_subifd"])
    os.symlink("/etc/passwd", root / "escape.tif")
    return root


SEED_REQUESTS = [
    "GET /fcgi-bin/iipsrv.fcgi?FIF=cube.tif&obj=IIP,1.0&obj=max-size&obj=tile-size&obj=resolution-number",
    "GET /fcgi-bin/iipsrv.fcgi?FIF=cube.tif&obj=min-max-sample-values&obj=subject&obj=bits-per-channel",
    "GET /fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=1,2",
    "GET /fcgi-bin/iipsrv.fcgi?FIF=cube.tif&MINMAX=1:90,400&GAM=0.4545&CMP=jet&CTW=0,0,1;0,1,0;1,0,0&JTL=1,1",
    "GET /fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&RGN=0.1,0.2,0.3,0.4&WID=300&HEI=20&ROT=!90&QLT=40&CVT=png",
    "GET /fcgi-bin/iipsrv.fcgi?FIF=tall.tif&PFL=0:0,0-0,4000",
    "GET /fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&TIL=1,0-3&SHD=20,30&INV&COL=grey&LYR=3&SDS=0,90",
    "GET /fcgi-bin/iipsrv.fcgi?IIIF=rgb.tif/full/max/0/default.jpg",
    "GET /fcgi-bin/iipsrv.fcgi?DeepZoom=rgb.tif_files/7/0_0.jpg",
    "GET /fcgi-bin/iipsrv.fcgi?Zoomify=rgb.tif/TileGroup0/1-0-1.jpg",
    "GET /iiif/3/rgb.tif/info.json",
    "GET /iiif/2/sub%2Frgb.tif/10,20,30,40/pct:50/!45/gray.png",
    "GET /iiif/3/cube.tif/pct:10,10,50,50/^120,/90/default.webp?MINMAX=1:0,200&CMP=hot",
    "GET /iiif/3/flat.png/square/!64,64/0/bitonal.gif",
    "GET /iiif/rgb.tif/full/max/0/default.tif",
    "GET /deepzoom/rgb.tif.dzi",
    "GET /deepzoom/cube.tif_files/8/0_0.png?GAM=2",
    "GET /zoomify/rgb.tif/ImageProperties.xml",
    "GET /zoomify/tall.tif/TileGroup0/2-0-3.jpg",
    "HEAD /fcgi-bin/iipsrv.fcgi?FIF=%2e%2e/escape.tif&OBJ=Max-size",
    "OPTIONS /iiif/3/rgb.tif/info.json",
    "GET /fcgi-bin/iipsrv.fcgi?FIF=cube.tif&VAL=3,4",
    "GET /api?FIF=cube.tif&INFO",
    "GET /api?FIF=cube.tif&CHAN=1&MINMAX=1:90,400&CMP=jet&INV&BRT=5&CNT=1.5&GAM=1.8000&QLT=80&JTL=1,1",
    "GET /api?FIF=cube.tif&MIX=1:0.000,0.000,1.000&MIX=2:0.000,1.000,0.000&RGN=1,1:60,60&BIN=2",
    "GET /api?FIF=cube.tif&CHAN=1&CHAN=3&PFL=-5,3:40,70",
    "GET /api?FIF=rgb.tif&CHAN=2&VAL=10,12",
]


def import_pyiip(instrument: bool, *names: str) -> list[ModuleType]:
    """pyiip's modules ``names``, their code instrumented for atheris's coverage when ``instrument``."""
    if not instrument:
        return [importlib.import_module(name) for name in names]
    import atheris

    with atheris.instrument_imports(include=["pyiip"]):
        return [importlib.import_module(name) for name in names]


def write_corpus(directory: Path, files: dict[str, bytes], suffix: str = "") -> None:
    """The seed files of a target in its corpus directory, each as ``seed-NAME`` + ``suffix``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / f"seed-{name}{suffix}").write_bytes(data)


def fuzz(
    setup: Callable[..., None], write_seeds: Callable[[Path], None], test_one_input: Callable[[bytes], None]
) -> None:
    """The atheris entry point of a target: instrumented setup, seeds into the corpus directory, fuzz."""
    import atheris

    setup(instrument=True)
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    for directory in corpus[:1]:
        write_seeds(Path(directory))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
