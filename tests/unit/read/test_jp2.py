"""The JPEG 2000 / HTJ2K reader: levels from the header alone, windows of any resolution, TIFF JPEG 2000 tiles."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

from pyiip.errors import SourceError
from pyiip.read import formats, jp2_header, openjpeg
from pyiip.read.byte_source import LocalFile
from pyiip.read.image import open_source
from pyiip.read.jp2 import Jp2Source
from pyiip.read.tiff import TiffSource
from tests.support.imaging import rgb_pattern
from tests.support.jpeg2000 import htj2k_codestream, jp2_bytes, jph_bytes, lying_siz, truncated, write

W, H = 420, 310


def _pixels(kind: str) -> np.ndarray:
    rgb = rgb_pattern(W, H)
    if kind == "grey8":
        return np.ascontiguousarray(rgb[:, :, 1])
    if kind == "rgb8":
        return rgb
    wide = rgb.astype(np.uint16) * 257 + np.arange(W, dtype=np.uint16)[None, :, None]
    return np.ascontiguousarray(wide[:, :, 0]) if kind == "grey16" else wide


# (file name, how it is written, lossless)
FILES = {
    "lossless.jp2": (lambda a: jp2_bytes(a), True),
    "lossy.jp2": (lambda a: jp2_bytes(a, lossless=False), False),
    "tiled.jp2": (lambda a: jp2_bytes(a, tile=256), True),
    "bare.j2k": (lambda a: jp2_bytes(a, container=False, resolutions=4), True),
    "lossless.jph": (lambda a: jph_bytes(a), True),
    "lossy.jhc": (lambda a: htj2k_codestream(a, lossless=False), False),
    "tiled.jhc": (lambda a: htj2k_codestream(a, tile=256), True),
}
KINDS = ("grey8", "rgb8", "grey16", "rgb16")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("jp2")
    return {
        (name, kind): write(root / f"{kind}-{name}", make(_pixels(kind)))
        for name, (make, _lossless) in FILES.items()
        for kind in KINDS
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", FILES)
def test_windows_of_every_level(files, name, kind):
    """Level sizes are ceil(W / 2^r); a window equals the same pixels of its whole level, and level 0 the
    source (exactly when lossless)."""
    expected = _pixels(kind)
    expected = expected if expected.ndim == 3 else expected[:, :, None]
    source = open_source(str(files[(name, kind)]))
    try:
        assert isinstance(source, Jp2Source)
        info = source.info
        assert info.channels == expected.shape[2] and info.dtype == expected.dtype
        assert info.bits == 8 * expected.dtype.itemsize
        assert info.colorspace == ("grey" if expected.shape[2] == 1 else "rgb")
        assert [(lv.width, lv.height) for lv in info.levels] == [
            (-(-W // 2**r), -(-H // 2**r)) for r in range(len(info.levels))
        ]
        assert len(info.levels) >= 4 and info.tile_size == (256, 256)
        whole = source.read(0, 0, 0, W, H)
        if FILES[name][1]:
            np.testing.assert_array_equal(whole, expected)
        else:
            error = np.abs(whole.astype(np.float64) - expected).mean() / np.iinfo(expected.dtype).max
            assert error < 0.02
        for level, lv in enumerate(info.levels):
            full = whole if level == 0 else source.read(level, 0, 0, lv.width, lv.height)
            assert full.shape == (lv.height, lv.width, info.channels)
            for x, y, w, h in [(0, 0, 1, 1), (lv.width // 3, lv.height // 4, lv.width // 2, lv.height // 2)]:
                np.testing.assert_array_equal(source.read(level, x, y, w, h), full[y : y + h, x : x + w])
            right = (lv.width - 7, lv.height - 3, 7, 3)
            np.testing.assert_array_equal(source.read(level, *right), full[-3:, -7:])
    finally:
        source.close()


class _Counting:
    """A local file that counts the bytes read from it."""

    def __init__(self, path: Path) -> None:
        self._file = LocalFile(str(path))
        self.name, self.size, self.read = self._file.name, self._file.size, 0

    def pread(self, count: int, offset: int) -> bytes:
        chunk = self._file.pread(count, offset)
        self.read += len(chunk)
        return chunk

    def close(self) -> None:
        self._file.close()


def test_open_reads_the_header_only_and_a_tile_its_code_blocks(tmp_path):
    """Opening a file reads a few hundred bytes; a window reads the codestream tile under it, not the file."""
    data = np.tile(rgb_pattern(512, 512), (4, 4, 1))
    path = write(tmp_path / "big.jp2", jp2_bytes(data, tile=512))
    counting = _Counting(path)
    source = Jp2Source(counting)
    try:
        assert counting.read < 1024
        assert source.header.tile_width == 512 and source.header.tiles_across == 4
        before = counting.read
        np.testing.assert_array_equal(source.read(0, 600, 1100, 256, 256), data[1100:1356, 600:856])
        assert counting.read - before < counting.size / 8  # one of 16 codestream tiles, plus headers
    finally:
        source.close()


def test_header_fields(files):
    header = jp2_header.read_header(LocalFile(str(files[("tiled.jhc", "rgb8")])))
    assert header.high_throughput and not header.container
    assert (header.tile_width, header.tile_height, header.tiles_across, header.tiles_down) == (256, 256, 2, 2)
    header = jp2_header.read_header(LocalFile(str(files[("lossless.jp2", "rgb8")])))
    assert header.container and not header.high_throughput and header.enumerated_colour == 16
    assert (header.width, header.height, len(header.components)) == (W, H, 3)


def test_jpeg2000_tiff_tiles_decode_through_openjpeg(tmp_path):
    """TIFF compression 34712 tiles, decoded by the same OpenJPEG binding: exact when lossless."""
    data = _pixels("rgb16")
    path = tmp_path / "j2k.tif"
    tifffile.imwrite(path, data, tile=(256, 256), compression="jpeg2000", compressionargs={"level": 0})
    assert tifffile.TiffFile(path).pages.first.compression == 34712
    source = TiffSource(str(path))
    try:
        np.testing.assert_array_equal(source.read(0, 100, 50, 300, 250), data[50:300, 100:400])
    finally:
        source.close()


def test_suffixes_listed_for_the_index():
    assert {".jp2", ".j2k", ".jph", ".jhc"} <= set(formats.suffixes())


def _broken() -> dict[str, tuple[bytes, str]]:
    """Broken or unserved headers, and the words of the error each must give."""
    raw = jp2_bytes(_pixels("grey8"), container=False)
    boxed = jp2_bytes(_pixels("grey8"))
    siz = raw.index(b"\xff\x4f\xff\x51") + 6  # SIZ's Rsiz field
    deep = bytearray(raw)
    deep[siz + 36] = 0x13  # Ssiz: 20-bit samples
    return {
        "not_jpeg2000": (b"GIF89a" + bytes(64), "not a JPEG 2000 file"),
        "box_too_short": (boxed[:12] + b"\x00\x00\x00\x04ftyp" + boxed[20:], "box length"),
        "box_past_the_end": (boxed[:12] + b"\x7f\x00\x00\x00ftyp" + boxed[20:], "box length"),
        "no_codestream": (boxed[: boxed.index(b"jp2c") - 4], "no codestream"),
        "truncated_siz": (raw[:30], "truncated"),
        "empty_image": (lying_siz(raw, size=(0, 0)), "geometry"),
        "twenty_bits": (bytes(deep), "16 bits"),
    }


@pytest.mark.parametrize("name", _broken())
def test_broken_headers_are_refused_at_open(tmp_path, name):
    raw, words = _broken()[name]
    with pytest.raises(SourceError, match=words):
        Jp2Source(str(write(tmp_path / f"{name}.jp2", raw)))


def test_truncated_tile_data_is_an_error_not_a_partial_image(tmp_path):
    """A bare codestream cut short opens (its header is whole) but never decodes; a JP2 one's box says so at open."""
    raw = jp2_bytes(_pixels("rgb8"), container=False)
    source = Jp2Source(str(write(tmp_path / "cut.j2k", truncated(raw, 0.6))))
    try:
        with pytest.raises(SourceError, match="JPEG 2000"):
            source.read(0, 0, 0, 64, 64)
    finally:
        source.close()


def test_openjpeg_is_imagecodecs_release_build_when_it_ships_one():
    """Debian 12's libopenjp2 2.5.0 aborts on corrupt HTJ2K code-blocks (its assert()s are on): not preferred."""
    lib = openjpeg.library()
    shipped = Path(imagecodecs.__file__).parent.parent / "imagecodecs.libs"
    if not list(shipped.glob("libopenjp2*")):
        pytest.skip("this imagecodecs wheel ships no libopenjp2")
    assert Path(lib._name).parent == shipped
    assert lib.opj_version().decode() >= "2.5.4"
