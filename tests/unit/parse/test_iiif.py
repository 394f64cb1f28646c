"""pyiip.parse.iiif from the tables of the IIIF Image API 3.0 and 2.1 specs, both ways, without a file or service.

Each row is the spec's text, the typed value it parses into, and the text
that value prints back (the spec's own spelling; numbers lose their trailing
zeros, as section 4.7 of 3.0 and 4.7 of 2.1 print rotations). Hypothesis then
round-trips every typed value: parse(str(value)) == value.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiip.errors import BadRequest, NotFound
from pyiip.parse import numbers
from pyiip.parse.iiif import (
    FORMATS,
    QUALITIES,
    Base,
    Image,
    Info,
    Params,
    RegionSpec,
    SizeSpec,
    parse,
    parse_params,
    parse_region,
    parse_rotation,
    parse_size,
    size_text,
)

# Section 4.1 of both versions (the same grammar): region.
REGIONS = [
    ("full", RegionSpec("full"), "full"),
    ("square", RegionSpec("square"), "square"),
    ("125,15,120,140", RegionSpec("px", (125, 15, 120, 140)), "125,15,120,140"),
    ("pct:41.6,7.5,40,70", RegionSpec("pct", (41.6, 7.5, 40, 70)), "pct:41.6,7.5,40,70"),
    ("125,15,200,200", RegionSpec("px", (125, 15, 200, 200)), "125,15,200,200"),
    ("pct:41.6,7.5,66.6,100", RegionSpec("pct", (41.6, 7.5, 66.6, 100)), "pct:41.6,7.5,66.6,100"),
    ("pct:0,0,100.0,100.00", RegionSpec("pct", (0, 0, 100, 100)), "pct:0,0,100,100"),
    ("pct:.5,0.,1,1", RegionSpec("pct", (0.5, 0, 1, 1)), "pct:0.5,0,1,1"),
]

# Section 4.2 of 3.0: size, ^ included.
SIZES_V3 = [
    ("max", SizeSpec("max"), "max"),
    ("^max", SizeSpec("max", upscale=True), "^max"),
    ("150,", SizeSpec("w", 150), "150,"),
    ("^360,", SizeSpec("w", 360, upscale=True), "^360,"),
    (",150", SizeSpec("h", 0, 150), ",150"),
    ("^,240", SizeSpec("h", 0, 240, upscale=True), "^,240"),
    ("pct:50", SizeSpec("pct", percent=50), "pct:50"),
    ("^pct:120", SizeSpec("pct", percent=120, upscale=True), "^pct:120"),
    ("225,100", SizeSpec("wh", 225, 100), "225,100"),
    ("^360,360", SizeSpec("wh", 360, 360, upscale=True), "^360,360"),
    ("!225,100", SizeSpec("fit", 225, 100), "!225,100"),
    ("^!360,360", SizeSpec("fit", 360, 360, upscale=True), "^!360,360"),
    ("pct:12.50", SizeSpec("pct", percent=12.5), "pct:12.5"),
]

# Section 4.2 of 2.1: size, "full" kept as spelled (its canonical form), no ^.
SIZES_V2 = [
    ("full", SizeSpec("max", keyword="full"), "full"),
    ("max", SizeSpec("max"), "max"),
    ("150,", SizeSpec("w", 150), "150,"),
    (",150", SizeSpec("h", 0, 150), ",150"),
    ("pct:50", SizeSpec("pct", percent=50), "pct:50"),
    ("225,100", SizeSpec("wh", 225, 100), "225,100"),
    ("!225,100", SizeSpec("fit", 225, 100), "!225,100"),
]

# Section 4.3 of both: rotation and its mirror, printed as integers when they are, "0" before a fraction.
ROTATIONS = [
    ("0", (False, 0.0), "0"),
    ("180", (False, 180.0), "180"),
    ("90", (False, 90.0), "90"),
    ("22.5", (False, 22.5), "22.5"),
    ("!0", (True, 0.0), "!0"),
    ("!180", (True, 180.0), "!180"),
    ("22.50", (False, 22.5), "22.5"),
    ("90.0", (False, 90.0), "90"),
    (".5", (False, 0.5), "0.5"),
    ("360", (False, 0.0), "0"),  # a whole turn is none
]

# Sections 4.4 and 4.5: quality and format, as the server supports them.
QUALITY_FORMATS = [(f"{q}.{f}", (q, f)) for q in QUALITIES for f in FORMATS]

ONE = Params(RegionSpec("full"), SizeSpec("max"), False, 0.0, "default", "jpg")


def _rotation_text(mirror: bool, angle: float) -> str:
    return str(replace(ONE, mirror=mirror, rotation=angle)).split("/")[2]


@pytest.mark.parametrize(("text", "value", "printed"), REGIONS)
def test_region_table(text: str, value: RegionSpec, printed: str) -> None:
    assert parse_region(text) == value
    assert str(value) == printed


@pytest.mark.parametrize(("text", "value", "printed"), SIZES_V3)
def test_size_table_v3(text: str, value: SizeSpec, printed: str) -> None:
    assert parse_size(text, 3) == value
    assert str(value) == printed


@pytest.mark.parametrize(("text", "value", "printed"), SIZES_V2)
def test_size_table_v2(text: str, value: SizeSpec, printed: str) -> None:
    assert parse_size(text, 2) == value
    assert str(value) == printed


@pytest.mark.parametrize(("text", "value", "printed"), ROTATIONS)
def test_rotation_table(text: str, value: tuple[bool, float], printed: str) -> None:
    assert parse_rotation(text) == value
    assert _rotation_text(*value) == printed


@pytest.mark.parametrize(("text", "value"), QUALITY_FORMATS)
def test_quality_format_table(text: str, value: tuple[str, str]) -> None:
    params = parse_params("full", "max", "0", text, 3)
    assert (params.quality, params.format) == value
    assert str(params).rsplit("/", 1)[1] == text


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("full", 3),  # 3.0 replaced it by max
        ("^max", 2),  # 2.1 has no ^
        ("^^max", 3),
        ("!150,", 3),
        ("pct:0", 2),
        ("0,100", 3),
    ],
)
def test_sizes_of_the_other_version_or_none(text: str, version: int) -> None:
    with pytest.raises(BadRequest):
        parse_size(text, version)


@pytest.mark.parametrize(
    ("path", "version", "value", "printed"),
    [
        # Section 2 (URI syntax) of both: the image request and the info request.
        (
            "abcd1234/full/max/0/default.jpg",
            3,
            Image("abcd1234", "abcd1234", ONE),
            "abcd1234/full/max/0/default.jpg",
        ),
        (
            "abcd1234/full/full/0/default.jpg",
            2,
            Image("abcd1234", "abcd1234", replace(ONE, size=SizeSpec("max", keyword="full"))),
            "abcd1234/full/full/0/default.jpg",
        ),
        (
            "abcd1234/125,15,120,140/90,/!345/gray.jpg",  # the order-of-implementation example
            3,
            Image(
                "abcd1234",
                "abcd1234",
                Params(RegionSpec("px", (125, 15, 120, 140)), SizeSpec("w", 90), True, 345.0, "gray", "jpg"),
            ),
            "abcd1234/125,15,120,140/90,/!345/gray.jpg",
        ),
        ("abcd1234/info.json", 3, Info("abcd1234", "abcd1234"), "abcd1234/info.json"),
        ("abcd1234", 3, Base("abcd1234", "abcd1234"), "abcd1234"),
        ("abcd1234/", 2, Base("abcd1234", "abcd1234"), "abcd1234"),
        # Section 9 of both: identifiers are percent-decoded, the URL's spelling kept for links.
        (
            "ark:%2F12025%2F654xz321/info.json",
            3,
            Info("ark:/12025/654xz321", "ark:%2F12025%2F654xz321"),
            "ark:%2F12025%2F654xz321/info.json",
        ),
        ("dir/sub/a.tif/info.json", 3, Info("dir/sub/a.tif", "dir/sub/a.tif"), "dir/sub/a.tif/info.json"),
        ("a/b/c/d", 3, Base("a/b/c/d", "a/b/c/d"), "a/b/c/d"),  # no format: a base URI with slashes
    ],
)
def test_path_table(path: str, version: int, value: Base | Info | Image, printed: str) -> None:
    assert parse(path, version) == value
    assert str(value) == printed


@pytest.mark.parametrize("path", ["", "/"])
def test_no_identifier(path: str) -> None:
    with pytest.raises(NotFound):
        parse(path, 3)


@pytest.mark.parametrize("path", ["a%00b/info.json", "a%00/full/max/0/default.jpg", "a/full/max/0/x.jpg"])
def test_bad_paths(path: str) -> None:
    with pytest.raises(BadRequest):
        parse(path, 3)


# ---------------------------------------------------------------- round trips

# Decimals of at most six places print back exactly (the printer keeps six).
_PIXELS = st.integers(0, numbers.MAX_PIXELS)
_EXTENT = st.integers(1, numbers.MAX_PIXELS)
_PERCENT = st.integers(0, 10**12).map(lambda n: n / 10**6)
_POSITIVE_PERCENT = st.integers(1, 10**12).map(lambda n: n / 10**6)

regions = st.one_of(
    st.sampled_from([RegionSpec("full"), RegionSpec("square")]),
    st.builds(lambda *v: RegionSpec("px", v), _PIXELS, _PIXELS, _EXTENT, _EXTENT),
    st.builds(lambda *v: RegionSpec("pct", v), _PERCENT, _PERCENT, _POSITIVE_PERCENT, _POSITIVE_PERCENT),
)


def sizes(version: int) -> st.SearchStrategy[SizeSpec]:
    upscale = st.booleans() if version >= 3 else st.just(False)
    keywords = ["max"] if version >= 3 else ["max", "full"]
    return st.one_of(
        st.builds(lambda k, u: SizeSpec("max", upscale=u, keyword=k), st.sampled_from(keywords), upscale),
        st.builds(lambda w, u: SizeSpec("w", w, upscale=u), _EXTENT, upscale),
        st.builds(lambda h, u: SizeSpec("h", 0, h, upscale=u), _EXTENT, upscale),
        st.builds(
            lambda k, w, h, u: SizeSpec(k, w, h, upscale=u), st.sampled_from(["wh", "fit"]), _EXTENT, _EXTENT, upscale
        ),
        st.builds(lambda p, u: SizeSpec("pct", percent=p, upscale=u), _POSITIVE_PERCENT, upscale),
    )


def params(version: int) -> st.SearchStrategy[Params]:
    return st.builds(
        Params,
        regions,
        sizes(version),
        st.booleans(),
        st.integers(0, 360 * 10**6 - 1).map(lambda n: n / 10**6),
        st.sampled_from(QUALITIES),
        st.sampled_from(FORMATS),
    )


identifiers = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1)


@given(st.sampled_from([2, 3]).flatmap(lambda v: st.tuples(st.just(v), identifiers, params(v))))
def test_image_requests_round_trip(case: tuple[int, str, Params]) -> None:
    version, identifier, value = case
    request = Image(identifier, quote(identifier, safe=""), value)
    assert parse(str(request), version) == request


@given(identifiers, st.sampled_from([2, 3]))
def test_info_and_base_requests_round_trip(identifier: str, version: int) -> None:
    encoded = quote(identifier, safe="")
    for request in (Info(identifier, encoded), Base(identifier, encoded)):
        assert parse(str(request), version) == request


@pytest.mark.parametrize(
    ("path", "identifier"),
    [("plain.tif/info.json", "plain.tif"), ("caf%C3%A9.tif/info.json", "caf\u00e9.tif"), ("a%20b/info.json", "a b")],
)
def test_identifiers_without_escapes_are_taken_as_they_are(path: str, identifier: str) -> None:
    assert parse(path, 3) == Info(identifier, path.rpartition("/")[0])


@pytest.mark.parametrize("path", ["a\x00b/info.json", "a%00b/info.json", "a\x00b/full/max/0/default.jpg"])
def test_a_nul_in_an_identifier_is_refused_escaped_or_not(path: str) -> None:
    with pytest.raises(BadRequest, match="invalid character in identifier"):
        parse(path, 3)


def test_size_text_is_what_a_size_spec_prints() -> None:
    for spec in (SizeSpec("max", upscale=True), SizeSpec("max", keyword="full"), SizeSpec("fit", 9, 7, upscale=True)):
        assert size_text(spec.kind, spec.width, spec.height, spec.upscale, spec.keyword, spec.percent) == str(spec)
    assert size_text("w", 512, 0, False) == "512," and size_text("wh", 3, 4, True) == "^3,4"


def test_parsed_tile_requests_are_values_equal_and_hashed_by_content() -> None:
    path = "a.tif/0,0,256,256/256,/0/default.jpg"
    first, second = parse(path, 2), parse(path, 2)
    assert first is not second and first == second and hash(first) == hash(second)
    assert first != parse("a.tif/0,0,256,256/128,/0/default.jpg", 2)
    assert isinstance(first, Image) and replace(first.params, format="png").text() == "0,0,256,256/256,/0/default.png"
    shown = "SizeSpec(kind='w', width=256, height=0, percent=0.0, upscale=False, keyword='max')"
    assert repr(first.params.size) == shown
