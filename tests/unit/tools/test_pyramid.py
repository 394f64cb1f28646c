"""pyiip pyramid (tools/pyramid.py): bit depth kept, options checked, nothing left on failure, readable errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile

from pyiip.tools.options import OptionError
from pyiip.tools.pyramid import PyramidError, make_pyramid, reason


def _write(path: Path, array: np.ndarray) -> Path:
    pyvips.Image.new_from_array(array).write_to_file(str(path))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:600, 0:700]
    smooth = np.stack([x * 65535 // 700, y * 65535 // 600, (x + y) * 65535 // 1300], axis=2).astype(np.uint16)
    noisy = (smooth // 257).astype(np.uint8) + rng.integers(0, 40, smooth.shape, dtype=np.uint8)
    return {
        "rgb16": _write(directory / "rgb16.png", smooth),
        "grey16": _write(directory / "grey16.tif", smooth[:, :, 0] | 1),  # odd values: the low bit must survive
        "rgb8": _write(directory / "rgb8.png", noisy),
    }


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or "partial" in p.name)


@pytest.mark.parametrize("name", ["rgb16", "grey16"])
def test_16_bit_is_kept_and_lossless_by_default(sources, tmp_path, name) -> None:
    out = tmp_path / "out.tif"
    assert make_pyramid(sources[name], out) == "deflate"
    expected = pyvips.Image.new_from_file(str(sources[name])).numpy()
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.dtype == np.uint16 and page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert page.is_tiled and (page.tilewidth, page.tilelength) == (256, 256)
        np.testing.assert_array_equal(page.asarray(), expected)
        assert len(tif.pages) > 1 or tif.pages[0].subifds  # a pyramid


@pytest.mark.parametrize("compression", ["lzw", "none"])
def test_16_bit_other_lossless_codecs(sources, tmp_path, compression) -> None:
    out = tmp_path / "out.tif"
    make_pyramid(sources["rgb16"], out, compression=compression, tile=128)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].dtype == np.uint16 and tif.pages[0].tilewidth == 128
        np.testing.assert_array_equal(tif.pages[0].asarray(), pyvips.Image.new_from_file(str(sources["rgb16"])).numpy())


@pytest.mark.parametrize("compression", ["jpeg", "webp", "JPEG"])
def test_lossy_request_on_16_bit_is_refused(sources, tmp_path, compression) -> None:
    with pytest.raises(OptionError, match=f"--compression {compression.lower()} stores 8-bit samples and .* 16-bit"):
        make_pyramid(sources["rgb16"], tmp_path / "out.tif", compression=compression)
    assert list(tmp_path.iterdir()) == []


def test_8_bit_defaults_to_jpeg(sources, tmp_path) -> None:
    out = tmp_path / "out.tif"
    assert make_pyramid(sources["rgb8"], out) == "jpeg"
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].dtype == np.uint8 and tif.pages[0].compression == tifffile.COMPRESSION.JPEG


def test_alpha_is_kept_and_lossless_by_default(sources, tmp_path) -> None:
    rgba = np.random.default_rng(3).integers(0, 255, (300, 400, 4), dtype=np.uint8)
    source = tmp_path / "rgba.png"
    pyvips.Image.new_from_array(rgba).copy(interpretation="srgb").pngsave(str(source))
    assert make_pyramid(source, tmp_path / "out.tif") == "deflate"
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        np.testing.assert_array_equal(tif.pages[0].asarray(), rgba)
    with pytest.raises(OptionError, match=r"--compression jpeg has no alpha channel and .*rgba\.png has one: use webp"):
        make_pyramid(source, tmp_path / "jpeg.tif", compression="jpeg")
    make_pyramid(source, tmp_path / "webp.tif", compression="webp")
    with tifffile.TiffFile(tmp_path / "webp.tif") as tif:
        assert tif.pages[0].shape == (300, 400, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif", "rgba.png", "webp.tif"]


@pytest.mark.parametrize("compression", ["webp", "jpeg"])
def test_quality_changes_the_size(sources, tmp_path, compression) -> None:
    sizes = []
    for quality in (20, 95):
        out = tmp_path / f"q{quality}.tif"
        make_pyramid(sources["rgb8"], out, compression=compression, quality=quality)
        sizes.append(out.stat().st_size)
    assert sizes[0] < 0.7 * sizes[1], sizes


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tile": 0}, "--tile must be an integer from 16 to 4096, a multiple of 16, not 0"),
        ({"tile": 100000}, "--tile must be .* not 100000"),
        ({"tile": 100}, "--tile must be .* a multiple of 16, not 100"),
        ({"tile": "big"}, "--tile must be .* not 'big'"),
        ({"quality": 500}, "--quality must be an integer from 1 to 100, not 500"),
        ({"quality": 0}, "--quality must be .* not 0"),
        ({"compression": "jp2"}, "--compression must be one of jpeg, webp, deflate, lzw, none, not 'jp2'"),
    ],
)
def test_bad_options(sources, tmp_path, options, message) -> None:
    with pytest.raises(OptionError, match=message):
        make_pyramid(sources["rgb8"], tmp_path / "out.tif", **options)
    assert list(tmp_path.iterdir()) == []


def test_bad_paths(sources, tmp_path) -> None:
    with pytest.raises(OptionError, match=r"missing\.png: no such file"):
        make_pyramid(tmp_path / "missing.png", tmp_path / "out.tif")
    with pytest.raises(OptionError, match=r"is a directory: name the output file, e.g. .*/rgb8\.tif"):
        make_pyramid(sources["rgb8"], tmp_path)
    with pytest.raises(OptionError, match="nowhere: output directory does not exist"):
        make_pyramid(sources["rgb8"], tmp_path / "nowhere" / "out.tif")
    with pytest.raises(OptionError, match="would overwrite the input"):
        make_pyramid(sources["rgb8"], sources["rgb8"])
    assert list(tmp_path.iterdir()) == []


def test_unreadable_input_writes_nothing_and_says_why(tmp_path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"not really a JPEG" * 50)
    with pytest.raises(PyramidError) as caught:
        make_pyramid(bad, tmp_path / "out.tif")
    message = str(caught.value)
    assert message.startswith("cannot ") and "bad.jpg" in message
    assert "\n" not in message and "b'" not in message and "unable to call" not in message
    assert leftovers(tmp_path) == [] and not (tmp_path / "out.tif").exists()


def test_failure_keeps_the_previous_output(tmp_path, sources) -> None:
    out = tmp_path / "out.tif"
    make_pyramid(sources["rgb8"], out)
    before = out.read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(sources["rgb8"].read_bytes()[:2000])
    with pytest.raises(PyramidError):
        make_pyramid(truncated, out)
    assert out.read_bytes() == before and leftovers(tmp_path) == []


def test_reason_is_one_line_with_the_system_error(tmp_path) -> None:
    with pytest.raises(pyvips.Error) as caught:
        pyvips.Image.black(64, 64).tiffsave(str(tmp_path))  # a directory: libvips repeats itself
    assert reason(caught.value) == "unable to open for write (Is a directory)"
    with pytest.raises(pyvips.Error) as caught:
        pyvips.Image.new_from_file(str(tmp_path / "missing.png"))
    assert reason(caught.value) == f'file "{tmp_path / "missing.png"}" does not exist'
