"""The http(s):// source against a real nginx serving files with Range support.

nginx's access log (method, path, status, Range, bytes sent, If-Match,
If-None-Match) shows exactly which bytes pyiip read: the first block for the
header, the blocks holding the IFDs, then only the blocks holding the tiles
a request covers, each validated before it is cached.
"""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pyiip import config
from pyiip.http import Request, Response
from pyiip.respond.app import Application
from tests.support.imaging import rgb_pattern, write_tifffile_pyramid, write_vips_pyramid
from tests.support.objectstores import Nginx, nginx

BLOCK = 16 * 1024


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("remote-images")
    write_vips_pyramid(root / "rgb.tif", np.tile(rgb_pattern(1024, 1024, seed=3), (3, 4, 1)))  # 4096 x 3072
    data = np.random.default_rng(5).random((1024, 768, 1), dtype=np.float32)
    write_tifffile_pyramid(root / "float.tif", data, compression="zlib")
    (root / "sub dir").mkdir()
    write_vips_pyramid(root / "sub dir" / "odd #name?.tif", rgb_pattern(600, 400, seed=4))
    (root / "notes.txt").write_text("not an image\n")
    return root


@pytest.fixture(scope="module")
def origin(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(root, tmp_path_factory.mktemp("nginx")) as server:
        yield server


def remote_app(origin_base: str, blocks: Path, location: str = "images", **extra: str) -> Application:
    env = {
        "REMOTE_URL_TEMPLATE": f"{origin_base}/{location}/{{id}}",
        "BLOCK_CACHE_DIR": str(blocks),
        "REMOTE_BLOCK_SIZE": str(BLOCK // 1024),
        "VERBOSITY": "0",
        **extra,
    }
    return Application(config.load(env))


def ask(app: Application, path: str, query: str = "", headers: dict[str, str] | None = None) -> Response:
    request = Request(
        method="GET", path=path, query=query, host="t", scheme="http", script_name="", headers=headers or {}
    )
    return app.respond(request)


def iip(app: Application, query: str) -> Response:
    return ask(app, "/fcgi-bin/iipsrv.fcgi", query)


def tile_span(path: Path, page: int, tile: int) -> tuple[int, int]:
    """(offset, count) of one stored tile, read locally with tifffile."""
    with tifffile.TiffFile(path) as tif:
        p = tif.pages[page]
        return int(p.dataoffsets[tile]), int(p.databytecounts[tile])


def block_cover(offset: int, count: int, size: int) -> str:
    first = offset // BLOCK * BLOCK
    last = min(((offset + count - 1) // BLOCK + 1) * BLOCK, size) - 1
    return f"bytes={first}-{last}"


def test_a_tile_reads_only_the_blocks_holding_it(origin: Nginx, root: Path, tmp_path: Path) -> None:
    app = remote_app(origin.base, tmp_path / "blocks")
    size = (root / "rgb.tif").stat().st_size
    origin.clear_log()
    info = iip(app, "FIF=rgb.tif&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Resolution-number")
    assert info.status == 200 and b"Max-size:4096 3072" in info.body
    opened = origin.log()
    assert opened[0].range == f"bytes=0-{BLOCK - 1}" and opened[0].status == 206  # header: one block, no HEAD
    assert all(a.method == "GET" and a.status == 206 and a.span for a in opened)
    # The header, each level's IFD and (tifffile's JPEG check) each level's first tile, through a 64 KiB buffer.
    with tifffile.TiffFile(root / "rgb.tif") as tif:
        pages = len(tif.pages)
    header_bytes = sum(a.sent for a in opened)
    assert header_bytes <= (2 * pages + 1) * 65536 + 2 * BLOCK and header_bytes < size / 2, (header_bytes, size)

    # Full resolution (IIP resolution 4 = page 0), a tile in the middle: exactly its blocks, nothing else.
    tile = 5 * 16 + 7
    offset, count = tile_span(root / "rgb.tif", 0, tile)
    origin.clear_log()
    reply = iip(app, f"FIF=rgb.tif&JTL=4,{tile}")
    assert reply.status == 200 and reply.body.startswith(b"\xff\xd8")
    fetched = origin.log()
    assert [a.range for a in fetched] == [block_cover(offset, count, size)]
    etag = fetched[0].if_match
    assert etag.startswith('"') and fetched[0].status == 206  # every read is conditional on the version

    # Its neighbours on the same row share blocks: at most their own new blocks are read.
    origin.clear_log()
    assert iip(app, f"FIF=rgb.tif&JTL=4,{tile + 1}").status == 200
    offset2, count2 = tile_span(root / "rgb.tif", 0, tile + 1)
    for access in origin.log(0):  # none at all when its blocks came with the first tile
        first, last = access.span
        assert first <= offset2 + count2 - 1 and last >= offset2  # overlaps the tile asked for
    assert app.service.resolver.remote.stats()["remote_bytes"] < size / 2


def test_identical_pixels_to_the_local_file(origin: Nginx, root: Path, tmp_path: Path, make_app) -> None:
    remote = remote_app(origin.base, tmp_path / "blocks")
    local = make_app(root)
    for query in (
        "FIF=rgb.tif&JTL=2,3",
        "FIF=rgb.tif&CVT=jpeg&WID=300&RGN=0.1,0.2,0.3,0.3",
        "FIF=float.tif&JTL=2,1",
        "FIF=float.tif&OBJ=Min-Max-sample-values",
    ):
        a, b = iip(remote, query), iip(local, query)
        assert a.status == b.status == 200, query
        assert bytes(a.body) == bytes(b.body), query
    a = ask(remote, "/iiif/3/float.tif/0,0,512,512/256,/0/default.png")
    b = ask(local, "/iiif/3/float.tif/0,0,512,512/256,/0/default.png")
    assert a.status == 200 and bytes(a.body) == bytes(b.body)


def test_regions_of_remote_images_share_decoded_tiles(origin: Nginx, root: Path, tmp_path: Path, make_app) -> None:
    """Remote TIFFs keep decoded tiles as local ones do, keyed on the object's version: no second read."""
    app = remote_app(origin.base, tmp_path / "blocks")
    local = make_app(root, MAX_IMAGE_CACHE_SIZE="0")
    tiles = app.service.cache.tiles
    first = "/iiif/3/rgb.tif/1100,1100,300,300/max/0/default.png"  # four tiles of the full resolution
    assert ask(app, first).status == 200 and (tiles.hits, tiles.misses, tiles.stores) == (0, 4, 4)
    origin.clear_log()
    second = ask(app, "/iiif/3/rgb.tif/1110,1120,300,300/max/0/default.png")
    assert second.status == 200 and (tiles.hits, tiles.misses) == (4, 4)
    assert origin.log() == []  # not even a block read
    assert bytes(second.body) == bytes(ask(local, "/iiif/3/rgb.tif/1110,1120,300,300/max/0/default.png").body)


def test_warm_block_cache_serves_a_new_process_without_tile_reads(origin: Nginx, tmp_path: Path) -> None:
    blocks = tmp_path / "blocks"
    first = remote_app(origin.base, blocks)
    queries = ["FIF=rgb.tif&JTL=3,10", "FIF=rgb.tif&JTL=4,40", "FIF=rgb.tif&JTL=1,0"]
    bodies = [bytes(iip(first, q).body) for q in queries]
    origin.clear_log()
    second = remote_app(origin.base, blocks)  # another process on the host: empty memory, same disk
    assert [bytes(iip(second, q).body) for q in queries] == bodies
    log = origin.log()
    assert len(log) == 1 and log[0].range == f"bytes=0-{BLOCK - 1}"  # only the version check
    stats = second.service.resolver.remote.stats()
    assert stats["block_cache_hits"] > 0 and stats["block_cache_stores"] == 1  # the probe's block, rewritten


def test_metadata_ttl_revalidates_with_a_bodyless_304(origin: Nginx, tmp_path: Path) -> None:
    app = remote_app(origin.base, tmp_path / "blocks", REMOTE_METADATA_TTL="0")
    assert iip(app, "FIF=rgb.tif&JTL=0,0").status == 200
    origin.clear_log()
    for _ in range(3):
        assert iip(app, "FIF=rgb.tif&JTL=0,0").status == 200
    log = origin.log(3)
    assert [a.status for a in log] == [304, 304, 304]
    assert all(a.if_none_match.startswith('"') and a.sent == 0 for a in log)

    cached = remote_app(origin.base, tmp_path / "blocks2", REMOTE_METADATA_TTL="3600")
    assert iip(cached, "FIF=rgb.tif&JTL=0,0").status == 200
    origin.clear_log()
    assert iip(cached, "FIF=rgb.tif&JTL=1,1").status == 200
    assert origin.log(0) == []  # within the TTL: no request at all


def test_a_replaced_object_is_a_new_identity_and_never_mixes_versions(
    origin: Nginx, root: Path, tmp_path: Path, make_app
) -> None:
    path = root / "changing.tif"
    write_vips_pyramid(path, np.tile(rgb_pattern(512, 512, seed=10), (4, 4, 1)))
    app = remote_app(origin.base, tmp_path / "blocks")
    local = make_app(root)
    assert iip(app, "FIF=changing.tif&JTL=3,0").status == 200  # opened: version 1 known
    old_identity = app.service.image("changing.tif").resolved.identity

    write_vips_pyramid(root / "changing.new", np.tile(rgb_pattern(512, 512, seed=11), (4, 4, 1)), quality=70)
    os.replace(root / "changing.new", path)
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new ETag even within the same second
    origin.clear_log()
    stale = iip(app, "FIF=changing.tif&JTL=3,60")  # a tile not read yet: If-Match fails
    assert stale.status == 503 and ("Retry-After", "1") in stale.headers
    assert [a.status for a in origin.log()] == [412]

    fresh = iip(app, "FIF=changing.tif&JTL=3,60")  # the version was dropped: re-probed, reopened
    assert fresh.status == 200
    assert bytes(fresh.body) == bytes(iip(local, "FIF=changing.tif&JTL=3,60").body)
    assert app.service.image("changing.tif").resolved.identity != old_identity
    # A tile rendered from version 1 is not served for version 2: new identity, new cache keys.
    assert bytes(iip(app, "FIF=changing.tif&JTL=3,0").body) == bytes(iip(local, "FIF=changing.tif&JTL=3,0").body)


def _block_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and p.name != ".lock"] if directory.exists() else []


@pytest.mark.parametrize("location", ["norange", "errorpage"])
def test_a_200_to_a_range_request_fails_and_caches_nothing(origin: Nginx, tmp_path: Path, location: str) -> None:
    blocks = tmp_path / "blocks"
    app = remote_app(origin.base, blocks, location)
    for _ in range(2):  # the second time is no better: nothing was kept
        reply = iip(app, "FIF=rgb.tif&JTL=0,0")
        assert reply.status == 502, reply.body
        assert b"127.0.0.1" not in reply.body and b"rgb.tif" not in reply.body
    assert _block_files(blocks) == []
    reply = ask(app, "/iiif/3/rgb.tif/info.json")
    assert reply.status == 502


def test_missing_objects_and_non_tiffs(origin: Nginx, tmp_path: Path) -> None:
    app = remote_app(origin.base, tmp_path / "blocks")
    assert iip(app, "FIF=missing.tif&JTL=0,0").status == 404
    reply = iip(app, "FIF=notes.txt&JTL=0,0")
    assert reply.status == 404 and b"pyramidal TIFF" in reply.body


def test_identifiers_are_encoded_into_the_path_and_cannot_escape(origin: Nginx, tmp_path: Path) -> None:
    app = remote_app(origin.base, tmp_path / "blocks")
    origin.clear_log()
    reply = ask(app, "/iiif/3/sub%20dir%2Fodd%20%23name%3F.tif/info.json")
    assert reply.status == 200, reply.body
    assert origin.log()[0].path == "/images/sub%20dir/odd%20%23name%3F.tif"
    for identifier in ("../rgb.tif", "sub dir/../../x.tif", "/etc/passwd", "http://example.com/x.tif", "a/./b.tif"):
        origin.clear_log()
        assert iip(app, f"FIF={identifier}&JTL=0,0").status in (400, 403), identifier
        assert origin.log(0) == [], identifier
    origin.clear_log()
    assert iip(app, "FIF=%2e%2e/rgb.tif&JTL=0,0").status == 403  # decoded by the IIP parser, then refused


# --- an origin that misbehaves on purpose ----------------------------------------------------------


class Faulty(http.server.BaseHTTPRequestHandler):
    """Serves one file with ranges, and the faults ``server.mode`` names."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        data: bytes = server.data  # type: ignore[attr-defined]
        mode: str = server.mode  # type: ignore[attr-defined]
        server.count += 1  # type: ignore[attr-defined]
        etag = '"v1"'
        if mode == "flaky" and server.count % 2:  # type: ignore[attr-defined]
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "hang" and server.count > 1:  # type: ignore[attr-defined]
            time.sleep(2)  # longer than REMOTE_TIMEOUT: the client gives up first
        if mode == "etag-flip" and server.count > 1:  # type: ignore[attr-defined]
            etag = '"v2"'  # and it ignores If-Match
        first, _, last = self.headers["Range"][6:].partition("-")
        first, last = int(first), min(int(last), len(data) - 1)
        body = data[first : last + 1]
        self.send_response(206)
        self.send_header("ETag", etag)
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        if mode == "short" and server.count > 1:  # type: ignore[attr-defined]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])  # then the connection drops
            self.close_connection = True
            return
        if mode == "lying" and server.count > 1:  # type: ignore[attr-defined]
            body = body[:-10]  # a complete reply, but not the bytes the Content-Range promises
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler must not hold the teardown

    def handle_error(self, request, client_address) -> None:
        pass  # the client gave up on a hanging reply: a broken pipe is expected


@pytest.fixture
def faulty(root: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    server = QuietServer(("127.0.0.1", 0), Faulty)
    server.data = (root / "rgb.tif").read_bytes()  # type: ignore[attr-defined]
    server.count = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("mode", "status"), [("short", 503), ("lying", 502), ("etag-flip", 503), ("hang", 503), ("flaky", 200)]
)
def test_faulty_origins_never_poison_a_cache(
    faulty: http.server.ThreadingHTTPServer, tmp_path: Path, mode: str, status: int
) -> None:
    faulty.mode = mode  # type: ignore[attr-defined]
    blocks = tmp_path / "blocks"
    app = remote_app(f"http://127.0.0.1:{faulty.server_port}", blocks, "x", REMOTE_TIMEOUT="0.5")
    started = time.monotonic()
    reply = iip(app, "FIF=rgb.tif&JTL=4,100")
    assert reply.status == status, reply.body
    assert time.monotonic() - started < 4  # REMOTE_TIMEOUT bounds each store request, retries and pauses included
    stored = _block_files(blocks)
    if status == 200:
        return
    # Only the first block, which came whole and valid, may be on disk; nothing the fault touched.
    assert [p.name.rsplit(".", 1)[1] for p in stored] == ["0"]
    faulty.mode = "good"  # type: ignore[attr-defined]
    app2 = remote_app(f"http://127.0.0.1:{faulty.server_port}", blocks, "x")
    local = remote_app(f"http://127.0.0.1:{faulty.server_port}", tmp_path / "other", "x")
    assert bytes(iip(app2, "FIF=rgb.tif&JTL=4,100").body) == bytes(iip(local, "FIF=rgb.tif&JTL=4,100").body)
