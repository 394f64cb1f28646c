"""Broken TIFFs are refused or served without a crash; broken FITS give `pyiip convert` a clear error."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from pyiip.errors import SourceError
from pyiip.http import Request
from pyiip.read.image import open_source
from pyiip.tools.convert import ConvertError, convert
from tests.support.hostile import malformed_fits, malformed_tiffs

TIFF_URLS = [
    "/fcgi-bin/iipsrv.fcgi?FIF={id}&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Tile-size&OBJ=Resolution-number"
    "&OBJ=Min-Max-sample-values&OBJ=Bits-per-channel&OBJ=subject",
    "/fcgi-bin/iipsrv.fcgi?FIF={id}&JTL=0,0",
    "/fcgi-bin/iipsrv.fcgi?FIF={id}&PTL=1,1",
    "/fcgi-bin/iipsrv.fcgi?FIF={id}&MINMAX=1:0,10&CMP=jet&WID=50&CVT=png",
    "/fcgi-bin/iipsrv.fcgi?FIF={id}&PFL=0:0,0-10,0",
    "/iiif/3/{id}/info.json",
    "/iiif/3/{id}/full/max/0/default.jpg",
    "/deepzoom/{id}_files/0/0_0.jpg",
    "/zoomify/{id}/TileGroup0/0-0-0.jpg",
]


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return malformed_tiffs(tmp_path_factory.mktemp("malformed"))


def test_the_corpus_covers_what_the_issue_names(broken):
    for kind in ("truncated_half", "tile_offsets_past_end", "zero_size_tiles", "absurd_width", "missing_tile_offsets"):
        assert kind in broken
    assert "unknown_codec" in broken and len(broken) >= 30


def test_reader_refuses_or_reads_every_broken_tiff(broken):
    for name, path in broken.items():
        try:
            source = open_source(str(path))
        except SourceError as exc:
            assert str(exc) and str(path) not in str(exc), name
            continue
        try:
            level = source.info.levels[0]
            for lv in range(len(source.info.levels)):
                small = source.info.levels[lv]
                with contextlib.suppress(SourceError):
                    source.read(lv, 0, 0, min(small.width, 64), min(small.height, 64))
            assert level.width > 0 and level.height > 0
        finally:
            source.close()


def test_unknown_codec_is_named_at_open(broken):
    with pytest.raises(SourceError, match="compression"):
        open_source(str(broken["unknown_codec"]))


def test_every_protocol_answers_broken_tiffs_with_4xx_or_pixels(broken, make_app):
    root = next(iter(broken.values())).parent
    app = make_app(root)
    for name in broken:
        for url in TIFF_URLS:
            path, _, query = url.format(id=f"{name}.tif").partition("?")
            reply = app.respond(Request("GET", path, query))
            assert reply.status < 500, (name, url, reply.status, reply.body[:200])
            if reply.status >= 400:
                assert str(root).encode() not in reply.body, (name, url)


@pytest.fixture(scope="module")
def bad_fits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return malformed_fits(tmp_path_factory.mktemp("malformed_fits"))


def test_convert_gives_a_clear_error_for_every_broken_fits(bad_fits, tmp_path):
    for name, path in bad_fits.items():
        output = tmp_path / f"{name}.tif"
        with pytest.raises(ConvertError) as caught:
            convert([path], output, progress=False)
        message = str(caught.value)
        assert message.startswith(str(path)), (name, message)
        assert "Traceback" not in message and len(message) < 400, (name, message)
        assert not output.exists(), name
    assert list(tmp_path.iterdir()) == []  # no partial output, no temporary level files
