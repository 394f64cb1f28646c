"""pyiip.parse.iip from tables of the IIP protocol's and VisiOmatic's own queries, both ways, without a file or service.

Each row of the first table is a query as the IIP specification, iipsrv-astro
or VisiOmatic v2 writes it (reference: iip-protocol-and-astro.md) and the
commands it parses into; each row of the second, commands and the canonical
query they print back. Hypothesis then round-trips any list of commands:
parse(unparse(commands)) == commands.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiip.errors import BadRequest
from pyiip.model import COLORMAPS, IDENTITY, Display
from pyiip.parse import iip
from pyiip.parse.iip import (
    CMP,
    CNT,
    COL,
    CTW,
    CVT,
    FIF,
    GAM,
    HEI,
    INV,
    JTL,
    LYR,
    MINMAX,
    OBJ,
    PFL,
    PTL,
    QLT,
    RGN,
    ROT,
    SDS,
    SHD,
    TIL,
    WID,
    WTL,
    Handoff,
    Unknown,
    parse,
    unparse,
)

# VisiOmatic v2's tile URL: every parameter it can send, in its order (getTileUrl).
VISIOMATIC_TILE = (
    "FIF=/data/sky.ptif&CMP=jet&INV&CNT=1.5&GAM=0.4545&MINMAX=1:-0.0362011641,11.2403383"
    "&CTW=0.3333333333333333,5.551115123125783e-17;0,1,0;1,0,0&QLT=80&JTL=4,12"
)

PARSED = [
    # The IIP specification's forms.
    ("FIF=image.tif&JTL=3,17", [FIF("image.tif"), JTL(3, 17)]),
    ("FIF=image.tif&PTL=0,0&WTL=1,2", [FIF("image.tif"), PTL(0, 0), WTL(1, 2)]),
    ("FIF=image.tif&TIL=2,0-5", [FIF("image.tif"), TIL(2, 0, 5)]),
    ("FIF=image.tif&TIL=2,7", [FIF("image.tif"), TIL(2, 7, 7)]),
    ("FIF=image.tif&WID=200&CVT=jpeg", [FIF("image.tif"), WID(200), CVT("jpg")]),
    ("FIF=image.tif&HEI=300&QLT=90&CVT=png", [FIF("image.tif"), HEI(300), QLT(90), CVT("png")]),
    (
        "FIF=image.tif&obj=IIP,1.0&obj=Max-size&obj=Tile-size&obj=Resolution-number",
        [FIF("image.tif"), OBJ("iip,1.0"), OBJ("max-size"), OBJ("tile-size"), OBJ("resolution-number")],
    ),
    ("OBJ=IIP-server&OBJ=Colorspace,0-4,0", [OBJ("iip-server"), OBJ("colorspace,0-4,0")]),
    ("FIF=image.tif&SDS=0,90&JTLS=0,3,17,90", [FIF("image.tif"), SDS(), JTL(3, 17)]),  # JTLS = SDS + JTL
    ("FIF=image.tif&JTLS=3,17", [FIF("image.tif")]),  # JTLS runs only with all four values
    ("jTlS=0,1,2,0&JTL=5,6", [JTL(1, 2), JTL(5, 6)]),
    ("FIF=image.tif&LYR=3&COL=grey&CVT=tiff", [FIF("image.tif"), LYR(3), COL("gray"), CVT("tif")]),
    # iipsrv-astro and VisiOmatic v2.
    (
        VISIOMATIC_TILE,
        [
            FIF("/data/sky.ptif"),
            CMP("jet"),
            INV(),
            CNT(1.5),
            GAM(0.4545),
            MINMAX(1, -0.0362011641, 11.2403383),
            CTW(((0.3333333333333333, 5.551115123125783e-17), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))),
            QLT(80),
            JTL(4, 12),
        ],
    ),
    ("FIF=sky.ptif&MINMAX=1:0,100&MINMAX=2:3,4", [FIF("sky.ptif"), MINMAX(1, 0.0, 100.0), MINMAX(2, 3.0, 4.0)]),
    ("FIF=sky.ptif&CTW=1;1;1", [FIF("sky.ptif"), CTW(((1.0,), (1.0,), (1.0,)))]),
    ("FIF=sky.ptif&PFL=6:10,20-300,20", [FIF("sky.ptif"), PFL(6, 10, 20, 300, 20)]),
    ("FIF=sky.ptif&PFL=6:10,20", [FIF("sky.ptif"), PFL(6, 10, 20, 10, 20)]),  # one point
    (
        "FIF=sky.ptif&CMP=jet&RGN=0.25,0.125,0.5,0.5&WID=800&CVT=jpeg",  # the snapshot control
        [FIF("sky.ptif"), CMP("jet"), RGN(0.25, 0.125, 0.5, 0.5), WID(800), CVT("jpg")],
    ),
    ("FIF=sky.ptif&SHD=45,30&MINMAX=1:0,1e+05", [FIF("sky.ptif"), SHD(45.0, 30.0), MINMAX(1, 0.0, 1e5)]),  # '+' kept
    # The tokenizer: & only, bare keys, case, empty keys and values, unknown keys kept in order.
    ("fif=a.tif&Jtl=0,0", [FIF("a.tif"), JTL(0, 0)]),
    ("INV=&GAM=2", [GAM(2.0)]),
    ("=x&&INV=0", [INV()]),
    ("XYZ=1&SPECTRA&FIF=a.tif", [Unknown("xyz"), Unknown("spectra"), FIF("a.tif")]),
    ("FIF=a%20b+c%2Fd.tif", [FIF("a b c/d.tif")]),
    ("FIF=caf%C3%A9.tif", [FIF("café.tif")]),
    ("IIIF=/a.tif/full/max/0/default.jpg", [Handoff("iiif", "/a.tif/full/max/0/default.jpg")]),
    ("DeepZoom=a.tif.dzi&Zoomify=a.tif/ImageProperties.xml", [Handoff("deepzoom", "a.tif.dzi"),
                                                               Handoff("zoomify", "a.tif/ImageProperties.xml")]),
    # Values iipsrv reads its own way.
    ("CMP=grey&CMP=JET&CMP=viridis", [CMP(None), CMP("jet"), CMP(None)]),
    ("ROT=!90&ROT=45&ROT=-90&ROT=360", [ROT(90.0, True), ROT(0.0), ROT(270.0), ROT(0.0)]),
    ("RGN=a&RGN=0,0,0,1&RGN=-1,0.5,2,0.5", [RGN(), RGN(), RGN(0.0, 0.5, 1.0, 0.5)]),
    ("WID=-5&HEI=-1", [WID(0), HEI(0)]),
    ("QLT=1:50&QLT=200&QLT=-3", [QLT(50), QLT(100), QLT(0)]),
    ("COL=binary&COL=GRAY&COL=rgb", [COL("bitonal"), COL("gray"), COL("default")]),
    ("CVT=PNG&CVT=gif&CVT=webp", [CVT("png"), CVT("jpg"), CVT("webp")]),
    ("CTW=[0.5,0.5;1,0]&CTW=%5B1,2%5D", [CTW(((0.5, 0.5), (1.0, 0.0))), CTW(((1.0, 2.0),))]),
    ("MINMAX=0:1,2&MINMAX=-3:1,2", [MINMAX(0, 1.0, 2.0), MINMAX(-3, 1.0, 2.0)]),  # channels < 1 change nothing
    ("", []),
]  # fmt: skip


@pytest.mark.parametrize(("query", "commands"), PARSED)
def test_parse(query, commands):
    assert parse(query) == commands


UNPARSED = [
    ([FIF("image.tif"), JTL(3, 17)], "FIF=image.tif&JTL=3,17"),
    ([FIF("a b&c%d+é.tif")], "FIF=a%20b%26c%25d%2B%C3%A9.tif"),
    ([FIF("dir/sub/x.tif")], "FIF=dir/sub/x.tif"),
    ([OBJ("iip,1.0"), OBJ("max-size")], "OBJ=iip,1.0&OBJ=max-size"),
    ([CMP("jet"), INV(), CNT(1.5), GAM(0.4545)], "CMP=jet&INV&CNT=1.5&GAM=0.4545"),
    ([CMP(None)], "CMP=grey"),
    ([MINMAX(1, -0.0362011641, 11.2403383)], "MINMAX=1:-0.0362011641,11.2403383"),
    ([MINMAX(2, 0.0, 3.4028234663852886e38)], "MINMAX=2:0,3.4028234663852886e+38"),
    ([CTW(((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)))], "CTW=0,0,1;0,1,0;1,0,0"),
    ([SHD(45.0, -30.5)], "SHD=45,-30.5"),
    ([RGN(), RGN(0.25, 0.125, 0.5, 0.5)], "RGN=0,0,1,1&RGN=0.25,0.125,0.5,0.5"),
    ([WID(800), HEI(600), QLT(90)], "WID=800&HEI=600&QLT=90"),
    ([ROT(90.0, True), ROT(180.0)], "ROT=!90&ROT=180"),
    ([COL("gray"), COL("bitonal"), COL("default")], "COL=grey&COL=binary&COL=default"),
    ([SDS(), LYR(2)], "SDS&LYR=2"),
    ([PTL(0, 0), WTL(1, 2), TIL(2, 0, 5)], "PTL=0,0&WTL=1,2&TIL=2,0-5"),
    ([CVT("jpg"), CVT("tif")], "CVT=jpeg&CVT=tif"),
    ([PFL(6, 10, 20, 300, 20)], "PFL=6:10,20-300,20"),
    ([Handoff("iiif", "/a.tif/info.json"), Handoff("deepzoom", "a.dzi")], "IIIF=/a.tif/info.json&DeepZoom=a.dzi"),
    ([Unknown("spectra")], "spectra"),
    ([], ""),
]


@pytest.mark.parametrize(("commands", "query"), UNPARSED)
def test_unparse(commands, query):
    assert unparse(commands) == query
    assert parse(query) == commands


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("GAM=abc", "GAM needs a number, got 'abc'"),
        ("GAM=-1", "GAM must be between 0 and 100"),
        ("CNT=nan", "CNT needs a finite number"),
        ("MINMAX=1", "MINMAX needs channel:min,max"),
        ("MINMAX=1:2", "MINMAX needs 2 comma-separated numbers"),
        ("MINMAX=x:1,2", "MINMAX needs an integer, got 'x'"),
        ("MINMAX=1:0,1e39", "MINMAX must be between -3.40282e+38 and 3.40282e+38"),
        ("SHD=400,0", "SHD must be between -360 and 360"),
        ("ROT=!x", "ROT needs a number, got 'x'"),
        ("WID=99999999999", "WID must be between -2147483648 and 2147483647"),
        ("LYR=-2", "LYR needs a number of layers, 0 or more"),
        ("CTW=", None),  # an empty value is dropped, not an error
        ("CTW=;", "CTW needs 1 to 16 rows"),
        ("JTL=3", "JTL needs resolution,tile"),
        ("PTL=1,2,3", "JTL needs an integer, got '2,3'"),
        ("TIL=1,a-3", "TIL needs an integer, got 'a'"),
        ("PFL=1,2", "PFL needs res:x1,y1-x2,y2"),
        ("PFL=0:1,2-3", "PFL needs 2 comma-separated numbers"),
        ("FIF=a%00b", "invalid character in request"),
        ("QLT=" + "9" * 65, "QLT is not a number of at most 64 characters"),
    ],
)
def test_parse_refuses(query, message):
    if message is None:
        assert parse(query) == []
        return
    with pytest.raises(BadRequest) as refused:
        parse(query)
    assert refused.value.status == 400
    assert refused.value.message == message


def test_commands_are_read_one_at_a_time():
    """The responder parses lazily: a bad value after the answering command is never read."""
    commands = iip.commands("FIF=a.tif&JTL=0,0&GAM=abc")
    assert [next(commands), next(commands)] == [FIF("a.tif"), JTL(0, 0)]
    with pytest.raises(BadRequest):
        next(commands)


# ---------------------------------------------------------------- the view state


@pytest.mark.parametrize(
    ("query", "channels", "display"),
    [
        ("", 3, IDENTITY),
        ("CMP=jet", 1, Display(colormap="jet")),
        ("CMP=jet&CMP=grey", 1, IDENTITY),  # the last setting wins
        ("MINMAX=2:0,10&MINMAX=5:1,2", 3, Display(minmax=((1, 0.0, 10.0),))),  # 0-based, channels it has
        ("MINMAX=2:0,10", 1, IDENTITY),  # a channel the image lacks changes nothing
        ("MINMAX=0:0,10&GAM=0.5", 1, Display(gamma=0.5)),
        ("INV&CNT=2&SHD=45,30&CTW=1;1;1", 1, Display(contrast=2.0, invert=True, shade=(45.0, 30.0),
                                                     twist=((1.0,), (1.0,), (1.0,)))),
        ("CMP=jet&WID=abc&IIIF=x", 1, Display(colormap="jet")),  # only the display keys are read
    ],
)  # fmt: skip
def test_view_display(query, channels, display):
    assert iip.view(query).display(channels) == display


def test_view_quality_and_geometry():
    assert iip.view("QLT=70&CMP=jet").quality == 70
    assert iip.view("CMP=jet").quality is None
    state = iip.View()
    for command in parse("RGN=0,0,0.5,0.5&WID=100&HEI=50&ROT=!270&COL=grey&QLT=1:20&LYR=4&SDS=0,90"):
        state.apply(command)
    assert (state.region, state.width, state.height) == (RGN(0.0, 0.0, 0.5, 0.5), 100, 50)
    assert (state.rotation, state.mirror, state.color, state.quality) == (270.0, True, "gray", 20)


# ---------------------------------------------------------------- round trip


def _floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


c_int = st.integers(-(2**31), 2**31 - 1)
natural = st.integers(0, 2**31 - 1)  # a start before the "-" of TIL and PFL cannot be negative
identifier = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=30)
matrix = st.lists(st.lists(_floats(*iip.TWIST), min_size=1, max_size=16).map(tuple), min_size=1, max_size=16).map(tuple)
fraction = _floats(0.0, 1.0)
query_text = st.text(st.characters(codec="latin-1", blacklist_characters="&\x00"), min_size=1, max_size=20)
command = st.one_of(
    st.builds(FIF, identifier),
    st.builds(OBJ, query_text.map(str.lower).filter(lambda n: n == n.lower())),
    st.builds(MINMAX, c_int, _floats(*iip.SAMPLE), _floats(*iip.SAMPLE)),
    st.builds(GAM, _floats(*iip.GAMMA)),
    st.builds(CNT, _floats(*iip.CONTRAST)),
    st.builds(CMP, st.sampled_from((None, *COLORMAPS))),
    st.just(INV()),
    st.builds(CTW, matrix),
    st.builds(SHD, _floats(*iip.ANGLE), _floats(*iip.ANGLE)),
    st.builds(RGN, fraction, fraction, fraction.filter(bool), fraction.filter(bool)),
    st.builds(WID, natural),
    st.builds(HEI, natural),
    st.builds(ROT, st.sampled_from((0.0, 90.0, 180.0, 270.0)), st.booleans()),
    st.builds(QLT, st.integers(0, 100)),
    st.builds(COL, st.sampled_from(("gray", "bitonal", "default"))),
    st.just(SDS()),
    st.builds(LYR, natural),
    st.builds(JTL, c_int, c_int),
    st.builds(PTL, c_int, c_int),
    st.builds(WTL, c_int, c_int),
    st.builds(TIL, c_int, natural, c_int),
    st.builds(CVT, st.sampled_from(("jpg", "png", "webp", "tif"))),
    st.builds(PFL, c_int, natural, natural, c_int, c_int),
    st.builds(Handoff, st.sampled_from(sorted(iip.HANDOFF_KEYS)), query_text),
    st.builds(Unknown, st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(lambda k: k not in iip.PARSERS
                                                                                       and k not in iip.HANDOFF_KEYS
                                                                                       and k != "jtls")),
)  # fmt: skip


@given(st.lists(command, max_size=8))
def test_round_trip(commands):
    assert parse(unparse(commands)) == commands
