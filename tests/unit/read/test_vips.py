"""The pyvips reader of non-pyramidal images: levels from shrink-on-load or halvings, crops only."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile

from pyiip.errors import SourceError
from pyiip.http import Request
from pyiip.read import vips
from pyiip.read.image import open_source
from pyiip.read.jp2 import Jp2Source
from pyiip.read.tiff import TiffSource
from pyiip.read.vips import SingleLevelTiff, VipsSource
from tests.support.imaging import rgb_pattern


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flat")
    rgb = rgb_pattern(1503, 1001, seed=3)
    image = pyvips.Image.new_from_array(rgb)
    image.jpegsave(str(root / "photo.jpg"), Q=95)
    image.pngsave(str(root / "photo.png"))
    image.webpsave(str(root / "photo.webp"), lossless=True)
    image.tiffsave(str(root / "strips.tif"))  # untiled: the TIFF reader refuses it
    with_pages = root / "pages.tif"
    with tifffile.TiffWriter(with_pages) as tif:  # a pyramid of strip pages, which only libvips reads
        for k in range(4):
            tif.write(rgb[:: 2**k, :: 2**k][: 1001 >> k, : 1503 >> k], photometric="rgb", rowsperstrip=64)
    alpha = np.dstack([rgb[:400, :600], np.full((400, 600), 128, np.uint8)])
    pyvips.Image.new_from_array(alpha).pngsave(str(root / "alpha.png"))
    grey16 = (np.arange(500 * 300, dtype=np.uint32).reshape(300, 500) % 65536).astype(np.uint16)
    pyvips.Image.new_from_array(grey16).copy(interpretation="grey16").pngsave(str(root / "grey16.png"))
    cmyk = np.dstack([rgb[:300, :400, 0], rgb[:300, :400, 1], rgb[:300, :400, 2], np.zeros((300, 400), np.uint8)])
    pyvips.Image.new_from_array(cmyk).copy(interpretation="cmyk").jpegsave(str(root / "cmyk.jpg"))
    rotated = image.crop(0, 0, 600, 400).copy()
    rotated.set_type(pyvips.GValue.gint_type, "orientation", 6)
    rotated.jpegsave(str(root / "exif6.jpg"))
    tifffile.imwrite(root / "single.tif", rgb, tile=(256, 256), photometric="rgb", compression="zlib")
    cube = np.random.default_rng(5).normal(100, 5, (700, 900, 2)).astype(np.float32)
    extratags = [(340, "d", 2, [90.0, 91.0], True), (341, "d", 2, [130.0, 131.0], True)]
    options = {"tile": (128, 128), "photometric": "minisblack", "planarconfig": "contig", "extratags": extratags}
    tifffile.imwrite(root / "cube1.tif", cube, **options)
    np.save(root / "cube1.npy", cube)
    (root / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 50)
    np.save(root / "photo.npy", rgb)
    return root


def level_sizes(source) -> list[tuple[int, int]]:
    return [(lv.width, lv.height) for lv in source.info.levels]


def test_jpeg_levels_come_from_shrink_on_load(flat: Path) -> None:
    source = open_source(str(flat / "photo.jpg"))
    assert isinstance(source, VipsSource)
    assert level_sizes(source) == [(1503, 1001), (751, 500), (375, 250), (187, 125)]
    reference = pyvips.Image.new_from_file(str(flat / "photo.jpg"), shrink=4).numpy()
    assert np.array_equal(source.read(2, 10, 20, 100, 50), reference[20:70, 10:110])
    expected = np.load(flat / "photo.npy")[300:340, 700:760].astype(int)
    assert np.abs(source.read(0, 700, 300, 60, 40).astype(int) - expected).mean() < 3


@pytest.mark.parametrize("name", ["photo.png", "photo.webp", "strips.tif"])
def test_virtual_pyramid_of_halvings(flat: Path, name: str) -> None:
    source = open_source(str(flat / name))
    assert isinstance(source, VipsSource)
    sizes = level_sizes(source)
    assert sizes[0] == (1503, 1001) and max(sizes[-1]) <= 256
    original = np.load(flat / "photo.npy")
    assert np.array_equal(source.read(0, 5, 7, 300, 200), original[7:207, 5:305])
    if name == "photo.webp":  # scale-on-load levels: libvips rounds their widths up
        assert sizes[1:4] == [(752, 500), (376, 250), (188, 125)]
        return
    assert all(b == (a[0] // 2, a[1] // 2) for a, b in itertools.pairwise(sizes))
    level1 = source.read(1, 0, 0, sizes[1][0], sizes[1][1]).astype(float)
    box = original[: sizes[1][1] * 2, : sizes[1][0] * 2].astype(float)
    box = box.reshape(sizes[1][1], 2, sizes[1][0], 2, 3).mean(axis=(1, 3))
    assert np.abs(level1 - box).mean() < 1.5  # a 2x2 average, as pyramid builders do


def test_multipage_tiff_pages_are_levels(flat: Path) -> None:
    source = open_source(str(flat / "pages.tif"))
    assert isinstance(source, VipsSource)
    assert level_sizes(source)[:3] == [(1503, 1001), (751, 500), (375, 250)]
    assert source.read(1, 0, 0, 10, 10).shape == (10, 10, 3)


def test_channels_and_types(flat: Path) -> None:
    alpha = open_source(str(flat / "alpha.png"))
    assert (alpha.info.channels, alpha.info.colorspace) == (4, "rgb")
    assert alpha.read(0, 0, 0, 4, 4)[0, 0, 3] == 128
    grey = open_source(str(flat / "grey16.png"))
    assert (grey.info.channels, grey.info.dtype, grey.info.bits, grey.info.colorspace) == (1, np.uint16, 16, "grey")
    assert grey.read(0, 10, 2, 3, 1)[0, :, 0].tolist() == [1010, 1011, 1012]
    cmyk = open_source(str(flat / "cmyk.jpg"))
    assert cmyk.info.channels == 3 and cmyk.read(0, 0, 0, 8, 8).dtype == np.uint8
    upright = open_source(str(flat / "exif6.jpg"))
    assert (upright.info.width, upright.info.height) == (400, 600)  # EXIF orientation 6 applied


def test_reads_only_the_requested_rectangle(flat: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy only ever receives the crop, never the whole decoded image."""
    source = open_source(str(flat / "photo.png"))
    sizes: list[tuple[int, int]] = []
    original = pyvips.Image.numpy

    def spy(image: pyvips.Image, *args, **kwargs):
        sizes.append((image.width, image.height))
        return original(image, *args, **kwargs)

    monkeypatch.setattr(pyvips.Image, "numpy", spy)
    source.read(0, 1000, 500, 64, 32)
    source.read(len(source.info.levels) - 1, 0, 0, 10, 10)
    assert sizes == [(64, 32), (10, 10)]


def test_single_level_tiled_tiff_gets_halvings(flat: Path, monkeypatch: pytest.MonkeyPatch, make_app) -> None:
    """Full resolution from the TIFF reader (exact, metadata kept), reduced levels from libvips."""
    source = open_source(str(flat / "single.tif"))
    assert isinstance(source, SingleLevelTiff) and isinstance(source.base, TiffSource)
    assert level_sizes(source) == [(1503, 1001), (751, 500), (375, 250), (187, 125)]
    original = np.load(flat / "photo.npy")
    assert np.array_equal(source.read(0, 300, 200, 256, 256), original[200:456, 300:556])
    cube = open_source(str(flat / "cube1.tif"))
    assert isinstance(cube, SingleLevelTiff)
    assert (cube.info.smin, cube.info.smax, cube.info.dtype) == ((90.0, 91.0), (130.0, 131.0), np.float32)
    assert cube.info.levels[1].tile_width == 128  # one tile size for every level, as IIP clients assume
    small = cube.read(2, 0, 0, 225, 175)
    expected = np.load(flat / "cube1.npy")[:700, :900].reshape(175, 4, 225, 4, 2).mean(axis=(1, 3))
    assert small.dtype == np.float32 and np.allclose(small, expected, atol=1e-3)
    sizes: list[tuple[int, int]] = []
    original_numpy = pyvips.Image.numpy

    def spy(image: pyvips.Image, *args, **kwargs):
        sizes.append((image.width, image.height))
        return original_numpy(image, *args, **kwargs)

    monkeypatch.setattr(pyvips.Image, "numpy", spy)
    app = make_app(flat)
    assert app.respond(Request("GET", "/iiif/3/single.tif/full/150,/0/default.jpg", "")).status == 200
    assert sizes and max(w * h for w, h in sizes) <= 375 * 250  # a thumbnail reads a small level only


def test_unreadable_files(flat: Path) -> None:
    for name in ("junk.png", "photo.npy"):
        with pytest.raises(SourceError):
            open_source(str(flat / name))


def test_jpeg2000_is_not_left_to_libvips(flat: Path) -> None:
    """The pyvips-binary wheel has no OpenJPEG: JPEG 2000 files go to pyiip's own reader (read/jp2.py)."""
    jp2 = Path(__file__).parents[4] / "shared" / "data" / "iiif-validator" / "67352ccc-d1b0-11e1-89ae-279075081939.jp2"
    if not jp2.exists():
        pytest.skip("no JPEG 2000 sample beside the repository")
    source = open_source(str(jp2))
    assert isinstance(source, Jp2Source)
    assert (source.info.width, source.info.height, len(source.info.levels)) == (1000, 1000, 5)


def test_served_through_every_protocol(flat: Path, make_app) -> None:
    app = make_app(flat)

    def get(path: str, query: str = "") -> int:
        return app.respond(Request("GET", path, query)).status

    assert get("/fcgi-bin/iipsrv.fcgi", "FIF=photo.jpg&JTL=1,0") == 200
    assert get("/fcgi-bin/iipsrv.fcgi", "FIF=photo.png&WID=300&CVT=jpeg") == 200
    assert get("/iiif/3/strips.tif/full/200,/0/default.jpg") == 200
    assert get("/iiif/3/alpha.png/full/max/0/default.png") == 200
    assert get("/deepzoom/photo.webp_files/9/0_0.jpg") == 200
    assert get("/zoomify/grey16.png/TileGroup0/0-0-0.jpg") == 200
    assert get("/iiif/3/junk.png/info.json") == 404


def test_decoded_pixels_stay_within_a_budget(flat: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Open images give back their decoded pixels, least recently used first, and decode again when read."""
    monkeypatch.setattr(vips, "DECODED_BUDGET", 6 * 1024 * 1024)  # one 1503 x 1001 RGB level is 4.5 MB
    first, second = VipsSource(str(flat / "photo.png")), VipsSource(str(flat / "strips.tif"))
    try:
        expected = first.read(0, 10, 10, 20, 20)
        assert 0 < first.decoded_bytes() <= vips.DECODED_BUDGET
        second.read(0, 0, 0, 8, 8)
        assert first.decoded_bytes() == 0 and second.decoded_bytes() > 0
        assert np.array_equal(first.read(0, 10, 10, 20, 20), expected)
        assert second.decoded_bytes() == 0
    finally:
        first.close()
        second.close()
