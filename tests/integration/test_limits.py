"""Limits: MAX_CVT, IIIF maxWidth/maxArea, MAX_REQUEST_MEMORY, MAX_LAYERS, MAX_PROCESS_MEMORY.

A request over a limit gets 400 or 413 before any pixel is read; one
within the memory budget really stays within it (peak RSS is measured in a
fresh process, against the renderer's own estimate).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pyiip import config
from pyiip.http import Request, Response
from pyiip.respond.app import Application
from tests.support.hostile import big_tile_tiff, scroll_tiff, sparse_tiff
from tests.support.imaging import rgb_pattern, write_tifffile_pyramid


@pytest.fixture(scope="module")
def extreme(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("extreme")
    scroll_tiff(root / "tall.tif", 1, 200000)
    scroll_tiff(root / "wide.tif", 200000, 1)
    sparse_tiff(root / "deep.tif", 65536, 65536)
    sparse_tiff(root / "deep_float.tif", 16384, 16384, dtype=np.float32)
    sparse_tiff(root / "shallow.tif", 65536, 65536, levels=False)
    sparse_tiff(root / "shallow_float.tif", 30000, 30000, dtype=np.float32, levels=False)
    big_tile_tiff(root / "bigtile.tif")
    write_tifffile_pyramid(root / "rgb.tif", rgb_pattern(2000, 1500), compression="jpeg")
    cube = np.random.default_rng(3).normal(100, 5, (1200, 1600, 3)).astype(np.float32)
    write_tifffile_pyramid(root / "cube.tif", cube, smin=[90.0] * 3, smax=[130.0] * 3)
    return root


def make_app(root: Path, **env: str) -> Application:
    return Application(config.load({"FILESYSTEM_PREFIX": f"{root}/", "VERBOSITY": "0", **env}))


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
def test_scroll_images_are_served_by_every_protocol(extreme, name, w, h, size, region):
    app = make_app(extreme)
    for url in SCROLL:
        started = time.perf_counter()
        reply = ask(app, url.format(name=name, w=w, h=h, size=size, region=region))
        assert reply.status in (200, 303), (url, reply.status, reply.body[:200])
        assert time.perf_counter() - started < 10, url


def test_deep_pyramid_reads_only_the_level_it_needs(extreme):
    app = make_app(extreme, MAX_REQUEST_MEMORY="64")
    for url in (
        "/fcgi-bin/iipsrv.fcgi?FIF=deep.tif&OBJ=Resolution-number",
        "/fcgi-bin/iipsrv.fcgi?FIF=deep.tif&JTL=0,0",
        "/fcgi-bin/iipsrv.fcgi?FIF=deep.tif&JTL=16,65535",
        "/fcgi-bin/iipsrv.fcgi?FIF=deep.tif&WID=2000&CVT=jpeg",
        "/fcgi-bin/iipsrv.fcgi?FIF=deep_float.tif&MINMAX=1:0,1&CMP=jet&WID=1000&CVT=png",
        "/iiif/3/deep.tif/full/1000,/0/default.jpg",
        "/iiif/3/deep.tif/65280,65280,256,256/256,/0/default.jpg",
        "/deepzoom/deep.tif_files/0/0_0.jpg",
        "/deepzoom/deep.tif_files/8/0_0.jpg",
        "/zoomify/deep.tif/TileGroup0/0-0-0.jpg",
    ):
        reply = ask(app, url)
        assert reply.status == 200, (url, reply.body[:200])
    assert b"Resolution-number:17" in ask(app, "/x?FIF=deep.tif&OBJ=Resolution-number").body


# (settings, URL, allowed statuses): each is refused before a pixel is read, with a message.
REFUSED = [
    ({"MAX_CVT": "-1"}, "/x?FIF=deep.tif&WID=652455&CVT=jpeg", (400, 413)),
    ({"MAX_CVT": "-1"}, "/x?FIF=deep.tif&WID=652455&HEI=652455&CVT=png", (413,)),
    ({"MAX_CVT": "-1"}, "/x?FIF=tall.tif&HEI=200000&WID=200000&CVT=png", (200,)),
    ({"MAX_CVT": "-1"}, "/x?FIF=shallow.tif&CVT=jpeg", (400, 413)),
    ({"MAX_CVT": "-1"}, "/x?FIF=shallow.tif&CVT=png", (413,)),
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
    ({"MAX_REQUEST_MEMORY": "64", "MAX_CVT": "-1"}, "/x?FIF=cube.tif&WID=4000&CVT=jpeg", (413,)),
    ({"MAX_REQUEST_MEMORY": "64"}, "/x?FIF=rgb.tif&WID=5000&ROT=33&CVT=png", (413,)),
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
def test_over_the_limits_is_a_clear_4xx(extreme, env, url, statuses):
    reply = ask(make_app(extreme, **env), url)
    assert reply.status in statuses, (reply.status, reply.body[:200])
    if reply.status >= 400:
        assert reply.body.strip(), "an error reply says why"
        assert str(extreme).encode() not in reply.body


def test_single_level_float_without_display_tags_opens_quickly(extreme):
    # The default display range is sampled from a 30000 x 30000 float level, never read whole.
    app = make_app(extreme)
    started = time.perf_counter()
    reply = ask(app, "/x?FIF=shallow_float.tif&OBJ=Min-Max-sample-values")
    assert reply.status == 200 and time.perf_counter() - started < 10


def test_max_layers_caps_lyr_as_iipsrv(extreme):
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

_MEASURE = textwrap.dedent(
    """
    import json, re, sys
    from pyiip import config
    from pyiip.process import render
    from pyiip.server import limits
    from pyiip.respond.app import Application
    from pyiip.http import Request

    root, env, urls = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    settings = config.load({"FILESYSTEM_PREFIX": root + "/", "VERBOSITY": "0", "MAX_IMAGE_CACHE_SIZE": "0", **env})
    limits.apply(settings)
    app = Application(settings)
    estimates = []
    check = render.Renderer.check_limits

    def spy(self, image, request, chosen):
        overhead = render.read_overhead(image.source, chosen.level, chosen.w, chosen.h)
        estimates.append(render.memory_estimate(image.info, chosen, request, overhead))
        return check(self, image, request, chosen)

    render.Renderer.check_limits = spy

    def status(field):
        with open("/proc/self/status") as status:
            return int(re.search(field + r":\\s+(\\d+)", status.read()).group(1)) * 1024

    def ask(url):
        path, _, query = url.partition("?")
        return app.respond(Request("GET", path, query))

    for name in ("rgb.tif", "cube.tif", "tall.tif", "deep.tif", "bigtile.tif"):
        ask(f"/x?FIF={name}&OBJ=Max-size")  # open the images and load the codecs first
    ask("/iiif/3/rgb.tif/full/64,/33/default.png")
    ask("/iiif/3/rgb.tif/full/64,/0/default.gif")
    ask("/iiif/3/rgb.tif/full/64,/0/default.webp")
    ask("/x?FIF=cube.tif&CMP=jet&WID=64&CVT=jpeg")
    results = []
    for url in urls:
        del estimates[:]
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets the high-water mark VmHWM to the current RSS
        base = status("VmRSS")
        reply = ask(url)
        peak = status("VmHWM")
        results.append({"url": url, "status": reply.status, "peak": peak - base, "estimate": max(estimates or [0])})
    print(json.dumps(results))
    """
)


def measure(root: Path, urls: list[str], *, fresh: bool = False, **env: str) -> list[dict]:
    """Peak RSS of each URL above the RSS before it (VmHWM reset each time), in one process or one each.

    A fresh process per URL calibrates: in a long-lived one, memory freed by an
    earlier request is reused without showing as growth.
    """
    batches = [[url] for url in urls] if fresh else [urls]
    results = []
    for batch in batches:
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(root), json.dumps(env), json.dumps(batch)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        results += json.loads(done.stdout)
    return results


HEAVY = [
    "/x?FIF=rgb.tif&WID=2000&CVT=jpeg",
    "/x?FIF=rgb.tif&WID=2000&COL=grey&CVT=png",
    "/x?FIF=rgb.tif&WID=3000&CVT=jpeg",
    "/iiif/3/rgb.tif/full/max/33/default.png",
    "/iiif/3/rgb.tif/full/max/0/default.webp",
    "/iiif/3/rgb.tif/full/1500,/0/bitonal.gif",
    "/x?FIF=cube.tif&WID=1600&CVT=jpeg",
    "/x?FIF=cube.tif&WID=1600&MINMAX=1:90,200&GAM=0.5&CMP=jet&CVT=png",
    "/x?FIF=cube.tif&WID=1600&CTW=1,0,0;0,1,0;0,0,1;1,1,1&CVT=jpeg",
    "/x?FIF=cube.tif&WID=1600&SHD=30,40&CVT=jpeg",
    "/iiif/3/cube.tif/full/max/45/default.png",
    "/x?FIF=tall.tif&HEI=5000&CVT=png",
    "/iiif/3/bigtile.tif/0,0,1,1/1,1/0/default.jpg",
]


def test_memory_estimate_is_above_the_measured_peak(extreme):
    for result in measure(extreme, HEAVY, fresh=True, MAX_CVT="-1", MAX_REQUEST_MEMORY="100000"):
        assert result["status"] == 200, result
        slack = 8 << 20  # allocator and interpreter noise
        assert result["peak"] <= result["estimate"] + slack, result


def test_no_request_exceeds_a_small_budget(extreme):
    # With 64 MB allowed, big requests are refused and the ones served stay within 64 MB.
    budget = 64
    urls = [*HEAVY, "/x?FIF=rgb.tif&WID=600&CVT=jpeg", "/iiif/3/cube.tif/full/500,/0/default.png"]
    results = measure(extreme, urls, MAX_CVT="-1", MAX_REQUEST_MEMORY=str(budget))
    assert {r["status"] for r in results} <= {200, 400, 413}, results  # 400: IIIF maxArea follows the budget
    assert any(r["status"] == 413 for r in results) and any(r["status"] == 200 for r in results)
    for result in results:
        assert result["peak"] <= (budget + 8) << 20, result


_BLIND = textwrap.dedent(
    """
    import json, sys
    from pyiip import config
    from pyiip.process import render
    from pyiip.server import limits
    from pyiip.respond.app import Application
    from pyiip.http import Request

    settings = config.load({"FILESYSTEM_PREFIX": sys.argv[1] + "/", "VERBOSITY": "0", "MAX_CVT": "-1",
                            "MAX_REQUEST_MEMORY": "1000", "MAX_PROCESS_MEMORY": "1600"})
    limits.apply(settings)
    render.memory_estimate = lambda *args: 0  # an allocation the estimate does not foresee
    app = Application(settings)
    statuses = []
    for url in sys.argv[2:]:
        path, _, query = url.partition("?")
        statuses.append(app.respond(Request("GET", path, query)).status)
    print(json.dumps(statuses))
    """
)


def test_max_process_memory_turns_an_unforeseen_allocation_into_a_503(extreme):
    urls = [
        "/x?FIF=deep_float.tif&MINMAX=1:0,1&WID=16384&CVT=png",
        "/x?FIF=deep.tif&WID=40000&ROT=33&CVT=png",
        "/x?FIF=rgb.tif&WID=500&CVT=jpeg",
    ]
    done = subprocess.run(
        [sys.executable, "-c", _BLIND, str(extreme), *urls], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [503, 503, 200]
