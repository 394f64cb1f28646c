"""OpenSeadragon and Leaflet-IIIF in headless Chromium tile a JPEG 2000 and an HTJ2K image from `pyiip serve`.

Each viewer opens the image's IIIF 3 info.json, shows it whole, then zooms to
full resolution; every tile it asked for must have loaded, with status 200.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support import viewers
from tests.support.browser import chromium, missing, wait_for
from tests.support.imaging import rgb_pattern
from tests.support.jpeg2000 import jp2_bytes, jph_bytes, write
from tests.support.servers import http_server

NAMES = ("lossy.jp2", "image.jph")
FULL_TILE = re.compile(r"/(\d+),(\d+),(\d+),(\d+)/(\d+),(\d*)/0/default\.jpg$")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("jp2-viewers")
    pixels = np.tile(rgb_pattern(1000, 750, seed=11), (2, 2, 1))  # 2000 x 1500
    write(directory / "lossy.jp2", jp2_bytes(pixels, lossless=False, tile=512))
    write(directory / "image.jph", jph_bytes(pixels))
    return directory


@pytest.fixture(scope="module")
def base(root: Path):
    port, context = http_server(root, {"CORS": "*"})
    with context:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser(base: str):
    reason = missing() or viewers.install()
    if reason:
        pytest.fail(reason)
    with chromium(1000, 700) as driver:
        yield driver


def settled(driver) -> list[str]:
    """The tiles loaded once no new one has arrived for a second (at least one)."""
    last: list[int] = []

    def quiet():
        count = driver.execute_script("return report.loaded.length + report.failed.length")
        last.append(count)
        if count and len(last) > 10 and last[-11] == count:
            return driver.execute_script("return report.loaded")
        time.sleep(0.1)
        return None

    return wait_for(quiet, 60, "tiles")


@pytest.mark.parametrize("viewer", ["openseadragon", "leaflet-iiif"])
@pytest.mark.parametrize("name", NAMES)
def test_every_tile_loads(browser, base, tmp_path, viewer, name):
    info = f"{base}/iiif/3/{name}/info.json"
    browser.get(viewers.page(tmp_path, viewer, info).as_uri())
    overview = settled(browser)
    browser.execute_script("zoomTo(1)")
    wait_for(lambda: len(browser.execute_script("return report.loaded")) > len(overview), 60, "full-resolution tiles")
    loaded = settled(browser)
    assert browser.execute_script("return report.failed") == []
    statuses = browser.execute_script("return statuses()")
    tiles = [(url, status) for url, status in statuses if "/default.jpg" in url]
    assert len(tiles) >= len(loaded) > len(overview)
    assert all(status == 200 for _url, status in statuses), statuses
    full = [m for url in loaded if (m := FULL_TILE.search(url)) and m[3] == m[5]]  # region width = output width
    assert full, loaded
