"""BIT, pyiip's IIP command for 16-bit output: parsed, printed back, folded into the view, refused when not 8 or 16."""

from __future__ import annotations

import pytest

from pyiip.errors import BadRequest
from pyiip.parse.iip import BIT, CVT, FIF, parse, unparse, view


def test_bit_round_trip() -> None:
    commands = parse("FIF=cube.tif&BIT=16&CVT=avif")
    assert commands == [FIF("cube.tif"), BIT(16), CVT("avif")]
    assert unparse(commands) == "FIF=cube.tif&BIT=16&CVT=avif"


def test_bit_folds_into_the_view() -> None:
    assert view("BIT=16&BIT=8", ["bit"]).bits == 8  # the later one wins, as every setting
    assert view("BIT=16", ["bit"]).bits == 16


@pytest.mark.parametrize("value", ["12", "32", "0", "sixteen", "-16"])
def test_bit_other_values_are_400(value: str) -> None:
    with pytest.raises(BadRequest, match="BIT"):
        parse(f"BIT={value}")
