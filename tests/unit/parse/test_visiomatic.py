"""pyiip.parse.visiomatic from the v3 client's own queries (VTileLayer.js, PixelValues.js, ProfileUI.js,
SnapshotUI.js) and from values its server's declarations refuse, both ways: parse(unparse(r)) == r."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiip.parse.visiomatic import GAMMA, Invalid, V3Request, parse, unparse


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("FIF=cube.fits&INFO", V3Request("cube.fits", info=True)),
        # mono mode, as getTileSettingsURL writes it: non-default settings, then CHAN, MINMAX, JTL
        (
            "FIF=dir/cube.fits&CMP=jet&INV&BRT=-12.5&CNT=2.5&GAM=1.8000&CHAN=2&MINMAX=2:-1.5e-3,4.25E2&QLT=80&JTL=3,17",
            V3Request(
                "dir/cube.fits",
                channels=(2,),
                colormap="jet",
                invert=True,
                brightness=-12.5,
                contrast=2.5,
                gamma=1.8,
                minmax=((2, -1.5e-3, 425.0),),
                quality=80,
                tile=(3, 17),
            ),
        ),
        # colour mode: one MIX per channel, weights with 3 decimals
        (
            "FIF=c.fits&MINMAX=1:0,10&MIX=1:0.000,0.000,1.000&MIX=2:0.000,1.000,0.000&MIX=3:1.000,0.000,0.000&JTL=0,0",
            V3Request(
                "c.fits",
                minmax=((1, 0.0, 10.0),),
                mix=((1, 0.0, 0.0, 1.0), (2, 0.0, 1.0, 0.0), (3, 1.0, 0.0, 0.0)),
                tile=(0, 0),
            ),
        ),
        ("FIF=c.fits&CHAN=1&VAL=120,-3", V3Request("c.fits", channels=(1,), value=(120, -3))),
        (
            "FIF=c.fits&CHAN=1&CHAN=2&CHAN=3&PFL=10,20:-30,400",
            V3Request("c.fits", channels=(1, 2, 3), profile=(10, 20, -30, 400)),
        ),
        (
            "FIF=c.fits&CHAN=1&RGN=-5,1:1024,768&BIN=4",
            V3Request("c.fits", channels=(1,), region=(-5, 1, 1024, 768), binning=4),
        ),
        # a repeated scalar takes its last value; keys are case-sensitive, unknown ones ignored
        ("FIF=a.fits&CNT=3&CNT=4&cnt=900&jtl=x&SEED=7", V3Request("a.fits", contrast=4.0)),
        ("FIF=with+space%2Fand%2B.fits&obj", V3Request("with space/and+.fits", obj=True)),
        ("", V3Request()),
    ],
)
def test_client_queries(query: str, expected: V3Request) -> None:
    assert parse(query) == expected
    assert parse(unparse(expected)) == expected


def test_defaults_are_the_v3_servers() -> None:
    request = parse("FIF=x")
    assert (request.brightness, request.contrast, request.gamma, request.quality, request.binning) == (
        0,
        1,
        GAMMA,
        None,
        1,
    )
    assert GAMMA == 2.2


@pytest.mark.parametrize(
    ("query", "loc", "kind"),
    [
        ("FIF=x&CNT=1000.5", ["query", "CNT"], "less_than_equal"),
        ("FIF=x&CNT=-1", ["query", "CNT"], "greater_than_equal"),
        ("FIF=x&CNT=nan", ["query", "CNT"], "greater_than_equal"),
        ("FIF=x&CNT=abc", ["query", "CNT"], "float_parsing"),
        ("FIF=x&GAM=0.1", ["query", "GAM"], "greater_than_equal"),
        ("FIF=x&GAM=5.5", ["query", "GAM"], "less_than_equal"),
        ("FIF=x&BRT=101", ["query", "BRT"], "less_than_equal"),
        ("FIF=x&QLT=101", ["query", "QLT"], "less_than_equal"),
        ("FIF=x&QLT=9.5", ["query", "QLT"], "int_parsing"),
        ("FIF=x&BIN=0", ["query", "BIN"], "greater_than_equal"),
        ("FIF=x&CMP=viridis", ["query", "CMP"], "literal_error"),
        ("FIF=x&CHAN=1&CHAN=b", ["query", "CHAN", 1], "int_parsing"),
        ("FIF=x&JTL=1,", ["query", "JTL"], "string_too_short"),
        ("FIF=x&JTL=1;22", ["query", "JTL"], "string_pattern_mismatch"),
        ("FIF=x&PFL=1,2", ["query", "PFL"], "string_too_short"),
        ("FIF=x&PFL=1,2:3,4.5", ["query", "PFL"], "string_pattern_mismatch"),
        ("FIF=x&RGN=1,2,3,4,5", ["query", "RGN"], "string_pattern_mismatch"),
        ("FIF=x&VAL=1", ["query", "VAL"], "string_too_short"),
        ("FIF=x&VAL=1.5,2", ["query", "VAL"], "string_pattern_mismatch"),
        ("FIF=x&MINMAX=1:a,2", ["query", "MINMAX"], "value_error"),
        ("FIF=x&MIX=1:1e3,0,0", ["query", "MIX"], "value_error"),
        ("FIF=../etc/passwd", ["query", "FIF"], "value_error"),
        ("FIF=", ["query", "FIF"], "string_too_short"),
        ("FIF=x&" + "&".join(f"MIX={c}:1,1,1" for c in range(101)), ["query", "MIX"], "too_long"),
    ],
)
def test_refused_values(query: str, loc: list, kind: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse(query)
    assert caught.value.status == 422
    (detail,) = caught.value.details
    assert detail["loc"] == loc and detail["type"] == kind and detail["msg"]


def test_every_refused_value_is_listed() -> None:
    """FastAPI reports all of them at once, each at its key."""
    with pytest.raises(Invalid) as caught:
        parse("FIF=x&CNT=-1&GAM=9&CMP=red&CHAN=z")
    assert sorted(d["loc"][1] for d in caught.value.details) == ["CHAN", "CMP", "CNT", "GAM"]


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
requests = st.builds(
    V3Request,
    identifier=st.none()
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), min_size=1, max_size=40).filter(
        lambda s: not s.startswith("..")
    ),
    info=st.booleans(),
    obj=st.booleans(),
    channels=st.tuples() | st.lists(st.integers(-5, 50), max_size=4).map(tuple),
    colormap=st.sampled_from(["grey", "jet", "cold", "cool", "hot"]),
    contrast=st.floats(0, 1000),
    gamma=st.floats(0.2, 5),
    brightness=st.floats(-100, 100),
    quality=st.none() | st.integers(0, 100),
    invert=st.booleans(),
    tile=st.none() | st.tuples(st.integers(0, 99999), st.integers(0, 99999999)),
    minmax=st.lists(st.tuples(st.integers(0, 99), finite, finite), max_size=3).map(tuple),
    mix=st.lists(st.tuples(st.integers(0, 99), *(st.floats(-1e6, 1e6),) * 3), max_size=3).map(tuple),
    profile=st.none() | st.tuples(*(st.integers(-99999, 99999),) * 4),
    region=st.none() | st.tuples(*(st.integers(-99999, 99999),) * 4),
    value=st.none() | st.tuples(st.integers(-99999, 99999), st.integers(-99999, 99999)),
    binning=st.integers(1, 65536),
)


@given(requests)
def test_unparse_is_the_inverse(request: V3Request) -> None:
    assert parse(unparse(request)) == request
