"""pyiip.convert: FITS in, STIFF-style pyramidal float32 BigTIFF out (reference §9.3)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from astropy.io import fits

from pyiip.tools.convert import ConvertError, convert

W, H = 700, 500


def _wcs_header(**extra) -> fits.Header:
    header = fits.Header()
    header["OBJECT"] = "test field"
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CRPIX1"], header["CRPIX2"] = 350.5, 250.5
    header["CRVAL1"], header["CRVAL2"] = 150.1, 2.2
    for key, value in extra.items():
        header[key] = value
    return header


def _sky(rng: np.random.Generator, shape=(H, W)) -> np.ndarray:
    data = (100 + 5 * rng.standard_normal(shape)).astype(np.float32)
    data[rng.integers(0, shape[0], 30), rng.integers(0, shape[1], 30)] += 5000  # "stars"
    return data


@pytest.fixture
def three_bands(tmp_path: Path) -> tuple[list[Path], list[np.ndarray]]:
    """g, r, i images with a CDELT/PC WCS (converted to CD) and a few NaN pixels."""
    rng = np.random.default_rng(7)
    paths, arrays = [], []
    for band in "gri":
        data = _sky(rng)
        data[10:14, 20:23] = np.nan  # a whole 2x2 block and partial ones
        data[0, 0] = np.inf
        header = _wcs_header(CDELT1=-5e-5, CDELT2=5e-5, PC1_1=0.8, PC1_2=-0.6, PC2_1=0.6, PC2_2=0.8, FILTER=band)
        path = tmp_path / f"{band}.fits"
        fits.PrimaryHDU(data, header).writeto(path)
        paths.append(path)
        arrays.append(data)
    return paths, arrays


def _tiff_view(arrays: list[np.ndarray]) -> np.ndarray:
    """What level 0 must hold: FITS flipped vertically, channels last, bad pixels as 0."""
    cube = np.stack([a[::-1] for a in arrays], axis=-1)
    return np.where(np.isfinite(cube), cube, 0).astype(np.float32)


def _halve(level: np.ndarray) -> np.ndarray:
    """Reference 2x2 mean ignoring non-finite pixels (NaN where all four are bad)."""
    h, w = level.shape[0] // 2, level.shape[1] // 2
    blocks = level[: 2 * h, : 2 * w].reshape(h, 2, w, 2, -1).astype(np.float64)
    good = np.isfinite(blocks)
    with np.errstate(invalid="ignore"):
        return (np.where(good, blocks, 0).sum(axis=(1, 3)) / good.sum(axis=(1, 3))).astype(np.float32)


def _description(path: Path, page: int = 0) -> str:
    """ImageDescription as stored (tifffile's .value strips the last card's padding)."""
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[page].tags[270]
        tif.filehandle.seek(tag.valueoffset)
        return tif.filehandle.read(tag.count).rstrip(b"\0").decode("ascii")


def _cards(description: str) -> dict[str, str]:
    return {description[i : i + 8].strip(): description[i + 8 : i + 80] for i in range(0, len(description), 80)}


def _visiomatic_key(key: str, text: str) -> str | None:
    """V2's L.IIPUtils.readFITSKey regex (reference §6.2)."""
    key = key.upper()[:8]
    pattern = key + " " * (8 - len(key)) + r"=\s*(?:'((?:[^']|'')*?)\s*'|([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))"
    match = re.search(pattern, text)
    return None if match is None else (match.group(1) if match.group(1) is not None else match.group(2))


def _leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


# --- Structure and pixels -------------------------------------------------------------------


def test_pixels_round_trip_with_vertical_flip(three_bands, tmp_path):
    paths, arrays = three_bands
    out = tmp_path / "cube.tif"
    convert(paths, out, progress=False)
    with tifffile.TiffFile(out) as tif:
        level0 = tif.pages[0].asarray()
    np.testing.assert_array_equal(level0, _tiff_view(arrays))
    # TIFF row 0 is the last FITS row (FITS row NAXIS2 at the top).
    np.testing.assert_array_equal(level0[0, :, 1], np.nan_to_num(arrays[1][H - 1], nan=0, posinf=0))


def test_levels_are_floor_halved_2x2_means(three_bands, tmp_path):
    paths, arrays = three_bands
    out = tmp_path / "cube.tif"
    convert(paths, out, min_size=64, progress=False)
    expected = np.stack([a[::-1] for a in arrays], axis=-1)
    expected[~np.isfinite(expected)] = np.nan
    with tifffile.TiffFile(out) as tif:
        shapes = [page.shape for page in tif.pages]
        # STIFF keeps levels while w >= minsize or h >= minsize: 43 x 31 is dropped.
        assert shapes == [(500, 700, 3), (250, 350, 3), (125, 175, 3), (62, 87, 3)]
        for page in tif.pages[1:]:
            expected = _halve(expected)
            np.testing.assert_allclose(page.asarray(), np.nan_to_num(expected, nan=0), rtol=1e-6, atol=1e-4)


def test_tiff_tags_match_stiff_layout(three_bands, tmp_path):
    paths, arrays = three_bands
    out = tmp_path / "cube.tif"
    convert(paths, out, progress=False)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff
        assert len(tif.pages) == 2  # 700x500, 350x250 (175x125 is below 256 both ways)
        assert all(not page.subifds for page in tif.pages)  # a plain IFD chain
        for index, page in enumerate(tif.pages):
            assert page.is_tiled and (page.tilewidth, page.tilelength) == (256, 256)
            assert page.dtype == np.float32 and page.sampleformat == 3
            assert page.samplesperpixel == 3 and page.planarconfig == 1
            assert page.photometric == tifffile.PHOTOMETRIC.MINISBLACK
            assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
            assert page.subfiletype == (1 if index else 0)
            smin, smax = page.tags[340].value, page.tags[341].value
            assert len(smin) == len(smax) == 3
        for channel, data in enumerate(arrays):
            finite = data[np.isfinite(data)]
            lo, hi = smin[channel], smax[channel]
            # MIN GREYLEVEL 0.001 puts the cut just under the sky; MAX is the 0.999 quantile.
            assert 95 < lo < 100.5 < hi
            assert hi == pytest.approx(np.quantile(finite, 0.999), rel=0.05)


def test_single_image_gives_one_channel(tmp_path):
    path = tmp_path / "one.fits"
    data = _sky(np.random.default_rng(1), (300, 260))
    fits.PrimaryHDU(data, _wcs_header(CD1_1=-1e-4, CD1_2=0.0, CD2_1=0.0, CD2_2=1e-4)).writeto(path)
    out = tmp_path / "one.tif"
    convert([path], out, progress=False)
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.shape == (300, 260) and page.samplesperpixel == 1
        np.testing.assert_array_equal(page.asarray(), data[::-1])
        assert np.ndim(page.tags[340].value) == 0 or len(page.tags[340].value) == 1
        assert [p.shape for p in tif.pages] == [(300, 260)]  # 150 x 130 is under min_size both ways
    cards = _cards(_description(out))
    assert cards["CHAN0001"].split("'")[1].strip() == "one"  # no FILTER: the file stem
    assert float(cards["CD2_2"].split("/")[0].split("=")[1]) == pytest.approx(1e-4)


def test_small_image_still_has_level_zero(tmp_path):
    path = tmp_path / "tiny.fits"
    fits.PrimaryHDU(np.ones((20, 30), np.float32)).writeto(path)
    out = tmp_path / "tiny.tif"
    convert([path], out, progress=False)
    with tifffile.TiffFile(out) as tif:
        assert [p.shape for p in tif.pages] == [(20, 30)]
        assert tif.pages[0].tags[340].value < tif.pages[0].tags[341].value  # constant image: a usable range


# --- Header ---------------------------------------------------------------------------------


def test_header_cards(three_bands, tmp_path):
    paths, _ = three_bands
    out = tmp_path / "cube.tif"
    convert(paths, out, progress=False)
    text = _description(out)
    assert len(text) % 80 == 0 and text.isascii() and "\n" not in text
    keys = [text[i : i + 8].strip() for i in range(0, len(text), 80)]
    assert "END" not in keys
    assert keys[:5] == ["SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2"]
    for forbidden in ("CDELT1", "CDELT2", "PC1_1", "PC2_2", "BSCALE", "BZERO", "EXTEND"):
        assert forbidden not in keys
    assert _visiomatic_key("NAXIS1", text) == "700"
    assert _visiomatic_key("NAXIS2", text) == "500"
    assert _visiomatic_key("CTYPE1", text) == "RA---TAN"
    assert _visiomatic_key("CRPIX2", text) == "250.5"  # unchanged by the flip
    assert [_visiomatic_key(f"CHAN000{i}", text) for i in (1, 2, 3)] == ["g", "r", "i"]
    assert _visiomatic_key("CHAN0004", text) is None
    # CD = CDELT x PC, in the form VisiOmatic reads.
    cd = [[float(_visiomatic_key(f"CD{i}_{j}", text)) for j in (1, 2)] for i in (1, 2)]
    np.testing.assert_allclose(cd, [[-5e-5 * 0.8, -5e-5 * -0.6], [5e-5 * 0.6, 5e-5 * 0.8]], rtol=1e-9)


def test_crota_converted_to_cd(tmp_path):
    path = tmp_path / "crota.fits"
    header = _wcs_header(CDELT1=-2e-4, CDELT2=2e-4, CROTA2=30.0)
    fits.PrimaryHDU(np.zeros((40, 50), np.float32), header).writeto(path)
    out = tmp_path / "crota.tif"
    convert([path], out, progress=False)
    text = _description(out)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    expected = [[-2e-4 * c, -2e-4 * s], [-2e-4 * s, 2e-4 * c]]
    cd = [[float(_visiomatic_key(f"CD{i}_{j}", text)) for j in (1, 2)] for i in (1, 2)]
    np.testing.assert_allclose(cd, expected, rtol=1e-9)
    assert _visiomatic_key("CROTA2", text) is None


def test_reduced_levels_carry_their_own_geometry(three_bands, tmp_path):
    paths, _ = three_bands
    out = tmp_path / "cube.tif"
    convert(paths, out, progress=False)
    full, half = _description(out, 0), _description(out, 1)
    assert _visiomatic_key("NAXIS1", half) == "350" and _visiomatic_key("NAXIS2", half) == "250"
    assert float(_visiomatic_key("CD1_1", half)) == pytest.approx(2 * float(_visiomatic_key("CD1_1", full)))
    assert float(_visiomatic_key("CRPIX1", half)) == pytest.approx((350.5 - 0.5) / 2 + 0.5)


# --- Other inputs ---------------------------------------------------------------------------


def test_three_d_cube(tmp_path):
    rng = np.random.default_rng(3)
    cube = np.stack([_sky(rng) for _ in range(3)])
    header = _wcs_header(CD1_1=-5e-5, CD1_2=0.0, CD2_1=0.0, CD2_2=5e-5, CTYPE3="WAVE", CRVAL3=5e-7, CDELT3=1e-7)
    header["CHAN0002"] = "Halpha"
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(cube, header).writeto(path)
    out = tmp_path / "cube.tif"
    convert([path], out, progress=False)
    with tifffile.TiffFile(out) as tif:
        np.testing.assert_array_equal(tif.pages[0].asarray(), _tiff_view(list(cube)))
    text = _description(out)
    keys = [text[i : i + 8].strip() for i in range(0, len(text), 80)]
    assert "NAXIS3" not in keys and "CTYPE3" not in keys and "CDELT3" not in keys
    assert _visiomatic_key("NAXIS", text) == "2"
    assert _visiomatic_key("CHAN0001", text) == "cube 1"
    assert _visiomatic_key("CHAN0002", text) == "Halpha"


def test_scaled_int16_input(tmp_path):
    rng = np.random.default_rng(5)
    physical = (1000 + 50 * rng.standard_normal((H, W))).astype(np.float64)
    hdu = fits.PrimaryHDU(physical)
    hdu.scale("int16", bscale=0.5, bzero=1000.0)
    hdu.header["BLANK"] = -32768
    hdu.data[5, 6] = -32768  # a blank pixel, stored raw
    hdu.header["FILTER"] = "z"
    path = tmp_path / "scaled.fits"
    hdu.writeto(path)
    with fits.open(path) as hdul:
        assert hdul[0].header["BITPIX"] == 16 and hdul[0].header["BSCALE"] == 0.5
        expected = hdul[0].data.astype(np.float32)  # astropy applies BSCALE/BZERO and BLANK -> NaN
    assert np.isnan(expected[5, 6])
    out = tmp_path / "scaled.tif"
    convert([path], out, progress=False)
    with tifffile.TiffFile(out) as tif:
        level0 = tif.pages[0].asarray()
        assert level0.dtype == np.float32
    np.testing.assert_array_equal(level0, np.nan_to_num(expected[::-1], nan=0))
    assert "BSCALE" not in _cards(_description(out))


def test_unsigned_16_bit_input(tmp_path):
    data = np.arange(H * W, dtype=np.uint32).reshape(H, W).astype(np.uint16) + np.uint16(30000)
    path = tmp_path / "u16.fits"
    fits.PrimaryHDU(data).writeto(path)  # stored as int16 with BZERO = 32768
    out = tmp_path / "u16.tif"
    convert([path], out, progress=False)
    with tifffile.TiffFile(out) as tif:
        np.testing.assert_array_equal(tif.pages[0].asarray(), data[::-1].astype(np.float32))


def test_image_in_extension_and_compressed_fits(tmp_path):
    data = np.random.default_rng(9).integers(0, 1000, (H, W)).astype(np.int32)
    path = tmp_path / "compressed.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, _wcs_header(FILTER="Y"))]).writeto(path)
    out = tmp_path / "compressed.tif"
    convert([path], out, progress=False)
    with tifffile.TiffFile(out) as tif:
        np.testing.assert_array_equal(tif.pages[0].asarray(), data[::-1].astype(np.float32))
    assert _visiomatic_key("CHAN0001", _description(out)) == "Y"


@pytest.mark.parametrize("compression", ["none", "lzw", "zstd", "deflate"])
def test_compressions(three_bands, tmp_path, compression):
    paths, arrays = three_bands
    out = tmp_path / f"{compression}.tif"
    convert(paths, out, compression=compression, tile=128, progress=False)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].tilewidth == 128
        np.testing.assert_array_equal(tif.pages[0].asarray(), _tiff_view(arrays))
        assert all(page.tilewidth == 128 for page in tif.pages)


def test_progress_goes_to_stderr(three_bands, tmp_path, capsys):
    paths, _ = three_bands
    convert(paths, tmp_path / "quiet.tif", progress=False)
    assert capsys.readouterr().err == ""
    convert(paths, tmp_path / "loud.tif", progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "loud.tif" in captured.err


def test_overwrites_existing_output(three_bands, tmp_path):
    paths, _ = three_bands
    out = tmp_path / "cube.tif"
    out.write_bytes(b"old")
    convert(paths, out, progress=False)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].shape == (H, W, 3)


# --- Bad input ------------------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[Path], str]]:
    good = tmp_path / "good.fits"
    fits.PrimaryHDU(np.zeros((50, 60), np.float32)).writeto(good)
    text = tmp_path / "notes.fits"
    text.write_text("this is not FITS\n" * 200)
    table = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])])]).writeto(
        table
    )
    line = tmp_path / "line.fits"
    fits.PrimaryHDU(np.zeros(100, np.float32)).writeto(line)
    other = tmp_path / "other.fits"
    fits.PrimaryHDU(np.zeros((50, 61), np.float32)).writeto(other)
    truncated = tmp_path / "truncated.fits"
    fits.PrimaryHDU(np.zeros((500, 600), np.float32)).writeto(truncated)
    truncated.write_bytes(truncated.read_bytes()[:100_000])
    hyper = tmp_path / "hyper.fits"
    fits.PrimaryHDU(np.zeros((2, 2, 10, 10), np.float32)).writeto(hyper)
    return {
        "not fits": ([text], "not a readable FITS"),
        "missing": ([tmp_path / "absent.fits"], "no such file"),
        "no image": ([table], "no image data"),
        "1-D": ([line], "1-D"),
        "sizes differ": ([good, other], "same size"),
        "truncated": ([truncated], "truncated"),
        "4-D": ([hyper], "4-D"),
        "empty list": ([], "no input"),
        "one good one bad": ([good, text], "not a readable FITS"),
    }


@pytest.mark.parametrize(
    "case",
    ["not fits", "missing", "no image", "1-D", "sizes differ", "truncated", "4-D", "empty list", "one good one bad"],
)
def test_bad_input_raises_and_leaves_nothing(tmp_path, case):
    inputs, message = _bad_inputs(tmp_path)[case]
    before = {p.name for p in tmp_path.iterdir()}
    out = tmp_path / "out.tif"
    with pytest.raises(ConvertError, match=re.escape(message)):
        convert(inputs, out, progress=False)
    assert _leftovers(tmp_path, before) == []


def test_failure_keeps_previous_output(tmp_path):
    out = tmp_path / "out.tif"
    out.write_bytes(b"previous")
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 50 + b"garbage" * 100)
    with pytest.raises(ConvertError):
        convert([bad], out, progress=False)
    assert out.read_bytes() == b"previous"
    assert _leftovers(tmp_path, {"out.tif", "bad.fits"}) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compression": "jpeg2000"}, "unknown compression"),
        ({"tile": 100}, "multiple of 16"),
        ({"min_size": 0}, "min_size"),
    ],
)
def test_bad_options(three_bands, tmp_path, options, message):
    paths, _ = three_bands
    with pytest.raises(ConvertError, match=message):
        convert(paths, tmp_path / "out.tif", progress=False, **options)
    assert not (tmp_path / "out.tif").exists()


def test_missing_output_directory(three_bands, tmp_path):
    paths, _ = three_bands
    with pytest.raises(ConvertError, match="does not exist"):
        convert(paths, tmp_path / "nowhere" / "out.tif", progress=False)


def test_error_during_write_cleans_temporaries(three_bands, tmp_path, monkeypatch):
    """An interruption half-way (here a failing tile read) leaves neither output nor temporaries."""
    import pyiip.tools.convert as module

    paths, _ = three_bands
    before = {p.name for p in tmp_path.iterdir()}
    calls = {"n": 0}
    original = module._RawRows.rows

    def failing(self, start, stop):
        calls["n"] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(module._RawRows, "rows", failing)
    with pytest.raises(KeyboardInterrupt):
        convert(paths, tmp_path / "out.tif", min_size=64, progress=False)
    assert calls["n"] == 1
    assert _leftovers(tmp_path, before) == []
    monkeypatch.setattr(module._RawRows, "rows", original)


def test_degenerate_fourth_axis(tmp_path):
    """NAXIS4 = 1 (common in radio cubes) is a 3-D cube, also when tile-compressed."""
    data = np.random.default_rng(2).integers(0, 1000, (1, 2, 40, 50)).astype(np.int32)
    plain, packed = tmp_path / "plain.fits", tmp_path / "packed.fits"
    fits.PrimaryHDU(data).writeto(plain)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(packed)
    for path in (plain, packed):
        out = path.with_suffix(".tif")
        convert([path], out, progress=False)
        np.testing.assert_array_equal(tifffile.imread(out, key=0), np.moveaxis(data[0], 0, -1)[::-1])


def test_non_ascii_file_name_gives_ascii_label(tmp_path):
    path = tmp_path / "m31_ré.fits"
    fits.PrimaryHDU(np.zeros((20, 30), np.float32)).writeto(path)
    out = tmp_path / "m31.tif"
    convert([path], out, progress=False)
    assert _visiomatic_key("CHAN0001", _description(out)) == "m31_r?"
