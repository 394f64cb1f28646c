"""FITS files dropped into the image root, served through the Application by every protocol.

Each first request runs the real builder (a child process); the files are small so a build takes
about a second, mostly the child's start.
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from pyiip import config
from pyiip.http import Request, Response
from pyiip.resolve.fits_cache import FitsCache
from pyiip.respond.app import Application
from pyiip.tools.convert import convert
from pyiip.tools.fits_build import COMPRESSION
from tests.support.hostile import malformed_fits

W, H = 300, 200


def sky(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 5, shape).astype(np.float32)


def write_cube(path: Path, seed: int = 1, shape: tuple[int, ...] = (3, H, W)) -> None:
    hdu = fits.PrimaryHDU(sky(seed, shape))
    hdu.header["CTYPE1"], hdu.header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    for i, band in enumerate(("g", "r", "i")[: shape[0] if len(shape) == 3 else 0]):
        hdu.header[f"CHAN{i + 1:04d}"] = band
    hdu.writeto(path, overwrite=True)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fitsroot")
    write_cube(root / "cube.fits")
    write_cube(root / "plain.fit", 2, (H, W))
    mef = [fits.ImageHDU(sky(3 + i, (H, W)), name=band) for i, band in enumerate("gr")]
    fits.HDUList([fits.PrimaryHDU(), *mef]).writeto(root / "mef.fts")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(sky(5, (H, W)))]).writeto(root / "packed.fits.fz")
    return root


def application(root: Path, cache: Path, **env: str) -> Application:
    settings = {"FILESYSTEM_PREFIX": f"{root}/", "VERBOSITY": "0", "FITS_CACHE_DIR": str(cache),
                "FITS_BUILD_WAIT": "120", **env}  # fmt: skip
    return Application(config.load(settings))


@pytest.fixture(scope="module")
def app(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Application:
    return application(root, tmp_path_factory.mktemp("fitscache") / "cubes")


def ask(app: Application, path: str, query: str = "") -> Response:
    return app.respond(Request("GET", path, query))


def iip(app: Application, query: str) -> Response:
    return ask(app, "/fcgi-bin/iipsrv.fcgi", query)


def test_iip_metadata_and_header_of_a_cube(app: Application) -> None:
    reply = iip(app, "FIF=cube.fits&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Resolution-number&OBJ=subject")
    assert reply.status == 200, reply.body
    text = reply.body.decode("latin-1")
    assert f"Max-size:{W} {H}" in text
    assert "CTYPE1  = 'RA---TAN'" in text and "CHAN0003= 'i" in text and "NAXIS1  =                  300" in text


def test_iip_tiles_are_those_of_the_converted_cube(app: Application, root: Path, tmp_path: Path) -> None:
    converted = tmp_path / "converted.tif"
    convert([root / "cube.fits"], converted, compression=COMPRESSION, progress=False)
    reference = application(tmp_path, tmp_path / "unused")
    for query in ("JTL=0,0", "JTL=1,1&CMP=jet&MINMAX=2:90,110", "CTW=0,0,1;0,1,0;1,0,0&JTL=1,0"):
        served = iip(app, f"FIF=cube.fits&{query}")
        assert served.status == 200 and served.body[:3] == b"\xff\xd8\xff"
        assert served.body == iip(reference, f"FIF=converted.tif&{query}").body, query


@pytest.mark.parametrize(("name", "channels"), [("plain.fit", 1), ("mef.fts", 2), ("packed.fits.fz", 1)])
def test_every_kind_of_fits_file_opens(app: Application, name: str, channels: int) -> None:
    reply = iip(app, f"FIF={name}&OBJ=Max-size&OBJ=Bits-per-channel&OBJ=subject")
    assert reply.status == 200, reply.body
    assert f"Max-size:{W} {H}" in reply.body.decode("latin-1")
    assert app.service.image(name).info.channels == channels


def test_iiif_info_and_a_tile(app: Application) -> None:
    reply = ask(app, "/iiif/3/cube.fits/info.json")
    assert reply.status == 200
    info = json.loads(reply.body)
    assert (info["width"], info["height"]) == (W, H) and info["id"].endswith("/iiif/3/cube.fits")
    tile = ask(app, "/iiif/3/cube.fits/0,0,256,200/256,/0/default.jpg")
    assert tile.status == 200 and tile.content_type == "image/jpeg"


def test_deepzoom_and_zoomify(app: Application) -> None:
    assert b'Width="300"' in ask(app, "/deepzoom/plain.fit.dzi").body
    assert b'WIDTH="300"' in ask(app, "/zoomify/plain.fit/ImageProperties.xml").body.upper()


def test_the_index_lists_fits_files(app: Application) -> None:
    page = ask(app, "/").body.decode()
    for name in ("cube.fits", "plain.fit", "mef.fts", "packed.fits.fz"):
        assert f'href="/viewer.html?image={name}"' in page


def test_a_replaced_file_is_rebuilt(root: Path, tmp_path: Path) -> None:
    app = application(root, tmp_path / "cubes")
    write_cube(root / "replaced.fits", 6, (H, W))
    before = iip(app, "FIF=replaced.fits&JTL=0,0").body
    write_cube(tmp_path / "new.fits", 7, (H // 2, W // 2))
    os.replace(tmp_path / "new.fits", root / "replaced.fits")
    reply = iip(app, "FIF=replaced.fits&OBJ=Max-size")
    assert f"Max-size:{W // 2} {H // 2}" in reply.body.decode()
    assert iip(app, "FIF=replaced.fits&JTL=0,0").body != before
    assert len(list((tmp_path / "cubes").glob("*.tif"))) == 2  # the old cube ages out by LRU


def test_a_request_during_a_build_gets_503_then_the_image(root: Path, tmp_path: Path) -> None:
    write_cube(root / "slow.fits", 8, (H, W))
    hurried = application(root, tmp_path / "cubes", FITS_BUILD_WAIT="0")
    reply = iip(hurried, "FIF=slow.fits&OBJ=Max-size")
    assert reply.status == 503 and ("Retry-After", "5") in reply.headers
    assert iip(application(root, tmp_path / "cubes"), "FIF=slow.fits&OBJ=Max-size").status == 200
    assert iip(hurried, "FIF=slow.fits&OBJ=Max-size").status == 200


def test_hostile_fits_gets_a_clear_error_once(root: Path, tmp_path: Path) -> None:
    header = fits.Header({"SIMPLE": True, "BITPIX": -32, "NAXIS": 2, "NAXIS1": 4000, "NAXIS2": 4000})
    (root / "truncated.fits").write_bytes(header.tostring().encode() + bytes(2880))
    app = application(root, tmp_path / "cubes")
    for _ in range(2):
        start = time.monotonic()
        reply = iip(app, "FIF=truncated.fits&JTL=0,0")
        assert reply.status == 404
        assert b"truncated.fits: FITS data are truncated" in reply.body and str(root).encode() not in reply.body
    assert time.monotonic() - start < 0.5  # the second answer is the error the build left, no new build
    big = application(root, tmp_path / "cubes2", FITS_CACHE_SIZE="10")
    reply = iip(big, "FIF=truncated.fits&JTL=0,0")
    assert reply.status == 413 and b"FITS_CACHE_SIZE" in reply.body


def test_evicted_cubes_are_rebuilt(root: Path, tmp_path: Path) -> None:
    for seed in (10, 11, 12):
        write_cube(root / f"lru{seed}.fits", seed, (H, W))
    app = application(root, tmp_path / "cubes", FITS_CACHE_SIZE="0.8")  # one 0.5 MB cube fits, not two
    first = iip(app, "FIF=lru10.fits&JTL=0,0").body
    iip(app, "FIF=lru11.fits&JTL=0,0")
    assert [p.stat().st_size for p in (tmp_path / "cubes").glob("*.tif")] == [pytest.approx(525_000, rel=0.1)]
    fresh = application(root, tmp_path / "cubes", FITS_CACHE_SIZE="0.8")
    assert iip(fresh, "FIF=lru10.fits&JTL=0,0").body == first


def _cube_of(args: tuple[str, str]) -> tuple[int, float]:
    """In another process: the cube of a FITS file, and when it was returned."""
    fits_path, cache = args
    found = FitsCache(config.load({"FITS_CACHE_DIR": cache, "FITS_BUILD_WAIT": "120"})).cube(
        fits_path, os.stat(fits_path)
    )
    return found[1].st_ino, time.time()


def test_two_processes_asking_at_once_build_once(root: Path, tmp_path: Path) -> None:
    write_cube(root / "race.fits", 13)
    jobs = [(str(root / "race.fits"), str(tmp_path / "cubes"))] * 2
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_cube_of, jobs))
    assert results[0][0] == results[1][0]  # one cube: a second build would have replaced it (another inode)
    cubes = list((tmp_path / "cubes").iterdir())
    assert len([c for c in cubes if c.suffix == ".tif"]) == 1
    assert not [c for c in cubes if c.name.startswith(".")]
    names = sorted(c.name for c in cubes)
    assert names[0] == "builders-0.slot"
    assert all(re.fullmatch(r"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-v\d\.(tif|lock)", n) for n in names[1:]), names


def test_every_malformed_fits_gets_a_clear_error(tmp_path: Path) -> None:
    paths = malformed_fits(tmp_path / "root")
    started = application(tmp_path / "root", tmp_path / "cubes", FITS_BUILD_WAIT="0")
    for name in paths:  # every build at once: the second pass waits for them
        assert iip(started, f"FIF={name}.fits&JTL=0,0").status in (404, 413, 503)
    app = application(tmp_path / "root", tmp_path / "cubes")
    for name in paths:
        reply = iip(app, f"FIF={name}.fits&JTL=0,0")
        assert reply.status in (404, 413), (name, reply.body)
        assert reply.body.startswith(f"{name}.fits: ".encode()) and str(tmp_path).encode() not in reply.body, name
    assert not list((tmp_path / "cubes").glob("*.tif"))
    assert not [p for p in (tmp_path / "cubes").iterdir() if p.name.startswith(".")]
