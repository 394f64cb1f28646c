"""Soak: lighttpd + 2 pyiip.fcgi under a mixed wrk load for SOAK_SECONDS, on loopback only.

Usage: .venv/bin/python scripts/soak.py [--seconds 600] [--data data] [--connections 8]

The load cycles through a few hundred distinct URLs of the demo data (IIP
metadata, JPEG tiles of every level, CVT views, IIIF regions, float cube
tiles with MINMAX/CMP/GAM, DeepZoom and Zoomify tiles), so the per-process
caches see hits, misses and evictions. Every URL must answer 200: any other
status, any socket error, counts as an error. The RSS of lighttpd and of
each FastCGI process is read from /proc after a warm-up pass and at the end;
a process whose RSS grew by more than its configured caches allow (the
MAX_IMAGE_CACHE_SIZE LRU plus a fixed allowance for allocator slack) fails
the soak. Exits 0 only with zero errors and bounded growth; the figures go
to stdout and to bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository, for tests.support

from hostile_load import HostileLoad  # noqa: E402

from tests.support.hostile import jpeg_bomb_tiff, png_bomb, tables_bigtiff, webp_bomb_tiff  # noqa: E402
from tests.support.servers import (  # noqa: E402
    VENV_BIN,
    fastcgi_children,
    fastcgi_settings,
    free_port,
    lighttpd_config,
    running,
    status_kib,
    stop,
)

IMAGE_CACHE_MB = 4  # MAX_IMAGE_CACHE_SIZE of each process: smaller than the URL set, so tiles are re-rendered
CLIENT_TIMEOUT = 5  # seconds: the hostile peers' deadline, short so that a soak sees many of them dropped
SLACK_MB = 48  # allocator fragmentation, interpreter caches, libvips' operation cache


def urls(data: Path) -> list[str]:
    """A mixed, deterministic list of distinct requests, all of which must answer 200."""
    from pyiip.read.image import open_source

    found: list[str] = []
    cube, rgb = "demo/cube.tif", "demo/rgb.tif"
    iip = "/fcgi-bin/iipsrv.fcgi?FIF="
    info = open_source(str(data / cube)).info
    levels = len(info.levels)
    found.append(
        f"{iip}{cube}&obj=IIP,1.0&obj=max-size&obj=tile-size&obj=resolution-number"
        "&obj=bits-per-channel&obj=min-max-sample-values&obj=subject"
    )
    found.append(f"{iip}{rgb}&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Tile-size&OBJ=Resolution-number")
    for name, extra in ((rgb, ""), (cube, "&MINMAX=1:90,400&MINMAX=2:90,400&MINMAX=3:90,400&GAM=0.4545")):
        for res in range(levels):
            lv = info.levels[levels - 1 - res]
            count = lv.tiles_across * lv.tiles_down
            for tile in sorted({count * k // 16 for k in range(16)} | {count - 1}):
                found.append(f"{iip}{name}{extra}&JTL={res},{tile}")
    for cmap in ("jet", "hot", "cold", "grey"):
        for tile in range(4):
            found.append(f"{iip}{cube}&MINMAX=1:95,300&CMP={cmap}&INV&JTL=3,{tile}")
    found.append(f"{iip}{cube}&CTW=0,0,1;0,1,0;1,0,0&MINMAX=1:90,400&JTL=2,1")
    found.append(f"{iip}{cube}&SHD=30,40&JTL=2,2")
    for x in (0.0, 0.1, 0.25, 0.4, 0.5, 0.6):
        found.append(f"{iip}{rgb}&RGN={x},{x},0.3,0.3&WID=600&CVT=jpeg")
        found.append(f"{iip}{cube}&RGN={x},0.1,0.2,0.2&WID=400&CMP=jet&CVT=png")
    found.append(f"{iip}{rgb}&WID=1200&ROT=90&CVT=jpeg")
    found.append(f"{iip}{cube}&PFL=3:10,20-500,20")
    for version in (2, 3):
        found.append(f"/iiif/{version}/demo%2Frgb.tif/info.json")
        for x in (0, 1024, 2048, 4096, 6144):
            for y in (0, 3072, 7168):
                found.append(f"/iiif/{version}/demo%2Frgb.tif/{x},{y},1024,1024/256,/0/default.jpg")
        found.append(f"/iiif/{version}/demo%2Fcube.tif/full/512,/0/default.png")
    found.append("/iiif/3/demo%2Frgb.tif/full/800,/33/default.jpg")
    found.append("/iiif/3/demo%2Fcube.tif/0,0,2048,2048/512,/0/gray.jpg?MINMAX=1:90,300&CMP=hot")
    for level, col, row in ((8, 0, 0), (10, 1, 2), (12, 3, 3), (13, 10, 5)):
        found.append(f"/deepzoom/demo/rgb.tif_files/{level}/{col}_{row}.jpg")
    for tier, col, row in ((0, 0, 0), (2, 1, 1), (4, 5, 3)):
        found.append(f"/zoomify/demo/rgb.tif/TileGroup0/{tier}-{col}-{row}.jpg")
    return found


_LUA = """
local paths = {%s}
local counter = 0
local threads = {}
function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end
function init(args)
  bad = 0
  statuses = {}
end
function request()
  counter = counter + 1
  return wrk.format("GET", paths[((counter + offset) %% #paths) + 1])
end
function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("SOAK non200=%%d\\n", total))
  io.write(string.format("SOAK p50_ms=%%.2f p99_ms=%%.2f max_ms=%%.2f\\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    return status_kib(pid, field) / 1024


def peak_mb(pid: int) -> float:
    return rss_mb(pid, "VmHWM")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", "600")))
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--no-hostile", dest="hostile", action="store_false", help="leave out the hostile peers (hostile_load.py)"
    )
    parser.add_argument("--out", type=Path, default=HERE.parent / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    data = args.data.resolve()
    wrk = shutil.which("wrk")
    lighttpd = shutil.which("lighttpd") or "/usr/sbin/lighttpd"
    if wrk is None or not os.path.exists(lighttpd):
        print("soak: needs wrk and lighttpd (scripts/system-packages.sh bench)", file=sys.stderr)
        return 2
    if not (data / "demo" / "cube.tif").exists():
        print(f"soak: {data}/demo/cube.tif missing (make demo)", file=sys.stderr)
        return 2
    paths = urls(data)
    # The hostile files live in a dot directory of the served root for the soak's length only.
    with (
        tempfile.TemporaryDirectory(prefix="pyiip-soak-") as temp,
        tempfile.TemporaryDirectory(prefix=".pyiip-soak-", dir=data) as bomb_dir,
    ):
        directory = Path(temp)
        bombs = bomb_requests(Path(bomb_dir), data)
        port, fcgi_port = free_port(), free_port()
        env = {"MAX_IMAGE_CACHE_SIZE": str(IMAGE_CACHE_MB), "VERBOSITY": "1", "CLIENT_TIMEOUT": str(CLIENT_TIMEOUT)}
        config = lighttpd_config(directory, port, data, env=env, fcgi_port=fcgi_port)
        (directory / "soak.lua").write_text(_LUA % ", ".join(json.dumps(p) for p in paths))
        base = f"http://127.0.0.1:{port}"
        supervisor_command = [str(VENV_BIN / "pyiip.fcgi"), "--workers", "2", "--bind", f"127.0.0.1:{fcgi_port}"]
        with (
            running(supervisor_command, fcgi_port, fastcgi_settings(directory, data, env)) as supervisor,
            running([lighttpd, "-D", "-f", str(config)], port) as server,
        ):
            deadline = time.monotonic() + 20
            while len(fastcgi_children(supervisor.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            workers = sorted(fastcgi_children(supervisor.pid))
            warm_errors = []
            for path in paths:  # every URL must answer 200
                try:
                    with urllib.request.urlopen(base + path, timeout=120) as reply:
                        reply.read()
                except Exception as exc:  # an HTTPError is a failed URL too
                    warm_errors.append(f"{path}: {exc}")
            if warm_errors:
                print("soak: warm-up failures:\n  " + "\n  ".join(warm_errors[:20]), file=sys.stderr)
                return 1
            # Then the same load for a while, so both processes have opened the images and filled their caches.
            warm = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{max(5, min(60, args.seconds // 10))}s"]
            subprocess.run([*warm, "-s", str(directory / "soak.lua"), base], capture_output=True, check=False)
            pids = {"lighttpd": server.pid, **{f"pyiip.fcgi {i + 1}": pid for i, pid in enumerate(workers)}}
            start = {name: rss_mb(pid) for name, pid in pids.items()}
            samples = [(0.0, {name: start[name] for name in pids})]
            command = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "60s"]
            command += ["--latency", "-s", str(directory / "soak.lua"), base]
            print(f"soak: {len(paths)} URLs, {args.seconds} s, {args.connections} connections", flush=True)
            hostile = HostileLoad(("127.0.0.1", fcgi_port), base, bombs, CLIENT_TIMEOUT + 10) if args.hostile else None
            if hostile:
                hostile.start()
            started = time.monotonic()
            load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            while load.poll() is None:
                time.sleep(min(30.0, max(1.0, args.seconds / 20)))
                alive = {name: pid for name, pid in pids.items() if Path(f"/proc/{pid}").exists()}
                samples.append((time.monotonic() - started, {name: rss_mb(pid) for name, pid in alive.items()}))
            output = load.stdout.read() if load.stdout else ""
            figures = hostile.stop() if hostile else None
            end = {name: rss_mb(pid) for name, pid in pids.items() if Path(f"/proc/{pid}").exists()}
            peaks = {name: peak_mb(pid) for name, pid in pids.items() if Path(f"/proc/{pid}").exists()}
            respawned = sorted(fastcgi_children(supervisor.pid)) != workers
            stop(server)
            log = (directory / "pyiip.log").read_text(errors="replace") if (directory / "pyiip.log").exists() else ""
    return report(args, paths, output, start, end, samples, respawned, log, figures, peaks)


def report(args, paths, output, start, end, samples, respawned, log, hostile, peaks) -> int:
    requests = int(re.search(r"(\d+) requests in", output).group(1)) if "requests in" in output else 0
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)) if "Requests/sec" in output else 0.0
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = sum(int(v) for v in sockets.groups()) if sockets else 0
    non200 = int(re.search(r"SOAK non200=(\d+)", output).group(1)) if "SOAK non200" in output else -1
    latency = re.search(r"SOAK p50_ms=([\d.]+) p99_ms=([\d.]+) max_ms=([\d.]+)", output)
    internal = len(re.findall(r" ERROR ", log))
    allowed = IMAGE_CACHE_MB + SLACK_MB
    rows, grown = [], []
    for name, before in start.items():
        after = end.get(name)
        growth = None if after is None else after - before
        limit = allowed if name.startswith("pyiip") else SLACK_MB
        if growth is None or growth > limit:
            grown.append(name)
        rows.append((name, before, after, growth, limit))
    print(f"\nrequests {requests}  ({rate:.1f}/s over {args.seconds} s, {len(paths)} distinct URLs)")
    if latency:
        print(f"latency  p50 {latency.group(1)} ms, p99 {latency.group(2)} ms, max {latency.group(3)} ms")
    print(f"errors   non-200 {non200}, socket {socket_errors}, logged ERROR lines {internal}, respawns {respawned}")
    print(f"\n{'process':<14}{'RSS start MB':>14}{'RSS end MB':>12}{'growth MB':>11}{'allowed MB':>12}")
    for name, before, after, growth, limit in rows:
        after_text = f"{after:12.1f}" if after is not None else f"{'gone':>12}"
        growth_text = f"{growth:11.1f}" if growth is not None else f"{'-':>11}"
        print(f"{name:<14}{before:14.1f}{after_text}{growth_text}{limit:12d}")
    hostile_failures = hostile_verdict(hostile)
    if hostile is not None:
        print(f"\nhostile peers (CLIENT_TIMEOUT={CLIENT_TIMEOUT} s): {json.dumps(hostile)}")
        print("peak RSS MB (VmHWM): " + ", ".join(f"{name} {mb:.1f}" for name, mb in peaks.items()))
        for failure in hostile_failures:
            print(f"hostile: {failure}")
    ok = requests > 0 and non200 == 0 and socket_errors == 0 and internal == 0 and not respawned and not grown
    ok = ok and not hostile_failures
    result = {
        "seconds": args.seconds,
        "connections": args.connections,
        "urls": len(paths),
        "requests": requests,
        "requests_per_second": rate,
        "non200": non200,
        "socket_errors": socket_errors,
        "logged_errors": internal,
        "respawned": respawned,
        "latency_ms": dict(zip(("p50", "p99", "max"), map(float, latency.groups()), strict=True)) if latency else None,
        "rss_mb": {name: {"start": b, "end": a, "growth": g, "allowed": lim} for name, b, a, g, lim in rows},
        "hostile": hostile,
        "peak_rss_mb": peaks,
        "samples": [{"t": round(t, 1), **{k: round(v, 1) for k, v in s.items()}} for t, s in samples],
        "ok": ok,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    if not ok:
        print("\nsoak FAILED" + (f": RSS grew beyond the caches in {', '.join(grown)}" if grown else ""))
        if requests == 0:
            print(output[-3000:])
        return 1
    print("\nsoak passed: zero errors, memory bounded by the configured caches")
    return 0


def hostile_verdict(hostile: dict | None) -> list[str]:
    """What the hostile peers saw that a sound server never shows."""
    if hostile is None:
        return []
    failures = []
    health = hostile["health_probes"]
    if set(health) - {"answered"}:
        failures.append(f"health probes not all answered: {health}")
    if set(hostile["bomb_statuses"]) - {"4xx"}:
        failures.append(f"a bomb request did not answer 4xx: {hostile['bomb_statuses']}")
    if hostile["not_dropped"]:
        failures.append(f"peers still connected past the deadline: {hostile['not_dropped']}")
    if hostile["non_readers_cut"] == 0:
        failures.append("no non-reading peer was cut off at the write deadline")
    return failures


def write_bombs(directory: Path) -> list[str]:
    """Files of a few KB that declare gigabytes (tests/support/hostile.py makes them); their names."""
    jpeg_bomb_tiff(directory / "jpeg-bomb.tif")
    jpeg_bomb_tiff(directory / "rgb-jpeg-bomb.tif", (20000, 20000), channels=3)
    webp_bomb_tiff(directory / "webp-bomb.tif")
    tables_bigtiff(directory / "sparse-tables.tif", 1 << 20, 3)
    png_bomb(directory / "png-bomb.png", 40000)
    return sorted(path.name for path in directory.iterdir())


def bomb_requests(directory: Path, root: Path) -> list[tuple[str, str, bytes | None]]:
    """Requests that once cost a worker its life, its memory or a traceback; each must answer 4xx."""
    iip = "/fcgi-bin/iipsrv.fcgi?FIF="
    big = "9" * 400
    requests: list[tuple[str, str, bytes | None]] = [
        ("GET", f"/iiif/3/demo%2Frgb.tif/full/{big},/0/default.jpg", None),
        ("GET", f"/iiif/2/demo%2Frgb.tif/pct:{'9' * 320},0,10,10/full/0/default.jpg", None),
        ("GET", f"/deepzoom/demo/rgb.tif_files/{'1' * 5000}/0_0.jpg", None),
        ("GET", f"{iip}demo/cube.tif&GAM=0.5&CNT=1e308&JTL=1,0", None),
        ("GET", f"{iip}demo/rgb.tif&WID={big}&CVT=jpeg", None),
        ("POST", "/fcgi-bin/iipsrv.fcgi", b"FIF=demo/rgb.tif&OBJ=IIP,1.0&" + b"x" * (2 << 20)),
    ]
    for name in write_bombs(directory):
        identifier = f"{directory.name}/{name}"
        # PNG: a stored JPEG tile asked for as JPEG goes out as it is (pass-through), never decoded.
        requests.append(("GET", f"{iip}{identifier}&PTL=0,0", None))
        requests.append(("GET", f"/iiif/3/{urllib.request.quote(identifier, safe='')}/full/max/0/default.png", None))
    return requests


if __name__ == "__main__":
    sys.exit(main())
