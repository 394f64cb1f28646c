"""Caches against hostile requests, memcached values and files rewritten in place (issue 15, findings 12-14).

Every byte a cache entry holds counts against MAX_IMAGE_CACHE_SIZE (long
query strings and header values included); a memcached value is taken only
as the body of the requested format, never its type; a file rewritten in
place with its size and mtime put back, or made unreadable, is never served
from any cache again.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import struct
import time
import tracemalloc
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import pyvips

from pyiip.process.display import channel_mix
from pyiip.respond.app import Application
from pyiip.server import fcgi_client
from pyiip.server.fastcgi import BEGIN_REQUEST, MAX_CONTENT, PARAMS, RESPONDER, encode_pairs, encode_record
from pyiip.server.fcgi_client import environ_for
from tests.integration.test_cache_hostile import HEIGHT, WIDTH, get, rewrite_in_place
from tests.support.imaging import rgb_pattern, write_tifffile_pyramid
from tests.support.mcserver import Memcached, memcached
from tests.support.servers import VENV_BIN, free_port, running, status_kib

TILE = "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=1,1"
INFO = "/iiif/3/rgb.tif/info.json"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_tifffile_pyramid(tmp_path / "rgb.tif", rgb_pattern(WIDTH, HEIGHT), compression="zlib")
    return tmp_path


@pytest.fixture
def mc() -> Iterator[Memcached]:
    with memcached() as daemon:
        yield daemon


# ---------------------------------------------------------------- finding 12: every byte counted


def traced_growth(
    requests: Iterator[tuple[str, dict[str, str]]], app: Application, forget: Callable[[], None] = lambda: None
) -> int:
    """Bytes Python holds after the requests beyond what it held before (tracemalloc), each request asked twice.

    ``forget`` empties what else keeps them before the count (the display pipeline's own memo of
    its 256 last displays, which is not this test's business).
    """
    get(app, TILE)  # the image open, the first allocations made
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for uri, headers in requests:
            for _ in range(2):
                assert get(app, uri, **headers)[0] == "200 OK"
        forget()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


BUDGET_MB = 1
MARGIN = 512 * 1024  # the seen-once hashes (at most ~0.5 MB), counters, a request in flight


@pytest.mark.parametrize("length", [60_000, 3_000])
def test_distinct_long_queries_asked_twice_stay_within_the_budget(root, length, make_app):
    """Queries too long to keep take nothing; shorter ones are kept at the cost of every byte they hold."""
    app = make_app(root, MAX_IMAGE_CACHE_SIZE=str(BUDGET_MB))
    count = 200 if length > 10_000 else 800
    requests = ((f"{TILE}&pad={n:06d}{'x' * length}", {}) for n in range(count))
    grown = traced_growth(requests, app)
    lru = app.service.cache.lru
    assert lru.bytes <= lru.max_bytes == BUDGET_MB << 20
    assert grown <= lru.max_bytes + MARGIN, (grown, lru.bytes)
    if length < 10_000:
        assert app.service.cache.replies.stores > 0  # kept, within the budget
        assert grown <= lru.bytes + MARGIN  # what the cache says it holds is what it holds


def test_rendered_images_under_long_keys_are_counted_whole(root, make_app):
    """Distinct requests with hundreds of display values: their keys, not only their bodies, fill the budget."""
    app = make_app(root, MAX_IMAGE_CACHE_SIZE=str(BUDGET_MB))
    minmax = "&".join(f"MINMAX={c}:0,255" for c in range(4, 500))

    def requests() -> Iterator[tuple[str, dict[str, str]]]:
        for n in range(150):
            yield f"/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&MINMAX=1:{n},255&{minmax}&JTL=1,1", {}

    grown = traced_growth(requests(), app, forget=channel_mix.cache_clear)
    lru = app.service.cache.lru
    assert lru.bytes <= lru.max_bytes and len(lru) > 1
    assert grown <= lru.bytes + MARGIN, (grown, lru.bytes)


def test_small_entries_are_counted_with_their_overheads(root, make_app):
    """Tiny renders (bodies of a few hundred bytes), kept as replies too: key and object costs dominate, all counted."""
    app = make_app(root, MAX_IMAGE_CACHE_SIZE=str(BUDGET_MB))
    regions = ((f"/iiif/3/rgb.tif/{x},{y},8,8/8,/0/default.jpg", {}) for x in range(0, 592, 8) for y in range(0, 96, 8))
    grown = traced_growth(regions, app)
    lru = app.service.cache.lru
    assert app.service.cache.replies.stores > 100 and lru.evictions > 0
    assert grown <= lru.bytes + 128 * 1024, (grown, lru.bytes)  # a thousand seen-once hashes, counters


def test_distinct_long_iiif_id_headers_stay_within_the_budget(root, make_app):
    """info.json bodies (each naming its X-IIIF-ID) are kept in the LRU, counted; replies varying on them are not."""
    app = make_app(root, MAX_IMAGE_CACHE_SIZE=str(BUDGET_MB))
    requests = ((INFO, {"HTTP_X_IIIF_ID": f"https://example.org/{n:06d}/" + "a" * 60_000}) for n in range(150))
    grown = traced_growth(requests, app)
    lru = app.service.cache.lru
    assert lru.bytes <= lru.max_bytes and len(lru) > 1
    assert grown <= lru.max_bytes + MARGIN, (grown, lru.bytes)


def rss(pid: int) -> int:
    """Resident set size in bytes, from /proc."""
    return status_kib(pid, "VmRSS") * 1024


def fcgi_get(port: int, uri: str, **extra: str) -> fcgi_client.ResponderOutput:
    """A request whose parameters may exceed one record (a 60 KB query): split over PARAMS records."""
    pairs = {k.encode("latin-1"): v.encode("latin-1") for k, v in environ_for(uri, **extra).items()}
    encoded = encode_pairs(pairs)
    records = [encode_record(BEGIN_REQUEST, 1, struct.pack("!HB5x", RESPONDER, 0))]
    records += [encode_record(PARAMS, 1, encoded[at : at + MAX_CONTENT]) for at in range(0, len(encoded), MAX_CONTENT)]
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"".join(records) + encode_record(PARAMS, 1))
        return fcgi_client.finish(sock)


FLOOD = 600
RSS_MARGIN = 24 << 20  # the allocator's own slack, and what a first request of each kind loads


def test_a_worker_flooded_with_long_queries_and_headers_grows_by_its_budget(root):
    """A real process (``pyiip fcgi``): distinct 60 KB queries and X-IIIF-ID headers, each twice; RSS from /proc."""
    port = free_port()
    command = [str(VENV_BIN / "pyiip"), "fcgi", "--bind", f"127.0.0.1:{port}", "--root", str(root)]
    budget_mb = 4
    with running(command, port, {"MAX_IMAGE_CACHE_SIZE": str(budget_mb), "VERBOSITY": "0"}) as process:
        for uri in (f"{TILE}&pad=warm", INFO):
            for _ in range(2):
                assert fcgi_get(port, uri).status == 200
        before = rss(process.pid)
        for n in range(FLOOD):
            uri, extra = f"{TILE}&pad={n:06d}{'x' * 60_000}", {}
            if n % 2:
                uri, extra = INFO, {"HTTP_X_IIIF_ID": f"https://example.org/{n:06d}/" + "a" * 60_000}
            for _ in range(2):
                assert fcgi_get(port, uri, **extra).status == 200
        grown = rss(process.pid) - before
    assert grown <= (budget_mb << 20) + RSS_MARGIN, grown / 2**20


# ---------------------------------------------------------------- finding 13: memcached values


def stored_keys(daemon: Memcached) -> list[str]:
    """Every key in the daemon (``lru_crawler metadump all``)."""
    keys: list[str] = []
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(b"lru_crawler metadump all\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while not data.endswith(b"END\r\n") and time.monotonic() < deadline:
            data += sock.recv(65536)
    for line in data.decode().splitlines():
        if line.startswith("key="):
            keys.append(urllib.parse.unquote(line.split()[0][4:]))
    return keys


def poke(daemon: Memcached, key: str, value: bytes) -> None:
    """Write a value as anyone who reaches memcached can (it has no authentication)."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value))
        assert sock.recv(100) == b"STORED\r\n"


FORMATS = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "tif": "image/tiff", "gif": "image/gif"}


def image_url(fmt: str) -> str:
    return f"/iiif/3/rgb.tif/100,100,200,150/200,/0/default.{fmt}"


def encoded(fmt: str) -> bytes:
    """A valid image in ``fmt``, of other pixels than any pyiip renders here."""
    return pyvips.Image.black(8, 8, bands=3).write_to_buffer("." + fmt)


def hostile_values(fmt: str) -> dict[str, bytes]:
    mime = FORMATS[fmt].encode()
    other = "png" if fmt != "png" else "jpg"
    return {
        "html": b"text/html\n<script>alert(document.cookie)</script>",
        "lone CR": mime + b"\rSet-Cookie: session=stolen\n" + encoded(fmt),
        "right type, html": mime + b"\n<html><script>alert(1)</script></html>",
        "other type": FORMATS[other].encode() + b"\n" + encoded(other),
        "other format's bytes": mime + b"\n" + encoded(other),
        "no type": encoded(fmt),
        "empty": b"",
    }


def test_poisoned_memcached_values_are_misses_and_replies_stay_true(root, mc, caplog, make_app):
    writer = make_app(root, MEMCACHED_SERVERS=mc.address)
    truth = {fmt: get(writer, image_url(fmt)) for fmt in FORMATS}
    for fmt, (status, headers, _body) in truth.items():
        assert status == "200 OK" and headers["Content-Type"] == FORMATS[fmt]
    keys = stored_keys(mc)
    assert len(keys) == len(FORMATS) and all(key.startswith("pyiip:") for key in keys)
    # Each key maps to the format whose ETag names it.
    key_of = {fmt: next(k for k in keys if k.removeprefix("pyiip:") in truth[fmt][1]["ETag"]) for fmt in FORMATS}
    caplog.set_level(logging.INFO, logger="pyiip")  # VERBOSITY 2
    for fmt in FORMATS:
        for name, value in hostile_values(fmt).items():
            poke(mc, key_of[fmt], value)
            reader = make_app(root, MEMCACHED_SERVERS=mc.address)  # an empty LRU: memcached is asked
            status, headers, body = get(reader, image_url(fmt))
            tier = reader.service.cache.memcached
            assert (status, headers["Content-Type"]) == ("200 OK", FORMATS[fmt]), (fmt, name)
            assert body == truth[fmt][2], (fmt, name)  # rendered afresh from the image
            assert (tier.hits, tier.misses, tier.stores) == (0, 1, 1), (fmt, name)
            assert all("\r" not in v and "\n" not in v and "html" not in v for v in headers.values()), (fmt, name)
            again = make_app(root, MEMCACHED_SERVERS=mc.address)  # the true value replaced the poison
            assert get(again, image_url(fmt)) == (status, headers, body)
            assert again.service.cache.memcached.hits == 1
    ignored = [r for r in caplog.records if "memcached value" in r.getMessage()]
    assert len(ignored) == len(FORMATS) * len(hostile_values("jpg"))


# ---------------------------------------------------------------- finding 14: file identity


def png_of(pixels: np.ndarray) -> bytes:
    """An uncompressed PNG: its size depends on its dimensions only."""
    return pyvips.Image.new_from_array(pixels).pngsave_buffer(compression=0, filter="none")


def tiff_of(pixels: np.ndarray, directory: Path) -> bytes:
    path = directory / "scratch.tif"
    write_tifffile_pyramid(path, pixels, compression=None)  # uncompressed: the size depends on the dimensions only
    data = path.read_bytes()
    path.unlink()
    return data


def decoded(body: bytes) -> np.ndarray:
    return pyvips.Image.new_from_buffer(body, "").numpy()


REGIONS = {  # level 0, across tiles (decoded-tile cache), and a reduced level
    "rgb.tif": ["200,200,300,200/max/0/default.png", "0,0,600,500/300,/0/default.png"],
    "flat.png": ["50,60,300,200/max/0/default.png"],
}


def expected(pixels: np.ndarray, region: str) -> np.ndarray | None:
    """The exact pixels of a full-size region; None for a scaled one."""
    box, size = region.split("/")[:2]
    if size != "max":
        return None
    x, y, w, h = (int(v) for v in box.split(","))
    return pixels[y : y + h, x : x + w]


def serve_all(app: Application) -> dict[str, bytes]:
    """Every region of both images, each asked twice (so kept as a reply too)."""
    out = {}
    for name, regions in REGIONS.items():
        for region in regions:
            uri = f"/iiif/3/{name}/{region}"
            first = get(app, uri)
            assert first[0] == "200 OK", (uri, first[2][:100])
            assert get(app, uri) == first
            out[uri] = first[2]
    return out


def test_a_file_rewritten_in_place_with_its_size_and_mtime_is_served_anew(tmp_path, mc, make_app):
    root = tmp_path / "root"
    root.mkdir()
    old, new = rgb_pattern(WIDTH, HEIGHT, seed=1), 255 - rgb_pattern(WIDTH, HEIGHT, seed=2)
    (root / "rgb.tif").write_bytes(tiff_of(old, tmp_path))
    (root / "flat.png").write_bytes(png_of(old))
    app = make_app(root, MEMCACHED_SERVERS=mc.address)
    before = serve_all(app)
    assert app.service.cache.replies.stores == len(before) and app.service.cache.tiles.stores > 0

    rewrite_in_place(root / "rgb.tif", tiff_of(new, tmp_path))
    rewrite_in_place(root / "flat.png", png_of(new))
    # The same process (open images, decoded tiles, rendered images, kept replies), and another
    # process sharing memcached: every reply is made from the new pixels.
    for server in (app, make_app(root, MEMCACHED_SERVERS=mc.address)):
        after = serve_all(server)
        for uri, body in after.items():
            assert body != before[uri], uri
            region = uri.split("/", 4)[4]
            pixels = expected(new, region)
            if pixels is not None:
                assert np.array_equal(decoded(body), pixels), uri
    assert app.service.cache.memcached.hits == 0


def drop_file_access() -> None:
    """In the child: no CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so file modes bind it as any user.

    The tests run as root, whose interpreter under /root another user cannot
    even execute; a root without these capabilities reads a file only as
    its mode allows, as an unprivileged server does.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone from the bounding set at exec
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def effective_capabilities(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1], 16)


def test_an_image_made_unreadable_stops_being_served_at_once(root, mc):
    """chmod 000 under a server that the mode binds: the next request is a 404, from every cache; chmod back, 200."""
    (root / "flat.png").write_bytes(png_of(rgb_pattern(WIDTH, HEIGHT)))
    port = free_port()
    command = [str(VENV_BIN / "pyiip"), "fcgi", "--bind", f"127.0.0.1:{port}", "--root", str(root)]
    env = {"MEMCACHED_SERVERS": mc.address, "VERBOSITY": "0"}
    uris = [f"/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=1,{n}" for n in range(2)]
    uris += [INFO, "/iiif/3/flat.png/0,0,200,200/max/0/default.jpg"]
    drop = drop_file_access if os.geteuid() == 0 else None  # another user is bound by file modes already
    with running(command, port, env, preexec_fn=drop) as process:
        assert not effective_capabilities(process.pid) & 0b110  # bound by file modes
        served = {}
        for uri in uris:
            for _ in range(2):  # opened, rendered, kept as a reply, in memcached
                reply = fcgi_client.request(f"127.0.0.1:{port}", uri)
                assert reply.status == 200, (uri, reply.body[:100])
            served[uri] = reply.body
        for name in ("rgb.tif", "flat.png"):
            os.chmod(root / name, 0)
        for uri in uris:
            assert fcgi_client.request(f"127.0.0.1:{port}", uri).status == 404, uri
        for name in ("rgb.tif", "flat.png"):
            os.chmod(root / name, 0o644)
        for uri in uris:
            reply = fcgi_client.request(f"127.0.0.1:{port}", uri)
            assert (reply.status, reply.body) == (200, served[uri]), uri


def test_a_value_longer_than_any_pyiip_stores_is_refused_before_any_buffer():
    """A peer on the memcached port that announces a 500 MB value: a miss, the connection closed, nothing allocated."""
    from pyiip.cache.tier import MemcachedCache

    with socket.create_server(("127.0.0.1", 0)) as listener:
        tier = MemcachedCache(f"127.0.0.1:{listener.getsockname()[1]}", dead_timeout=60)
        tracemalloc.start()
        try:
            connection = tier.client.clients[tier.names[0]]
            connection._connect()
            peer, _ = listener.accept()
            with peer:
                peer.sendall(b"VALUE pyiip:k 0 500000000\r\n" + b"\xff\xd8\xff" * 100)
                assert tier.get("pyiip:k") is None
                peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert tier.errors == 1 and connection.sock is None
