"""Memory limits measured in fresh processes: peak RSS against the renderer's estimate, MAX_PROCESS_MEMORY."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.hostile import extreme_images

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
    ask("/iiif/3/rgb.tif/full/64,/0/default.avif")
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


@pytest.fixture(scope="module")
def extreme(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extreme_images(tmp_path_factory.mktemp("extreme"))


HEAVY = [
    "/x?FIF=rgb.tif&WID=2000&CVT=jpeg",
    "/x?FIF=rgb.tif&WID=2000&COL=grey&CVT=png",
    "/x?FIF=rgb.tif&WID=3000&CVT=jpeg",
    "/iiif/3/rgb.tif/full/max/33/default.png",
    "/iiif/3/rgb.tif/full/max/0/default.webp",
    "/iiif/3/rgb.tif/full/1500,/0/bitonal.gif",
    "/iiif/3/rgb.tif/full/max/0/default.avif",
    "/iiif/3/cube.tif/full/max/45/bits16.png",
    "/x?FIF=cube.tif&WID=1600&BIT=16&CVT=tiff",
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
