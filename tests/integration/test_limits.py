"""Limits: MAX_CVT, IIIF maxWidth/maxArea, MAX_REQUEST_MEMORY, MAX_LAYERS, MAX_PROCESS_MEMORY.

A request over a limit gets 400 or 413 before any pixel is read; one
within the memory budget really stays within it (tests/system/test_limits.py
measures peak RSS in fresh processes, against the renderer's own estimate).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pyiip import config
from pyiip.http import Request, Response
from pyiip.respond.app import Application
from tests.support.hostile import extreme_images


@pytest.fixture(scope="module")
def extreme(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extreme_images(tmp_path_factory.mktemp("extreme"))


def ask(app: Application, url: str) -> Response:
    path, _, query = url.partition("?")
    return app.respond(Request("GET", path, query))


SCROLL = [
    "/fcgi-bin/iipsrv.fcgi?FIF={name}&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Resolution-number&OBJ=Tile-size",
    "/fcgi-bin/iipsrv.fcgi?FIF={name}&CVT=jpeg",
    "/fcgi-bin/iipsrv.fcgi?FIF={name}&WID=5000&HEI=5000&CVT=png",
    "/fcgi-bin/iipsrv.fcgi?FIF={name}&RGN=0.5,0.5,0.5,0.5&ROT=90&CVT=jpeg",
    "/fcgi-bin/iipsrv.fcgi?FIF={name}&JTL=0,0",
    "/fcgi-bin/iipsrv.fcgi?FIF={name}&JTL=10,0",
    "/fcgi-bin/iipsrv.fcgi?FIF={name}&JTL=10,781",
    "/fcgi-bin/iipsrv.fcgi?FIF={name}&TIL=10,0-20",
    "/fcgi-bin/iipsrv.fcgi?FIF={name}&PFL=10:0,0-{w},{h}",
    "/iiif/3/{name}/info.json",
    "/iiif/3/{name}/full/max/0/default.jpg",
    "/iiif/3/{name}/full/{size}/0/default.png",
    "/iiif/3/{name}/square/max/0/default.jpg",
    "/iiif/3/{name}/{region}/max/33/default.png",
    "/deepzoom/{name}.dzi",
    "/deepzoom/{name}_files/0/0_0.jpg",
    "/deepzoom/{name}_files/18/0_0.jpg",
    "/zoomify/{name}/ImageProperties.xml",
    "/zoomify/{name}/TileGroup0/0-0-0.jpg",
]


@pytest.mark.parametrize(
    ("name", "w", "h", "size", "region"),
    [("tall.tif", 1, 200000, ",5000", "0,190000,1,10000"), ("wide.tif", 200000, 1, "5000,", "190000,0,10000,1")],
)
def test_scroll_images_are_served_by_every_protocol(extreme, name, w, h, size, region, make_app):
    app = make_app(extreme)
    for url in SCROLL:
        started = time.perf_counter()
        reply = ask(app, url.format(name=name, w=w, h=h, size=size, region=region))
        assert reply.status in (200, 303), (url, reply.status, reply.body[:200])
        assert time.perf_counter() - started < 10, url


def test_deep_pyramid_reads_only_the_level_it_needs(extreme, make_app):
    app = make_app(extreme, MAX_REQUEST_MEMORY="64")
    for url in (
        "/fcgi-bin/iipsrv.fcgi?FIF=deep.tif&OBJ=Resolution-number",
        "/fcgi-bin/iipsrv.fcgi?FIF=deep.tif&JTL=0,0",
        "/fcgi-bin/iipsrv.fcgi?FIF=deep.tif&JTL=16,65535",
        "/fcgi-bin/iipsrv.fcgi?FIF=deep.tif&WID=2000&CVT=jpeg",
        "/fcgi-bin/iipsrv.fcgi?FIF=deep_float.tif&MINMAX=1:0,1&CMP=jet&WID=1000&CVT=png",
        "/iiif/3/deep.tif/full/500,/0/default.jpg",
        "/iiif/3/deep.tif/65280,65280,256,256/256,/0/default.jpg",
        "/deepzoom/deep.tif_files/0/0_0.jpg",
        "/deepzoom/deep.tif_files/8/0_0.jpg",
        "/zoomify/deep.tif/TileGroup0/0-0-0.jpg",
    ):
        reply = ask(app, url)
        assert reply.status == 200, (url, reply.body[:200])
    assert b"Resolution-number:17" in ask(app, "/x?FIF=deep.tif&OBJ=Resolution-number").body


# (settings, URL, allowed statuses): each is refused before a pixel is read, with a message
# (a CVT over the memory budget is served smaller instead: tests/integration/test_output_budget.py).
REFUSED = [
    ({"MAX_CVT": "-1"}, "/x?FIF=tall.tif&HEI=200000&WID=200000&CVT=png", (200,)),
    ({"MAX_CVT": "-1"}, "/x?FIF=tall.tif&HEI=200000&CVT=jpeg", (400,)),  # JPEG sides stop at 65500
    ({"MAX_CVT": "-1"}, "/iiif/3/tall.tif/full/max/0/default.jpg", (400,)),
    ({"MAX_CVT": "-1"}, "/iiif/3/wide.tif/full/max/0/default.webp", (400,)),
    ({"MAX_CVT": "-1"}, "/iiif/3/tall.tif/full/max/90/default.gif", (400,)),
    ({"MAX_CVT": "-1"}, "/iiif/3/tall.tif/full/max/0/default.png", (200,)),
    ({}, "/x?FIF=deep.tif&JTL=129500,1", (400,)),
    ({}, "/x?FIF=deep.tif&JTL=16,99999999999999999999", (400,)),  # past a C int: out of range
    ({}, "/x?FIF=deep.tif&JTL=-1,0", (400,)),
    ({}, "/x?FIF=deep.tif&TIL=16,0-99999999", (400,)),
    ({"MAX_REQUEST_MEMORY": "1"}, "/x?FIF=rgb.tif&TIL=3,0-47", (413,)),
    ({"MAX_REQUEST_MEMORY": "16"}, "/x?FIF=wide.tif&PFL=10:0,0-200000,0", (413,)),
    ({"MAX_REQUEST_MEMORY": "16"}, "/x?FIF=tall.tif&PFL=10:0,0-0,200000", (413,)),
    ({"MAX_REQUEST_MEMORY": "64"}, "/x?FIF=bigtile.tif&PFL=0:0,0-1,0", (413,)),
    ({"MAX_REQUEST_MEMORY": "64"}, "/iiif/3/bigtile.tif/0,0,1,1/1,1/0/default.jpg", (413,)),
    ({"MAX_REQUEST_MEMORY": "64"}, "/x?FIF=bigtile.tif&JTL=0,0", (413,)),
    ({"MAX_CVT": "-1"}, "/iiif/3/deep.tif/full/max/0/default.jpg", (200,)),  # max: the memory-derived maxArea
    ({"MAX_CVT": "-1"}, "/iiif/3/deep.tif/full/^pct:10000/0/default.jpg", (400,)),
    ({}, "/iiif/3/rgb.tif/full/^pct:10000/0/default.jpg", (400,)),
    ({}, "/iiif/3/rgb.tif/full/pct:10000/0/default.jpg", (400,)),
    ({}, "/iiif/3/rgb.tif/full/^99999,/0/default.jpg", (400,)),
    ({}, "/iiif/3/rgb.tif/full/^5001,/0/default.jpg", (400,)),
    ({}, "/iiif/3/rgb.tif/full,32912,500,500/max/0/default.jpg", (400,)),
    ({}, "/iiif/3/rgb.tif/32912,500,500,500/max/0/default.jpg", (400,)),
    ({}, "/iiif/3/rgb.tif/0,0,99999999999,99999999999/max/0/default.jpg", (200,)),
    ({"MAX_CVT": "-1"}, "/deepzoom/shallow.tif_files/16/0_0.jpg", (200,)),
    ({}, "/deepzoom/deep.tif_files/99999/0_0.jpg", (404,)),
    ({}, "/zoomify/deep.tif/TileGroup0/99999-0-0.jpg", (404,)),
]


@pytest.mark.parametrize(("env", "url", "statuses"), REFUSED)
def test_over_the_limits_is_a_clear_4xx(extreme, env, url, statuses, make_app):
    reply = ask(make_app(extreme, **env), url)
    assert reply.status in statuses, (reply.status, reply.body[:200])
    if reply.status >= 400:
        assert reply.body.strip(), "an error reply says why"
        assert str(extreme).encode() not in reply.body


def test_single_level_float_without_display_tags_opens_quickly(extreme, make_app):
    # The default display range is sampled from a 30000 x 30000 float level, never read whole.
    app = make_app(extreme)
    started = time.perf_counter()
    reply = ask(app, "/x?FIF=shallow_float.tif&OBJ=Min-Max-sample-values")
    assert reply.status == 200 and time.perf_counter() - started < 10


def test_max_layers_caps_lyr_as_iipsrv(extreme, make_app):
    app = make_app(extreme, MAX_LAYERS="3")
    assert ask(app, "/x?FIF=rgb.tif&LYR=99&JTL=0,0").status == 200
    assert ask(app, "/x?FIF=rgb.tif&LYR=abc&JTL=0,0").status == 400
    assert ask(app, "/x?FIF=rgb.tif&LYR=-2&JTL=0,0").status == 400


def test_max_process_memory_is_checked_against_the_request_budget():
    with pytest.raises(config.ConfigError, match="MAX_PROCESS_MEMORY"):
        config.load({"MAX_PROCESS_MEMORY": "1024", "MAX_REQUEST_MEMORY": "1024"})
    assert config.load({"MAX_PROCESS_MEMORY": "2048"}).max_process_memory == 2048
    assert config.load({}).max_process_memory == 0


# ---------------------------------------------------------------- measured memory
