"""Headers written by astropy reach VisiOmatic v2 without the LATPOLE card its WCS reader throws on.

Both ways a header reaches it: ``pyiip convert`` writes it into the cube, and
the ``OBJ=subject`` reply sends a cube's header (one made by another tool too).
The coordinates astropy computes from what is sent stay those of the original.
"""

from __future__ import annotations

import re

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from pyiip.http import Request
from pyiip.tools.convert import convert
from tests.support.imaging import write_tifffile_pyramid

# VisiOmatic v2 (IIPUtils.readFITSKey) finds a key anywhere in the header with this pattern.
V2_KEY = r"{}\ *=\ *(?:'((?:\ *[^'\ ]+)*)\ *'|([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))"


def astropy_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1191, 2.2058]
    wcs.wcs.crpix = [150.5, 100.5]
    wcs.wcs.cdelt = [-5.5e-5, 5.5e-5]
    wcs.wcs.pc = [[0.866, -0.5], [0.5, 0.866]]
    return wcs


def subject(app, name: str) -> str:
    reply = app.respond(Request("GET", "/fcgi-bin/iipsrv.fcgi", f"FIF={name}&obj=IIP,1.0&obj=subject"))
    assert reply.status == 200, reply.body[:200]
    found = re.search(r"subject/(\d+):", reply.body.decode("latin-1"))
    assert found
    start = found.end()
    return reply.body.decode("latin-1")[start : start + int(found.group(1))]


def check_v2_readable(text: str, wcs: WCS) -> None:
    assert re.search(V2_KEY.format("LATPOLE"), text) is None
    header = fits.Header.fromstring(text)
    pixels = np.random.default_rng(2).uniform(1, [300, 200], (100, 2))
    np.testing.assert_allclose(WCS(header).all_pix2world(pixels, 1), wcs.all_pix2world(pixels, 1), atol=1e-9, rtol=0)


def test_a_converted_astropy_fits_and_its_subject_reply_have_no_latpole(tmp_path, make_app):
    wcs = astropy_wcs()
    header = wcs.to_header()
    assert "LATPOLE" in header and "LONPOLE" in header
    data = np.random.default_rng(1).normal(100, 5, (200, 300)).astype(np.float32)
    fits.PrimaryHDU(data, header).writeto(tmp_path / "sky.fits")
    convert([tmp_path / "sky.fits"], tmp_path / "cube.tif", compression="none", progress=False)
    text = subject(make_app(tmp_path), "cube.tif")
    check_v2_readable(text, wcs)
    assert re.search(V2_KEY.format("CD1_1"), text)  # VisiOmatic reads the CD matrix convert writes


def test_subject_reply_leaves_latpole_out_of_a_cube_made_by_another_tool(tmp_path, make_app):
    wcs = astropy_wcs()
    header = wcs.to_header()
    text = "".join(card.image for card in header.cards)
    data = np.random.default_rng(1).normal(100, 5, (200, 300, 1)).astype(np.float32)
    write_tifffile_pyramid(tmp_path / "stiff.tif", data, description=text)
    served = subject(make_app(tmp_path), "stiff.tif")
    check_v2_readable(served, wcs)
    others = "".join(card.image for card in header.cards if card.keyword not in ("LATPOLE", "LONPOLE"))
    assert served == others.rstrip()  # every other card as it was (the reader drops trailing blanks)
