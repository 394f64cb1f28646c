"""Zoomify: ImageProperties.xml and TileGroup tiles, as iipsrv serves them, on clean paths and ?Zoomify=."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import imagecodecs
import numpy as np
import pytest
import simplejpeg

from pyiip.http import Request, Response
from pyiip.read.source import ImageInfo, LevelInfo
from pyiip.respond.zoomify import tiers


@pytest.fixture
def get(app):
    def ask(path: str, query: str = "") -> Response:
        return app.respond(Request("GET", path, query))

    return ask


def shape(response: Response) -> tuple[int, ...]:
    assert response.status == 200, response.body
    decode = imagecodecs.png_decode if response.content_type == "image/png" else simplejpeg.decode_jpeg
    return decode(response.body).shape


def viewer_tiers(width: int, height: int, tile: int) -> list[tuple[int, int]]:
    """How OpenSeadragon's Zoomify source sizes its tiers (floor halving until one tile)."""
    sizes = [(width, height)]
    while width > tile or height > tile:
        width, height = width // 2, height // 2
        sizes.append((width, height))
    return sizes[::-1]


@pytest.mark.parametrize(("width", "height"), [(1100, 900), (256, 256), (257, 10), (513, 513), (5000, 300), (1, 1)])
def test_tiers_match_viewers(width: int, height: int) -> None:
    info = ImageInfo((LevelInfo(width, height, 256, 256),), 3, np.dtype(np.uint8), 8, "rgb")
    assert [(w, h) for _s, w, h in tiers(info)] == viewer_tiers(width, height, 256)


@pytest.mark.parametrize(
    ("path", "query"),
    [("/zoomify/rgb.tif/ImageProperties.xml", ""), ("/fcgi-bin/iipsrv.fcgi", "Zoomify=rgb.tif/ImageProperties.xml")],
)
def test_image_properties(get, path: str, query: str) -> None:
    response = get(path, query)
    assert response.status == 200 and response.content_type == "application/xml"
    root = ET.fromstring(response.body)
    assert root.tag == "IMAGE_PROPERTIES"
    # Tiers 1100x900 (5x4 tiles), 550x450 (3x2), 275x225 (2x1), 137x112 (1).
    assert dict(root.attrib) == {
        "WIDTH": "1100",
        "HEIGHT": "900",
        "NUMTILES": "29",
        "NUMIMAGES": "1",
        "VERSION": "1.8",
        "TILESIZE": "256",
    }


def test_tiers_are_the_stored_levels(get) -> None:
    """Tier r is IIP resolution r here (the pyramid ends at one tile); the TileGroup number is ignored."""
    for tier, col, row, index in [(3, 0, 0, 0), (3, 1, 2, 11), (2, 1, 0, 1), (1, 0, 0, 0), (0, 0, 0, 0)]:
        tile = get(f"/zoomify/rgb.tif/TileGroup0/{tier}-{col}-{row}.jpg")
        jtl = get("/fcgi-bin/iipsrv.fcgi", f"FIF=rgb.tif&JTL={tier},{index}")
        assert tile.status == jtl.status == 200
        assert tile.body == jtl.body, (tier, col, row)
    assert get("/zoomify/rgb.tif/TileGroup7/3-1-2.jpg").body == get("/zoomify/rgb.tif/TileGroup0/3-1-2.jpg").body


def test_tile_pixels(get, images) -> None:
    levels = images.arrays["rgb_deflate"]
    tile = get("/zoomify/rgb_deflate.tif/TileGroup0/3-4-3.png").body
    assert np.array_equal(imagecodecs.png_decode(tile), levels[0][768:900, 1024:1100])
    assert shape(get("/zoomify/rgb.tif/TileGroup0/0-0-0.jpg")) == (112, 137, 3)
    assert shape(get("/fcgi-bin/iipsrv.fcgi", "Zoomify=rgb.tif/TileGroup0/2-2-1.jpg")) == (194, 38, 3)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/zoomify/rgb.tif/TileGroup0/4-0-0.jpg", 404),
        ("/zoomify/rgb.tif/TileGroup0/3-5-0.jpg", 404),
        ("/zoomify/rgb.tif/TileGroup0/0-1-0.jpg", 404),
        ("/zoomify/nosuch.tif/ImageProperties.xml", 404),
        ("/zoomify/rgb.tif/TileGroup0/3_0_0.jpg", 400),
        ("/zoomify/rgb.tif", 400),
    ],
)
def test_errors(get, path: str, status: int) -> None:
    assert get(path).status == status


def test_display_parameters(get) -> None:
    plain = get("/zoomify/float.tif/TileGroup0/2-0-0.jpg")
    hot = get("/zoomify/float.tif/TileGroup0/2-0-0.jpg", "CMP=hot&MINMAX=1:95,105")
    assert plain.status == hot.status == 200 and plain.body != hot.body
    assert (
        get("/fcgi-bin/iipsrv.fcgi", "CMP=hot&MINMAX=1:95,105&Zoomify=float.tif/TileGroup0/2-0-0.jpg").body == hot.body
    )
