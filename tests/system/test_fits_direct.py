"""FITS files dropped into the image root: two FastCGI processes under lighttpd asking the same fresh file at
once, and the viewer (IIP, as VisiOmatic v2 asks) and a IIIF image in headless Chromium."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.integration.test_fits_direct import write_cube
from tests.support.browser import chromium, missing, wait_for
from tests.support.servers import (
    fastcgi_children,
    free_port,
    get,
    http_server,
    lighttpd_config,
    require,
    running,
)

SRC = Path(__file__).resolve().parents[2] / "src"  # lighttpd's bin-path processes run this tree's code
QUERY = "/fcgi-bin/iipsrv.fcgi?FIF={}&OBJ=Max-size&OBJ=Resolution-number"


@pytest.fixture(scope="module")
def lighttpd(tmp_path_factory: pytest.TempPathFactory):
    binary = require("lighttpd")
    directory = tmp_path_factory.mktemp("fitslighttpd")
    root = directory / "images"
    root.mkdir()
    port = free_port()
    env = {"PYTHONPATH": str(SRC), "FITS_CACHE_DIR": f"{directory}/cubes", "FITS_BUILD_WAIT": "120"}
    config = lighttpd_config(directory, port, root, procs=2, env=env)
    with running([binary, "-D", "-f", str(config)], port) as process:
        yield f"http://127.0.0.1:{port}", process, root, directory


def test_two_processes_ask_a_fresh_fits_at_once(lighttpd) -> None:
    base, process, root, directory = lighttpd
    assert get(f"{base}{QUERY.format('absent.fits')}")[0] == 404  # both processes up, before the race
    write_cube(root / "fresh.fits", 21, (3, 600, 900))
    answers: list[tuple[int, bytes]] = []
    barrier = threading.Barrier(4)

    def ask() -> None:
        barrier.wait()
        status, _headers, body = get(f"{base}{QUERY.format('fresh.fits')}", timeout=120)
        answers.append((status, body))

    askers = [threading.Thread(target=ask) for _ in range(4)]
    for thread in askers:
        thread.start()
    for thread in askers:
        thread.join()
    assert [status for status, _ in answers] == [200] * 4, answers
    assert all(b"Max-size:900 600" in body for _, body in answers)
    assert len(fastcgi_children(process.pid)) == 2
    cubes = os.listdir(directory / "cubes")
    assert len([c for c in cubes if c.endswith(".tif")]) == 1 and not [c for c in cubes if c.startswith(".")]
    log = (directory / "pyiip.log").read_text()
    assert log.count("fresh.fits: building its cube") == 1 and "Traceback" not in log


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fitsviewer")
    write_cube(root / "dropped.fits", 22, (3, 700, 1000))
    cache = tmp_path_factory.mktemp("fitsviewercache") / "cubes"
    port, context = http_server(root, {"FITS_CACHE_DIR": str(cache), "FITS_BUILD_WAIT": "120"})
    with context:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser(base: str):
    reason = missing()
    if reason:
        pytest.fail(reason)
    with chromium(1024, 700) as driver:
        yield driver


def test_a_dropped_fits_cube_opens_in_the_viewer(browser, base: str) -> None:
    browser.get(f"{base}/")
    links = [a.text for a in browser.find_elements("css selector", "#images a.image")]
    assert links == ["dropped.fits"]

    def settled() -> list[str] | None:
        if not browser.execute_script("return !!(window.pyiipViewer && pyiipViewer.settled && pyiipViewer.settled())"):
            return None
        return browser.execute_script("return pyiipViewer.tileUrls()") or None

    urls = wait_for(settled, 120, "the FITS cube's tiles")
    assert all("FIF=dropped.fits&" in url and "&JTL=" in url for url in urls)
    header = browser.find_element("id", "fits-header").get_attribute("textContent")
    assert "CTYPE1  = 'RA---TAN'" in header and "NAXIS1  =                 1000" in header
    channels = [td.text for td in browser.find_elements("css selector", "#channels tbody td:nth-child(2)")]
    assert channels == ["g", "r", "i"]
    assert browser.execute_script("return pyiipViewer.errors") == 0


LOAD = """
const [src, done] = arguments;
const img = new Image();
img.onload = () => done([img.naturalWidth, img.naturalHeight]);
img.onerror = () => done([-1, -1]);
img.src = src;
"""


def test_the_same_cube_over_iiif_in_the_browser(browser, base: str) -> None:
    browser.get(f"{base}/iiif/3/dropped.fits/info.json")
    assert '"width": 1000' in browser.find_element("tag name", "body").text
    size = browser.execute_async_script(LOAD, f"{base}/iiif/3/dropped.fits/full/500,/0/default.jpg")
    assert size == [500, 350]
