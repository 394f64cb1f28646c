"""Tile latency and bytes fetched for images in object storage, cold and warm.

Serves a JPEG pyramid (8192 x 8192 by default) from a local nginx, optionally
behind a proxy that adds a fixed delay per request (``--latency-ms``, to
stand in for S3's first-byte time), and renders tiles in-process with the
render cache off, so each number is the source path: resolve, blocks, decode,
encode. Scenarios:

- local: the same file on local disk (baseline);
- cold: empty block cache, a new process (the image is opened on its first tile);
- warm disk: a new process on a warm block cache (the host's other workers filled it);
- warm memory: the same process again (blocks in its memory LRU).

Usage: .venv/bin/python bench/remote_bench.py [--size 8192] [--tiles 40] [--latency-ms 0] [--block-kib 256 64]
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import random
import shutil
import socketserver
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyvips

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests.support
from pyiip import config
from pyiip.http import Request
from pyiip.respond.app import Application
from tests.support.objectstores import nginx


def make_pyramid(path: Path, size: int) -> None:
    """Smooth colour plus noise, so tiles have realistic and varied JPEG sizes."""
    y, x = np.mgrid[0:1024, 0:1024].astype(np.float32)
    base = np.dstack([127 + 100 * np.sin(x / 97), 127 + 100 * np.cos(y / 61), (x + y) / 8]).astype(np.uint8)
    image = pyvips.Image.new_from_array(np.ascontiguousarray(base)).replicate(size // 1024, size // 1024)
    noise = pyvips.Image.gaussnoise(size, size, sigma=12, mean=0)
    image = (image + noise.bandjoin([noise, noise])).cast("uchar")
    image.tiffsave(str(path), tile=True, pyramid=True, tile_width=256, tile_height=256, compression="jpeg", Q=85)


class DelayProxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Forwards GETs to the origin after sleeping: a stand-in for an object store's first-byte time."""

    daemon_threads = True

    def __init__(self, origin_port: int, delay: float) -> None:
        self.origin_port, self.delay = origin_port, delay
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server: DelayProxy = self.server  # type: ignore[assignment]
        time.sleep(server.delay)
        connection = getattr(self, "_upstream", None)
        if connection is None:
            connection = self._upstream = http.client.HTTPConnection("127.0.0.1", server.origin_port)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        connection.request("GET", self.path, headers=headers)
        reply = connection.getresponse()
        body = reply.read()
        self.send_response(reply.status)
        for name, value in reply.getheaders():
            if name.lower() not in ("connection", "keep-alive", "transfer-encoding", "server", "date"):
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def app_for(env: dict[str, str]) -> Application:
    return Application(config.load({"VERBOSITY": "0", "MAX_IMAGE_CACHE_SIZE": "0", **env}))


def tile(app: Application, query: str) -> float:
    started = time.perf_counter()
    reply = app.respond(Request(method="GET", path="/fcgi-bin/iipsrv.fcgi", query=query))
    elapsed = time.perf_counter() - started
    assert reply.status == 200, (query, reply.status, reply.body[:200])
    return elapsed


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.1f} / {statistics.mean(values) * 1e3:.1f} / {max(values) * 1e3:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--tiles", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--block-kib", type=int, nargs="+", default=[256, 64])
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pyiip-remote-bench-"))
    try:
        root = work / "images"
        root.mkdir()
        make_pyramid(root / "big.tif", args.size)
        file_size = (root / "big.tif").stat().st_size
        levels = int(np.ceil(np.log2(args.size / 256))) + 1
        full = levels - 1
        across = args.size // 256
        rng = random.Random(1)
        sample = rng.sample(range(across * across), args.tiles)
        scattered = [f"FIF=big.tif&JTL={full},{t}" for t in sample]
        middle = across // 2
        viewport = [f"FIF=big.tif&JTL={full},{r * across + c}" for r in range(middle, middle + 4) for c in range(6)]

        with nginx(root, work / "nginx") as origin:
            port = origin.port
            proxy = None
            if args.latency_ms > 0:
                proxy = DelayProxy(origin.port, args.latency_ms / 1000)
                threading.Thread(target=proxy.serve_forever, daemon=True).start()
                port = proxy.server_address[1]
            base = f"http://127.0.0.1:{port}/images/{{id}}"

            local = app_for({"FILESYSTEM_PREFIX": f"{root}/"})
            tile(local, scattered[0])
            local_times = [tile(local, q) for q in scattered[1:]]
            print(
                f"image {args.size} x {args.size} JPEG pyramid, {file_size / 1e6:.1f} MB, {levels} levels; "
                f"added latency per request {args.latency_ms:g} ms; times are median / max"
            )
            print()
            print("| block | scenario | tile latency ms | requests per tile | KiB fetched per tile |")
            print("| --- | --- | --- | --- | --- |")
            print(f"| - | local file | {ms(local_times)} | 0 | 0 |")
            for block in args.block_kib:
                blocks = work / f"blocks-{block}"
                env = {"REMOTE_URL_TEMPLATE": base, "BLOCK_CACHE_DIR": str(blocks), "REMOTE_BLOCK_SIZE": str(block)}

                cold = app_for(env)
                store = cold.service.resolver.remote
                first = tile(cold, scattered[0])
                opened = store.stats()
                times = [tile(cold, q) for q in scattered[1:]]
                after = store.stats()
                n = len(scattered) - 1
                requests = (after["remote_requests"] - opened["remote_requests"]) / n
                fetched = (after["remote_bytes"] - opened["remote_bytes"]) / n / 1024
                print(
                    f"| {block} KiB | first tile of a new image (open + tile) | {first * 1e3:.1f} | "
                    f"{opened['remote_requests']} | {opened['remote_bytes'] / 1024:.0f} |"
                )
                print(f"| {block} KiB | cold, scattered tiles | {ms(times)} | {requests:.2f} | {fetched:.0f} |")

                before = store.stats()
                times = [tile(cold, q) for q in viewport]
                after = store.stats()
                requests = (after["remote_requests"] - before["remote_requests"]) / len(viewport)
                fetched = (after["remote_bytes"] - before["remote_bytes"]) / len(viewport) / 1024
                print(f"| {block} KiB | cold, a 6 x 4 viewport | {ms(times)} | {requests:.2f} | {fetched:.0f} |")

                warm = app_for(env)
                tile(warm, scattered[0])  # the version check, once per REMOTE_METADATA_TTL
                before = warm.service.resolver.remote.stats()
                times = [tile(warm, q) for q in scattered[1:]]
                after = warm.service.resolver.remote.stats()
                assert after["remote_requests"] == before["remote_requests"]
                print(f"| {block} KiB | warm disk (new process) | {ms(times)} | 0 | 0 |")
                times = [tile(warm, q) for q in scattered[1:]]
                print(f"| {block} KiB | warm memory (same process) | {ms(times)} | 0 | 0 |")
            if proxy is not None:
                proxy.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
