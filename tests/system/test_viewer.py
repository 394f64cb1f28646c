"""The viewer in a real browser: headless Debian Chromium against `pyiip serve` over the demo data.

The page must load, tiles must arrive, display controls must change both the
requested tile URLs and the pixels on screen, and the coordinate readout must
agree with the pixel grid (FITS flip included) and with astropy's WCS.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from pyiip.tools.demo import write_demo_data
from tests.support.browser import chromium, missing, screenshot, wait_for
from tests.support.servers import get, http_server

CUBE, RGB = "demo/cube.tif", "demo/rgb.tif"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("viewer")
    write_demo_data(root / "demo", size=1024, progress=False)
    return root


@pytest.fixture(scope="module")
def base(demo_root: Path):
    port, context = http_server(demo_root, {"JPEG_QUALITY": "90"})
    with context:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser(base: str):
    """Desktop-sized Chromium; it depends on the server so that it quits (closing connections) first."""
    reason = missing()
    if reason:
        pytest.fail(reason)
    with chromium(1280, 800) as driver:
        yield driver


def open_page(driver, url: str) -> None:
    driver.get(url)
    settle(driver)


def settle(driver, contains: str = "", absent: str = "") -> list[str]:
    """Wait until the shown tiles are all loaded and faded in, and every URL has/lacks a text; return them."""

    def ready():
        if not driver.execute_script("return !!(window.pyiipViewer && pyiipViewer.settled && pyiipViewer.settled())"):
            return None
        urls = driver.execute_script("return pyiipViewer.tileUrls()")
        ok = urls and all(contains in u and (not absent or absent not in u) for u in urls)
        return urls if ok else None

    return wait_for(ready, 30, f"tiles with {contains!r}")


def map_pixels(driver) -> np.ndarray:
    return screenshot(driver, driver.find_element("id", "map")).astype(float)


def change(driver, element_id: str, value: str, event: str = "change") -> None:
    """Set a control's value as a user would, firing the event the page listens to."""
    driver.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event(arguments[2], {bubbles: true}));",
        element_id,
        value,
        event,
    )


def test_page_loads_cube_tiles_and_header(browser, base):
    open_page(browser, f"{base}/")
    assert browser.title.startswith(CUBE)
    links = [a.text for a in browser.find_elements("css selector", "#images a.image")]
    assert links == [CUBE, "demo/cutout.fits", RGB]  # FITS served too
    urls = settle(browser, "&JTL=")
    # VisiOmatic's parameter order; the demo cube is float: gamma 2.2 sent as GAM=1/2.2, colour CTW.
    for url in urls:
        assert "/fcgi-bin/iipsrv.fcgi?FIF=demo/cube.tif&GAM=0.4545&CTW=0,0,1;0,1,0;1,0,0&JTL=" in url
    assert len(set(urls)) == len(urls) > 1
    header = browser.find_element("id", "fits-header").get_attribute("textContent")
    assert "CTYPE1  = 'RA---TAN'" in header and "NAXIS2  =                 1024" in header
    channels = [td.text for td in browser.find_elements("css selector", "#channels tbody td:nth-child(2)")]
    assert channels == ["g", "r", "i"]
    assert browser.execute_script("return pyiipViewer.errors") == 0


def test_controls_change_tile_urls_and_pixels(browser, base):
    open_page(browser, f"{base}/viewer.html?image={CUBE}")
    colour = map_pixels(browser)
    assert colour.mean() > 5  # the sky is on screen, not a black page

    change(browser, "cmap", "jet")
    urls = settle(browser, "&CMP=jet&")
    assert all("&CTW=1;1;1&" in u for u in urls)  # a colormap shows one channel (mono mode)
    assert browser.find_element("id", "mode").get_attribute("value") == "0"
    jet = map_pixels(browser)
    assert np.abs(jet - colour).mean() > 20
    assert jet[..., 2].mean() > 2 * jet[..., 0].mean()  # jet's low end is blue

    minimum = browser.find_element("css selector", "#channels tr[data-channel='0'] input.min")
    maximum = browser.find_element("css selector", "#channels tr[data-channel='0'] input.max")
    for element, value in ((minimum, "95"), (maximum, "105")):
        element.clear()
        element.send_keys(value + "\n")
    settle(browser, "&MINMAX=1:95,105&")
    stretched = map_pixels(browser)
    assert np.abs(stretched - jet).mean() > 20

    browser.find_element("id", "invert").click()
    settle(browser, "&CMP=jet&INV&")
    assert np.abs(map_pixels(browser) - stretched).mean() > 20

    change(browser, "gamma", "1", "input")
    settle(browser, "&INV&MINMAX=1:95,105&CTW=", absent="GAM=")
    change(browser, "contrast", "2", "input")
    settle(browser, "&INV&CNT=2&MINMAX=")

    browser.find_element("id", "reset").click()
    settle(browser, "&GAM=0.4545&CTW=0,0,1;0,1,0;1,0,0&", absent="MINMAX")
    change(browser, "mode", "color")
    browser.execute_script(
        "const e = document.querySelector(\"#channels tr[data-channel='2'] input[type=color]\");"
        "e.value = '#ffffff'; e.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    settle(browser, "&CTW=0,0,1;0,1,1;1,0,1&")  # channel 3 now mixes into R, G and B
    mixed = map_pixels(browser)
    lit = colour[..., 0] > 80  # where channel 3 (red so far) is bright, green and blue now follow
    gain = (mixed - colour)[lit].mean(axis=0)
    assert lit.sum() > 100 and abs(gain[0]) < 5 and gain[1] > 15 and gain[2] > 15, gain


def _blob_centre(mask: np.ndarray, near: tuple[float, float], radius: float) -> tuple[float, float]:
    """Centroid (x, y) of the masked pixels within radius of the one closest to `near`."""
    ys, xs = np.nonzero(mask)
    assert len(xs), "nothing bright on screen"
    closest = np.argmin((xs - near[0]) ** 2 + (ys - near[1]) ** 2)
    keep = (xs - xs[closest]) ** 2 + (ys - ys[closest]) ** 2 <= radius**2
    return float(xs[keep].mean()), float(ys[keep].mean())


def test_coordinates_follow_pixels_and_wcs(browser, base, demo_root):
    from selenium.webdriver.common.action_chains import ActionChains

    hdu = fits.open(demo_root / "demo" / "cutout.fits")[0]  # at size 1024, the whole field
    data, wcs = hdu.data[0].astype(float), WCS(hdu.header, naxis=2)  # g, the cube's channel 1
    # The brightest object inside the central part of the field, by its FITS (1-based) centroid.
    n = data.shape[0]
    inner = data[n // 5 : -n // 5, n // 5 : -n // 5]
    py, px = np.unravel_index(np.nanargmax(inner), inner.shape)
    py, px = py + n // 5, px + n // 5
    peak = data[py, px]
    ys, xs = np.nonzero(data >= 0.7 * peak)
    near = (xs - px) ** 2 + (ys - py) ** 2 <= 25
    fits_x, fits_y = xs[near].mean() + 1, ys[near].mean() + 1

    # Show only that object's core: channel 1, grey, cut at 0.7 x peak, at one screen pixel per image pixel.
    open_page(browser, f"{base}/viewer.html?image={CUBE}")
    change(browser, "mode", "0")
    for bound, value in (("max", peak), ("min", 0.7 * peak)):
        element = browser.find_element("css selector", f"#channels tr[data-channel='0'] input.{bound}")
        element.clear()
        element.send_keys(f"{value:.6g}\n")
    browser.execute_script("pyiipViewer.map.setZoom(2, {animate: false})")
    settle(browser, "&MINMAX=1:")
    browser.execute_script("document.querySelector('.leaflet-control-container').style.visibility = 'hidden'")
    pixels = map_pixels(browser)
    browser.execute_script("document.querySelector('.leaflet-control-container').style.visibility = ''")
    height, width = pixels.shape[:2]
    bright = pixels.mean(axis=2) > 60
    assert bright.sum() < 1000, "more than the cores of objects is bright"
    screen_x, screen_y = _blob_centre(bright, (width / 2, height / 2), 6)

    element = browser.find_element("id", "map")
    readout = browser.find_element("id", "coords")

    def point_at(x: float, y: float) -> dict:
        ActionChains(browser).move_to_element_with_offset(
            element, round(x - width / 2), round(y - height / 2)
        ).perform()
        return json.loads(browser.execute_script("return JSON.stringify(document.getElementById('coords').dataset)"))

    shown = point_at(screen_x, screen_y)
    x, y = float(shown["x"]), float(shown["y"])
    assert abs(x - fits_x) < 1.5 and abs(y - fits_y) < 1.5, (x, y, fits_x, fits_y)
    ra, dec = wcs.all_pix2world([[x, y]], 1)[0]
    assert abs(float(shown["ra"]) - ra) * 3600 < 0.01 and abs(float(shown["dec"]) - dec) * 3600 < 0.01
    true_ra, true_dec = wcs.all_pix2world([[fits_x, fits_y]], 1)[0]
    assert abs(float(shown["ra"]) - true_ra) * 3600 < 0.5 and abs(float(shown["dec"]) - true_dec) * 3600 < 0.5
    assert "α " in readout.text and "δ " in readout.text

    # At zoom 2 (full resolution) a screen pixel is an image pixel; screen y goes down, FITS y up.
    moved = point_at(screen_x + 40, screen_y + 30)
    assert float(moved["x"]) - x == pytest.approx(40, abs=1.01)
    assert float(moved["y"]) - y == pytest.approx(-30, abs=1.01)
    ra2, dec2 = wcs.all_pix2world([[float(moved["x"]), float(moved["y"])]], 1)[0]
    assert abs(float(moved["ra"]) - ra2) * 3600 < 0.01 and abs(float(moved["dec"]) - dec2) * 3600 < 0.01


def test_rgb_through_iip_and_iiif(browser, base):
    open_page(browser, f"{base}/viewer.html?image={RGB}")
    urls = settle(browser, "&JTL=")
    assert all(u.split("/fcgi-bin/iipsrv.fcgi?")[1].startswith("FIF=demo/rgb.tif&JTL=") for u in urls)
    assert not browser.find_elements("id", "cmap")  # 8-bit RGB: no astro display controls
    through_iip = map_pixels(browser)
    pytest.importorskip("pyiip.respond.iiif", reason="the IIIF protocol module is not in this tree")
    assert get(f"{base}/iiif/3/demo%2Frgb.tif/info.json")[0] == 200
    browser.find_element("id", "protocol-iiif").click()
    urls = settle(browser, "/iiif/3/demo%2Frgb.tif/")
    assert all(u.endswith("/0/default.jpg") for u in urls)
    assert "tiles=iiif" in browser.current_url
    through_iiif = map_pixels(browser)
    assert np.abs(through_iiif - through_iip).mean() < 6  # the same picture through either protocol
    open_page(browser, browser.current_url)  # the link keeps the mode
    settle(browser, "/iiif/3/")


def test_page_is_small_and_tiles_arrive_one_by_one(browser, base):
    open_page(browser, f"{base}/")
    entries = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => [e.name, e.transferSize, e.encodedBodySize])"
    )
    tiles = [e for e in entries if "JTL=" in e[0]]
    others = [e for e in entries if "FIF=" not in e[0]]
    metadata = [e for e in entries if "FIF=" in e[0] and "JTL=" not in e[0]]
    assert len(metadata) == 1 and "obj=subject" in metadata[0][0]
    assert len(tiles) > 1 and all("CVT=" not in e[0] for e in entries)  # tiles only, never the whole image
    page_bytes = sum(e[2] for e in others) + len(browser.page_source)
    assert page_bytes < 100_000, others  # Leaflet gzipped plus the viewer's own files


def test_phone_sized_window(browser, base):
    with chromium(390, 760, mobile=True) as phone:
        open_page(phone, f"{base}/")
        layout = phone.execute_script(
            "const m = document.getElementById('map').getBoundingClientRect();"
            "return {scroll: document.documentElement.scrollWidth, width: innerWidth, mapW: m.width, mapH: m.height}"
        )
        assert layout["scroll"] <= layout["width"] == 390
        assert layout["mapW"] == 390 and layout["mapH"] > 380
        shown = json.loads(phone.execute_script("return JSON.stringify(document.getElementById('coords').dataset)"))
        assert float(shown["x"]) == pytest.approx(512.5, abs=2) and "ra" in shown  # the centre, without a pointer
        phone.find_element("id", "panel-toggle").click()
        grown = phone.execute_script("return document.getElementById('map').getBoundingClientRect().height")
        assert grown > layout["mapH"] + 150
        settle(phone, "&JTL=")
        phone.find_element("id", "panel-toggle").click()
        phone.find_elements("css selector", "#images a.image")[2].click()
        settle(phone, "FIF=demo/rgb.tif&JTL=")
        assert phone.current_url.endswith("/viewer.html?image=demo%2Frgb.tif")
