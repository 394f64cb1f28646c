"""FITS served directly: the figures behind docs/fits.md, each design measured side by side in one run.

- (a) build on first request: the FITS cache's builder (a child process running ``pyiip convert``),
  then tiles from the cube through the Application, as a server answers them;
- (b) memory map, levels made lazily: numpy over the FITS data, the first view (the viewer's
  whole-image level) needs every pixel reduced; a full-resolution tile is a slice, byte-swapped;
- VisiOmatic v3 (``--visiomatic``, its own virtualenv): its Tiled object (its first request builds
  its tile cache), then its encoded tiles.

Usage: PYTHONPATH=src python bench/fits_direct.py DIR [--size 8192] [--visiomatic /work/venvs/visiomatic]
CPU per tile is the process's user+system time over distinct full-resolution tiles (no cache hit).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

TILES = 200  # distinct full-resolution tiles per measurement


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_fits(path: Path, size: int, channels: int) -> None:
    """Sky-like float32 data (noise over a gradient): compresses like real images, i.e. barely."""
    from astropy.io import fits

    rng = np.random.default_rng(21)
    shape = (channels, size, size) if channels > 1 else (size, size)
    data = rng.normal(100, 5, shape).astype(">f4")
    hdu = fits.PrimaryHDU(data)
    hdu.header["CTYPE1"], hdu.header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    hdu.writeto(path, overwrite=True)


def tile_indices(size: int) -> list[tuple[int, int]]:
    side = size // 256
    return [divmod((i * 37) % (side * side), side)[::-1] for i in range(TILES)]  # distinct: 37 is odd


def design_a(root: Path, name: str, size: int) -> dict[str, float]:
    """First request (a build) and CPU per tile through the Application, caches of replies off."""
    from pyiip import config
    from pyiip.http import Request
    from pyiip.respond.app import Application

    cache = tempfile.mkdtemp(prefix="fits-bench-", dir=root)
    os.chmod(cache, 0o700)
    settings = {"FILESYSTEM_PREFIX": f"{root}/", "VERBOSITY": "0", "FITS_CACHE_DIR": cache,
                "FITS_BUILD_WAIT": "3600", "MAX_IMAGE_CACHE_SIZE": "0"}  # fmt: skip
    app = Application(config.load(settings))
    start = time.perf_counter()
    first = app.respond(Request("GET", "/fcgi-bin/iipsrv.fcgi", f"FIF={name}&JTL=0,0"))
    latency = time.perf_counter() - start
    assert first.status == 200, first.body
    levels = app.service.image(name).info.levels
    top = len(levels) - 1
    per_row = -(-levels[0].width // 256)
    before = cpu()
    for x, y in tile_indices(size):
        reply = app.respond(Request("GET", "/fcgi-bin/iipsrv.fcgi", f"FIF={name}&JTL={top},{y * per_row + x}"))
        assert reply.status == 200
    per_tile = (cpu() - before) / TILES
    cube = sum(p.stat().st_size for p in Path(cache).glob("*.tif"))
    return {"first_request_s": latency, "cpu_per_tile_ms": per_tile * 1000, "cube_mb": cube / 2**20}


def cube_layouts(path: Path, work: Path, size: int) -> dict[str, dict[str, float]]:
    """The cube's compression: build time, size, and pixels per full-resolution tile (TIFF reader, no cache)."""
    from pyiip.read.tiff import TiffSource
    from pyiip.tools.convert import convert

    results = {}
    for compression in ("none", "deflate"):
        out = work / f"layout-{compression}.tif"
        start = time.perf_counter()
        convert([path], out, compression=compression, progress=False)
        built = time.perf_counter() - start
        source = TiffSource(str(out), None)
        before = cpu()
        for x, y in tile_indices(size):
            source.read(0, x * 256, y * 256, 256, 256)
        per_tile = (cpu() - before) / TILES
        source.close()
        mb = out.stat().st_size / 2**20
        results[compression] = {"build_s": built, "mb": mb, "pixels_per_tile_ms": per_tile * 1000}
        out.unlink()
    return results


def design_b(path: Path, size: int) -> dict[str, float]:
    """A memory map: the first (whole-image) view reduces every pixel; then a tile is a slice."""
    from astropy.io import fits

    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
        offset = int(hdul.fileinfo(0)["datLoc"])
        shape = hdul[0].shape
    data = np.memmap(path, dtype=">f4", mode="r", offset=offset, shape=shape)
    if data.ndim == 2:
        data = data[None]
    start = time.perf_counter()
    level = np.asarray(data, dtype=np.float32)  # every page read and byte-swapped
    while level.shape[1] > 256:
        h, w = level.shape[1] // 2 * 2, level.shape[2] // 2 * 2
        level = (level[:, 0:h:2, 0:w:2] + level[:, 1:h:2, 0:w:2] + level[:, 0:h:2, 1:w:2] + level[:, 1:h:2, 1:w:2]) / 4
    latency = time.perf_counter() - start
    before = cpu()
    for x, y in tile_indices(size):
        tile = np.ascontiguousarray(data[:, y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256][:, ::-1], np.float32)
        assert tile.shape[1:] == (256, 256)
    per_tile = (cpu() - before) / TILES
    return {"first_view_s": latency, "pixels_per_tile_ms": per_tile * 1000}


V3_DRIVER = """
import json, resource, sys, time
sys.argv = ["visiomatic"]
from visiomatic.server.config import settings
settings["cache_dir"] = {cache!r}
from visiomatic.server.tiled import Tiled
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
start = time.perf_counter()
tiled = Tiled({path!r})
tiled.get_encoded_tile(tiled.nlevels - 1, 0, channel=1)  # its levels count from full resolution
latency = time.perf_counter() - start
before = cpu()
for index in {indices!r}:
    tiled.get_encoded_tile(0, index, channel=1)
print(json.dumps({{"first_request_s": latency, "cpu_per_tile_ms": (cpu() - before) / {tiles} * 1000}}))
"""


def visiomatic(venv: Path, path: Path, size: int, work: Path) -> dict[str, float]:
    cache = tempfile.mkdtemp(prefix="v3-cache-", dir=work)
    indices = [y * (size // 256) + x for x, y in tile_indices(size)]
    code = V3_DRIVER.format(cache=cache, path=str(path), indices=indices, tiles=TILES)
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--cube-size", type=int, default=4096)
    parser.add_argument("--visiomatic", type=Path)
    args = parser.parse_args()
    root = args.directory.resolve()
    root.mkdir(parents=True, exist_ok=True)
    for name, size, channels in (("image.fits", args.size, 1), ("cube.fits", args.cube_size, 3)):
        path = root / name
        if not path.exists():
            write_fits(path, size, channels)
        result: dict[str, object] = {"file": name, "size": size, "channels": channels,
                                     "a": design_a(root, name, size), "b": design_b(path, size),
                                     "layouts": cube_layouts(path, root, size)}  # fmt: skip
        if args.visiomatic:
            result["visiomatic3"] = visiomatic(args.visiomatic, path, size, root)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
