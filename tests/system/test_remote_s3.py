"""The S3 source against moto's standalone S3 server, which checks every SigV4 signature.

moto records each request with its headers: the tests read that recording
to check that pyiip sent only ranged GETs, and which ranges.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pyiip import config
from pyiip.http import Request, Response
from pyiip.respond.app import Application
from tests.support.imaging import rgb_pattern, write_tifffile_pyramid, write_vips_pyramid
from tests.support.objectstores import MotoS3, moto_s3

BLOCK = 16 * 1024
BUCKET = "images"
PREFIX = "pyramids/"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("s3-images")
    write_vips_pyramid(root / "rgb.tif", np.tile(rgb_pattern(512, 512, seed=7), (6, 8, 1)))  # 4096 x 3072
    data = np.random.default_rng(9).random((700, 900, 1), dtype=np.float32)
    write_tifffile_pyramid(root / "float.tif", data, compression="zlib")
    return root


@pytest.fixture(scope="module")
def s3(files: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        client = server.s3()
        client.create_bucket(Bucket=BUCKET)
        for name in ("rgb.tif", "float.tif"):
            client.upload_file(str(files / name), BUCKET, PREFIX + name)
        client.upload_file(str(files / "rgb.tif"), BUCKET, PREFIX + "odd dir/a b+c=d.tif")
        yield server


def remote_app(s3: MotoS3, blocks: Path, **extra: str) -> Application:
    env = {
        "S3_BUCKET": BUCKET,
        "S3_PREFIX": PREFIX,
        "S3_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_REGION": "us-east-1",
        "BLOCK_CACHE_DIR": str(blocks),
        "REMOTE_BLOCK_SIZE": str(BLOCK // 1024),
        "VERBOSITY": "0",
        **extra,
    }
    return Application(config.load(env))


def ask(app: Application, path: str, query: str = "") -> Response:
    return app.respond(Request(method="GET", path=path, query=query))


def iip(app: Application, query: str) -> Response:
    return ask(app, "/fcgi-bin/iipsrv.fcgi", query)


def test_tiles_come_from_signed_range_gets_of_the_blocks_holding_them(
    s3: MotoS3, files: Path, tmp_path: Path, make_app
) -> None:
    app = remote_app(s3, tmp_path / "blocks")
    local = make_app(files)
    size = (files / "rgb.tif").stat().st_size
    s3.clear_log()
    assert iip(app, "FIF=rgb.tif&OBJ=Max-size").status == 200
    opened = s3.log()
    assert opened and all(a.method == "GET" and a.path == f"/{BUCKET}/{PREFIX}rgb.tif" and a.span for a in opened)
    assert opened[0].range == f"bytes=0-{BLOCK - 1}"

    tile = 4 * 16 + 9
    with tifffile.TiffFile(files / "rgb.tif") as tif:
        offset, count = int(tif.pages[0].dataoffsets[tile]), int(tif.pages[0].databytecounts[tile])
    s3.clear_log()
    reply = iip(app, f"FIF=rgb.tif&JTL=4,{tile}")
    assert reply.status == 200
    assert bytes(reply.body) == bytes(iip(local, f"FIF=rgb.tif&JTL=4,{tile}").body)
    first, last = offset // BLOCK * BLOCK, min(((offset + count - 1) // BLOCK + 1) * BLOCK, size) - 1
    log = s3.log()
    assert [a.range for a in log] == [f"bytes={first}-{last}"]
    assert log[0].if_match.strip('"')  # conditional on the version being read
    read = sum(a.span[1] - a.span[0] + 1 for a in opened + log)
    assert read < size / 2, (read, size)


def test_pixels_and_metadata_match_the_local_file(s3: MotoS3, files: Path, tmp_path: Path, make_app) -> None:
    app = remote_app(s3, tmp_path / "blocks")
    local = make_app(files)
    for query in ("FIF=float.tif&JTL=1,0", "FIF=float.tif&OBJ=Min-Max-sample-values", "FIF=rgb.tif&WID=200&CVT=jpeg"):
        a, b = iip(app, query), iip(local, query)
        assert a.status == b.status == 200 and bytes(a.body) == bytes(b.body), query


def test_keys_are_encoded_as_signed(s3: MotoS3, tmp_path: Path) -> None:
    app = remote_app(s3, tmp_path / "blocks")
    s3.clear_log()
    reply = ask(app, "/iiif/3/odd%20dir%2Fa%20b%2Bc%3Dd.tif/info.json")
    assert reply.status == 200, reply.body
    assert s3.log()[0].path == f"/{BUCKET}/{PREFIX}odd%20dir/a%20b%2Bc%3Dd.tif"


def test_bad_credentials_and_missing_keys(s3: MotoS3, tmp_path: Path) -> None:
    wrong = remote_app(s3, tmp_path / "blocks", AWS_SECRET_ACCESS_KEY="not-the-secret")
    reply = iip(wrong, "FIF=rgb.tif&JTL=0,0")
    assert reply.status == 502 and b"refused" in reply.body  # moto checked the signature and said 403
    app = remote_app(s3, tmp_path / "blocks")
    assert iip(app, "FIF=nothing-here.tif&JTL=0,0").status == 404
    assert iip(app, "FIF=../rgb.tif&JTL=0,0").status == 403


def test_an_overwritten_object_is_never_mixed_with_the_old_one(
    s3: MotoS3, files: Path, tmp_path: Path, make_app
) -> None:
    client = s3.s3()
    client.upload_file(str(files / "rgb.tif"), BUCKET, PREFIX + "changing.tif")
    app = remote_app(s3, tmp_path / "blocks")
    before = iip(app, "FIF=changing.tif&JTL=1,0")
    assert before.status == 200
    replacement = tmp_path / "new.tif"
    write_vips_pyramid(replacement, np.tile(rgb_pattern(512, 512, seed=8), (6, 8, 1)), quality=60)
    client.upload_file(str(replacement), BUCKET, PREFIX + "changing.tif")

    s3.clear_log()
    reply = iip(app, "FIF=changing.tif&JTL=4,100")  # the old version's IFDs, an uncached tile: If-Match fails
    assert reply.status == 503
    assert len(s3.log()) == 1 and s3.log()[0].if_match
    reply = iip(app, "FIF=changing.tif&JTL=4,100")
    assert reply.status == 200
    local = make_app(tmp_path)
    assert bytes(reply.body) == bytes(iip(local, "FIF=new.tif&JTL=4,100").body)
    after = iip(app, "FIF=changing.tif&JTL=1,0")
    assert bytes(after.body) == bytes(iip(local, "FIF=new.tif&JTL=1,0").body) != bytes(before.body)
