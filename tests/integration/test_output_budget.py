"""Outputs the memory budget allows: CVT capped by MAX_CVT then fitted, IIIF limits that are always served.

VisiOmatic v2's "Native pixels" snapshot asks for 20480 or 40960 px: it gets
the image at MAX_CVT (iipsrv-astro's rule), shrunk further only as far as
MAX_REQUEST_MEMORY needs. info.json's maxWidth/maxHeight/maxArea come from
the same memory model, so a size inside them is served and one pixel more is
IIIF's 400, never the memory guard's 413.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import simplejpeg

from pyiip.http import Request, Response
from pyiip.respond.app import Application
from pyiip.tools.demo import write_demo_data
from tests.support.hostile import extreme_images

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "default" / "pyiip"
# What VisiOmatic v2 sends: its tile URL (display parameters in its order) with JTL swapped for RGN, WID, CVT.
SNAPSHOT = (
    "/fcgi-bin/iipsrv.fcgi?FIF=demo/cube.tif&CMP=grey&CNT=1.2&GAM=0.4545&MINMAX=1:95,400&MINMAX=2:96,380"
    "&CTW=0,0,1;0,1,0;1,0,0&RGN=-0.75,-0.24,2.5,1.48&WID={width}&CVT=jpeg"
)


def shipped_env(root: Path) -> dict[str, str]:
    """deploy/default/pyiip's settings (MAX_CVT among them), over ``root``."""
    lines = [line.split("=", 1) for line in DEPLOY.read_text().splitlines() if re.match(r"^[A-Z_]+=", line)]
    env = {key: value for key, value in lines}
    return {**env, "FILESYSTEM_PREFIX": f"{root}/", "LOGFILE": "-", "VERBOSITY": "0"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("budget")
    write_demo_data(root / "demo", size=1024, progress=False)
    return root


def ask(app: Application, url: str) -> Response:
    path, _, query = url.partition("?")
    return app.respond(Request("GET", path, query))


def jpeg_size(reply: Response) -> tuple[int, int]:
    assert reply.status == 200 and reply.content_type == "image/jpeg", (reply.status, reply.body[:200])
    height, width = simplejpeg.decode_jpeg_header(reply.body)[:2]
    return width, height


def disposition_size(reply: Response) -> tuple[int, int]:
    found = re.search(r"_(\d+)x(\d+)\.jpe?g\"", dict(reply.headers)["Content-Disposition"])
    assert found
    return int(found.group(1)), int(found.group(2))


def test_visiomatic_snapshot_is_a_jpeg_of_at_most_max_cvt_under_the_shipped_settings(demo, make_app):
    env = shipped_env(demo)
    assert env["MAX_CVT"] == "5000" and "MAX_REQUEST_MEMORY" not in env  # 1024 MB, the default
    app = make_app(demo, **{k: v for k, v in env.items() if k != "FILESYSTEM_PREFIX"})
    sizes = [jpeg_size(ask(app, SNAPSHOT.format(width=width))) for width in (20480, 40960)]
    assert sizes[0] == sizes[1]
    width, height = sizes[0]
    # The RGN is clamped to the whole square image, as iipsrv does; 5000 x 5000 of three float channels
    # does not fit 1 GB with the display pipeline: the largest square that does comes back instead.
    assert width == height and 2500 < width <= 5000


def test_max_cvt_caps_the_longer_side_keeping_the_aspect_ratio(demo, make_app):
    app = make_app(demo, MAX_CVT="600")
    reply = ask(app, SNAPSHOT.format(width=20480).replace("RGN=-0.75,-0.24,2.5,1.48", "RGN=0,0.5,1,0.5"))
    assert jpeg_size(reply) == (600, 300) == disposition_size(reply)
    reply = ask(app, "/fcgi-bin/iipsrv.fcgi?FIF=demo/cube.tif&RGN=0.25,0,0.25,1&HEI=40960&CVT=jpeg")
    assert jpeg_size(reply) == (150, 600)


def test_cvt_beyond_the_memory_budget_is_served_at_the_largest_size_that_fits(demo, make_app):
    app = make_app(demo, MAX_CVT="-1", MAX_REQUEST_MEMORY="48")
    url = "/fcgi-bin/iipsrv.fcgi?FIF=demo/cube.tif&RGN=0,0,1,0.5&CTW=0,0,1;0,1,0;1,0,0&WID={}&CVT=jpeg"
    width, height = jpeg_size(ask(app, url.format(8000)))
    assert 300 < width < 8000 and abs(height - width / 2) <= 1
    # The largest: asking for one pixel more gives the same image; asking for it gives exactly it.
    assert jpeg_size(ask(app, url.format(width + 1))) == (width, height)
    assert jpeg_size(ask(app, url.format(width))) == (width, height)
    assert jpeg_size(ask(app, url.format(width // 2))) == (width // 2, round(height / 2))


@pytest.mark.parametrize(
    ("url", "env"),
    [
        ("/x?FIF=deep.tif&WID=652455&CVT=jpeg", {"MAX_CVT": "-1", "MAX_REQUEST_MEMORY": "64"}),
        ("/x?FIF=deep.tif&WID=652455&HEI=652455&CVT=png", {"MAX_CVT": "-1", "MAX_REQUEST_MEMORY": "64"}),
        ("/x?FIF=cube.tif&WID=4000&CVT=jpeg", {"MAX_CVT": "-1", "MAX_REQUEST_MEMORY": "64"}),
        ("/x?FIF=rgb.tif&WID=5000&ROT=33&CVT=png", {"MAX_REQUEST_MEMORY": "64"}),
    ],
)
def test_cvt_over_the_budget_of_extreme_images_is_served_smaller(extreme, make_app, url, env):
    reply = ask(make_app(extreme, **env), url)
    assert reply.status == 200 and reply.content_type.startswith("image/"), (reply.status, reply.body[:200])
    found = re.search(r"_(\d+)x(\d+)\.\w+\"", dict(reply.headers)["Content-Disposition"])
    assert found and 0 < int(found.group(1)) < 4000


@pytest.fixture(scope="module")
def extreme(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extreme_images(tmp_path_factory.mktemp("extreme"))


def test_cvt_of_an_image_nothing_of_which_fits_says_why(extreme, make_app):
    # bigtile.tif: one 8192 x 8192 tile is more than 64 MB: no output size can be made of it.
    reply = ask(make_app(extreme, MAX_REQUEST_MEMORY="64"), "/fcgi-bin/iipsrv.fcgi?FIF=bigtile.tif&WID=100&CVT=jpeg")
    assert reply.status == 413 and b"CVT" in reply.body and b"MAX_REQUEST_MEMORY" in reply.body
    app = make_app(extreme, MAX_REQUEST_MEMORY="64")
    assert json.loads(ask(app, "/iiif/3/bigtile.tif/info.json").body)["maxArea"] == 1  # the least there is
    reply = ask(app, "/iiif/3/bigtile.tif/0,0,1,1/1,1/0/default.jpg")
    assert reply.status == 413 and b"MAX_REQUEST_MEMORY" in reply.body


@pytest.mark.parametrize("version", [3, 2])
@pytest.mark.parametrize(("image", "env"), [
    ("demo/cube.tif", {"MAX_CVT": "20000", "MAX_REQUEST_MEMORY": "160"}),
    ("demo/cube.tif", {"MAX_CVT": "-1", "MAX_REQUEST_MEMORY": "96"}),
    ("demo/rgb.tif", {"MAX_CVT": "20000", "MAX_REQUEST_MEMORY": "80"}),
])  # fmt: skip
def test_iiif_serves_every_size_inside_the_advertised_limits(demo, make_app, image, env, version):
    app = make_app(demo, **env)
    doc = json.loads(ask(app, f"/iiif/{version}/{image}/info.json").body)
    limits = doc if version == 3 else doc["profile"][1]
    area = limits["maxArea"]
    if env["MAX_CVT"] == "-1":
        assert "maxWidth" not in limits
    else:
        assert limits["maxWidth"] == limits["maxHeight"] == 20000 and area < 20000**2
    side = int(area**0.5)  # the demo images are square
    base = f"/iiif/{version}/{image}/full"
    largest = jpeg_size(ask(app, f"{base}/{'^max' if version == 3 else 'max'}/0/default.jpg"))
    assert largest[0] == largest[1] and largest[0] ** 2 <= area
    if version == 3:  # ^max: the largest size allowed, enlarging (2.1's max never enlarges)
        assert area < (largest[0] + 1) ** 2
    sizes = [f"^{side},", f"^{side + 1},"] if version == 3 else [f"{side},{side}", f"{side + 1},{side + 1}"]
    assert jpeg_size(ask(app, f"{base}/{sizes[0]}/0/default.jpg")) == (side, side)
    over = ask(app, f"{base}/{sizes[1]}/0/default.jpg")
    assert over.status == 400 and b"exceeds the server limits" in over.body
    # The worst case of the memory model at the limit: arbitrary rotation, grey, GIF.
    rotated = ask(app, f"{base}/{sizes[0]}/33/gray.gif")
    assert rotated.status == 200 and rotated.content_type == "image/gif", rotated.body[:200]


def test_the_issues_iiif_case_max_cvt_20000_with_the_default_budget(demo, make_app):
    """Before: info.json promised 20000 a side and 400 million pixels; ^max and ^12000, were 413."""
    app = make_app(demo, MAX_CVT="20000")
    doc = json.loads(ask(app, "/iiif/3/demo/cube.tif/info.json").body)
    assert doc["maxWidth"] == 20000 and doc["maxArea"] < 12000**2
    over = ask(app, "/iiif/3/demo/cube.tif/full/^12000,/0/default.jpg")
    assert over.status == 400 and b"exceeds the server limits" in over.body
    width, height = jpeg_size(ask(app, "/iiif/3/demo/cube.tif/full/^max/0/default.jpg"))
    assert width == height and width * height <= doc["maxArea"] < (width + 1) ** 2
