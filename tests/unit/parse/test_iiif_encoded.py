"""Percent-encoded IIIF parameter segments (IIIF 3.0 section 9): decoded per segment, printed back canonical.

Every character the spec lets a client encode in region, size, rotation and
quality.format, in upper- and lower-case hex, on both versions; the
identifier keeps its own rules (``%2F`` stays inside it); an encoded ``%``
(double encoding) and a broken escape are 400s, never guessed at.
"""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiip.errors import BadRequest
from pyiip.parse.iiif import Image, Info, decode_param, parse

# (encoded parameters, the same unencoded), each valid in both versions unless it names ^.
ENCODED = [
    ("full/%5Emax/0/default.jpg", "full/^max/0/default.jpg"),
    ("full/%5emax/0/default.jpg", "full/^max/0/default.jpg"),
    ("full/%21200,200/0/default.jpg", "full/!200,200/0/default.jpg"),
    ("0%2C0%2C100%2C100/max/0/default.jpg", "0,0,100,100/max/0/default.jpg"),
    ("0%2c0%2c100%2c100/max/0/default.jpg", "0,0,100,100/max/0/default.jpg"),
    ("pct%3A10,10,50,50/max/0/default.jpg", "pct:10,10,50,50/max/0/default.jpg"),
    ("pct%3a10,10,50,50/pct%3A50/0/default.jpg", "pct:10,10,50,50/pct:50/0/default.jpg"),
    ("full/max/%2190/default.jpg", "full/max/!90/default.jpg"),
    ("full/max/22%2E5/default.jpg", "full/max/22.5/default.jpg"),
    ("full/max/0/default%2Ejpg", "full/max/0/default.jpg"),
    ("full/max/0/default%2epng", "full/max/0/default.png"),
    ("full/%2C150/0/gray.jpg", "full/,150/0/gray.jpg"),
    ("%73quare/max/0/default.jpg", "square/max/0/default.jpg"),  # an unreserved letter encoded
]


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize(("encoded", "plain"), ENCODED)
def test_encoded_segments_read_as_their_plain_form(encoded: str, plain: str, version: int) -> None:
    if "^" in plain and version == 2:
        plain, encoded = plain.replace("^max", "max"), encoded.replace("%5Emax", "max").replace("%5emax", "max")
    target = parse("dir%2Fimage.tif/" + encoded, version)
    assert isinstance(target, Image)
    assert target == parse("dir%2Fimage.tif/" + plain, version)
    assert target.identifier == "dir/image.tif" and target.encoded == "dir%2Fimage.tif"
    assert str(target.params) == str(parse("x/" + plain, version).params)  # printed canonical, never encoded
    assert "%" not in str(target)[len("dir%2Fimage.tif") :]


def test_info_json_encoded_dot() -> None:
    assert parse("a%2Fb/info%2Ejson", 3) == Info("a/b", "a%2Fb")


@pytest.mark.parametrize(
    "params",
    [
        "full/%255Emax/0/default.jpg",  # %25 is "%": the client encoded twice
        "full/max/0/default%252Ejpg",
        "full/%5/0/default.jpg",  # not two hex digits
        "full/%GGmax/0/default.jpg",
        "full/max/0/default.jp%",
        "full/%00max/0/default.jpg",  # a control character
        "full/%20max/0/default.jpg",  # a space
        "full/%C3%A9/0/default.jpg",  # not ASCII
        "full%2Fmax/0/0/default.jpg",  # a slash inside a parameter
    ],
)
def test_double_encoded_or_broken_escapes_are_400(params: str) -> None:
    with pytest.raises(BadRequest):
        parse("image.tif/" + params, 3)


def test_plain_segments_are_not_copied() -> None:
    segment = "0,0,256,256"
    assert decode_param(segment) is segment  # the tile path pays one membership test


@given(st.text(alphabet=st.sampled_from("%25aAfFgG05^!,:.x/"), max_size=24) | st.text(max_size=24))
def test_decode_is_unquote_or_a_400(text: str) -> None:
    try:
        decoded = decode_param(text)
    except BadRequest:
        return
    assert decoded == unquote(text)
    assert "%" not in decoded  # a % left after decoding was double encoding
