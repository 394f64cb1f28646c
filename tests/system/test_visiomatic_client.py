"""VisiOmatic v3's own client (the built JavaScript the visiomatic 3.0.7 wheel ships) against pyiip, in
headless Chromium.

A page like the v3 server's (its base.html, without the parts that reach the internet) is served
from a directory holding the wheel's client; it points the client at ``pyiip serve``'s /api (CORS on).
The client must read the metadata, show tiles in mono and colour mode, read the pixel value at the
map's centre, and draw a profile, without a console error.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support import visiomatic
from tests.support.browser import chromium, missing, screenshot, wait_for
from tests.support.servers import get, http_server

W, H, C = 1024, 768, 3
PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>v3 client</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="PYIIP/static/vendor/leaflet/leaflet.css">
<link rel="stylesheet" href="client/css/visiomatic.css">
<style>body { padding: 0; margin: 0; } html, body, #map { width: 100%; height: 100%; }</style>
<script src="client/dist/visiomatic.js"></script></head>
<body><div id="map" style="background: black"></div><script>
var params = new URLSearchParams(location.search),
    url = params.get("api") + "?FIF=" + params.get("image"),
    map = L.map("map", {zoom: 1}),
    vlayer = V.layer.vTileLayer(url, {mixingMode: params.get("mode") || "mono", defaultChannel: 0,
                                      reuseTiles: true}).addTo(map);
V.control.pixelValues({position: "topright"}).addTo(map);
var sidebar = V.control.sidebar().addTo(map);
V.control.channelUI().addTo(sidebar);
V.control.profileUI().addTo(sidebar);
</script></body></html>
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        """No access log on the test's output."""


@contextlib.contextmanager
def static_server(directory: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> Iterator[tuple[str, str, np.ndarray]]:
    reason = missing()
    if reason:
        pytest.fail(reason)
    venv = visiomatic.ensure_venv()
    work = tmp_path_factory.mktemp("v3client")
    root, page = work / "root", work / "page"
    root.mkdir()
    page.mkdir()
    planes = visiomatic.sky(W, H, C)
    planes[0] += np.linspace(0, 300, W, dtype=np.float32)  # channel 1 alone brightens to the right: colour
    visiomatic.write_cube(planes, work / "cube.fits", root / "cube.tif")
    (page / "client").symlink_to(visiomatic.client_dir(venv))
    port, context = http_server(root, {"CORS": "*", "JPEG_QUALITY": "90"})
    with context:
        pyiip = f"http://127.0.0.1:{port}"
        (page / "index.html").write_text(PAGE.replace("PYIIP", pyiip))
        with static_server(page) as site:
            yield site, pyiip, planes


def loaded_tiles(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('img.leaflet-tile-loaded'))"
        ".filter(img => img.complete && img.naturalWidth > 0).map(img => img.src)"
    )


def requests(driver, marker: str) -> list[str]:
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes(arguments[0]))",
        marker,
    )


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_v3_client_on_pyiip(sites) -> None:
    site, pyiip, planes = sites
    api = f"{pyiip}/api"
    with chromium(1000, 700) as driver:
        driver.get(f"{site}/index.html?api={api}&image=cube.tif&mode=mono")
        tiles = wait_for(lambda: loaded_tiles(driver), 60, "the v3 client's first tiles")
        # metadata: the client's layer state comes from pyiip's INFO
        visio = driver.execute_script(
            "const v = vlayer.visio; return {n: v.nChannel, zoom: v.maxZoom, size: v.imageSize[v.maxZoom],"
            " grid: v.gridSize[v.maxZoom], min: vlayer.visioDefault.minValue, gamma: v.gamma, title: vlayer._title}"
        )
        info = json.loads(get(f"{api}?FIF=cube.tif&INFO")[2])
        assert visio["n"] == C and visio["zoom"] == info["tile_levels"] - 1 == 2
        assert visio["size"] == {"x": W, "y": H} and visio["grid"] == {"x": 4, "y": 3}
        assert visio["min"] == [pytest.approx(c[0]) for c in info["images"][0]["min_max"]]
        assert visio["gamma"] == 2.2 and visio["title"] == "cube.tif"
        assert all(t.startswith(f"{api}?FIF=cube.tif&CHAN=1&JTL=") for t in tiles)
        mono = screenshot(driver, driver.find_element("id", "map")).astype(int)
        assert mono.std() > 5 and np.abs(mono[..., 0] - mono[..., 2]).mean() < 1  # grey sky with stars

        # the pixel value at the map's centre (PixelValues asks on moveend)
        driver.execute_script("map.panBy([40, 25], {animate: false})")
        asked = wait_for(lambda: requests(driver, "&VAL="), 30, "a VAL request")
        x, y = (int(v) for v in asked[-1].split("&VAL=")[1].split(","))
        shown = wait_for(
            lambda: driver.execute_script("return document.querySelector('.leaflet-control-values-input').value"),
            30,
            "the value shown",
        )
        expected = float(planes[0, y - 1, x - 1])
        assert float(shown.split()[0]) == pytest.approx(expected, rel=1e-5)

        # a profile: start, pan, end, as a user draws it
        driver.execute_script("document.querySelector('[title=\"Start drawing a profile line\"]').click()")
        driver.execute_script("map.panBy([120, 60], {animate: false}); map.fire('drag')")  # as a user drags
        driver.execute_script("document.querySelector('[title=\"End line and plot\"]').click()")
        wait_for(lambda: driver.execute_script("return !!document.querySelector('.visiomatic-profile-plot canvas')"),
                 30, "the profile plot")  # fmt: skip
        (profile_url,) = requests(driver, "&PFL=")
        points = json.loads(get(profile_url)[2])["profile"]
        assert len(points) > 50 and all(len(p["values"]) == 1 for p in points)

        # colour mode: the client mixes the channels with MIX
        driver.get(f"{site}/index.html?api={api}&image=cube.tif&mode=color")
        colour_tiles = wait_for(lambda: loaded_tiles(driver), 60, "colour tiles")
        assert all("&MIX=1:" in t and "&MIX=3:" in t and "&CHAN=" not in t for t in colour_tiles)

        def mixed() -> bool:  # once the tiles have faded in: channels mixed into different colours
            colour = screenshot(driver, driver.find_element("id", "map")).astype(int)
            return np.abs(colour[..., 0] - colour[..., 2]).mean() > 3

        wait_for(mixed, 30, "colour on screen")
        assert console_errors(driver) == []
