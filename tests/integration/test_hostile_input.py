"""Property tests of every parser: whatever the request, a well-formed reply with a 2xx, 3xx or 4xx status.

Requests go through the whole WSGI application (routing, the protocol's
parser, resolver, renderer, HTTP finishing). Inputs are drawn near the
grammar of each protocol (real keys and image names with hostile values:
unbounded integers, digit strings past float range and past Python's
4300-digit int limit, NaN, infinities, subnormals, -0.0, encodings,
separators, unicode) and as raw bytes. A 500 is always a bug; so is a header with a line break, a wrong
Content-Length, an image reply that is not an image, or an error text that
names the image root.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyiip.respond.app import Application

EXAMPLES = settings(
    max_examples=int(os.environ.get("PYIIP_HYPOTHESIS_EXAMPLES", "120")),  # more for a deeper search
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MAGIC = {
    "image/jpeg": b"\xff\xd8",
    "image/png": b"\x89PNG",
    "image/webp": b"RIFF",
    "image/tiff": (b"II*\x00", b"MM\x00*"),
    "image/gif": b"GIF8",
}
IMAGES = ["rgb.tif", "rgb_subifd.tif", "float.tif", "grey16.tif", "nested/deeper/float_notags.tif", "link_in.tif"]
HOSTILE_NAMES = ["missing.tif", "not_an_image.tif", "../outside/secret.tif", "link_out.tif", "nested", "%00", ""]


@pytest.fixture(scope="module")
def hostile_app(images, make_app) -> Application:
    # MAX_CVT 800 keeps each example quick; the limits themselves are tested in test_limits.py.
    return make_app(images.root, MAX_CVT="800", MAX_REQUEST_MEMORY="256")


def check(app: Application, root: str, method: str, uri: str, headers: dict[str, str] | None = None) -> int:
    """Send one request through WSGI; assert the reply is well formed and not a 5xx; return its status."""
    environ = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": uri,
        "QUERY_STRING": uri.partition("?")[2],
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in (headers or {}).items()},
    }
    replies = []
    body = b"".join(app(environ, lambda status, hdrs: replies.append((status, hdrs))))
    status, hdrs = replies[0]
    code = int(status[:3])
    assert status[3] == " " and 200 <= code < 500, (uri, status, body[:300])
    names = {name.lower(): value for name, value in hdrs}
    for name, value in hdrs:
        assert not any(c in name + value for c in "\r\n\0"), (uri, name, value)
    if method != "HEAD" and code not in (204, 304):
        assert int(names["content-length"]) == len(body), uri
    if code == 200 and method == "GET":
        kind = names.get("content-type", "").split(";")[0]
        if kind in MAGIC:
            assert body.startswith(MAGIC[kind]), (uri, kind, body[:16])
        elif kind.endswith("json"):
            json.loads(body)
    if code >= 400:
        assert root.encode() not in body, (uri, body[:300])
    return code


# ---------------------------------------------------------------- strategies

# Digit strings at the limits that broke parsers: past float range (309), past int()'s 4300 digits.
huge_digits = st.tuples(
    st.sampled_from([309, 310, 4300, 4301, 10000]), st.sampled_from(["9{}", "1{}", "-9{}", "0.9{}", "9{}.5"])
).map(lambda p: p[1].format("9" * (p[0] - 1)))
# What the IIIF, DeepZoom and Zoomify grammars let through: digits, and a dot in IIIF.
unsigned = st.one_of(
    st.integers(min_value=0).map(str),
    huge_digits.filter(lambda t: not t.startswith("-")),
    st.floats(min_value=0.0, allow_infinity=False).map(lambda x: np.format_float_positional(x, trim="-")),
)
numbers = st.one_of(
    unsigned,
    st.integers().map(str),  # unbounded
    st.integers(-3, 300).map(str),
    huge_digits,
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: np.format_float_positional(x, trim="-")),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "1e308", "-1e308", "5e-324", "1e-320", "2.2250738585072014e-308",
                     "-0.0", "0x10", "", " ", "1,", ",", "-0", "00", "١٢", "1_000", "+5"]),
)  # fmt: skip
tile_numbers = st.one_of(st.integers(0, 20).map(str), st.integers(min_value=0).map(str), huge_digits, numbers)
junk = st.text(
    alphabet=st.one_of(st.sampled_from(list("%&=;,:-!.^/\\+ ?#~'\"\t")), st.characters(codec="utf-8")),
    max_size=20,
)
values = st.one_of(numbers, junk, st.lists(numbers, min_size=1, max_size=5).map(",".join))
IIP_KEYS = ["FIF", "OBJ", "JTL", "PTL", "WTL", "JTLS", "TIL", "CVT", "PFL", "RGN", "WID", "HEI", "ROT", "QLT",
            "MINMAX", "GAM", "CNT", "CMP", "INV", "CTW", "SHD", "COL", "SDS", "LYR", "IIIF", "DeepZoom", "Zoomify",
            "SPECTRA", "fif", "Jtl", "XYZ"]  # fmt: skip
OBJ_NAMES = ["IIP,1.0", "Max-size", "Tile-size", "Resolution-number", "Min-Max-sample-values", "subject",
             "Colorspace,0-5,0", "basic-info", "summary-info", "Resolutions", "DPI", "IIP-server", "xyz"]  # fmt: skip
iip_value = st.one_of(
    values,
    st.sampled_from(IMAGES + HOSTILE_NAMES),
    st.sampled_from(OBJ_NAMES),
    st.sampled_from(["jpeg", "png", "webp", "tiff", "gif", "jet", "grey", "binary", "!90", "!", "1:90,200"]),
    st.tuples(numbers, numbers).map(lambda p: f"{p[0]},{p[1]}"),
    st.tuples(numbers, numbers, numbers, numbers).map(lambda p: ",".join(p)),
    st.tuples(numbers, numbers, numbers).map(lambda p: f"{p[0]}:{p[1]},{p[2]}"),
    st.lists(st.lists(numbers, min_size=1, max_size=4).map(",".join), min_size=1, max_size=4).map(";".join),
)
iip_pair = st.one_of(
    st.tuples(st.sampled_from(IIP_KEYS), iip_value).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.sampled_from(IIP_KEYS),
)
iip_query = st.tuples(
    st.sampled_from(IMAGES + HOSTILE_NAMES),
    st.lists(iip_pair, max_size=6),
    st.lists(st.sampled_from(["JTL=1,1", "CVT=jpeg", "OBJ=Max-size", "PTL=0,0", "PFL=2:0,0-30,0"]), max_size=1),
).map(lambda t: "&".join([f"FIF={t[0]}", *t[1], *t[2]]))


@given(query=iip_query, method=st.sampled_from(["GET", "GET", "HEAD", "POST"]))
@EXAMPLES
def test_iip_any_query(hostile_app, images, query, method):
    check(hostile_app, str(images.root), method, "/fcgi-bin/iipsrv.fcgi?" + quote(query, safe="=&;,:!%/+-.^~"))


@given(query=st.lists(iip_pair, min_size=1, max_size=8).map("&".join))
@EXAMPLES
def test_iip_commands_in_any_order(hostile_app, images, query):
    check(hostile_app, str(images.root), "GET", "/fcgi-bin/iipsrv.fcgi?" + quote(query, safe="=&;,:!%/+-.^~"))


iiif_number = st.one_of(unsigned, unsigned, numbers)
regions = st.one_of(
    st.sampled_from(["full", "square", "max", "pct:", "0,0,0,0", "full,32912,500,500"]),
    st.tuples(iiif_number, iiif_number, iiif_number, iiif_number).map(",".join),
    st.tuples(iiif_number, iiif_number, iiif_number, iiif_number).map(lambda p: "pct:" + ",".join(p)),
    junk,
)
sizes = st.one_of(
    st.sampled_from(["max", "^max", "full", "pct:", "^pct:10000", "pct:10000", ",", "!,", "^!1,1"]),
    st.tuples(st.sampled_from(["", "^", "!", "^!"]), iiif_number, iiif_number).map(lambda p: f"{p[0]}{p[1]},{p[2]}"),
    st.tuples(st.sampled_from(["", "^", "!", "^!"]), iiif_number).map(lambda p: f"{p[0]}{p[1]},"),
    st.tuples(st.sampled_from(["", "^"]), iiif_number).map(lambda p: f"{p[0]},{p[1]}"),
    st.tuples(st.sampled_from(["", "^"]), iiif_number).map(lambda p: f"{p[0]}pct:{p[1]}"),
    junk,
)
rotations = st.one_of(
    st.sampled_from(["0", "!0", "90", "!180", "22.5", "360", "361", "-90", "!"]),
    iiif_number,
    iiif_number.map(lambda n: "!" + n),
    junk,
)
qualities = st.tuples(
    st.sampled_from(["default", "color", "gray", "bitonal", "native", ""]),
    st.sampled_from(["jpg", "png", "webp", "tif", "gif", "jp2", "pdf", ""]),
).map(".".join)
identifiers = st.one_of(
    st.sampled_from(IMAGES + HOSTILE_NAMES).map(lambda n: quote(n, safe="")),
    st.sampled_from(IMAGES).map(lambda n: quote(n, safe="") + ";MINMAX=1:0,100&CMP=jet"),
    junk.map(lambda t: quote(t, safe="")),
)
display = st.one_of(st.just(""), st.lists(iip_pair, max_size=3).map(lambda p: "?" + "&".join(p)))


@given(
    version=st.sampled_from(["/iiif/3/", "/iiif/2/", "/iiif/"]),
    identifier=identifiers,
    region=regions,
    size=sizes,
    rotation=rotations,
    quality=qualities,
    query=display,
    accept=st.sampled_from(["", "application/ld+json;profile=http://iiif.io/api/image/2/context.json", "*/*"]),
)
@EXAMPLES
def test_iiif_any_image_request(
    hostile_app, images, version, identifier, region, size, rotation, quality, query, accept
):
    parts = [quote(p, safe="%,:!^;=&") for p in (region, size, rotation, quality)]
    uri = version + identifier + "/" + "/".join(parts) + quote(query, safe="?=&;,:!%")
    check(hostile_app, str(images.root), "GET", uri, {"Accept": accept} if accept else None)


@given(
    version=st.sampled_from(["/iiif/3/", "/iiif/2/"]),
    image=st.sampled_from(["rgb.tif", "float.tif"]),
    region=regions,
    size=sizes,
    rotation=rotations,
)
@EXAMPLES
def test_iiif_numbers_in_every_field(hostile_app, images, version, image, region, size, rotation):
    """A real image and format: only the numbers vary, so each reaches the parser and the geometry."""
    parts = [quote(p, safe="%,:!^") for p in (region, size, rotation)]
    check(hostile_app, str(images.root), "GET", f"{version}{image}/{'/'.join(parts)}/default.png")


@given(
    image=st.sampled_from(["rgb.tif", "float.tif"]),
    numbers_=st.tuples(tile_numbers, tile_numbers, tile_numbers, tile_numbers),
    protocol=st.sampled_from(["deepzoom", "zoomify"]),
)
@EXAMPLES
def test_tile_numbers_in_every_field(hostile_app, images, image, numbers_, protocol):
    group, level, col, row = (quote(n, safe="") for n in numbers_)
    if protocol == "deepzoom":
        uri = f"/deepzoom/{image}_files/{level}/{col}_{row}.jpg"
    else:
        uri = f"/zoomify/{image}/TileGroup{group}/{level}-{col}-{row}.jpg"
    check(hostile_app, str(images.root), "GET", uri)


@given(identifier=identifiers, tail=st.sampled_from(["/info.json", "", "/", "/info.json/x", "/a/b/c/d.jpg"]))
@EXAMPLES
def test_iiif_info_and_redirects(hostile_app, images, identifier, tail):
    for prefix in ("/iiif/3/", "/fcgi-bin/iipsrv.fcgi?IIIF="):
        check(hostile_app, str(images.root), "GET", prefix + identifier + tail)


extensions = st.sampled_from(["jpg", "jpeg", "png", "webp", "gif", "xyz", ""])


@given(
    identifier=identifiers,
    level=tile_numbers,
    col=tile_numbers,
    row=tile_numbers,
    ext=extensions,
    query=display,
    form=st.sampled_from(["path", "query", "dzi"]),
)
@EXAMPLES
def test_deepzoom_any_tile(hostile_app, images, identifier, level, col, row, ext, query, form):
    tail = f"_files/{level}/{col}_{row}.{ext}" if form != "dzi" else ".dzi"
    target = quote(identifier + tail, safe="%/_.")
    uri = f"/deepzoom/{target}" + quote(query, safe="?=&;,:!%") if form != "query" else f"/x?DeepZoom={target}"
    check(hostile_app, str(images.root), "GET", uri)


@given(
    identifier=identifiers,
    group=tile_numbers,
    tier=tile_numbers,
    col=tile_numbers,
    row=tile_numbers,
    ext=extensions,
    form=st.sampled_from(["path", "query", "properties"]),
)
@EXAMPLES
def test_zoomify_any_tile(hostile_app, images, identifier, group, tier, col, row, ext, form):
    tail = f"/TileGroup{group}/{tier}-{col}-{row}.{ext}" if form != "properties" else "/ImageProperties.xml"
    target = quote(identifier + tail, safe="%/-.")
    uri = f"/zoomify/{target}" if form != "query" else f"/x?Zoomify={target}"
    check(hostile_app, str(images.root), "GET", uri)


display_setting = st.one_of(
    st.tuples(st.sampled_from(["GAM", "CNT", "ROT", "QLT", "WID", "HEI", "LYR"]), numbers).map("=".join),
    st.tuples(st.sampled_from(["GAM", "CNT"]), st.floats(0.0, 1000.0).map(repr)).map("=".join),  # subnormals too
    st.tuples(numbers, numbers).map(lambda p: f"SHD={p[0]},{p[1]}"),
    st.tuples(st.one_of(st.integers(-1, 4).map(str), numbers), numbers, numbers).map(
        lambda p: f"MINMAX={p[0]}:{p[1]},{p[2]}"
    ),
    st.lists(st.lists(numbers, min_size=1, max_size=3).map(",".join), min_size=1, max_size=3).map(
        lambda rows: "CTW=" + ";".join(rows)
    ),
    st.tuples(numbers, numbers, numbers, numbers).map(lambda p: "RGN=" + ",".join(p)),
    st.sampled_from(["CMP=jet", "CMP=hot", "CMP=red", "INV", "GAM=1e-5", "CNT=3", "GAM=1e-320", "CNT=5e-324"]),
)
output = st.one_of(
    st.sampled_from(["JTL=0,0", "PTL=1,0", "CVT=png"]),
    st.sampled_from(["JTL=0,0", "PTL=1,0", "CVT=png", "CVT=jpeg", "PFL=1:0,0-20,0", "PFL=1:3,0-3,20", "TIL=0,0"]),
    st.tuples(st.sampled_from(["JTL", "PTL", "TIL"]), numbers, numbers).map(lambda p: f"{p[0]}={p[1]},{p[2]}"),
    st.tuples(numbers, numbers, numbers, numbers, numbers).map(lambda p: "PFL={}:{},{}-{},{}".format(*p)),
)


@given(
    image=st.sampled_from(["float.tif", "nested/deeper/float_notags.tif", "grey16.tif", "rgb_subifd.tif"]),
    settings_=st.lists(display_setting, max_size=5),
    out=output,
)
@EXAMPLES
def test_iip_numbers_in_every_field(hostile_app, images, image, settings_, out):
    """Display and geometry settings with extreme numbers before an output command, on float and integer data."""
    query = "&".join([f"FIF={image}", *settings_, out])
    check(hostile_app, str(images.root), "GET", "/fcgi-bin/iipsrv.fcgi?" + quote(query, safe="=&;,:!%/+-.^~"))


@given(
    raw=st.binary(max_size=200),
    prefix=st.sampled_from(["/fcgi-bin/iipsrv.fcgi?", "/iiif/3/", "/iiif/2/rgb.tif/", "/deepzoom/", "/zoomify/", "/"]),
    method=st.sampled_from(["GET", "HEAD", "POST", "OPTIONS", "PUT", "G\x00T"]),
    headers=st.dictionaries(
        st.sampled_from(["Accept", "If-None-Match", "If-Modified-Since", "Host", "X-Forwarded-Proto", "X-IIIF-ID"]),
        st.text(max_size=40),
        max_size=3,
    ),
)
@EXAMPLES
def test_any_bytes_anywhere(hostile_app, images, raw, prefix, method, headers):
    check(hostile_app, str(images.root), method, prefix + raw.decode("latin-1"), headers)
