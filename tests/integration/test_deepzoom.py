"""DeepZoom: the .dzi descriptor and tiles, as iipsrv serves them, on clean paths and ?DeepZoom=."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import imagecodecs
import numpy as np
import pytest
import simplejpeg

from pyiip.http import Request, Response
from pyiip.respond.deepzoom import max_level

NS = "{http://schemas.microsoft.com/deepzoom/2008}"


@pytest.fixture
def get(app):
    def ask(path: str, query: str = "") -> Response:
        return app.respond(Request("GET", path, query))

    return ask


def shape(response: Response) -> tuple[int, ...]:
    assert response.status == 200, response.body
    decode = imagecodecs.png_decode if response.content_type == "image/png" else simplejpeg.decode_jpeg
    return decode(response.body).shape


@pytest.mark.parametrize(
    ("path", "query"), [("/deepzoom/rgb.tif.dzi", ""), ("/fcgi-bin/iipsrv.fcgi", "DeepZoom=rgb.tif.dzi")]
)
def test_descriptor(get, path: str, query: str) -> None:
    response = get(path, query)
    assert response.status == 200 and response.content_type == "application/xml"
    assert not response.body.startswith(b"<?xml")  # as iipsrv writes it
    root = ET.fromstring(response.body)
    assert root.tag == f"{NS}Image"
    assert (root.get("TileSize"), root.get("Overlap"), root.get("Format")) == ("256", "0", "jpg")
    size = root.find(f"{NS}Size")
    assert size is not None and (size.get("Width"), size.get("Height")) == ("1100", "900")


@pytest.mark.parametrize(
    ("width", "height", "top"), [(1, 1, 0), (2, 1, 1), (1100, 900, 11), (1024, 1024, 10), (1025, 3, 11)]
)
def test_level_count(width: int, height: int, top: int) -> None:
    assert max_level(width, height) == top


def test_stored_levels_are_the_iip_tiles(get) -> None:
    """iipsrv's mapping: DeepZoom level L is IIP resolution L - (N - levels) - 1, same tile numbers."""
    for level, res, col, row, index in [(11, 3, 0, 0, 0), (11, 3, 2, 1, 7), (10, 2, 0, 0, 0), (9, 1, 0, 0, 0)]:
        tile = get(f"/deepzoom/rgb.tif_files/{level}/{col}_{row}.jpg")
        jtl = get("/fcgi-bin/iipsrv.fcgi", f"FIF=rgb.tif&JTL={res},{index}")
        assert tile.status == jtl.status == 200
        assert tile.body == jtl.body, (level, col, row)


def test_tile_pixels_and_ceil_sizes(get, images) -> None:
    levels = images.arrays["rgb_deflate"]
    tile = get("/deepzoom/rgb_deflate.tif_files/10/1_1.png").body
    assert np.array_equal(imagecodecs.png_decode(tile), levels[1][256:450, 256:512])
    # DeepZoom sizes are ceil(W / 2^k): level 8 is 138 x 113 where the pyramid stores 137 x 112.
    assert shape(get("/deepzoom/rgb.tif_files/8/0_0.jpg")) == (113, 138, 3)
    # Levels below the pyramid's smallest are rendered, down to 1 x 1.
    assert shape(get("/deepzoom/rgb.tif_files/3/0_0.jpg")) == (4, 5, 3)
    assert shape(get("/deepzoom/rgb.tif_files/0/0_0.jpg")) == (1, 1, 3)
    assert shape(get("/fcgi-bin/iipsrv.fcgi", "DeepZoom=rgb.tif_files/11/4_3.jpg")) == (132, 76, 3)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/deepzoom/rgb.tif_files/12/0_0.jpg", 404),
        ("/deepzoom/rgb.tif_files/11/5_0.jpg", 404),
        ("/deepzoom/rgb.tif_files/11/0_4.jpg", 404),
        ("/deepzoom/nosuch.tif.dzi", 404),
        ("/deepzoom/nosuch.tif_files/1/0_0.jpg", 404),
        ("/deepzoom/rgb.tif_files/11/0-0.jpg", 400),
        ("/deepzoom/rgb.tif", 400),
        ("/deepzoom/../../etc/passwd.dzi", 403),
    ],
)
def test_errors(get, path: str, status: int) -> None:
    assert get(path).status == status


def test_display_parameters(get) -> None:
    plain = get("/deepzoom/float.tif_files/10/0_0.jpg")
    jet = get("/deepzoom/float.tif_files/10/0_0.jpg", "CMP=jet")
    assert plain.status == jet.status == 200 and plain.body != jet.body
    query = get("/fcgi-bin/iipsrv.fcgi", "CMP=jet&DeepZoom=float.tif_files/10/0_0.jpg")
    assert query.body == jet.body
    assert get("/deepzoom/float.tif_files/10/0_0.jpg", "GAM=x").status == 400
