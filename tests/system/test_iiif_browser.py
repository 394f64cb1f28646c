"""IIIF URLs as a browser sends them: Chromium percent-encodes ``^`` (``new URL()``, ``<img src>``), and the
3.0 upscaling sizes must still load."""

from __future__ import annotations

import pytest

from tests.support.browser import chromium, missing
from tests.support.servers import http_server

LOAD = """
const [src, done] = arguments;
const img = new Image();
img.onload = () => done([img.src, img.naturalWidth, img.naturalHeight]);
img.onerror = () => done([img.src, -1, -1]);
img.src = src;
"""


@pytest.fixture(scope="module")
def base(images):
    port, context = http_server(images.root, {"MAX_CVT": "800"})  # ^max: 800 wide, not 5000
    with context:
        yield f"http://127.0.0.1:{port}"


def test_upscaling_sizes_load_in_an_img(base: str) -> None:
    reason = missing()
    if reason:
        pytest.fail(reason)
    with chromium(400, 300) as driver:
        driver.get(f"{base}/iiif/3/rgb.tif/info.json")
        href = driver.execute_script("return new URL(arguments[0]).href", f"{base}/iiif/3/rgb.tif/full/^max/0/x.jpg")
        assert "/full/%5Emax/" in href  # what every page's URL building sends
        for region, size, expected in (
            ("0,0,200,100", "^240,", [240, 120]),
            ("0,0,200,100", "^pct:150", [300, 150]),
            ("full", "^max", [800, 655]),
        ):
            url = f"{base}/iiif/3/rgb.tif/{region}/{size}/0/default.jpg"
            src, width, height = driver.execute_async_script(LOAD, url)
            assert "%5E" in src and [width, height] == expected, (url, src)
