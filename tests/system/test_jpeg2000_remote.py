"""JPEG 2000 and HTJ2K files in object storage (a real nginx with Range support): read by ranges, as TIFFs are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pyiip import config
from pyiip.http import Request, Response
from pyiip.respond.app import Application
from tests.support.imaging import rgb_pattern
from tests.support.jpeg2000 import jp2_bytes, jph_bytes, write
from tests.support.objectstores import Nginx, nginx

BLOCK = 16 * 1024


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("remote-jp2")
    pixels = np.tile(rgb_pattern(1024, 1024, seed=7), (2, 2, 1))
    write(directory / "tiled.jp2", jp2_bytes(pixels, tile=512))
    write(directory / "image.jph", jph_bytes(pixels[:1000, :1000]))
    return directory


@pytest.fixture(scope="module")
def origin(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(root, tmp_path_factory.mktemp("nginx")) as server:
        yield server


def ask(app: Application, path: str) -> Response:
    return app.respond(Request("GET", path, ""))


def test_remote_tiles_equal_local_ones_and_read_part_of_the_file(origin: Nginx, root: Path, tmp_path: Path, make_app):
    remote = Application(
        config.load(
            {
                "REMOTE_URL_TEMPLATE": f"{origin.base}/images/{{id}}",
                "BLOCK_CACHE_DIR": str(tmp_path / "blocks"),
                "REMOTE_BLOCK_SIZE": str(BLOCK // 1024),
                "VERBOSITY": "0",
            }
        )
    )
    local = make_app(root)
    size = (root / "tiled.jp2").stat().st_size
    origin.clear_log()
    info = ask(remote, "/iiif/3/tiled.jp2/info.json")
    assert info.status == 200 and b'"width": 2048' in info.body
    assert sum(a.sent for a in origin.log()) <= 2 * BLOCK  # the header: its first blocks
    origin.clear_log()
    path = "/iiif/3/tiled.jp2/1024,512,256,256/256,/0/default.png"
    a, b = ask(remote, path), ask(local, path)
    assert a.status == b.status == 200 and bytes(a.body) == bytes(b.body)
    fetched = origin.log()
    assert all(access.status == 206 for access in fetched)
    assert sum(access.sent for access in fetched) < size / 3  # one codestream tile of four, and its headers
    for path in ("/iiif/3/image.jph/full/250,/0/default.png", "/iiif/2/image.jph/256,256,256,256/full/0/default.jpg"):
        a, b = ask(remote, path), ask(local, path)
        assert a.status == b.status == 200 and bytes(a.body) == bytes(b.body)
