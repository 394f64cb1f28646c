"""info.json and the Link header claim level 2 (and CORS) only when CORS is on: level 2 requires it."""

from __future__ import annotations

import json

import pytest

from pyiip.http import Request
from pyiip.respond.iiif_info import LEVEL2_FEATURES

TIFF = "rgb.tif"


def reply(app, path: str) -> tuple[dict, dict[str, str]]:
    response = app.respond(Request("GET", path, "", host="testhost"))
    assert response.status == 200, response.body
    return json.loads(response.body), {k.lower(): v for k, v in response.headers}


@pytest.fixture(scope="module", params=["", "*", "https://viewer.example.org"], ids=["off", "any", "one"])
def setup(request, images, make_app):
    return request.param, make_app(images.root, CORS=request.param)


def test_v3_claim_follows_cors(setup) -> None:
    cors, app = setup
    doc, headers = reply(app, f"/iiif/3/{TIFF}/info.json")
    features = set(doc["extraFeatures"])
    assert "cors" not in features  # never an extra feature: level 2 includes it, level 0 may not claim it
    if cors:
        assert doc["profile"] == "level2" and not features & set(LEVEL2_FEATURES)
        assert headers["link"].startswith("<http://iiif.io/api/image/3/level2.json>")
    else:
        assert doc["profile"] == "level0" and set(LEVEL2_FEATURES) - {"cors"} <= features
        assert headers["link"].startswith("<http://iiif.io/api/image/3/level0.json>")
    assert {"mirroring", "rotationArbitrary", "sizeUpscaling"} <= features


def test_v2_claim_follows_cors(setup) -> None:
    cors, app = setup
    doc, headers = reply(app, f"/iiif/2/{TIFF}/info.json")
    profile, service = doc["profile"]
    supports = set(service["supports"])
    assert ("cors" in supports) == bool(cors)
    assert profile == f"http://iiif.io/api/image/2/{'level2' if cors else 'level0'}.json"
    assert headers["link"].startswith(f"<{profile}>")
    assert set(LEVEL2_FEATURES) - {"cors"} <= supports  # served either way: only the claim changes


def test_image_replies_carry_the_same_profile(setup) -> None:
    cors, app = setup
    response = app.respond(Request("GET", f"/iiif/3/{TIFF}/0,0,256,256/256,/0/default.jpg", "", host="testhost"))
    link = {k.lower(): v for k, v in response.headers}["link"]
    assert response.status == 200
    assert link.startswith(f"<http://iiif.io/api/image/3/{'level2' if cors else 'level0'}.json>")
