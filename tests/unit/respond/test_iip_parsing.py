"""The IIP tokenizer, URL decoder, error lines and CTW parser, as tables of cases."""

import pytest

from pyiip.errors import BadRequest
from pyiip.parse.iip import parse_twist, split_query, unquote
from pyiip.respond.iip import error_line


@pytest.mark.parametrize(
    ("query", "pairs"),
    [
        ("FIF=a.tif&JTL=1,2", [("fif", "a.tif"), ("jtl", "1,2")]),
        ("FIF=a.tif&INV&JTL=0,0", [("fif", "a.tif"), ("inv", "INV"), ("jtl", "0,0")]),
        ("INV=&GAM=2", [("gam", "2")]),  # an empty value is dropped, as iipsrv
        ("=x&&OBJ=IIP,1.0", [("obj", "IIP,1.0")]),
        ("CTW=0,0,1;0,1,0;1,0,0", [("ctw", "0,0,1;0,1,0;1,0,0")]),  # ';' is not a separator
        ("MINMAX=1:1,2&MINMAX=2:3,4", [("minmax", "1:1,2"), ("minmax", "2:3,4")]),  # repeats kept in order
        ("CNT=1e+21", [("cnt", "1e+21")]),  # '+' stays in numbers
        ("RGN=a=b", [("rgn", "a=b")]),  # split at the first '='
        ("", []),
    ],
)
def test_split_query(query, pairs):
    assert split_query(query) == pairs


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("a%2Fb.tif", "a/b.tif"),
        ("a+b", "a b"),
        ("100%", "100%"),
        ("%zz", "%zz"),
        ("caf%C3%A9", "café"),
        ("%2e%2e/x", "../x"),
    ],
)
def test_unquote(raw, decoded):
    assert unquote(raw) == decoded


def test_unquote_refuses_nul():
    with pytest.raises(BadRequest):
        unquote("a%00b")


@pytest.mark.parametrize(
    ("code", "arg", "line"),
    [
        ("3 2", "foo", "Error/7:3 2 foo"),
        ("3 2", "min-max-sample-values", "Error/25:3 2 min-max-sample-val"),  # iipsrv issue #54
        ("2 2", "x" * 50, "Error/54:2 2 " + "x" * 18),
    ],
)
def test_error_line(code, arg, line):
    assert error_line(code, arg) == line
    assert len(error_line(code, arg)) <= 31


@pytest.mark.parametrize(
    ("text", "matrix"),
    [
        ("1;1;1", ((1.0,), (1.0,), (1.0,))),
        ("0,0,1;0,1,0;1,0,0", ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))),
        ("[0.5,0.5;1,0]", ((0.5, 0.5), (1.0, 0.0))),
        ("%5B1,2%5D", ((1.0, 2.0),)),
        ("0.3333333333333333,5.551115123125783e-17", ((0.3333333333333333, 5.551115123125783e-17),)),
    ],
)
def test_parse_twist(text, matrix):
    assert parse_twist(text) == matrix


@pytest.mark.parametrize("text", ["", "a,b", ";".join(["1"] * 17), ",".join(["1"] * 17), "1,inf"])
def test_parse_twist_rejects(text):
    with pytest.raises(BadRequest):
        parse_twist(text)
