"""IIIF replies in-process: info.json, versions, ids, errors, limits, pixels, display parameters."""

from __future__ import annotations

import io
import json

import imagecodecs
import numpy as np
import pytest
import simplejpeg
from PIL import Image

from pyiip.http import Request, Response
from pyiip.respond.app import Application


@pytest.fixture(scope="module")
def ask(images, make_app):
    """GET a path (with an optional query) from an app with the default settings."""
    app = make_app(images.root)

    def get(path: str, query: str = "", headers: dict[str, str] | None = None, target: Application = app) -> Response:
        return target.respond(Request("GET", path, query, host="testhost", headers=headers or {}))

    return get


def info(response: Response) -> dict:
    assert response.status == 200, response.body
    return json.loads(response.body)


def header(response: Response, name: str) -> str:
    return next((v for k, v in response.headers if k.lower() == name.lower()), "")


def pixels(response: Response) -> np.ndarray:
    assert response.status == 200, response.body
    if response.content_type == "image/png":
        data = imagecodecs.png_decode(response.body)
    else:
        data = simplejpeg.decode_jpeg(response.body)
    return data if data.ndim == 3 else data[:, :, None]


def test_info_v3(ask) -> None:
    response = ask("/iiif/3/rgb.tif/info.json")
    doc = info(response)
    assert response.content_type == 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'
    assert doc["@context"] == "http://iiif.io/api/image/3/context.json"
    assert doc["id"] == "http://testhost/iiif/3/rgb.tif"
    assert (doc["type"], doc["protocol"], doc["profile"]) == ("ImageService3", "http://iiif.io/api/image", "level0")
    assert (doc["width"], doc["height"]) == (1100, 900)
    # maxArea: what 1024 MB renders at worst (process.budget), less than MAX_CVT's 5000^2.
    assert (doc["maxWidth"], doc["maxHeight"]) == (5000, 5000) and 5_000_000 < doc["maxArea"] < 25_000_000
    assert doc["sizes"] == [{"width": 137, "height": 112}, {"width": 275, "height": 225}, {"width": 550, "height": 450}]
    assert doc["tiles"] == [{"width": 256, "height": 256, "scaleFactors": [1, 2, 4, 8]}]
    assert doc["extraFormats"] == ["png", "webp", "tif", "gif", "avif"]
    assert doc["extraQualities"] == ["color", "gray", "bitonal"]
    assert "sizeUpscaling" in doc["extraFeatures"] and "mirroring" in doc["extraFeatures"]
    assert not {"license", "attribution", "logo", "rights"} & set(doc)
    assert header(response, "Link") == '<http://iiif.io/api/image/3/level0.json>;rel="profile"'  # no CORS


def test_info_v2(ask) -> None:
    response = ask("/iiif/2/grey16.tif/info.json")
    doc = info(response)
    assert response.content_type == "application/json"
    assert doc["@context"] == "http://iiif.io/api/image/2/context.json"
    assert doc["@id"] == "http://testhost/iiif/2/grey16.tif"
    level, service = doc["profile"]
    assert level == "http://iiif.io/api/image/2/level0.json"  # no CORS: test_iiif_compliance.py
    assert service["formats"] == ["jpg", "png", "webp", "tif", "gif", "avif"]
    assert service["qualities"] == ["default", "color", "gray", "bitonal", "bits16"]  # 16 bits: colormaps
    assert {"sizeAboveFull", "regionSquare", "mirroring", "rotationArbitrary"} <= set(service["supports"])
    assert service["maxWidth"] == 5000
    response = ask("/iiif/2/grey16.tif/info.json", headers={"accept": "application/ld+json"})
    assert response.content_type == 'application/ld+json;profile="http://iiif.io/api/image/2/context.json"'


def test_rights_and_attribution(images, make_app) -> None:
    app = make_app(images.root, COPYRIGHT="https://creativecommons.org/publicdomain/zero/1.0/")
    response = app.respond(Request("GET", "/iiif/3/rgb.tif/info.json", ""))
    assert info(response)["rights"] == "https://creativecommons.org/publicdomain/zero/1.0/"
    app = make_app(images.root, COPYRIGHT="(c) The Observatory")
    assert "rights" not in info(app.respond(Request("GET", "/iiif/3/rgb.tif/info.json", "")))
    assert info(app.respond(Request("GET", "/iiif/2/rgb.tif/info.json", "")))["attribution"] == "(c) The Observatory"


@pytest.mark.parametrize(
    ("base_url", "path", "query", "expected"),
    [
        (
            "",
            "/iiif/3/nested%2Fdeeper%2Ffloat_notags.tif/info.json",
            "",
            "http://testhost/iiif/3/nested%2Fdeeper%2Ffloat_notags.tif",
        ),
        (
            "",
            "/iiif/3/nested/deeper/float_notags.tif/info.json",
            "",
            "http://testhost/iiif/3/nested/deeper/float_notags.tif",
        ),
        ("https://example.org/images", "/iiif/3/rgb.tif/info.json", "", "https://example.org/images/iiif/3/rgb.tif"),
        ("https://example.org/iiif/", "/iiif/rgb.tif/info.json", "", "https://example.org/iiif/rgb.tif"),
        ("", "/fcgi-bin/iipsrv.fcgi", "IIIF=rgb.tif/info.json", "http://testhost/fcgi-bin/iipsrv.fcgi?IIIF=rgb.tif"),
        ("", "/fcgi-bin/iipsrv.fcgi", "iiif=/rgb.tif/info.json", "http://testhost/fcgi-bin/iipsrv.fcgi?iiif=/rgb.tif"),
        (
            "https://x.org/iipsrv.fcgi?IIIF=",
            "/fcgi-bin/iipsrv.fcgi",
            "IIIF=rgb.tif/info.json",
            "https://x.org/iipsrv.fcgi?IIIF=rgb.tif",
        ),
    ],
)
def test_id_is_the_request_url(images, base_url: str, path: str, query: str, expected: str, make_app) -> None:
    app = make_app(images.root, BASE_URL=base_url) if base_url else make_app(images.root)
    doc = info(app.respond(Request("GET", path, query, host="testhost")))
    assert doc.get("id", doc.get("@id")) == expected


def test_x_iiif_id_header_overrides(ask) -> None:
    doc = info(ask("/iiif/3/rgb.tif/info.json", headers={"x-iiif-id": "https://proxy/img/rgb"}))
    assert doc["id"] == "https://proxy/img/rgb"


def test_version_negotiation(ask, images, make_app) -> None:
    v2 = 'application/ld+json;profile="http://iiif.io/api/image/2/context.json"'
    response = ask("/iiif/rgb.tif/info.json")
    assert info(response)["type"] == "ImageService3" and header(response, "Vary") == "Accept"
    response = ask("/iiif/rgb.tif/info.json", headers={"accept": v2})
    assert info(response)["@context"] == "http://iiif.io/api/image/2/context.json"
    assert response.content_type == v2
    response = ask("/fcgi-bin/iipsrv.fcgi", "IIIF=rgb.tif/info.json", headers={"accept": v2})
    assert "@id" in info(response)
    # The versioned paths are what they say, whatever the Accept header.
    assert "id" in info(ask("/iiif/3/rgb.tif/info.json", headers={"accept": v2}))
    app = make_app(images.root, IIIF_VERSION="2")
    assert "@id" in info(ask("/iiif/rgb.tif/info.json", target=app))
    # Version 2 parses sizes as 2.x does: full is allowed, ^ is not.
    assert ask("/iiif/rgb.tif/full/full/0/default.jpg", target=app).status == 200
    assert ask("/iiif/rgb.tif/full/full/0/default.jpg").status == 400


def test_base_uri_redirects(ask) -> None:
    for path, location in [
        ("/iiif/3/rgb.tif", "http://testhost/iiif/3/rgb.tif/info.json"),
        ("/iiif/2/rgb.tif/", "http://testhost/iiif/2/rgb.tif/info.json"),
        ("/iiif/nested/deeper/float_notags.tif", "http://testhost/iiif/nested/deeper/float_notags.tif/info.json"),
    ]:
        response = ask(path)
        assert (response.status, header(response, "Location")) == (303, location)
    response = ask("/fcgi-bin/iipsrv.fcgi", "IIIF=rgb.tif")
    assert header(response, "Location") == "http://testhost/fcgi-bin/iipsrv.fcgi?IIIF=rgb.tif/info.json"
    assert ask("/iiif/3/nosuch.tif").status == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/iiif/3/nosuch.tif/info.json", 404),
        ("/iiif/3/nosuch.tif/full/max/0/default.jpg", 404),
        ("/iiif/3/a/b/full/max/0/default.jpg", 404),  # the validator's unescaped slash
        ("/iiif/3/[frob]/full/max/0/default.jpg", 404),
        ("/iiif/3/rgb%2Etif/full/max/0/default.jpg", 200),  # percent-decoded identifier
        ("/iiif/3/nosuch.tif/full/max/0/default.Z_h", 400),  # syntax is checked before the file
        ("/iiif/3/rgb.tif/full/max/0/default.jp2", 400),
        ("/iiif/3/rgb.tif/full/max/0/native.jpg", 400),
        ("/iiif/3/rgb.tif/full/max/0/default", 404),  # no format: not an image request, no such identifier
        ("/iiif/3/rgb.tif/junk/max/0/default.jpg", 400),
        ("/iiif/3/rgb.tif/full/junk/0/default.jpg", 400),
        ("/iiif/3/rgb.tif/full/max/45x/default.jpg", 400),
        ("/iiif/3/rgb.tif/full/full/0/default.jpg", 400),
        ("/iiif/3/rgb.tif/2000,0,10,10/max/0/default.jpg", 400),
        ("/iiif/3/rgb.tif/full/1101,/0/default.jpg", 400),
        ("/iiif/3/rgb.tif/full/^1101,/0/default.jpg", 200),
        ("/iiif/3/rgb.tif/full/5001,/0/default.jpg", 400),
        ("/iiif/2/rgb.tif/full/1101,/0/default.jpg", 200),
        ("/iiif/2/rgb.tif/full/^1101,/0/default.jpg", 400),
        ("/iiif/3/../../etc/passwd/info.json", 403),
        ("/iiif/3/not_an_image.tif/info.json", 404),
        ("/iiif/3/%00/info.json", 400),
    ],
)
def test_status_codes(ask, path: str, status: int) -> None:
    assert ask(path).status == status


def test_no_upscaling_without_caret_in_v3(ask) -> None:
    """The sizes of the validator's size_noup: all 400 without ^, and allowed with it."""
    base = "/iiif/3/rgb.tif/full/{}/0/default.jpg"
    for size in ("1500,1500", ",1500", "1500,", "pct:200", "!2000,3000"):
        assert ask(base.format(size)).status == 400, size
    assert pixels(ask(base.format("^!2000,3000"))).shape == (1636, 2000, 3)
    assert pixels(ask(base.format("!1100,1000"))).shape == (900, 1100, 3)  # fits the region exactly


@pytest.mark.parametrize(
    ("size", "shape"),
    [
        ("^1500,1500", (1500, 1500)),
        ("^,1800", (1800, 2200)),
        ("^2200,", (1800, 2200)),
        ("^pct:200", (1800, 2200)),
        ("^!2000,500", (500, 611)),
        ("^!2200,3000", (1800, 2200)),
        ("^max", (2717, 3320)),  # scaled to maxArea (section 4.2): what 1024 MB renders at worst
    ],
)
def test_upscaling_with_caret(ask, size: str, shape: tuple[int, int]) -> None:
    assert pixels(ask(f"/iiif/3/rgb.tif/full/{size}/0/default.jpg")).shape[:2] == shape


def test_max_cvt_limits(images, make_app) -> None:
    app = make_app(images.root, MAX_CVT="500")
    doc = info(app.respond(Request("GET", "/iiif/3/rgb.tif/info.json", "")))
    assert (doc["maxWidth"], doc["maxHeight"], doc["maxArea"]) == (500, 500, 250000)
    assert doc["sizes"] == [{"width": 137, "height": 112}, {"width": 275, "height": 225}]
    get = lambda size: app.respond(Request("GET", f"/iiif/3/rgb.tif/full/{size}/0/default.jpg", ""))  # noqa: E731
    assert pixels(get("max")).shape[:2] == (409, 500)
    assert pixels(get("^max")).shape[:2] == (409, 500)
    assert get("501,").status == 400
    assert get("pct:50").status == 400  # 550 wide
    app = make_app(images.root, MAX_CVT="-1")
    doc = info(app.respond(Request("GET", "/iiif/3/rgb.tif/info.json", "")))
    assert "maxWidth" not in doc and doc["maxArea"] > 1_000_000  # the memory budget, so ^ stays bounded


def test_upscaling_disabled(images, make_app) -> None:
    app = make_app(images.root, ALLOW_UPSCALING="0")
    doc = info(app.respond(Request("GET", "/iiif/3/rgb.tif/info.json", "")))
    assert "sizeUpscaling" not in doc["extraFeatures"]
    assert app.respond(Request("GET", "/iiif/3/rgb.tif/full/^1200,/0/default.jpg", "")).status == 501
    assert app.respond(Request("GET", "/iiif/3/rgb.tif/full/^1000,/0/default.jpg", "")).status == 200
    assert app.respond(Request("GET", "/iiif/2/rgb.tif/full/1200,/0/default.jpg", "")).status == 400


def test_tile_requests_send_the_stored_tile(ask, images, make_app) -> None:
    """A tile at scale factor 2 is the level-1 tile: its stored JPEG goes out as it is."""
    response = ask("/iiif/3/rgb.tif/512,0,512,512/256,256/0/default.jpg")
    stored = make_app(images.root).service.image("rgb.tif").source.stored_jpeg(1, 1, 0)
    assert stored is not None and response.body == stored
    assert header(response, "Link").endswith(
        ', <http://testhost/iiif/3/rgb.tif/512,0,512,512/256,256/0/default.jpg>;rel="canonical"'
    )
    # The edge tile of scale factor 8 (ceil size 138 > stored 137) is rendered, at the requested size.
    assert pixels(ask("/iiif/3/rgb.tif/0,0,1100,900/138,/0/default.jpg")).shape[:2] == (113, 138)


def test_region_pixels_and_orientation(ask, images) -> None:
    full = images.arrays["rgb_deflate"][0]
    crop = full[200:350, 100:400]
    assert np.array_equal(pixels(ask("/iiif/3/rgb_deflate.tif/100,200,300,150/max/0/default.png")), crop)
    assert np.array_equal(pixels(ask("/iiif/2/rgb_deflate.tif/100,200,300,150/full/!0/default.png")), crop[:, ::-1])
    assert np.array_equal(pixels(ask("/iiif/3/rgb_deflate.tif/100,200,300,150/max/90/default.png")), np.rot90(crop, -1))
    assert np.array_equal(
        pixels(ask("/iiif/3/rgb_deflate.tif/100,200,300,150/max/!270/color.png")), np.rot90(crop[:, ::-1], 1)
    )
    square = pixels(ask("/iiif/3/rgb_deflate.tif/square/max/0/default.png"))
    assert np.array_equal(square, full[:, 100:1000])
    pct = pixels(ask("/iiif/3/rgb_deflate.tif/pct:10,20,50,50/max/0/default.png"))
    assert np.array_equal(pct, full[180:630, 110:660])


def test_arbitrary_rotation(ask) -> None:
    rotated = pixels(ask("/iiif/3/rgb.tif/0,0,400,200/max/30/default.png"))
    assert rotated.shape == (373, 446, 4)  # the bounding box, with alpha
    assert rotated[0, 0, 3] == 0 and rotated[186, 223, 3] == 255  # transparent corners, opaque centre
    jpeg = pixels(ask("/iiif/3/rgb.tif/0,0,400,200/max/30/default.jpg"))
    assert jpeg.shape == (373, 446, 3) and jpeg[0, 0].min() > 240  # white corners
    # Clockwise: the top-left corner of the content moves right, onto the top edge.
    marker = pixels(ask("/iiif/3/rgb_deflate.tif/0,0,400,200/max/30/default.png"))
    assert marker[0, 100:150, 3].max() == 255 and marker[100:150, 0, 3].max() == 0


def test_qualities_and_formats(ask) -> None:
    gray = pixels(ask("/iiif/3/rgb.tif/full/200,/0/gray.png"))
    assert gray.shape == (164, 200, 1)
    bitonal = pixels(ask("/iiif/3/rgb.tif/full/200,/0/bitonal.png"))
    assert set(np.unique(bitonal)) <= {0, 255}
    color = pixels(ask("/iiif/3/grey16.tif/full/100,/0/color.png"))
    assert color.shape[2] == 3 and np.array_equal(color[:, :, 0], color[:, :, 2])
    for fmt, pil in (("gif", "GIF"), ("tif", "TIFF"), ("webp", "WEBP"), ("png", "PNG"), ("jpg", "JPEG")):
        response = ask(f"/iiif/3/rgb.tif/full/120,/0/default.{fmt}")
        image = Image.open(io.BytesIO(response.body))
        assert (image.format, image.size) == (pil, (120, 98)), fmt


def test_display_parameters_reach_iiif(ask) -> None:
    """?MINMAX=..&CMP=.. on a IIIF URL renders exactly what the same IIP CVT request renders."""
    for display in ("CMP=jet", "MINMAX=1:90,140&GAM=0.5&INV", "CTW=0,0,1;0,1,0;1,0,0&CNT=2"):
        iiif = ask("/iiif/3/float.tif/full/max/0/default.png", display)
        iip = ask("/fcgi-bin/iipsrv.fcgi", f"FIF=float.tif&{display}&CVT=png")
        assert iiif.status == iip.status == 200
        assert iiif.body == iip.body, display
    plain = ask("/iiif/3/float.tif/full/max/0/default.png")
    assert plain.body != ask("/iiif/3/float.tif/full/max/0/default.png", "CMP=jet").body
    query = ask("/fcgi-bin/iipsrv.fcgi", "IIIF=float.tif/full/max/0/default.png&CMP=jet")
    assert query.body == ask("/iiif/3/float.tif/full/max/0/default.png", "CMP=jet").body
    assert ask("/iiif/3/float.tif/full/max/0/default.png", "MINMAX=x").status == 400
    assert ask("/iiif/3/float.tif/full/max/0/default.png", "cachebuster=12").body == plain.body
    low = ask("/iiif/3/rgb.tif/full/max/0/default.jpg", "QLT=10")
    assert len(low.body) < len(ask("/iiif/3/rgb.tif/full/max/0/default.jpg").body) / 2


def test_display_parameters_in_the_identifier(ask) -> None:
    """``id;IIP-display-query``: viewers keep it in every tile URL they build from the info.json id."""
    doc = info(ask("/iiif/3/float.tif;CMP=jet&MINMAX=1:90,140/info.json"))
    assert doc["id"] == "http://testhost/iiif/3/float.tif;CMP=jet&MINMAX=1:90,140"
    tile = ask("/iiif/3/float.tif;CMP=jet&MINMAX=1:90,140/0,0,256,256/256,/0/default.png")
    same = ask("/iiif/3/float.tif/0,0,256,256/256,/0/default.png", "CMP=jet&MINMAX=1:90,140")
    assert tile.status == 200 and tile.body == same.body
    assert (
        ask("/iiif/3/float.tif%3BCMP%3Djet/full/max/0/default.png").body
        == ask("/iiif/3/float.tif/full/max/0/default.png", "CMP=jet").body
    )
    response = ask("/iiif/3/float.tif;CMP=jet")
    assert header(response, "Location") == "http://testhost/iiif/3/float.tif;CMP=jet/info.json"
    assert ask("/iiif/3/float.tif;GAM=x/info.json").status == 400
    assert ask("/iiif/3/nosuch.tif;CMP=jet/info.json").status == 404
    assert ask("/iiif/3/float.tif;junk=1/info.json").status == 404  # no display key: no alias of the image
    # The validator's random regions may start with ";": still a 400, not the image's base URI.
    assert ask("/iiif/3/float.tif/;CMP=jet/max/0/default.jpg").status == 400
    assert ask("/iiif/3/float.tif/;VME`I/max/0/default.jpg").status == 400
