"""read.fits_header: astropy-written headers without the pole cards VisiOmatic v2 fails on, same coordinates."""

from __future__ import annotations

import re

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from pyiip.read.fits_header import without_implied_poles

# VisiOmatic v2's readFITSKey for LATPOLE (IIPUtils.js): a match makes its WCS reader throw.
V2_LATPOLE = re.compile(r"LATPOLE =\ *(?:'((?:\ *[^'\ ]+)*)\ *'|([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))")


def astropy_header(code: str, crval2: float, **wcs_attributes: float) -> fits.Header:
    """What astropy writes for a projection: PC/CDELT, LONPOLE, LATPOLE, MJDREF, DATEREF..."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [f"RA---{code}", f"DEC--{code}"]
    wcs.wcs.crval = [150.0, crval2]
    wcs.wcs.crpix = [500.5, 400.5]
    wcs.wcs.cdelt = [-1e-3, 1e-3]
    if code == "COE":
        wcs.wcs.set_pv([(2, 1, 45.0)])
    for name, value in wcs_attributes.items():
        setattr(wcs.wcs, name, value)
    header = wcs.to_header()
    header["NAXIS1"], header["NAXIS2"] = 1000, 800
    return header


def cards(header: fits.Header) -> str:
    return "".join(card.image for card in header.cards)


def world(header: fits.Header) -> np.ndarray:
    pixels = np.random.default_rng(1).uniform(1, [1000, 800], (200, 2))
    return WCS(header).all_pix2world(pixels, 1)


CASES = [
    # (projection, CRVAL2, WCS attributes, cards left out)
    ("TAN", 2.2, {}, {"LATPOLE", "LONPOLE"}),
    ("TAN", -60.0, {}, {"LATPOLE", "LONPOLE"}),
    ("TAN", 90.0, {}, {"LATPOLE", "LONPOLE"}),  # at the pole LONPOLE's default is 0
    ("SIN", 30.0, {}, {"LATPOLE", "LONPOLE"}),
    ("ZEA", -89.0, {}, {"LATPOLE", "LONPOLE"}),
    ("ARC", 10.0, {}, {"LATPOLE", "LONPOLE"}),
    ("STG", 45.0, {}, {"LATPOLE", "LONPOLE"}),
    ("TAN", 20.0, {"lonpole": 170.0}, {"LATPOLE"}),  # a real LONPOLE stays
    ("CAR", 0.0, {}, {"LATPOLE", "LONPOLE"}),
    ("CAR", 30.0, {}, {"LATPOLE", "LONPOLE"}),
    ("CAR", 30.0, {"latpole": -60.0}, {"LONPOLE"}),  # LATPOLE picks the other pole: needed
    ("CEA", -20.0, {}, {"LATPOLE", "LONPOLE"}),
    ("AIT", 60.0, {}, {"LATPOLE", "LONPOLE"}),
    ("COE", 30.0, {}, {"LATPOLE", "LONPOLE"}),
]


@pytest.mark.parametrize(("code", "crval2", "attributes", "dropped"), CASES)
def test_pole_cards_left_out_only_where_implied(code, crval2, attributes, dropped):
    header = astropy_header(code, crval2, **attributes)
    assert "LATPOLE" in header and "LONPOLE" in header  # astropy writes both
    text = without_implied_poles(cards(header))
    result = fits.Header.fromstring(text)
    assert {"LATPOLE", "LONPOLE"} - set(result) == dropped
    assert len(text) == 80 * len(result.cards) or "\n" in text
    np.testing.assert_allclose(world(result), world(header), rtol=0, atol=1e-10)
    if "LATPOLE" in dropped:
        assert V2_LATPOLE.search(text) is None


def test_other_cards_stay_byte_for_byte_and_lines_stay_lines():
    header = astropy_header("TAN", 2.2)
    text = cards(header)
    kept = without_implied_poles(text)
    expected = "".join(card.image for card in header.cards if card.keyword not in ("LATPOLE", "LONPOLE"))
    assert kept == expected
    lines = "\n".join(card.image.rstrip() for card in header.cards)
    assert "LATPOLE" not in without_implied_poles(lines)
    assert without_implied_poles(lines).split("\n")[0] == lines.split("\n")[0]


def test_headers_it_does_not_understand_are_kept():
    plain = cards(fits.Header({"NAXIS": 2, "OBJECT": "M31"}))
    assert without_implied_poles(plain) is plain
    moved = astropy_header("TAN", 2.2)
    moved["PV1_1"], moved["PV1_2"] = 0.0, 90.0  # the fiducial point given in PV cards of longitude (not TPV)
    moved["CTYPE1"], moved["CTYPE2"] = "RA---SIN", "DEC--SIN"
    assert without_implied_poles(cards(moved)) == cards(moved)
    swapped = astropy_header("TAN", 2.2)
    swapped["CTYPE1"], swapped["CTYPE2"] = "DEC--TAN", "RA---TAN"
    swapped["CRVAL1"], swapped["CRVAL2"] = -30.0, 150.0
    result = fits.Header.fromstring(without_implied_poles(cards(swapped)))
    assert "LATPOLE" not in result  # the latitude axis is found by its CTYPE, not its number
    np.testing.assert_allclose(world(result), world(swapped), rtol=0, atol=1e-10)
    unknown = astropy_header("TAN", 2.2)
    unknown["CTYPE1"], unknown["CTYPE2"] = "RA---XYZ", "DEC--XYZ"
    assert without_implied_poles(cards(unknown)) == cards(unknown)


@pytest.mark.parametrize(
    "cards_text",
    [
        "CTYPE1  = 'RA---TAN'CTYPE2  = 'DEC--TAN'LATPOLE =                 1e999",
        "CTYPE1  = 'RA---CAR'".ljust(80) + "CTYPE2  = 'DEC--CAR'".ljust(80) + "CRVAL2  = 1e999".ljust(80)
        + "LATPOLE = 10".ljust(80) + "LONPOLE = 'abc".ljust(80),
        "CTYPE1  = 'RA---COE'".ljust(80) + "CTYPE2  = 'DEC--COE'".ljust(80) + "PV2_1   = 90".ljust(80)
        + "CRVAL2  = 90".ljust(80) + "LATPOLE = 95".ljust(80) + "LONPOLE = T".ljust(80),
        "LATPOLE = ''".ljust(80) + "LONPOLE = NaN" + "\n" * 3,
    ],
)  # fmt: skip
def test_hostile_headers_come_back_without_an_error(cards_text):
    assert isinstance(without_implied_poles(cards_text), str)
