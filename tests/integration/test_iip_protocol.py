"""IIP replies as clients parse them: the VisiOmatic v2 regexes, iipsrv framing, pixels."""

import re

import numpy as np
import pytest
import simplejpeg

from pyiip.http import Response

METADATA = (
    "&obj=IIP,1.0&obj=max-size&obj=tile-size&obj=resolution-number&obj=bits-per-channel"
    "&obj=min-max-sample-values&obj=subject"
)
# VisiOmatic v2 (TileLayer.IIP.js) runs these, unanchored, on the whole body.
VISIOMATIC = {
    "IIP": r"IIP:(\d+\.\d*)",
    "Max-size": r"Max-size:(\d+)\s+(\d+)",
    "Tile-size": r"Tile-size:(\d+)\s+(\d+)",
    "Resolution-number": r"Resolution-number:(\d+)",
    "Bits-per-channel": r"Bits-per-channel:(\d+)",
    "Min-Max-sample-values": r"Min-Max-sample-values:\s*(.*)",
}


def fits_key(key: str, text: str):
    """VisiOmatic's readFITSKey: 8-column key, '=', a quoted string or a number."""
    key = key.upper()[:8]
    pattern = key + " " * (8 - len(key)) + r"=\s*(?:'((?:[^']|'')*)'|([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))"
    match = re.search(pattern, text)
    if match is None:
        return None
    return match.group(1).rstrip() if match.group(1) is not None else float(match.group(2))


def js_regex(pattern: str) -> str:
    """A JavaScript regex in Python terms: JS '.' matches no line terminator, '\\r' included."""
    return pattern.replace(".*", "[^\\r\\n\u2028\u2029]*")


def visiomatic_parse(body: str) -> dict:
    found = {key: re.search(js_regex(pattern), body) for key, pattern in VISIOMATIC.items()}
    assert all(found.values()), {k: bool(v) for k, v in found.items()}
    tokens = found["Min-Max-sample-values"].group(1).split()
    assert len(re.split(r"\s+", found["Min-Max-sample-values"].group(1))) % 2 == 0  # no trailing whitespace
    return {
        "size": tuple(int(v) for v in found["Max-size"].groups()),
        "tile": tuple(int(v) for v in found["Tile-size"].groups()),
        "levels": int(found["Resolution-number"].group(1)),
        "bits": int(found["Bits-per-channel"].group(1)),
        "minmax": [float(v) for v in tokens],
    }


@pytest.mark.parametrize(
    ("name", "size", "levels", "bits", "channels"),
    [
        ("rgb.tif", (1100, 900), 4, 8, 3),
        ("grey16.tif", (600, 520), 3, 16, 1),
        ("float.tif", (700, 500), 3, 32, 3),
        ("nested/deeper/float_notags.tif", (700, 500), 3, 32, 1),
    ],
)
def test_visiomatic_parses_every_metadata_reply(iip, name, size, levels, bits, channels):
    reply = iip(f"FIF={name}{METADATA}")
    assert reply.status == 200 and reply.content_type == "application/vnd.netfpx"
    body = reply.body.decode("latin-1")
    assert body.startswith("IIP:1.0\r\n")  # the protocol line is the first body line
    parsed = visiomatic_parse(body)
    assert parsed["size"] == size and parsed["levels"] == levels and parsed["bits"] == bits
    assert len(parsed["minmax"]) == 2 * channels
    assert all(line.endswith("\r") or not line for line in body.split("\n")[:-1])


def test_float_minmax_line_is_byte_exact(iip):
    body = iip("FIF=float.tif&OBJ=Min-Max-sample-values").body
    assert body == b"\r\nMin-Max-sample-values: 90  130  91  131.5  92  0.100000001\r\n"


def test_subject_holds_the_fits_cards(iip):
    body = iip(f"FIF=float.tif{METADATA}").body.decode("latin-1")
    match = re.search(r"subject/(\d+):(.*)\r\n", body)
    assert match and int(match.group(1)) == len(match.group(2))
    assert fits_key("CTYPE1", body) == "RA---TAN"
    assert fits_key("CD2_2", body) == pytest.approx(0.00005556)
    assert fits_key("NAXIS2", body) == 500
    assert fits_key("CHAN0002", body) == "r"


def test_one_unknown_object_replaces_the_whole_reply(iip):
    reply = iip("FIF=rgb.tif&OBJ=IIP,1.0&OBJ=Max-size&OBJ=no-such-thing")
    assert reply.status == 400
    assert reply.body == b"Error/17:3 2 no-such-thing\r\n"


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("OBJ=Max-size", 400),  # no image yet: error 1 3
        ("FIF=missing.tif&OBJ=Max-size", 404),
        ("FIF=rgb.tif&JTL=4,0", 400),
        ("FIF=rgb.tif&JTL=-1,0", 400),
        ("FIF=rgb.tif&JTL=2,999", 404),
        ("FIF=rgb.tif&JTL=x", 400),
        ("FIF=rgb.tif&GAM=abc&JTL=0,0", 400),
        ("FIF=rgb.tif&MINMAX=1:a,b&JTL=0,0", 400),
        ("FIF=rgb.tif&FOO=1", 400),
        ("FIF=rgb.tif", 400),  # nothing to answer: error 2 1
        ("FIF=not_an_image.tif&OBJ=Max-size", 404),
    ],
)
def test_error_statuses(iip, query, status):
    reply: Response = iip(query)
    assert reply.status == status, reply.body


def test_iip_opt_objects_need_no_image(iip):
    reply = iip("OBJ=IIP,1.0&OBJ=IIP-server&OBJ=IIP-opt-comm")
    assert reply.status == 200
    assert reply.body.startswith(b"IIP:1.0\r\nIIP-server:3.65\r\nIIP-opt-comm:CVT ")


def test_other_objects(iip):
    body = iip("FIF=rgb.tif&OBJ=Resolutions&OBJ=Colorspace,0-3,0&OBJ=Horizontal-views&OBJ=basic-info").body
    assert b"Resolutions:137 112,275 225,550 450,1100 900\r\n" in body
    assert b"Colorspace,0-3,0:0 0 3 3 0 1 2\r\n" in body
    assert b"Horizontal-views:0\r\n" in body
    assert b"Max-size:1100 900\r\nResolution-number:4\r\n" in body
    assert iip("FIF=rgb.tif&ROT=90&OBJ=Max-size").body == b"\r\nMax-size:900 1100\r\n"


def _tile(iip, query):
    reply = iip(query)
    assert reply.status == 200, reply.body
    assert reply.content_type == "image/jpeg"
    return simplejpeg.decode_jpeg(reply.body, colorspace="RGB")


@pytest.mark.parametrize(
    ("res", "index", "shape", "origin"),
    [
        (3, 0, (256, 256), (0, 0)),
        (3, 4, (256, 76), (1024, 0)),  # right edge: cropped, not padded
        (3, 19, (132, 76), (1024, 768)),  # bottom-right corner
        (2, 2, (256, 38), (512, 0)),
        (1, 0, (225, 256), (0, 0)),
        (1, 1, (225, 19), (256, 0)),
        (0, 0, (112, 137), (0, 0)),
    ],
)
def test_jtl_tiles_match_the_source(iip, images, res, index, shape, origin):
    tile = _tile(iip, f"FIF=rgb_deflate.tif&JTL={res},{index}")
    level = images.arrays["rgb_deflate"][3 - res]
    x, y = origin
    assert tile.shape[:2] == shape
    expected = level[y : y + shape[0], x : x + shape[1]].astype(int)
    assert np.abs(tile.astype(int) - expected).mean() < 3


def test_passthrough_sends_the_stored_tile(iip, images):
    from pyiip.read.tiff import TiffSource

    source = TiffSource(str(images.root / "rgb.tif"))
    try:
        assert iip("FIF=rgb.tif&JTL=3,1").body == source.stored_jpeg(0, 1, 0)
        assert iip("FIF=rgb.tif&QLT=60&JTL=3,1").body != source.stored_jpeg(0, 1, 0)  # QLT re-encodes
    finally:
        source.close()


def test_ptl_is_png(iip, images):
    reply = iip("FIF=rgb_deflate.tif&PTL=3,0")
    assert reply.content_type == "image/png" and reply.body.startswith(b"\x89PNG")


def test_cvt_region_and_width(iip, images):
    reply = iip("FIF=rgb_deflate.tif&RGN=0.5,0.5,0.25,0.25&WID=100&CVT=jpeg")
    assert reply.status == 200
    assert reply.headers == [("Content-Disposition", 'inline;filename="rgb_deflate_100x82.jpg"')]
    pixels = simplejpeg.decode_jpeg(reply.body)
    assert pixels.shape == (82, 100, 3)
    full = images.arrays["rgb_deflate"][0][450:675, 550:825].astype(float)
    assert np.abs(pixels.mean(axis=(0, 1)) - full.mean(axis=(0, 1))).max() < 3
    # a point inside: output (50, 41) is source (137.5, 112.5) of the region
    assert np.abs(pixels[39:44, 48:53].mean(axis=(0, 1)) - full[107:118, 132:143].mean(axis=(0, 1))).max() < 6


def test_cvt_is_capped_by_max_cvt(images, make_app):
    from pyiip.http import Request

    app = make_app(images.root, MAX_CVT="200")
    reply = app.respond(Request("GET", "/fcgi-bin/iipsrv.fcgi", "FIF=rgb.tif&WID=5000&CVT=jpeg"))
    assert simplejpeg.decode_jpeg(reply.body).shape == (164, 200, 3)


def test_cvt_rotation_and_mirror(iip):
    plain = simplejpeg.decode_jpeg(iip("FIF=rgb_deflate.tif&WID=200&CVT=jpeg").body).astype(int)
    rotated = simplejpeg.decode_jpeg(iip("FIF=rgb_deflate.tif&WID=200&ROT=90&CVT=jpeg").body).astype(int)
    assert rotated.shape == (200, 164, 3)
    assert np.abs(np.rot90(plain, -1) - rotated).mean() < 4
    mirrored = simplejpeg.decode_jpeg(iip("FIF=rgb_deflate.tif&WID=200&ROT=!0&CVT=jpeg").body).astype(int)
    assert np.abs(plain[:, ::-1] - mirrored).mean() < 4


def test_til_frames_each_tile(iip):
    body = iip("FIF=rgb.tif&TIL=0,0").body
    match = re.match(rb"Tile,0,0,0/(\d+):\x02\x00\x00\x00\x00\x11\x00\x00\xff\xd8", body)
    assert match and body.endswith(b"\xff\xd9\r\n")


def test_pfl_profile_is_valid_json(iip):
    import json

    reply = iip("FIF=float.tif&PFL=1:0,0-4,0")
    assert reply.content_type == "application/json"
    values = json.loads(reply.body)["profile"]
    assert len(values) == 4 * 3 and values[:3] == [None, None, None]  # NaN is null, not nan
    single = json.loads(iip("FIF=float.tif&PFL=1:201,101-201,101").body)["profile"]
    assert len(single) == 3


def test_last_modified_and_conditional_get(iip, images):
    from pyiip.http import http_date

    reply = iip("FIF=rgb.tif&JTL=0,0")
    mtime = (images.root / "rgb.tif").stat().st_mtime
    assert reply.modified == pytest.approx(mtime)
    app_reply = iip("FIF=rgb.tif&JTL=0,0", headers={"if-modified-since": http_date(mtime)})
    assert app_reply.status == 200  # respond() leaves conditionals to finish()


def test_colormap_changes_tiles(iip):
    grey = simplejpeg.decode_jpeg(iip("FIF=float.tif&JTL=1,0").body, colorspace="RGB")
    jet = simplejpeg.decode_jpeg(iip("FIF=float.tif&CMP=jet&JTL=1,0").body, colorspace="RGB")
    assert grey.shape == jet.shape
    assert np.abs(grey.astype(int) - jet.astype(int)).mean() > 10
