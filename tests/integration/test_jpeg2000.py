"""JPEG 2000 and HTJ2K images through every protocol, against a TIFF pyramid of the same pixels."""

from __future__ import annotations

import json
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import simplejpeg

from pyiip.http import Request, Response
from pyiip.respond.app import Application
from tests.support.imaging import rgb_pattern, write_tifffile_pyramid
from tests.support.jpeg2000 import htj2k_codestream, jp2_bytes, jph_bytes, lying_siz, truncated, write

W, H = 640, 420
NAMES = ("lossless.jp2", "tiled.jp2", "bare.j2k", "image.jph", "tiled.jhc")


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return rgb_pattern(W, H, seed=3)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, pixels: np.ndarray) -> Path:
    directory = tmp_path_factory.mktemp("jpeg2000")
    write_tifffile_pyramid(directory / "same.tif", pixels, compression="zlib")
    raw = jp2_bytes(pixels)
    write(directory / "lossless.jp2", raw)
    write(directory / "tiled.jp2", jp2_bytes(pixels, tile=256))
    write(directory / "bare.j2k", jp2_bytes(pixels, container=False))
    write(directory / "image.jph", jph_bytes(pixels))
    write(directory / "tiled.jhc", htj2k_codestream(pixels, tile=256))
    write(directory / "truncated.jp2", truncated(raw))
    write(directory / "many-tiles.jp2", lying_siz(raw, size=(60000, 60000), tile=(64, 64)))
    write(directory / "huge.jp2", lying_siz(raw, size=(2_000_000_000, 2_000_000_000), tile=(2_000_000_000,) * 2))
    return directory


@pytest.fixture(scope="module")
def app(make_app, root: Path) -> Application:
    return make_app(root)


def get(app: Application, path: str, query: str = "") -> Response:
    return app.respond(Request("GET", path, query))


def png(response: Response) -> np.ndarray:
    assert response.status == 200, response.body
    return imagecodecs.png_decode(response.body)


@pytest.mark.parametrize("name", NAMES)
def test_iiif_regions_match_the_tiff(app, name, pixels):
    for region, size in [("0,0,256,256", "256,"), ("256,256,256,164", "256,"), ("512,256,128,164", "128,")]:
        ours = png(get(app, f"/iiif/3/{name}/{region}/{size}/0/default.png"))
        tiff = png(get(app, f"/iiif/3/same.tif/{region}/{size}/0/default.png"))
        np.testing.assert_array_equal(ours, tiff)
    x, y, w, h = 300, 200, 123, 45  # inside 640 x 420
    np.testing.assert_array_equal(
        png(get(app, f"/iiif/3/{name}/{x},{y},{w},{h}/max/0/default.png")), pixels[y : y + h, x : x + w]
    )


@pytest.mark.parametrize("name", NAMES)
def test_every_tile_of_every_protocol(app, name):
    """info.json's scale factors, then each IIIF tile, IIP JTL tile and DeepZoom tile answers 200 at its size."""
    info = json.loads(get(app, f"/iiif/3/{name}/info.json").body)
    assert (info["width"], info["height"]) == (W, H)
    assert info["tiles"][0]["width"] == 256
    factors = info["tiles"][0]["scaleFactors"]
    assert factors[:4] == [1, 2, 4, 8]
    for scale in factors:
        span = 256 * scale
        for y in range(0, H, span):
            for x in range(0, W, span):
                w, h = min(span, W - x), min(span, H - y)
                out = -(-w // scale)
                tile = get(app, f"/iiif/3/{name}/{x},{y},{w},{h}/{out},/0/default.jpg")
                assert tile.status == 200, (scale, x, y, tile.body)
                assert simplejpeg.decode_jpeg(tile.body).shape[1] == out
    count = len(factors)
    for res in range(count):
        scale = 2 ** (count - 1 - res)
        across, down = -(-W // (256 * scale)), -(-H // (256 * scale))
        for index in range(across * down):
            tile = get(app, "/fcgi-bin/iipsrv.fcgi", f"FIF={name}&JTL={res},{index}")
            assert tile.status == 200, (res, index, tile.body)
    for level in (10, 9, 5, 0):
        assert get(app, f"/deepzoom/{name}_files/{level}/0_0.jpg").status == 200


def test_hostile_files_get_clear_errors(app):
    truncated_tile = get(app, "/iiif/3/truncated.jp2/0,0,256,256/256,/0/default.jpg")
    assert truncated_tile.status == 404 and b"JPEG 2000" in truncated_tile.body
    many = get(app, "/iiif/3/many-tiles.jp2/info.json")
    assert many.status == 413 and b"tiles" in many.body
    assert get(app, "/iiif/3/huge.jp2/info.json").status == 200  # its header alone is fine
    huge = get(app, "/iiif/3/huge.jp2/0,0,256,256/256,/0/default.jpg")
    assert huge.status == 413 and b"MAX_REQUEST_MEMORY" in huge.body


def test_index_lists_jpeg2000_files(app):
    page = get(app, "/").body.decode()
    for name in NAMES:
        assert name in page
