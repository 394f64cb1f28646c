"""pyiip's VisiOmatic v3 protocol against VisiOmatic v3's own server on the same data.

The v3 server (PyPI visiomatic 3.0.7, one uvicorn worker, in its own venv: tests/support/visiomatic.py)
reads a FITS cube directly; pyiip serves the cube ``pyiip convert`` made of it. The same requests go to
both, and the replies are compared: INFO fields, tiles and snapshots pixel by pixel after JPEG decoding,
VAL and PFL exactly, errors by status, key and type. The display formulas are also compared without
JPEG in between: the v3 server's own ``convert_tile`` and OpenCV's colour maps run in its venv on the
same samples as pyiip's ``display_v3``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyiip.http import Request
from pyiip.model import VisiomaticDisplay
from pyiip.process import display_v3
from pyiip.process.opencv_colormaps import TABLES
from tests.support import visiomatic
from tests.support.servers import get

W, H, C = 1024, 768, 3  # 3 levels in both: v3 halves to one tile, pyiip convert to 256 pixels
CUTS = "&MINMAX=1:90,160&MINMAX=2:95,170&MINMAX=3:100,180"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_app):
    venv = visiomatic.ensure_venv()
    work = tmp_path_factory.mktemp("visiomatic")
    data, root = work / "data", work / "root"
    data.mkdir()
    root.mkdir()
    planes = visiomatic.sky(W, H, C)
    header = visiomatic.write_cube(planes, data / "cube.fits", root / "cube.tif", OBJECT="M 101")
    app = make_app(root)
    with visiomatic.server(venv, data, work) as base:
        yield venv, base, app, planes, work, header


def both(setup, query: str) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
    """(status, body) of the v3 server (FIF=cube.fits) and of pyiip (FIF=cube.tif) for one query."""
    _venv, base, app = setup[:3]
    status, _headers, body = get(f"{base}/api?FIF=cube.fits&{query}")
    reply = app.respond(Request("GET", "/api", f"FIF=cube.tif&{query}"))
    return (status, body), (reply.status, reply.body)


def decoded(body: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(body))
    return np.asarray(image.convert("L" if image.mode == "L" else "RGB"), dtype=int)


def test_info(setup) -> None:
    (status, theirs), (ours_status, ours) = both(setup, "INFO")
    assert status == ours_status == 200
    v3, mine = json.loads(theirs), json.loads(ours)
    for key in (
        "type",
        "version",
        "object_name",
        "full_size",
        "tile_size",
        "tile_levels",
        "channels",
        "brightness",
        "contrast",
        "color_saturation",
        "gamma",
    ):
        assert mine[key] == v3[key], key
    for key in (*setup[5], "NAXIS1", "NAXIS2"):
        assert mine["header"][key] == v3["header"][key], key
    image, reference = mine["images"][0], v3["images"][0]
    for key in ("size", "dataslice", "detslice"):
        assert image[key] == reference[key], key
    for channel in range(C):  # different samples of the same sky: within a fraction of the noise
        mad = reference["background_mad"][channel]
        assert abs(image["background_level"][channel] - reference["background_level"][channel]) < 0.5 * mad
        assert image["background_mad"][channel] == pytest.approx(mad, rel=0.15)


TILE_QUERIES = [
    "CHAN=1" + CUTS,
    "CHAN=2&MINMAX=2:95,400&GAM=1.0000&CNT=1.7&BRT=-8",
    "CHAN=3&MINMAX=3:100,250&CMP=jet&INV",
    "CHAN=1&MINMAX=1:90,300&CMP=cold&GAM=3.5000",
    "CHAN=2&MINMAX=2:95,300&CMP=hot&CNT=0.6&BRT=25",
    CUTS[1:] + "&MIX=1:0.000,0.000,1.000&MIX=2:0.000,1.000,0.000&MIX=3:1.000,0.000,0.000",
    CUTS[1:] + "&MIX=1:0.300,0.100,1.200&MIX=3:1.400,0.500,0.000&GAM=1.5000&INV&CNT=2",
]


@pytest.mark.parametrize("query", TILE_QUERIES)
def test_tiles(setup, query: str) -> None:
    for tile in ("2,0", "2,5", "2,11", "1,3", "0,0"):
        (status, theirs), (ours_status, ours) = both(setup, f"{query}&QLT=100&JTL={tile}")
        assert status == ours_status == 200, (tile, ours[:200])
        v3, mine = decoded(theirs), decoded(ours)
        assert v3.shape == mine.shape, tile
        difference = np.abs(v3 - mine)
        if v3.ndim == 2:
            assert difference.mean() < 0.5 and np.percentile(difference, 99.9) <= 2, tile
        else:  # pyiip subsamples chroma (4:2:0), v3 does not: compare luma closely, colour on average
            luma = np.abs(v3 @ [0.299, 0.587, 0.114] - mine @ [0.299, 0.587, 0.114])
            assert luma.mean() < 1.0 and difference.mean() < 2.5, tile


@pytest.mark.parametrize(
    "region",
    ["RGN=101,51:613,433&BIN=1", "RGN=1,1:1024,768&BIN=2", "RGN=17,33:801,601&BIN=4", "RGN=300,200:500,300&BIN=3"],
)
def test_region_snapshots(setup, region: str) -> None:
    for settings in (TILE_QUERIES[0], TILE_QUERIES[5]):
        (status, theirs), (ours_status, ours) = both(setup, f"{settings}&QLT=100&{region}")
        assert status == ours_status == 200, ours[:200]
        v3, mine = decoded(theirs), decoded(ours)
        assert v3.shape == mine.shape
        assert np.abs(v3 - mine).mean() < 2.5


def as_converted(values: list, x: int, y: int, exists: bool = True) -> list:
    """The v3 server's values as the converted cube holds them: a FITS NaN inside the image is 0 there
    (pyiip convert writes bad pixels as STIFF does); elsewhere null stays null."""
    inside = exists and 1 <= x <= W and 1 <= y <= H
    return [0.0 if v is None and inside else v for v in values]


def test_values(setup) -> None:
    planes = setup[3]
    assert np.isnan(planes[1, 101, 201])
    for x, y in ((1, 1), (W, H), (202, 102), (513, 385), (0, 10), (10, H + 1), (-4, -4)):
        for channels in ("CHAN=1", "CHAN=2", "CHAN=1&CHAN=2&CHAN=3", "CHAN=3&CHAN=1", "CHAN=4"):
            (status, theirs), (ours_status, ours) = both(setup, f"{channels}&VAL={x},{y}")
            assert status == ours_status == 200
            expected = as_converted(json.loads(theirs)["values"], x, y, channels != "CHAN=4")
            assert json.loads(ours) == {"values": expected}, (x, y, channels)


def test_profiles(setup) -> None:
    for line in (
        "10,10:300,10",
        "5,700:5,20",
        "1,1:1024,768",
        "900,50:20,300",
        "200,90:210,110",
        "-20,5:40,-7",
        "600,600:600,600",
        "33,20:40,23",
    ):
        for channels in ("CHAN=2&", "CHAN=1&CHAN=2&CHAN=3&", ""):
            (status, theirs), (ours_status, ours) = both(setup, f"{channels}PFL={line}")
            assert status == ours_status == 200
            expected = [
                {**p, "values": as_converted(p["values"], p["x"] + 1, p["y"] + 1)}
                for p in json.loads(theirs)["profile"]
            ]
            assert json.loads(ours) == {"profile": expected}, (line, channels)


@pytest.mark.parametrize(
    "query",
    [
        "CNT=1001&JTL=0,0",
        "GAM=0.1&JTL=0,0",
        "BRT=-200&JTL=0,0",
        "QLT=101&JTL=0,0",
        "CMP=rainbow&JTL=0,0",
        "BIN=0&RGN=1,1:9,9",
        "CHAN=x&JTL=0,0",
        "PFL=1,2",
        "PFL=1,2:3,4.5",
        "VAL=1",
        "VAL=a,2",
        "RGN=1,2,3,4,5,6,7",
        "MINMAX=1:a,2&JTL=0,0",
        "MIX=1:1,1&JTL=0,0",
        "CNT=-1&GAM=9&JTL=0,0",
    ],
)
def test_refused_values(setup, query: str) -> None:
    (status, theirs), (ours_status, ours) = both(setup, query)
    assert status == ours_status == 422
    v3, mine = json.loads(theirs)["detail"], json.loads(ours)["detail"]
    assert sorted((d["loc"], d["type"]) for d in mine) == sorted((d["loc"], d["type"]) for d in v3)


def test_missing_image_and_paths(setup) -> None:
    _venv, base, app, _planes, work = setup[:5]
    status, _headers, theirs = get(f"{base}/api?FIF=nothing.fits&INFO")
    reply = app.respond(Request("GET", "/api", "FIF=nothing.fits&INFO"))
    assert status == reply.status == 404
    (v3,), (mine,) = json.loads(theirs)["detail"], json.loads(reply.body)["detail"]
    assert mine["loc"] == v3["loc"] == ["query", "FIF"] and mine["type"] == v3["type"]
    assert str(work) not in reply.body.decode()
    assert get(f"{base}/api?FIF=../x.fits&INFO")[0] == app.respond(Request("GET", "/api", "FIF=../x.fits&INFO")).status


FORMULAS = r"""
import json, sys
import numpy as np
cases, samples, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
sys.argv = sys.argv[:1]
import cv2
from visiomatic.server.tiled import Tiled
data = np.load(samples)
for index, case in enumerate(cases):
    tiled = Tiled.__new__(Tiled)
    tiled.nchannels, tiled.maxfac = data.shape[0], 1.0e30
    tiled.brightness, tiled.contrast, tiled.gamma = 0.0, 1.0, 2.2  # the server's defaults
    tiled.minmax = np.array(case["defaults"], dtype=np.float32)
    tiled.cmix = np.ones((3, data.shape[0]), dtype=np.float32)
    np.save(f"{out}/{index}.npy", tiled.convert_tile(data.copy(), **case["args"]))
levels = np.arange(256, dtype=np.uint8)[:, None]
maps = {name: cv2.applyColorMap(levels, code)[:, 0, ::-1].tolist()
        for name, code in (("jet", cv2.COLORMAP_JET), ("cool", cv2.COLORMAP_COOL), ("hot", cv2.COLORMAP_HOT))}
print(json.dumps(maps))
"""


def test_formulas_and_colormaps_are_the_v3_servers(setup, tmp_path: Path) -> None:
    """Its convert_tile on the same samples gives the same levels, within one (float32 rounding)."""
    venv, planes = setup[0], setup[3]
    samples = planes[:, 60:188, 150:278]
    np.save(tmp_path / "samples.npy", samples)
    defaults = [[90.0, 160.0], [95.0, 95.0], [100.0, 180.0]]  # channel 2's range is empty: the 1e30 rule
    cases = [
        ({"channel": 1}, VisiomaticDisplay(0)),
        (
            {"channel": 2, "brightness": -30.0, "contrast": 4.0, "gamma": 1.0},
            VisiomaticDisplay(1, brightness=-30, contrast=4, gamma=1),
        ),
        (
            {"channel": 3, "minmax": ((3, 50.0, 2000.0),), "gamma": 0.2, "invert": True, "colormap": "jet"},
            VisiomaticDisplay(2, ((2, 50.0, 2000.0),), gamma=0.2, invert=True, colormap="jet"),
        ),
        ({"channel": 1, "colormap": "cold", "gamma": 5.0}, VisiomaticDisplay(0, colormap="cool", gamma=5.0)),
        (
            {"channel": 3, "colormap": "hot", "contrast": 0.3, "brightness": 40.0},
            VisiomaticDisplay(2, colormap="hot", contrast=0.3, brightness=40),
        ),
        (
            {"mix": ((1, 0.0, 0.0, 1.0), (2, 0.0, 1.0, 0.0), (3, 1.0, 0.0, 0.0))},
            VisiomaticDisplay(
                mix=display_v3.mix_matrix(3, ((1, 0.0, 0.0, 1.0), (2, 0.0, 1.0, 0.0), (3, 1.0, 0.0, 0.0)))
            ),
        ),
        (
            {"mix": ((1, 0.2, 0.4, 1.1), (3, 1.3, 0.2, -0.2)), "gamma": 1.7, "invert": True, "brightness": 12.0},
            VisiomaticDisplay(
                mix=display_v3.mix_matrix(3, ((1, 0.2, 0.4, 1.1), (3, 1.3, 0.2, -0.2))),
                gamma=1.7,
                invert=True,
                brightness=12,
            ),
        ),
        ({}, VisiomaticDisplay(mix=display_v3.mix_matrix(3, ()))),
    ]
    gamma = {"gamma": 2.2}
    arguments = [{"defaults": defaults, "args": {**gamma, **args}} for args, _ in cases]
    maps = json.loads(
        visiomatic.python(venv, FORMULAS, json.dumps(arguments), str(tmp_path / "samples.npy"), str(tmp_path))
    )
    for name, table in maps.items():
        assert np.abs(TABLES[name].astype(int) - np.array(table)).max() <= 1, name
    raster = np.ascontiguousarray(samples.transpose(1, 2, 0))
    for index, (_args, display) in enumerate(cases):
        theirs = np.load(tmp_path / f"{index}.npy").astype(int)
        mine = display_v3.apply(raster, np.array(defaults), display).astype(int)
        if theirs.ndim == 2:
            theirs = theirs[:, :, None]
        assert mine.shape == theirs.shape, index
        assert np.abs(mine - theirs).max() <= 1, index
