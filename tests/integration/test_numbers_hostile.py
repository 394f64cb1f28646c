"""Numbers from requests (issue 15, finding 16): every out-of-range value a 400 with one log line, never a 500.

Each case below answered 500 with a 27-line traceback before numbers were
parsed with bounds: integers of 309+ digits overflowed float divisions,
4301+ digits made ``int()`` raise, ``pct:`` values overflowed to inf, extreme
display values broke the lookup tables of the display pipeline, and a PFL on
1-bit or complex samples built invalid JSON.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from pyiip import config, log
from pyiip.http import Request
from pyiip.model import Display
from pyiip.process.display import apply_display
from tests.support.imaging import rgb_pattern, write_tifffile_pyramid, write_vips_pyramid

IIP = "/fcgi-bin/iipsrv.fcgi"
D309, D330, D4301 = "9" * 309, "9" * 330, "9" * 4301

# (path, query) pairs that answered 500 before and are a 400 now.
REFUSED = {
    "iip WID 330 digits": (IIP, f"FIF=rgb.tif&WID={D330}&CVT=jpeg"),
    "iip HEI 330 digits": (IIP, f"FIF=rgb.tif&HEI={D330}&CVT=jpeg"),
    "iiif 3 size w 309 digits": (f"/iiif/3/rgb.tif/full/{D309},/0/default.jpg", ""),
    "iiif 2 size w 309 digits": (f"/iiif/2/rgb.tif/full/{D309},/0/default.jpg", ""),
    "iiif 3 size h 309 digits": (f"/iiif/3/rgb.tif/full/,{D309}/0/default.jpg", ""),
    "iiif 3 size 4301 digits": (f"/iiif/3/rgb.tif/full/{D4301},/0/default.jpg", ""),
    "iiif 3 region 4301 digits": (f"/iiif/3/rgb.tif/{D4301},0,1,1/max/0/default.jpg", ""),
    "iiif 3 size pct inf": (f"/iiif/3/rgb.tif/full/pct:{'9' * 400}/0/default.jpg", ""),
    "iiif 2 size pct inf": (f"/iiif/2/rgb.tif/full/pct:{'9' * 400}/0/default.jpg", ""),
    "iiif 3 region pct inf": (f"/iiif/3/rgb.tif/pct:0,0,{'9' * 400},10/max/0/default.jpg", ""),
    "iiif query form size": (IIP, f"IIIF=rgb.tif/full/{D4301},/0/default.jpg"),
    "deepzoom level 4301 digits": (f"/deepzoom/rgb.tif_files/{D4301}/0_0.jpg", ""),
    "deepzoom column 4301 digits": (f"/deepzoom/rgb.tif_files/9/{D4301}_0.jpg", ""),
    "deepzoom row 4301 digits": (f"/deepzoom/rgb.tif_files/9/0_{D4301}.jpg", ""),
    "deepzoom query form": (IIP, f"DeepZoom=rgb.tif_files/{D4301}/0_0.jpg"),
    "zoomify tier 4301 digits": (f"/zoomify/rgb.tif/TileGroup0/{D4301}-0-0.jpg", ""),
    "zoomify column 4301 digits": (f"/zoomify/rgb.tif/TileGroup0/0-{D4301}-0.jpg", ""),
    "zoomify row 4301 digits": (f"/zoomify/rgb.tif/TileGroup0/0-0-{D4301}.jpg", ""),
    "zoomify query form": (IIP, f"Zoomify=rgb.tif/TileGroup0/{D4301}-0-0.jpg"),
    "display GAM=0.5&CNT=1e308": (IIP, "FIF=float.tif&GAM=0.5&CNT=1e308&JTL=0,0"),
}
# Display values inside their ranges that broke the pipeline's tables: now drawn by the exact formula.
DRAWN = {
    "GAM=1e-5&CNT=3": Display(gamma=1e-5, contrast=3.0),
    "CNT=5e-324": Display(contrast=5e-324),
    "GAM=1e-320": Display(gamma=1e-320),
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small images: RGB JPEG pyramid, float32 pyramid, 3-channel 1-bit and complex tiled TIFFs."""
    path = tmp_path_factory.mktemp("numbers")
    write_vips_pyramid(path / "rgb.tif", rgb_pattern(600, 500), compression="jpeg", quality=85)
    cube = np.random.default_rng(3).normal(100, 5, (200, 300, 1)).astype(np.float32)
    write_tifffile_pyramid(path / "float.tif", cube, smin=[90.0], smax=[130.0])
    rng = np.random.default_rng(4)
    tifffile.imwrite(path / "bits.tif", rng.random((64, 64, 3)) > 0.5, tile=(16, 16), photometric="rgb")
    tifffile.imwrite(path / "complex.tif", (rng.random((64, 64)) + 1j).astype(np.complex64), tile=(16, 16))
    return path


def environ(path: str, query: str) -> dict[str, str]:
    uri = path + ("?" + query if query else "")
    return {"REQUEST_METHOD": "GET", "REQUEST_URI": uri, "QUERY_STRING": query, "SERVER_NAME": "localhost"}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_out_of_range_number_is_400(root, case, make_app):
    path, query = REFUSED[case]
    response = make_app(root).respond(Request("GET", path, query, headers={}))
    assert response.status == 400, (case, bytes(response.body[:200]))
    assert len(bytes(response.body)) < 200  # a short reason, not a number echoed back


@pytest.mark.parametrize("query", sorted(DRAWN))
def test_extreme_display_values_drawn_exactly(root, query, make_app):
    app = make_app(root)
    response = app.respond(Request("GET", IIP, f"FIF=float.tif&{query}&PTL=0,0", headers={}))
    assert response.status == 200, bytes(response.body[:200])
    image = app.service.image("float.tif")
    level = len(image.info.levels) - 1  # resolution 0
    pixels = image.source.read(level, *image.info.levels[level].tile_rect(0, 0))
    expected = apply_display(pixels, image.minmax, DRAWN[query], exact=True)
    png = pyvips.Image.new_from_buffer(bytes(response.body), "")
    assert np.array_equal(png.numpy().reshape(expected.shape), expected)


def test_profile_of_one_bit_samples_is_json_of_0_and_1(root, make_app):
    response = make_app(root).respond(Request("GET", IIP, "FIF=bits.tif&PFL=0:0,3-10,3", headers={}))
    assert response.status == 200, bytes(response.body[:200])
    expected = tifffile.imread(root / "bits.tif")[3, 0:10].astype(int).ravel().tolist()
    assert json.loads(bytes(response.body))["profile"] == expected


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")  # the reader's min/max of the real parts
def test_profile_of_complex_samples_is_refused(root, make_app):
    response = make_app(root).respond(Request("GET", IIP, "FIF=complex.tif&PFL=0:0,0-10,0", headers={}))
    assert response.status == 415
    assert b"complex" in bytes(response.body)


@pytest.fixture
def logfile(tmp_path: Path):
    """Point pyiip's logger at a file for one test, then give it back as it was."""
    logger = logging.getLogger("pyiip")
    saved = logger.handlers[:], logger.level, logger.propagate
    path = tmp_path / "pyiip.log"

    def setup(verbosity: int) -> Path:
        log.setup(config.load({"LOGFILE": str(path), "VERBOSITY": str(verbosity)}))
        return path

    yield setup
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
        handler.close()
    logger.handlers[:], logger.propagate = saved[0], saved[2]
    logger.setLevel(saved[1])


def test_each_refusal_logs_one_line_at_verbosity_2(root, logfile, make_app):
    path = logfile(2)
    app = make_app(root, LOGFILE=str(path), VERBOSITY="2")
    for case, (route, query) in sorted(REFUSED.items()):
        before = path.read_text()
        status = app.handle(environ(route, query)).status
        lines = path.read_text()[len(before) :].splitlines()
        assert status.startswith("400"), (case, status)
        assert len(lines) == 1 and "status=400" in lines[0], (case, lines[:3])
        assert len(lines[0]) < 2200  # path and query cut to 1000 characters each


def test_refusals_log_nothing_at_verbosity_1(root, logfile, make_app):
    path = logfile(1)
    app = make_app(root, LOGFILE=str(path), VERBOSITY="1")
    for route, query in REFUSED.values():
        assert app.handle(environ(route, query)).status.startswith("400")
    assert path.read_text() == ""


# ---------------------------------------------------------------- the bounds themselves

# The documented ranges (pyiip.protocols.numbers and iip), written out: the test is their spec.
GAMMA, CONTRAST, ANGLE, TWIST = (0.0, 100.0), (0.0, 1000.0), (-360.0, 360.0), (-1e6, 1e6)
SAMPLE = (-float(np.finfo(np.float32).max), float(np.finfo(np.float32).max))
MAX_PERCENT = 1e6

BOUNDARIES = [
    ("GAM", GAMMA),
    ("CNT", CONTRAST),
    ("MINMAX=1:0,", SAMPLE),
    ("CTW", TWIST),
    ("SHD=0,", ANGLE),
    ("ROT", ANGLE),
]


@pytest.mark.parametrize(("key", "bounds"), BOUNDARIES)
def test_iip_real_bounds(root, key, bounds, make_app):
    """Each end of a range is served, just beyond it is a 400."""
    app = make_app(root)
    prefix = key if key.endswith((",", ":")) else key + "="
    low, high = bounds
    for value, status in ((low, 200), (high, 200), (np.nextafter(low, -np.inf), 400), (high * 1.001, 400)):
        response = app.respond(Request("GET", IIP, f"FIF=float.tif&{prefix}{value!r}&JTL=0,0", headers={}))
        assert response.status == status, (key, value, bytes(response.body[:100]))


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (IIP, f"FIF=rgb.tif&WID={2**31}&CVT=jpeg"),
        (IIP, f"FIF=rgb.tif&QLT={-(2**31) - 1}&CVT=jpeg"),
        (IIP, f"FIF=rgb.tif&JTL=0,{2**31}"),
        (IIP, f"FIF=rgb.tif&GAM={'0' * 64}1&JTL=0,0"),  # 65 characters
        (f"/iiif/3/rgb.tif/0,0,{2**53},1/max/0/default.jpg", ""),
        (f"/iiif/3/rgb.tif/full/^pct:{MAX_PERCENT * 1.5:f}/0/default.jpg", ""),
        (f"/deepzoom/rgb.tif_files/{2**53}/0_0.jpg", ""),
        (f"/zoomify/rgb.tif/TileGroup0/0-{2**53}-0.jpg", ""),
    ],
)
def test_integer_and_length_bounds(root, path, query, make_app):
    assert make_app(root).respond(Request("GET", path, query, headers={})).status == 400


@given(
    gamma=st.one_of(st.floats(*GAMMA), st.sampled_from([0.0, 5e-324, 1e-320, 1e-5, 1e-3, 100.0])),
    contrast=st.one_of(st.floats(*CONTRAST), st.sampled_from([0.0, 5e-324, 1e-300, 1e-3, 3.0, 1000.0])),
    colormap=st.sampled_from([None, "jet", "hot", "cold", "red"]),
    invert=st.booleans(),
    dtype=st.sampled_from(["float32", "float64", "uint16", "int32"]),
)
@settings(max_examples=int(os.environ.get("PYIIP_HYPOTHESIS_EXAMPLES", "120")), deadline=None)
def test_pipeline_finite_in_the_accepted_ranges(gamma, contrast, colormap, invert, dtype):
    """Every GAM and CNT the parser accepts renders, and the fast path stays within a level of the formula."""
    data = np.linspace(-2, 40, 64 * 3).reshape(8, 8, 3).astype(dtype)
    minmax = np.array([[0.0, 30.0]] * 3)
    display = Display(gamma=gamma, contrast=contrast, colormap=colormap, invert=invert)
    fast = apply_display(data, minmax, display)
    exact = apply_display(data, minmax, display, exact=True)
    assert fast.dtype == np.uint8 and fast.shape == exact.shape
    assert np.abs(fast.astype(int) - exact.astype(int)).max() <= 1


def test_refusal_reason_logged_at_verbosity_3(root, logfile, make_app):
    path = logfile(3)
    app = make_app(root, LOGFILE=str(path), VERBOSITY="3")
    assert app.handle(environ(IIP, f"FIF=rgb.tif&WID={D330}&CVT=jpeg")).status.startswith("400")
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and "Traceback" not in path.read_text(), lines
    assert 'refused status=400 reason="WID is not a number of at most 64 characters"' in lines[0]
    assert "status=400" in lines[1] and "uri=" in lines[1]
