"""The viewer's sky coordinates (static/wcs.js, run in node) against astropy.wcs on real-style headers.

A SCAMP TPV header, HST- and Spitzer-style SIP headers, the zenithal
projections written by astropy: 1,000 random pixels each must agree with
``all_pix2world`` to better than 0.01 arcsec. A WCS the viewer cannot
compute is named, never shown with wrong numbers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, Sip

import pyiip
from pyiip.tools.convert import convert
from tests.support.browser import chromium, missing, wait_for
from tests.support.servers import http_server

WCS_JS = Path(pyiip.__file__).parent / "static" / "wcs.js"
# Loads wcs.js as the page does, then answers {header, pixels} cases on stdin.
_RUN = """
const fs = require("fs");
require("vm").runInThisContext(fs.readFileSync(process.argv[1], "utf8"));
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(cases.map((c) => {
  const keys = PyiipWCS.parseHeader(c.header).keys;
  const wcs = PyiipWCS.fromHeader(keys);
  return {unsupported: PyiipWCS.unsupported(keys), projection: wcs && wcs.projection,
          world: wcs ? c.pixels.map((p) => wcs.pixelToWorld(p[0], p[1])) : null};
})));
"""


def run_wcs_js(cases: list[tuple[fits.Header, np.ndarray]]) -> list[dict]:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.fail("node is missing: scripts/system-packages.sh installs npm, which brings it")
    payload = [{"header": header.tostring(), "pixels": pixels.tolist()} for header, pixels in cases]
    done = subprocess.run(
        [node, "-e", _RUN, str(WCS_JS)], input=json.dumps(payload), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def cards(**values: object) -> fits.Header:
    header = fits.Header()
    for key, value in values.items():
        header[key] = value
    return header


def scamp_tpv() -> fits.Header:
    """A MegaCam CCD as SCAMP solves it: CRPIX far off the chip, PV1_0..10 and PV2_0..10 (cubic) in degrees."""
    header = cards(NAXIS=2, NAXIS1=2048, NAXIS2=4612, CTYPE1="RA---TPV", CTYPE2="DEC--TPV", EQUINOX=2000.0,
                   CRVAL1=214.8841, CRVAL2=52.7016, CRPIX1=-3871.5, CRPIX2=9410.2,
                   CD1_1=-5.1862e-05, CD1_2=1.2391e-07, CD2_1=-1.4019e-07, CD2_2=-5.1857e-05)  # fmt: skip
    pv1 = [-2.93e-05, 1.00146, 1.107e-03, 0.0, -5.82e-03, 1.05e-02, -3.68e-03, -1.13e-02, 4.2e-04, -1.082e-02, 5.1e-04]
    pv2 = [-1.69e-05, 1.00137, 7.06e-04, 0.0, -4.61e-03, 8.77e-03, -2.18e-03, -1.061e-02, 3.1e-04, -1.119e-02, 2.4e-04]
    for axis, values in ((1, pv1), (2, pv2)):
        for m, value in enumerate(values):
            header[f"PV{axis}_{m}"] = value
    return header


def hst_sip() -> fits.Header:
    """An ACS/WFC chip: rotated CD matrix, A and B to order 4 (AP/BP are the inverse: not needed here)."""
    header = cards(NAXIS=2, NAXIS1=4096, NAXIS2=2048, CTYPE1="RA---TAN-SIP", CTYPE2="DEC--TAN-SIP",
                   CRVAL1=150.1163213, CRVAL2=2.2009, CRPIX1=2048.0, CRPIX2=1024.0, A_ORDER=4, B_ORDER=4,
                   CD1_1=-1.0653e-05, CD1_2=-8.3017e-06, CD2_1=-7.8911e-06, CD2_2=1.1524e-05)  # fmt: skip
    a = {"2_0": 8.634e-06, "1_1": -5.287e-06, "0_2": 2.139e-06, "3_0": 1.32e-11, "2_1": -4.05e-10,
         "1_2": 1.12e-11, "0_3": -3.77e-10, "4_0": 1.64e-14, "3_1": -5.2e-15, "2_2": 2.06e-14,
         "1_3": -3.1e-15, "0_4": 1.13e-14}  # fmt: skip
    b = {"2_0": -1.749e-06, "1_1": 6.187e-06, "0_2": -3.165e-06, "3_0": -4.9e-10, "2_1": 1.7e-11,
         "1_2": -3.63e-10, "0_3": 2.1e-11, "4_0": -6.2e-15, "3_1": 1.9e-14, "2_2": -4.4e-15,
         "1_3": 1.63e-14, "0_4": -7.7e-15}  # fmt: skip
    for prefix, terms in (("A", a), ("B", b)):
        for pq, value in terms.items():
            header[f"{prefix}_{pq}"] = value
    return header


def spitzer_sip() -> fits.Header:
    """IRAC-style: CDELT with a PC rotation, A and B to order 3, near the celestial pole."""
    return cards(NAXIS=2, NAXIS1=256, NAXIS2=256, CTYPE1="RA---TAN-SIP", CTYPE2="DEC--TAN-SIP",
                 CRVAL1=270.0, CRVAL2=88.9, CRPIX1=128.0, CRPIX2=128.0, CDELT1=-3.39e-04, CDELT2=3.39e-04,
                 PC1_1=0.8829, PC1_2=-0.4695, PC2_1=0.4695, PC2_2=0.8829, A_ORDER=3, B_ORDER=3,
                 A_2_0=-2.2e-05, A_1_1=3.4e-05, A_0_2=1.1e-06, A_3_0=-5.3e-09, A_2_1=1.7e-09,
                 A_1_2=-4.1e-09, A_0_3=2.3e-10, B_2_0=1.9e-06, B_1_1=-2.3e-05, B_0_2=3.0e-05,
                 B_3_0=1.4e-10, B_2_1=-3.9e-09, B_1_2=1.8e-09, B_0_3=-5.1e-09)  # fmt: skip


def retyped(header: fits.Header, code: str) -> fits.Header:
    header["CTYPE1"], header["CTYPE2"] = f"RA---{code}", f"DEC--{code}"
    return header


def astropy_zenithal(code: str, rotation: float) -> fits.Header:
    """What astropy writes (PC/CDELT, LONPOLE, LATPOLE, MJDREF...) for a zenithal projection."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [f"RA---{code}", f"DEC--{code}"]
    wcs.wcs.crval = [83.6331, -5.3911]
    wcs.wcs.crpix = [1024.5, 1024.5]
    wcs.wcs.cdelt = [-2.5e-04, 2.5e-04]
    angle = np.radians(rotation)
    wcs.wcs.pc = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    header = wcs.to_header()
    header["NAXIS1"], header["NAXIS2"] = 2048, 2048
    return header


def random_pixels(header: fits.Header, count: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(abs(hash(header.tostring())) % 2**32)
    return rng.uniform(0.5, [header["NAXIS1"] + 0.5, header["NAXIS2"] + 0.5], (count, 2))


def separation_arcsec(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ra1, dec1, ra2, dec2 = (np.radians(v) for v in (a[:, 0], a[:, 1], b[:, 0], b[:, 1]))
    haversine = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(haversine))) * 3600


HEADERS = {
    "scamp-tpv": scamp_tpv,
    "scamp-tan-pv": lambda: retyped(scamp_tpv(), "TAN"),  # SCAMP's headers before TPV was registered
    "hst-sip": hst_sip,
    "spitzer-sip": spitzer_sip,
    **{
        f"astropy-{code}": (lambda code=code: astropy_zenithal(code, 30.0))
        for code in ("TAN", "SIN", "ARC", "ZEA", "STG")
    },
}


@pytest.mark.filterwarnings("ignore:Removed redundant SIP")  # astropy on TAN with PV: it reads them as TPV
def test_viewer_coordinates_match_astropy_to_a_hundredth_of_an_arcsec() -> None:
    headers = {name: make() for name, make in HEADERS.items()}
    cases = [(header, random_pixels(header)) for header in headers.values()]
    results = run_wcs_js(cases)
    for (name, header), (_, pixels), result in zip(headers.items(), cases, results, strict=True):
        assert result["unsupported"] == "", (name, result["unsupported"])
        expected = WCS(header).all_pix2world(pixels, 1)
        shown = np.array(result["world"], dtype=float)
        error = separation_arcsec(shown, expected)
        assert error.max() < 0.01, (name, float(error.max()))
    # The distortions are arcseconds large: a viewer that ignored them would fail above.
    for name in ("scamp-tpv", "hst-sip", "spitzer-sip"):
        header = headers[name]
        pixels = random_pixels(header)
        undistorted = WCS(header).wcs_pix2world(pixels, 1)
        if name == "scamp-tpv":
            plain = retyped(header.copy(), "TAN")
            for key in [k for k in plain if k.startswith("PV")]:
                del plain[key]
            undistorted = WCS(plain).wcs_pix2world(pixels, 1)
        assert separation_arcsec(undistorted, WCS(header).all_pix2world(pixels, 1)).max() > 1.0, name


UNSUPPORTED = [
    ({"CTYPE1": "RA---CAR", "CTYPE2": "DEC--CAR"}, "CAR projection"),
    ({"CTYPE1": "GLON-AIT", "CTYPE2": "GLAT-AIT"}, "AIT projection"),
    ({"CTYPE1": "DEC--TAN", "CTYPE2": "RA---TAN"}, "celestial axes DEC--TAN, RA---TAN"),
    ({"CTYPE1": "RA---TNX", "CTYPE2": "DEC--TNX"}, "TNX projection"),
    ({"CTYPE1": "RA---ZPN", "CTYPE2": "DEC--ZPN"}, "ZPN projection"),
    ({"CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN"}, "mixed projections RA---TAN-SIP, DEC--TAN"),
    ({"CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN", "PV2_1": 0.1}, "SIN with PV parameters"),
    ({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CPDIS1": "LOOKUP"}, "lookup-table distortion"),
    ({"CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN-SIP", "A_ORDER": 1e9, "B_ORDER": 2}, "SIP beyond order 9"),
]


def test_projections_the_viewer_cannot_do_are_named() -> None:
    base = {"NAXIS1": 100, "NAXIS2": 100, "CRPIX1": 50.0, "CRPIX2": 50.0, "CDELT1": -1e-4, "CDELT2": 1e-4}
    headers = [cards(**{**base, **extra}) for extra, _ in UNSUPPORTED]
    plain = cards(**base, CTYPE1="LINEAR", CTYPE2="LINEAR")
    results = run_wcs_js([(h, np.array([[1.0, 1.0]])) for h in [*headers, plain]])
    for (_, reason), result in zip(UNSUPPORTED, results, strict=False):
        assert reason in result["unsupported"] and result["world"] is None, (reason, result)
    assert results[-1] == {"unsupported": "", "projection": None, "world": None}  # no sky: nothing to name


def test_a_cube_converted_from_astropy_fits_shows_its_coordinates(tmp_path: Path) -> None:
    """astropy writes the FITS (PC/CDELT, SIP, LATPOLE); pyiip convert makes the cube; Chromium reads the readout."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval, wcs.wcs.crpix = [53.1625, -27.7914], [160.5, 120.5]
    wcs.wcs.cdelt = [-2.0e-4, 2.0e-4]
    wcs.wcs.pc = [[0.9397, -0.3420], [0.3420, 0.9397]]
    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    a[2, 0], a[1, 1], a[0, 3], b[0, 2], b[1, 1], b[3, 0] = 4e-5, -2e-5, 3e-8, 5e-5, 1e-5, -2e-8
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    header = wcs.to_header(relax=True)
    assert "LATPOLE" in header and "A_2_0" in header
    data = np.random.default_rng(5).normal(100, 5, (240, 320)).astype(np.float32)
    fits.PrimaryHDU(data, header).writeto(tmp_path / "sip.fits")
    convert([tmp_path / "sip.fits"], tmp_path / "sip.tif", compression="none", progress=False)
    car = fits.Header({"CTYPE1": "RA---CAR", "CTYPE2": "DEC--CAR", "CDELT1": -2e-4, "CDELT2": 2e-4})
    fits.PrimaryHDU(data, car).writeto(tmp_path / "car.fits")
    convert([tmp_path / "car.fits"], tmp_path / "car.tif", compression="none", progress=False)
    reason = missing()
    if reason:
        pytest.fail(reason)
    port, server = http_server(tmp_path)
    with server, chromium(1024, 768) as driver:
        driver.get(f"http://127.0.0.1:{port}/viewer.html?image=sip.tif")
        wait_for(
            lambda: driver.execute_script("return !!(window.pyiipViewer && pyiipViewer.readout)"), 30, "the viewer"
        )
        points = [(1.0, 1.0), (320.0, 240.0), (17.25, 203.5), (160.5, 120.5)]
        shown = driver.execute_script(
            "const image = pyiipViewer.image, out = [];"
            "for (const [x, y] of arguments[0]) {"
            "  pyiipViewer.readout.show(L.latLng(image.naxis2 + 0.5 - y, x - 0.5));"
            "  const d = document.getElementById('coords').dataset;"
            "  out.push([+d.x, +d.y, +d.ra, +d.dec]);"
            "}"
            "return out;",
            points,
        )
        info = driver.find_element("id", "info").get_attribute("textContent")
        driver.get(f"http://127.0.0.1:{port}/viewer.html?image=car.tif")
        wait_for(lambda: driver.execute_script("return !!(window.pyiipViewer && pyiipViewer.readout)"), 30, "CAR")
        readout = driver.find_element("id", "coords")
        unnamed = driver.execute_script("return 'ra' in document.getElementById('coords').dataset")
        car_text, car_info = readout.text, driver.find_element("id", "info").get_attribute("textContent")
    assert "TAN-SIP" in info
    # A projection the viewer cannot do is named, with no numbers.
    assert "no sky coordinates: CAR projection not supported" in car_text and not unnamed
    assert "CAR projection: not supported by this viewer" in car_info
    shown = np.array(shown)
    np.testing.assert_allclose(shown[:, :2], points)
    expected = WCS(header).all_pix2world(np.array(points), 1)
    assert separation_arcsec(shown[:, 2:], expected).max() < 0.01
    plain = WCS(header).wcs_pix2world(np.array(points), 1)
    assert separation_arcsec(plain, expected).max() > 0.5  # SIP moves these pixels by most of an arcsecond
