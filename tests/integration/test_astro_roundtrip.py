"""FITS in, IIP out: convert, serve, and check pixel values, WCS cards and every display parameter."""

from __future__ import annotations

import json
import re

import imagecodecs
import numpy as np
import pytest
from astropy.io import fits

from pyiip.http import Request
from pyiip.parse import iip
from pyiip.process.display import apply_display
from pyiip.respond.app import Application
from pyiip.tools.convert import convert

W, H = 600, 400
WCS = {
    "CTYPE1": "RA---TAN",
    "CTYPE2": "DEC--TAN",
    "CRPIX1": 300.5,
    "CRPIX2": 200.5,
    "CRVAL1": 150.11,
    "CRVAL2": 2.21,
    "CD1_1": -5.0e-5,
    "CD1_2": 0.0,
    "CD2_1": 0.0,
    "CD2_2": 5.0e-5,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory, make_app):
    directory = tmp_path_factory.mktemp("astro")
    rng = np.random.default_rng(3)
    bands = []
    for index, band in enumerate(("g", "r")):
        data = rng.normal(100 + 10 * index, 5, (H, W)).astype(np.float32)
        data[50:60, 70:90] = 3000.0 + index
        header = fits.Header({**WCS, "FILTER": band})
        path = directory / f"{band}.fits"
        fits.PrimaryHDU(data, header).writeto(path)
        bands.append((path, data))
    convert([p for p, _ in bands], directory / "cube.tif", compression="none", progress=False)
    app = make_app(directory)
    return app, [d for _, d in bands]


def ask(app: Application, query: str):
    reply = app.respond(Request("GET", "/fcgi-bin/iipsrv.fcgi", query))
    assert reply.status == 200, reply.body[:200]
    return reply


def fits_value(key: str, text: str):
    match = re.search(key.ljust(8) + r"=\s*(?:'([^']*)'|([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))", text)
    assert match, key
    return match.group(1).rstrip() if match.group(1) is not None else float(match.group(2))


def test_subject_carries_the_wcs(served):
    app, _ = served
    body = ask(app, "FIF=cube.tif&obj=IIP,1.0&obj=max-size&obj=subject").body.decode("latin-1")
    assert "Max-size:600 400" in body
    for key, value in WCS.items():
        assert fits_value(key, body) == (pytest.approx(value) if isinstance(value, float) else value), key
    assert fits_value("NAXIS1", body) == W and fits_value("NAXIS2", body) == H
    assert fits_value("CHAN0001", body) == "g" and fits_value("CHAN0002", body) == "r"


def test_pixel_values_round_trip_with_the_flip(served):
    app, bands = served
    # Full resolution is the last IIP resolution; TIFF row y is FITS row H-1-y.
    levels = int(re.search(rb"Resolution-number:(\d+)", ask(app, "FIF=cube.tif&OBJ=Resolution-number").body)[1])
    for x, y in ((0, 0), (75, H - 1 - 55), (599, 399)):
        values = json.loads(ask(app, f"FIF=cube.tif&PFL={levels - 1}:{x},{y}-{x + 1},{y}").body)["profile"]
        expected = [float(band[H - 1 - y, x]) for band in bands]
        assert values == pytest.approx(expected, rel=1e-6)


PARAMETERS = [
    "MINMAX=1:90,200",
    "CTW=0,1;0,1;0,1&MINMAX=2:100,3000",  # 2 channels flatten to 1: channel 2 shows through CTW
    "GAM=0.4545",
    "CNT=2.5",
    "CMP=jet",
    "CMP=hot",
    "CMP=cold",
    "INV",
    "CTW=0,1;1,0;1,1",
    "MINMAX=1:95,130&GAM=0.5&CMP=jet&INV&CNT=1.2&CTW=1,0;1,0;1,0",
]


@pytest.mark.parametrize("parameters", PARAMETERS)
def test_every_parameter_changes_tiles_as_the_pipeline_says(served, parameters):
    app, _ = served
    tile = "PTL=1,0"  # full resolution, top-left tile, PNG so the comparison is exact
    default = imagecodecs.png_decode(ask(app, f"FIF=cube.tif&{tile}").body)
    changed = imagecodecs.png_decode(ask(app, f"FIF=cube.tif&{parameters}&{tile}").body)
    assert changed.shape[:2] == default.shape[:2] == (256, 256)
    assert not np.array_equal(changed, default), parameters
    # The same pixels from the pipeline itself, on the raw tile and the file's display range.
    image = app.service.image("cube.tif")
    display = iip.view(parameters).display(image.info.channels)
    expected = apply_display(image.source.read(0, 0, 0, 256, 256), image.minmax, display)
    np.testing.assert_array_equal(changed.reshape(expected.shape), expected)
