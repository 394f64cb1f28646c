"""VisiOmatic v3's protocol at /api, and IIP's VAL, in-process over a cube converted from a FITS cube:
metadata, tiles against the v3 formulas on the FITS pixels, values and profiles exact against the FITS,
snapshots, the render cache, and FastAPI-style errors."""

from __future__ import annotations

import json
import math

import imagecodecs
import numpy as np
import pytest

from pyiip.http import Request, Response
from pyiip.model import VisiomaticDisplay
from pyiip.process import display_v3, pixels
from pyiip.respond import routes
from pyiip.respond.app import Application
from tests.support import visiomatic

W, H, C = 700, 520, 3


@pytest.fixture(scope="module")
def served(tmp_path_factory, make_app):
    directory = tmp_path_factory.mktemp("v3")
    rng = np.random.default_rng(21)
    planes = rng.normal(100.0, 5.0, (C, H, W)).astype(np.float32)
    planes += np.arange(C, dtype=np.float32)[:, None, None] * 10
    planes[:, 300:310, 40:60] = 4000.0
    planes[1, 5, 7] = np.nan  # FITS pixel (8, 6)
    visiomatic.write_cube(planes, directory / "cube.fits", directory / "cube.tif", OBJECT="field 7")
    return make_app(directory), planes, directory


def v3(app: Application, query: str) -> Response:
    return app.respond(Request("GET", "/api", query))


def ok_json(reply: Response):
    assert reply.status == 200, reply.body[:300]
    assert reply.content_type == "application/json"
    return json.loads(reply.body)


def fits_value(planes: np.ndarray, x: int, y: int) -> list:
    """The FITS samples at (x, y): a NaN is 0 in a cube pyiip convert made (STIFF's bad-pixel value)."""
    return [0.0 if math.isnan(v) else v for v in planes[:, y - 1, x - 1].tolist()]


def test_info(served) -> None:
    app, _planes, _ = served
    meta = ok_json(v3(app, "FIF=cube.tif&INFO"))
    assert meta["type"] == "visiomatic" and meta["version"] == "3.0"
    assert meta["image_name"] == "cube.tif" and meta["object_name"] == "field 7"
    assert meta["full_size"] == [W, H] and meta["tile_size"] == [256, 256] and meta["channels"] == C
    iip = app.respond(Request("GET", "/iipsrv.fcgi", "FIF=cube.tif&OBJ=Resolution-number&OBJ=Min-Max-sample-values"))
    lines = iip.body.decode().split("\r\n")
    assert meta["tile_levels"] == int(lines[1].split(":")[1])
    cuts = [float(v) for v in lines[2].split(":")[1].split()]
    assert np.allclose(np.ravel(meta["images"][0]["min_max"]), cuts, rtol=1e-6)
    assert (meta["gamma"], meta["brightness"], meta["contrast"], meta["color_saturation"]) == (2.2, 0.0, 1.0, 1.5)
    assert meta["bits_per_channel"] == 32 and meta["quality"] == 75  # the server's JPEG_QUALITY
    header = meta["header"]
    assert header["CTYPE1"] == "RA---TAN" and header["CD2_2"] == 5e-5 and header["NAXIS1"] == W
    image = meta["images"][0]
    assert image["size"] == [W, H, C] and image["dataslice"] == [[1, W, 1], [1, H, 1]]
    for channel in range(C):  # sky levels and noise of the normal(100 + 10 c, 5) planes, from the smallest level
        assert abs(image["background_level"][channel] - (100 + 10 * channel)) < 3
        assert 0 < image["background_mad"][channel] < 5


def raster(planes: np.ndarray) -> np.ndarray:
    """The FITS cube as the served raster: (h, w, c), FITS row NAXIS2 on top."""
    return np.ascontiguousarray(planes[:, ::-1].transpose(1, 2, 0))


@pytest.mark.parametrize(
    ("query", "display"),
    [
        ("CHAN=2&MINMAX=2:90,130&QLT=100", VisiomaticDisplay(1, ((1, 90.0, 130.0),))),
        (
            "CHAN=1&MINMAX=1:80,200&CMP=jet&INV&GAM=1.5&QLT=100",
            VisiomaticDisplay(0, ((0, 80.0, 200.0),), colormap="jet", invert=True, gamma=1.5),
        ),
        (
            "MINMAX=1:90,110&MINMAX=2:100,120&MINMAX=3:110,130&MIX=1:0,0,1&MIX=3:1,0,0&BRT=10&CNT=1.5&QLT=100",
            VisiomaticDisplay(
                None,
                ((0, 90.0, 110.0), (1, 100.0, 120.0), (2, 110.0, 130.0)),
                display_v3.mix_matrix(3, ((1, 0, 0, 1), (3, 1, 0, 0))),
                brightness=10,
                contrast=1.5,
            ),
        ),
    ],
)
def test_tiles_follow_the_v3_formulas_on_the_fits_pixels(served, query: str, display: VisiomaticDisplay) -> None:
    app, planes, _ = served
    reply = v3(app, f"FIF=cube.tif&{query}&JTL=1,4")  # zoom 1 of 2 levels: full resolution, tile (1, 1)
    assert reply.status == 200 and reply.content_type == "image/jpeg"
    tile = imagecodecs.jpeg8_decode(reply.body).astype(int)
    data = raster(planes)[256:512, 256:512]
    expected = display_v3.apply(data, np.zeros((C, 2)), display).astype(int)
    if tile.ndim == 2:
        tile = tile[:, :, None]
    assert tile.shape == expected.shape
    # JPEG at quality 100, colour not subsampled (4:4:4, as the v3 server encodes)
    assert np.abs(tile - expected).mean() < 0.7


def test_tile_grid_edges_and_zoom_clamp(served) -> None:
    app, _, _ = served
    top = v3(app, "FIF=cube.tif&CHAN=1&JTL=1,8")  # the last tile: 3 x 3 grid at full resolution
    assert imagecodecs.jpeg8_decode(top.body).shape == (H - 512, W - 512)
    assert v3(app, "FIF=cube.tif&CHAN=1&JTL=9,8").body == top.body  # a zoom past the full resolution is it
    small = v3(app, "FIF=cube.tif&CHAN=1&JTL=0,3")  # 350 x 260 at zoom 0: its 2 x 2 grid's last tile
    assert imagecodecs.jpeg8_decode(small.body).shape == (H // 2 - 256, W // 2 - 256)
    missing = v3(app, "FIF=cube.tif&CHAN=1&JTL=1,9")
    assert missing.status == 404
    assert json.loads(missing.body)["detail"][0]["loc"] == ["query", "JTL"]


def test_tiles_go_through_the_render_cache_apart_from_iip(served) -> None:
    app, _, _ = served
    lru = app.service.cache.lru
    first = v3(app, "FIF=cube.tif&CHAN=1&JTL=1,0")
    hits = lru.hits
    again = v3(app, "FIF=cube.tif&CHAN=1&JTL=1,0")
    assert again.body == first.body and lru.hits == hits + 1
    iip = app.respond(Request("GET", "/iipsrv.fcgi", "FIF=cube.tif&JTL=1,0"))
    assert iip.status == 200 and iip.body != first.body


def test_values_are_the_fits_values(served) -> None:
    app, planes, _ = served
    for x, y in ((1, 1), (W, H), (8, 6), (45, 305), (350, 17)):
        expected = fits_value(planes, x, y)
        assert ok_json(v3(app, f"FIF=cube.tif&CHAN=1&CHAN=2&CHAN=3&VAL={x},{y}"))["values"] == expected
        assert ok_json(v3(app, f"FIF=cube.tif&CHAN=2&VAL={x},{y}"))["values"] == expected[1:2]
        iip = app.respond(Request("GET", "/iipsrv.fcgi", f"FIF=cube.tif&VAL={x},{y}"))
        assert ok_json(iip)["values"] == expected
    assert ok_json(v3(app, "FIF=cube.tif&CHAN=2&VAL=8,6"))["values"] == [0.0]  # NaN in the FITS: see fits_value
    assert ok_json(v3(app, "FIF=cube.tif&CHAN=1&CHAN=7&VAL=0,5"))["values"] == [None, None]  # outside
    assert ok_json(v3(app, "FIF=cube.tif&CHAN=7&VAL=3,5"))["values"] == [None]  # no such channel


def test_iip_val_replies_and_errors(served) -> None:
    app, _planes, _ = served

    def iip(query: str) -> Response:
        return app.respond(Request("GET", "/iipsrv.fcgi", query))

    assert ok_json(iip(f"FIF=cube.tif&VAL={W + 1},1"))["values"] == [None, None, None]
    assert iip("FIF=cube.tif&VAL=1").status == 400
    assert iip("FIF=cube.tif&VAL=a,b").status == 400
    assert iip("VAL=1,1").body.startswith(b"Error/")  # before FIF: IIP error 1 3
    assert routes.route(Request("GET", "/iipsrv.fcgi", "FIF=x&VAL=1,1"))[1] == "iip_value"


def test_profile(served) -> None:
    app, planes, _ = served
    profile = ok_json(v3(app, "FIF=cube.tif&CHAN=1&CHAN=3&PFL=30,310:-3,290"))["profile"]
    xs, ys = pixels.line(30, 310, -3, 290)
    assert [(p["x"], p["y"]) for p in profile] == list(zip((xs - 1).tolist(), (ys - 1).tolist(), strict=True))
    for point in profile:
        x, y = point["x"] + 1, point["y"] + 1
        expected = fits_value(planes, x, y) if 1 <= x <= W else [None] * C
        assert point["values"] == [expected[0], expected[2]]
    huge = v3(app, "FIF=cube.tif&PFL=-999999999,1:999999999,1")  # refused before any array is made
    assert huge.status == 413 and json.loads(huge.body)["detail"][0]["loc"] == ["query", "PFL"]
    every = ok_json(v3(app, "FIF=cube.tif&PFL=8,6:8,6"))["profile"]
    assert every == [{"x": 7, "y": 5, "values": fits_value(planes, 8, 6)}]


def test_region_snapshots(served) -> None:
    app, _planes, _ = served
    whole = v3(app, "FIF=cube.tif&CHAN=1&MINMAX=1:90,110&QLT=100&RGN=1,1:701,521&BIN=1")
    assert imagecodecs.jpeg8_decode(whole.body).shape == (H, W)
    binned = v3(app, "FIF=cube.tif&CHAN=1&MINMAX=1:90,110&QLT=100&RGN=-100,-100:2000,2000&BIN=3")  # level of 2
    assert imagecodecs.jpeg8_decode(binned.body).shape == (H // 2, W // 2)
    part = v3(app, "FIF=cube.tif&CHAN=1&MINMAX=1:90,110&QLT=100&RGN=257,257:513,513")
    tile = v3(app, "FIF=cube.tif&CHAN=1&MINMAX=1:90,110&QLT=100&JTL=1,4")
    assert (
        np.abs(imagecodecs.jpeg8_decode(part.body).astype(int) - imagecodecs.jpeg8_decode(tile.body).astype(int)).max()
        <= 1
    )
    colour = v3(app, "FIF=cube.tif&RGN=11,21:111,71")
    assert imagecodecs.jpeg8_decode(colour.body).shape == (50, 100, 3)
    refused = v3(app, "FIF=cube.tif&RGN=300,10:200,50")
    assert refused.status == 501
    assert json.loads(refused.body)["detail"][0]["loc"] == ["query", "RGN"]


def test_errors_are_fastapi_json(served) -> None:
    app, _, directory = served
    missing = v3(app, "FIF=nothing.fits&INFO")
    assert missing.status == 404 and missing.content_type == "application/json"
    (detail,) = json.loads(missing.body)["detail"]
    assert detail["loc"] == ["query", "FIF"] and detail["type"] == "value_error.str"
    assert str(directory) not in missing.body.decode()
    invalid = v3(app, "FIF=cube.tif&CNT=5000&CMP=rainbow&JTL=0,0")
    assert invalid.status == 422
    assert {tuple(d["loc"]) for d in json.loads(invalid.body)["detail"]} == {("query", "CNT"), ("query", "CMP")}
    assert v3(app, "FIF=../cube.tif&INFO").status == 422
    assert v3(app, "FIF=cube.tif").body == b"null"
    banner = v3(app, "")
    assert banner.status == 200 and banner.content_type.startswith("text/html")


def test_route_kinds() -> None:
    for query, kind in (
        ("FIF=a&INFO", "v3_info"),
        ("FIF=a&CHAN=1&JTL=1,2", "v3_tile"),
        ("FIF=a&CHAN=1&VAL=1,1", "v3_value"),
        ("FIF=a&PFL=1,1:2,2", "v3_profile"),
        ("FIF=a&RGN=1,1:9,9&BIN=2", "v3_region"),
        ("", "v3_other"),
    ):
        assert routes.route(Request("GET", "/api", query))[1] == kind


@pytest.mark.parametrize(
    "identifier", ["link_out.tif", "dir_out/secret.tif", "not_an_image.tif", "%2Fetc%2Fpasswd", "nested/../../outside"]
)
def test_hostile_identifiers_are_404s_without_paths(app, images, identifier: str) -> None:
    reply = app.respond(Request("GET", "/api", f"FIF={identifier}&INFO"))
    assert reply.status in (404, 422) and reply.content_type == "application/json"
    assert json.loads(reply.body)["detail"][0]["loc"] == ["query", "FIF"]
    assert str(images.root) not in reply.body.decode() and str(images.outside) not in reply.body.decode()
