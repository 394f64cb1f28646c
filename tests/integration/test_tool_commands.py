"""pyiip pyramid, convert and demo-data on the command line: each mistake is exit status 2 and one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile
from astropy.io import fits

from pyiip.cli import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("inputs")
    grey16 = (np.arange(300 * 200, dtype=np.uint32).reshape(200, 300) % 65536).astype(np.uint16)
    pyvips.Image.new_from_array(grey16).write_to_file(str(directory / "grey16.tif"))
    rgb8 = np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    pyvips.Image.new_from_array(rgb8).write_to_file(str(directory / "rgb8.png"))
    fits.PrimaryHDU(np.ones((64, 80), np.float32)).writeto(directory / "sky.fits")
    return {"grey16": directory / "grey16.tif", "rgb8": directory / "rgb8.png", "fits": directory / "sky.fits"}


def run(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    out, err = capfd.readouterr()
    return int(done.value.code or 0), out, err


def mistakes(inputs: dict[str, Path], tmp: Path) -> list[tuple[list[str], str]]:
    """(arguments, the one line they must give): the issue's list, and their siblings."""
    rgb8, grey16, sky, out = str(inputs["rgb8"]), str(inputs["grey16"]), str(inputs["fits"]), str(tmp / "o.tif")
    tile = "--tile must be an integer from 16 to 4096, a multiple of 16"
    return [
        (["pyramid", rgb8, out, "--tile", "0"], f"pyiip pyramid: {tile}, not 0"),
        (["pyramid", rgb8, out, "--tile", "100000"], f"pyiip pyramid: {tile}, not 100000"),
        (["pyramid", rgb8, out, "--tile", "100"], f"pyiip pyramid: {tile}, not 100"),
        (["pyramid", rgb8, out, "--tile", "abc"], f"pyiip pyramid: {tile}, not 'abc'"),
        (["pyramid", rgb8, out, "--quality", "500"],
         "pyiip pyramid: --quality must be an integer from 1 to 100, not 500"),
        (["pyramid", rgb8, out, "--compression", "gzip"],
         "pyiip pyramid: --compression must be one of jpeg, webp, deflate, lzw, none, not 'gzip'"),
        (["pyramid", grey16, out, "--compression", "jpeg"],
         f"pyiip pyramid: --compression jpeg stores 8-bit samples and {grey16} has 16-bit samples: use deflate "
         "or lzw (lossless; deflate is the default for such images)"),
        (["pyramid", rgb8, str(tmp)],
         f"pyiip pyramid: {tmp} is a directory: name the output file, e.g. {tmp}/rgb8.tif"),
        (["pyramid", str(tmp / "none.jpg"), out], f"pyiip pyramid: {tmp}/none.jpg: no such file"),
        (["pyramid", rgb8, str(tmp / "no" / "o.tif")], f"pyiip pyramid: {tmp}/no: output directory does not exist"),
        (["pyramid", sky, out],
         f"pyiip pyramid: {sky}: FITS images become a pyramidal cube with pyiip convert, not pyramid"),
        (["convert", sky, str(tmp / "out.jpg")],
         f"pyiip convert: {tmp}/out.jpg: the output is a pyramidal TIFF, its name must end in .tif or .tiff"),
        (["convert", sky, out, "--tile", "0"], f"pyiip convert: {tile}, not 0"),
        (["convert", sky, out, "--compression", "jpeg"],
         "pyiip convert: --compression must be one of deflate, zstd, lzw, none, not 'jpeg'"),
        (["demo-data", str(tmp / "demo"), "--size", "10"],
         "pyiip demo-data: --size must be an integer from 64 to 65536, not 10"),
    ]  # fmt: skip


def test_each_mistake_is_exit_2_and_one_line(inputs, tmp_path, capfd) -> None:
    for argv, line in mistakes(inputs, tmp_path):
        status, out, err = run(capfd, *argv)
        assert (status, out, err) == (2, "", line + "\n"), argv  # also: no GLib CRITICAL, no usage block
        assert list(tmp_path.iterdir()) == [], argv  # nothing written, not even a partial file


def test_pyramid_and_convert_succeed_quietly_off_a_terminal(inputs, tmp_path, capfd) -> None:
    assert run(capfd, "pyramid", str(inputs["grey16"]), str(tmp_path / "g.tif")) == (0, "", "")
    with tifffile.TiffFile(tmp_path / "g.tif") as tif:
        assert tif.pages[0].dtype == np.uint16
    assert run(capfd, "convert", str(inputs["fits"]), str(tmp_path / "sky.TIFF"), "--tile", "64") == (0, "", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.tif", "sky.TIFF"]


def test_unreadable_input_is_exit_1_and_one_line(tmp_path, capfd) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    status, out, err = run(capfd, "pyramid", str(bad), str(tmp_path / "o.tif"))
    assert status == 1 and out == "" and err.startswith(f"pyiip pyramid: cannot read {bad}: "), err
    assert err.count("\n") == 1 and "b'" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["bad.png"]


def test_demo_data_that_cannot_be_written_is_exit_1_and_one_line(tmp_path, capfd) -> None:
    (tmp_path / "file").write_text("a file, not a directory")
    status, out, err = run(capfd, "demo-data", str(tmp_path / "file" / "demo"), "--size", "64")
    assert (status, out) == (
        1,
        "",
    ) and err == f"pyiip demo-data: cannot write {tmp_path}/file/demo: Not a directory\n"


def test_help_shows_every_default(capfd) -> None:
    for command, defaults in {
        "pyramid": ["(default: 256)", "(default: jpeg for 8-bit images", "(default: 90)"],
        "convert": ["(default: 256)", "(default: deflate)"],
        "demo-data": ["(default: 6144)"],
    }.items():
        status, out, _ = run(capfd, command, "--help")
        text = " ".join(out.split())
        assert status == 0 and all(d in text for d in defaults), (command, out)
