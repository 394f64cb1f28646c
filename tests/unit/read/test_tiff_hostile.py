"""Hostile TIFFs against the pyramidal reader and the store of open images (issue 15: 6, 7, 11, 17).

Codec streams that declare more pixels than their tile, sparse files with
huge tile tables, IFD chains of millions, hundreds of images under a small
descriptor limit, CMYK and palette images. What needs a fresh process (peak
memory, descriptor limits) is in tests/system/test_tiff_hostile.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import simplejpeg
import tifffile
from PIL import Image

from pyiip import config
from pyiip.cache.images import ImageStore
from pyiip.errors import SourceError, TooLarge
from pyiip.read import codec_sizes
from pyiip.read.byte_source import LocalFile
from pyiip.read.image import open_source
from pyiip.read.tiff import TiffSource
from pyiip.resolve.local import Resolver
from tests.support.hostile import (
    cmyk_tiff,
    decoder_bombs,
    encoded_tiff,
    ifd_chain_tiff,
    palette_tiff,
    tables_bigtiff,
)

MB = 1 << 20


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return decoder_bombs(tmp_path_factory.mktemp("bombs"))


# ---------------------------------------------------------------- finding 6: codec streams' declared sizes


def _streams() -> dict[str, tuple[int, bytes]]:
    """Real encoded 256 x 200 streams of every parsed codec: (TIFF compression code, stream)."""
    pixels = (np.arange(200 * 256 * 3) % 251).astype(np.uint8).reshape(200, 256, 3)
    progressive = io.BytesIO()
    Image.fromarray(pixels).save(progressive, "JPEG", progressive=True)
    return {
        "jpeg": (7, simplejpeg.encode_jpeg(pixels)),
        "jpeg_progressive": (7, progressive.getvalue()),
        "webp_lossy": (50001, imagecodecs.webp_encode(pixels, level=80)),
        "webp_lossless": (50001, imagecodecs.webp_encode(pixels, lossless=True)),
        "webp_alpha": (50001, imagecodecs.webp_encode(np.dstack([pixels, pixels[:, :, :1]]), level=80)),
        "png": (34933, imagecodecs.png_encode(pixels)),
        "j2k": (34712, imagecodecs.jpeg2k_encode(pixels, codecformat="j2k")),
        "jp2": (34712, imagecodecs.jpeg2k_encode(pixels, codecformat="jp2")),
        "jpegxl": (50002, imagecodecs.jpegxl_encode(pixels)),
        "jpegxl_lossless": (50002, imagecodecs.jpegxl_encode(pixels, lossless=True)),
    }


def test_declared_sizes_of_real_streams():
    for name, (code, stream) in _streams().items():
        declared = codec_sizes.PARSERS[code](stream)
        assert declared is not None, name
        assert (declared.width, declared.height, declared.frames) == (256, 200, 1), name
        assert declared.samples in ((0,) if "jpegxl" in name else (3, 4)), name


@pytest.mark.parametrize(
    ("compression", "encode"),
    [
        ("webp", lambda p: imagecodecs.webp_encode(p, lossless=True)),
        ("png", lambda p: imagecodecs.png_encode(p)),
        ("jpeg2000", lambda p: imagecodecs.jpeg2k_encode(p, codecformat="jp2")),
        ("jpegxl", lambda p: imagecodecs.jpegxl_encode(p)),
        ("jpeg", lambda p: simplejpeg.encode_jpeg(p)),
    ],
)
def test_real_streams_larger_than_their_tile_are_refused(tmp_path, compression, encode):
    stream = encode(np.full((320, 512, 3), 90, np.uint8))
    path = encoded_tiff(tmp_path / "big.tif", [stream], (256, 256, 3), compression, "rgb")
    source = TiffSource(str(path))
    try:
        with pytest.raises(SourceError, match="declares 512 x 320 pixels"):
            source.read(0, 0, 0, 10, 10)
    finally:
        source.close()


def test_header_parsers_stop_on_garbage():
    for parse in set(codec_sizes.PARSERS.values()):
        for junk in (b"", b"\xff\xd8", b"\xff\xd8\xff\xe0\x00\x00", b"RIFF\0\0\0\0WEBPVP8X", bytes(range(256)) * 4):
            assert parse(junk) is None or parse(junk).width >= 0


@pytest.mark.parametrize("compression", ["webp", "jpeg2000", "png", "jpegxl", "zstd", "lerc"])
def test_tiles_of_checked_codecs_are_still_served(tmp_path, compression):
    data = (np.arange(512 * 512 * 3) % 251).astype(np.uint8).reshape(512, 512, 3)
    args = {"compressionargs": {"lossless": True}} if compression in ("webp", "jpegxl") else {}
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, data, tile=(256, 256), compression=compression, photometric="rgb", metadata=None, **args)
    source = TiffSource(str(path))
    try:
        assert np.array_equal(source.read(0, 100, 100, 300, 300), data[100:400, 100:400])
    finally:
        source.close()


# ---------------------------------------------------------------- finding 7: tile tables


def test_table_larger_than_the_file_is_refused_unread(tmp_path):
    path = tmp_path / "lying.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), tile=(32, 32), metadata=None)
    raw = bytearray(path.read_bytes())
    (ifd,) = np.frombuffer(raw, "<u4", 1, 4)
    (count,) = np.frombuffer(raw, "<u2", 1, ifd)
    for index in range(count):
        at = ifd + 2 + 12 * index
        tag, _kind = np.frombuffer(raw, "<u2", 2, at)
        if tag in (324, 325):
            raw[at + 4 : at + 8] = (1 << 28).to_bytes(4, "little")  # 268 million tiles in a 1 KB file
    path.write_bytes(bytes(raw))
    with pytest.raises(SourceError, match="larger than the file"):
        TiffSource(str(path))


def test_huge_tag_value_in_a_sparse_file_is_refused_unread(tmp_path):
    """A 64 MB ImageDescription that is a hole: tifffile read it whole at every open."""
    path = tmp_path / "described.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), tile=(32, 32), description="a" * 40, metadata=None)
    raw = bytearray(path.read_bytes())
    (ifd,) = np.frombuffer(raw, "<u4", 1, 4)
    (count,) = np.frombuffer(raw, "<u2", 1, ifd)
    at = next(ifd + 2 + 12 * i for i in range(count) if np.frombuffer(raw, "<u2", 1, ifd + 2 + 12 * i)[0] == 270)
    raw[at + 4 : at + 12] = np.array([64 * MB, len(raw)], "<u4").tobytes()
    with open(path, "wb") as handle:
        handle.write(raw)
        handle.truncate(len(raw) + 64 * MB)
    counted = CountingFile(str(path))
    with pytest.raises(TooLarge, match="tag 270"):
        TiffSource(counted)
    assert counted.read_bytes < 64 * 1024


def test_store_keeps_the_open_images_within_its_byte_budget(tmp_path):
    for index in range(6):
        tables_bigtiff(tmp_path / f"p{index}.tif", 131072, 10, filled=True)  # ~5.7 MB of tables each
    settings = config.load({"FILESYSTEM_PREFIX": f"{tmp_path}/", "VERBOSITY": "0"})
    store = ImageStore(Resolver(settings), 1000, None, 20 * MB)
    try:
        for index in range(6):
            store.get(f"p{index}.tif")
            held = [e.source.cost for e in store._open.values()]
            assert sum(held) <= 20 * MB or len(held) == 1
        assert list(store._open) == [str(tmp_path / f"p{i}.tif") for i in (3, 4, 5)]  # the most recent
    finally:
        store.clear()


# ---------------------------------------------------------------- finding 17: IFD chains, CMYK, palette


class CountingFile(LocalFile):
    """A local file that counts the bytes read from it."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.read_bytes = 0

    def pread(self, count: int, offset: int) -> bytes:
        data = super().pread(count, offset)
        self.read_bytes += len(data)
        return data


def test_a_chain_of_two_million_ifds_is_not_walked(tmp_path):
    """Before: the level finder's len(pages) walked all 2,000,000 IFDs (36 MB read, 4 s) at every open."""
    path = ifd_chain_tiff(tmp_path / "chain.tif", 2_000_000)
    counted = CountingFile(str(path))
    source = TiffSource(counted)
    try:
        assert (source.info.width, source.info.height) == (256, 256)
        assert source.read(0, 0, 0, 4, 4).max() == 9
        assert counted.read_bytes < 256 * 1024, counted.read_bytes
    finally:
        source.close()


def test_cmyk_is_served_as_rgb(tmp_path):
    path, cmyk = cmyk_tiff(tmp_path / "cmyk.tif")
    source = open_source(str(path))
    try:
        assert (source.info.channels, source.info.colorspace) == (3, "rgb")
        white = 255 - cmyk.astype(np.int64)
        expected = white[:, :, :3] * white[:, :, 3:] // 255  # the naive conversion: no ICC profile
        assert np.array_equal(source.read(0, 0, 0, 64, 64), expected)
    finally:
        source.close()


def test_palette_is_served_as_rgb_through_its_colour_map(tmp_path):
    path, indices, colormap = palette_tiff(tmp_path / "palette.tif")
    source = open_source(str(path))
    try:
        assert (source.info.channels, source.info.dtype) == (3, np.uint8)
        expected = (colormap.T >> 8)[indices]
        assert np.array_equal(source.read(0, 0, 0, 64, 64), expected)
        assert np.array_equal(source.read(0, 10, 20, 40, 30), expected[20:50, 10:50])
    finally:
        source.close()


def test_unusual_cmyk_layouts_are_refused_or_read_by_libvips(tmp_path):
    path = tmp_path / "cmyk5.tif"
    data = np.full((64, 64, 5), 40, np.uint8)
    tifffile.imwrite(path, data, photometric="separated", tile=(32, 32), extrasamples=[2], metadata=None)
    with pytest.raises(SourceError, match="CMYK"):
        TiffSource(str(path))
    source = open_source(str(path))  # libvips converts it, through its CMYK profile
    try:
        assert source.info.channels == 4 and source.info.colorspace == "rgb"  # RGB and the extra sample
        assert source.read(0, 0, 0, 2, 2)[0, 0, 3] == 40
    finally:
        source.close()


# ---------------------------------------------------------------- finding 11: descriptors


def test_store_counts_descriptors_against_half_the_limit(tmp_path, monkeypatch):
    settings = config.load({"FILESYSTEM_PREFIX": f"{tmp_path}/", "VERBOSITY": "0"})
    for index in range(12):
        tifffile.imwrite(tmp_path / f"d{index}.tif", np.zeros((32, 32), np.uint8), tile=(32, 32), metadata=None)
    store = ImageStore(Resolver(settings), 1000, None, 256 * MB)
    store.descriptor_limit = 5
    try:
        for index in range(12):
            store.get(f"d{index}.tif")
            assert sum(e.source.descriptors for e in store._open.values()) <= 5
        assert len(store._open) == 5
    finally:
        store.clear()


def test_too_large_is_not_retried_through_libvips(bombs):
    with pytest.raises(TooLarge):
        open_source(str(bombs / "sparse.tif"))


@pytest.mark.parametrize("subifds", [False, True])
def test_pyramids_as_chains_and_as_subifds_read_every_level(tmp_path, subifds):
    """The IFD walk of this reader (not tifffile's) finds the levels of both layouts, each table as an array."""
    from tests.support.imaging import rgb_pattern, write_tifffile_pyramid

    path = tmp_path / "p.tif"
    levels = write_tifffile_pyramid(path, rgb_pattern(1100, 700), compression="zlib", subifds=subifds)
    source = TiffSource(str(path))
    try:
        assert len(source.info.levels) == len(levels) > 2
        for index, level in enumerate(levels):
            h, w = level.shape[:2]
            assert np.array_equal(source.read(index, 0, 0, w, h), level), index
    finally:
        source.close()
