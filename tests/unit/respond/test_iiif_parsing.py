"""IIIF parameter parsing and geometry, table-driven from the examples of the Image API 3.0 and 2.1 specs.

The spec's example image is 300 x 200 pixels.
"""

from __future__ import annotations

import pytest

from pyiip.errors import BadRequest, NotImplementedFeature
from pyiip.http import Request
from pyiip.parse.iiif import (
    Base,
    Image,
    Info,
    parse,
    parse_params,
    parse_quality_format,
    parse_region,
    parse_rotation,
    parse_size,
)
from pyiip.respond.iiif import canonical_params, negotiated_version, output_size, public_origin, region_rect
from pyiip.respond.iiif_info import Limits, content_type

W, H = 300, 200
NONE = Limits(None, None, None)


@pytest.mark.parametrize(
    ("text", "rect"),
    [
        ("full", (0, 0, 300, 200)),
        ("square", (50, 0, 200, 200)),
        ("125,15,120,140", (125, 15, 120, 140)),
        ("pct:41.6,7.5,40,70", (125, 15, 120, 140)),
        ("125,15,200,200", (125, 15, 175, 185)),  # "N.B. Returned image is 175,185 px"
        ("pct:41.6,7.5,66.6,100", (125, 15, 175, 185)),
        ("0,0,1,1", (0, 0, 1, 1)),
        ("pct:0,0,100,100", (0, 0, 300, 200)),
        ("299,199,50,50", (299, 199, 1, 1)),
    ],
)
def test_region_examples(text: str, rect: tuple[int, int, int, int]) -> None:
    assert region_rect(parse_region(text), W, H) == rect


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Full",
        "0,0,0,10",
        "0,0,10,0",
        "1,2,3",
        "1,2,3,4,5",
        "-1,0,10,10",
        "pct:1,2,3",
        "pct:0,0,0,5",
        "a,b,c,d",
        "1.5,0,10,10",
    ],
)
def test_region_syntax_errors(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_region(text)


@pytest.mark.parametrize("text", ["300,0,10,10", "0,200,10,10", "pct:100,0,10,10"])
def test_region_outside_the_image(text: str) -> None:
    with pytest.raises(BadRequest):
        region_rect(parse_region(text), W, H)


# (size, limits, expected output) for version 3, from section 4.2's examples.
V3_SIZES = [
    ("max", NONE, (300, 200)),
    ("max", Limits(200, 200, None), (200, 133)),  # "Assuming that the image has a maxWidth of 200px"
    ("^max", Limits(360, 360, None), (360, 240)),  # "... a maxWidth of 360px"
    ("^max", Limits(None, None, 30000), (212, 141)),
    ("150,", NONE, (150, 100)),
    ("^360,", NONE, (360, 240)),
    (",150", NONE, (225, 150)),
    ("^,240", NONE, (360, 240)),
    ("pct:50", NONE, (150, 100)),
    ("^pct:120", NONE, (360, 240)),
    ("225,100", NONE, (225, 100)),
    ("^360,360", NONE, (360, 360)),
    ("!225,100", NONE, (150, 100)),  # "Returned image is 150,100 px"
    ("^!360,360", NONE, (360, 240)),  # "Returned image is 360,240 px"
    ("^!2000,500", NONE, (750, 500)),
    ("300,200", NONE, (300, 200)),
    ("^150,", NONE, (150, 100)),  # ^ allows, does not require, upscaling
]


@pytest.mark.parametrize(("text", "limits", "size"), V3_SIZES)
def test_size_examples_v3(text: str, limits: Limits, size: tuple[int, int]) -> None:
    assert output_size(parse_size(text, 3), W, H, limits, 3, allow_upscaling=True) == size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("full", (300, 200)),
        ("max", (300, 200)),
        ("360,", (360, 240)),
        ("pct:200", (600, 400)),
        ("!600,600", (600, 400)),
    ],
)
def test_size_v2_upscales_without_caret(text: str, size: tuple[int, int]) -> None:
    assert output_size(parse_size(text, 2), W, H, NONE, 2, allow_upscaling=True) == size


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("full", 3),  # replaced by max in 3.0
        ("^full", 3),
        ("^360,", 2),  # no ^ in 2.x
        ("0,", 3),
        (",0", 3),
        ("pct:0", 3),
        ("!100,", 3),
        ("!,100", 3),
        ("100", 3),
        (",", 3),
        ("^", 3),
        ("pct:-5", 3),
        ("max ", 3),
    ],
)
def test_size_syntax_errors(text: str, version: int) -> None:
    with pytest.raises(BadRequest):
        parse_size(text, version)


@pytest.mark.parametrize("text", ["360,", ",240", "pct:120", "360,360", "301,200", "!2000,3000"])
def test_v3_upscaling_needs_caret(text: str) -> None:
    with pytest.raises(BadRequest):
        output_size(parse_size(text, 3), W, H, NONE, 3, allow_upscaling=True)


def test_upscaling_disabled() -> None:
    with pytest.raises(NotImplementedFeature):  # 501: a valid request the server does not do
        output_size(parse_size("^360,", 3), W, H, NONE, 3, allow_upscaling=False)
    with pytest.raises(BadRequest):
        output_size(parse_size("360,", 2), W, H, NONE, 2, allow_upscaling=False)
    assert output_size(parse_size("!600,600", 2), W, H, NONE, 2, allow_upscaling=False) == (300, 200)


@pytest.mark.parametrize("text", ["201,", "^max", "250,150"])
def test_sizes_beyond_the_limits(text: str) -> None:
    limits = Limits(200, 200, None)
    if text == "^max":
        assert output_size(parse_size(text, 3), W, H, limits, 3, True) == (200, 133)
        return
    with pytest.raises(BadRequest):
        output_size(parse_size(text, 3), W, H, limits, 3, True)


def test_area_limit() -> None:
    with pytest.raises(BadRequest):
        output_size(parse_size("300,200", 3), W, H, Limits(None, None, 50000), 3, True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", (False, 0.0)),
        ("90", (False, 90.0)),
        ("22.5", (False, 22.5)),
        ("!0", (True, 0.0)),
        ("!180", (True, 180.0)),
        ("360", (False, 0.0)),
        ("!345", (True, 345.0)),
        ("0.5", (False, 0.5)),
    ],
)
def test_rotation_examples(text: str, expected: tuple[bool, float]) -> None:
    assert parse_rotation(text) == expected


@pytest.mark.parametrize("text", ["", "-90", "+90", "361", "1e2", "!", "!!90", "90deg", " 90"])
def test_rotation_errors(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_rotation(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("default.jpg", ("default", "jpg")),
        ("color.png", ("color", "png")),
        ("gray.tif", ("gray", "tif")),
        ("bitonal.gif", ("bitonal", "gif")),
        ("default.webp", ("default", "webp")),
    ],
)
def test_quality_format(text: str, expected: tuple[str, str]) -> None:
    assert parse_quality_format(text) == expected


@pytest.mark.parametrize(
    "text", ["default", "grey.jpg", "native.jpg", "default.jp2", "default.pdf", "default.JPG", "x.jpg"]
)
def test_quality_format_errors(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_quality_format(text)


@pytest.mark.parametrize(
    ("url", "version", "canonical"),
    [
        # The order-of-implementation example of both specs.
        ("125,15,120,140/90,/!345/gray.jpg", 3, "125,15,120,140/90,105/!345/gray.jpg"),
        ("125,15,120,140/90,/!345/gray.jpg", 2, "125,15,120,140/90,/!345/gray.jpg"),
        ("full/max/0/default.jpg", 3, "full/max/0/default.jpg"),
        ("full/300,200/0/default.jpg", 3, "full/max/0/default.jpg"),
        ("pct:0,0,100,100/max/90.0/color.png", 3, "full/max/90/color.png"),
        ("full/^360,/22.50/default.png", 3, "full/^360,240/22.5/default.png"),
        ("full/full/0/default.jpg", 2, "full/full/0/default.jpg"),
        ("full/max/0/default.jpg", 2, "full/full/0/default.jpg"),
        ("full/150,/0/default.jpg", 2, "full/150,/0/default.jpg"),
        ("full/225,100/0/default.jpg", 2, "full/225,100/0/default.jpg"),
        ("square/pct:50/!0/bitonal.jpg", 2, "50,0,200,200/100,/!0/bitonal.jpg"),
    ],
)
def test_canonical_form(url: str, version: int, canonical: str) -> None:
    params = parse_params(*url.split("/"), version)
    rect = region_rect(params.region, W, H)
    size = output_size(params.size, rect[2], rect[3], NONE, version, True)
    assert canonical_params(params, rect, size, (W, H), NONE, version) == canonical


@pytest.mark.parametrize(
    ("path", "identifier"),
    [
        # Section 9 of both specs: identifiers are percent-decoded, slashes in them are encoded.
        ("id1/full/max/0/default.jpg", "id1"),
        ("ark:%2F12025%2F654xz321/full/max/0/default.jpg", "ark:/12025/654xz321"),
        ("urn:foo:a123,456/full/max/0/default.jpg", "urn:foo:a123,456"),
        (
            "urn:sici:1046-8188(199501)13:1%253C69:FTTHBI%253E2.0.TX;2-4/full/max/0/default.jpg",
            "urn:sici:1046-8188(199501)13:1%3C69:FTTHBI%3E2.0.TX;2-4",
        ),
        ("http:%2F%2Fexample.com%2F%3F54%23a/full/max/0/default.jpg", "http://example.com/?54#a"),
        ("67352ccc%2Dd1b0-11e1/full/max/0/default.jpg", "67352ccc-d1b0-11e1"),
        ("a+b/full/max/0/default.jpg", "a+b"),
        ("dir/sub/image.tif/full/max/0/default.jpg", "dir/sub/image.tif"),  # iipsrv: raw slashes too
    ],
)
def test_identifier_decoding(path: str, identifier: str) -> None:
    target = parse(path, 3)
    assert isinstance(target, Image) and target.identifier == identifier
    assert target.encoded == path.rsplit("/", 4)[0]


def test_target_kinds() -> None:
    assert isinstance(parse("a%2Fb/info.json", 3), Info)
    assert parse("a%2Fb/info.json", 3).encoded == "a%2Fb"
    assert isinstance(parse("abc", 3), Base)
    assert parse("abc/", 3).encoded == "abc"
    assert isinstance(parse("abc/full/max/0/default", 3), Base)


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        ("", 3),
        ("application/ld+json", 3),
        ('application/ld+json;profile="http://iiif.io/api/image/2/context.json"', 2),
        ('application/ld+json;profile="http://iiif.io/api/image/3/context.json"', 3),
        ('application/ld+json;profile="http://iiif.io/api/image/1/context.json"', 3),
    ],
)
def test_accept_negotiates_the_version(accept: str, version: int) -> None:
    assert negotiated_version(Request("GET", "/", "", headers={"accept": accept}), 3) == version


@pytest.mark.parametrize(
    ("version", "accept", "mime"),
    [
        (3, "", 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'),
        (3, "application/json", "application/json"),
        (3, "application/ld+json", 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'),
        (2, "", "application/json"),  # 2.1: JSON-LD only when the Accept header asks for it
        (2, "*/*", "application/json"),
        (2, "application/ld+json", 'application/ld+json;profile="http://iiif.io/api/image/2/context.json"'),
    ],
)
def test_info_content_type(version: int, accept: str, mime: str) -> None:
    assert content_type(version, accept) == mime


@pytest.mark.parametrize(
    ("base_url", "path", "origin"),
    [
        ("", "/iiif/3/x/info.json", "http://h:8080"),
        ("https://example.org", "/iiif/3/x/info.json", "https://example.org"),
        ("https://example.org/images/", "/iiif/3/x/info.json", "https://example.org/images"),
        ("https://example.org/iiif/", "/iiif/x/info.json", "https://example.org"),  # iipsrv style
    ],
)
def test_public_origin(base_url: str, path: str, origin: str) -> None:
    assert public_origin(Request("GET", path, "", host="h:8080"), base_url, path) == origin
