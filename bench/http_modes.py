"""Which HTTP server for ``pyiip serve``: pyiip's own, granian, gunicorn, or lighttpd + FastCGI (issue 17).

Every candidate runs the same Application with the same settings in the same number of
single-threaded workers (2 by default: one per core here), on the same images:

- pyiip:    ``pyiip serve --workers N`` (http_server.py: an epoll HTTP/1.1 loop per worker);
- lighttpd: lighttpd spawning N ``pyiip.fcgi`` processes (the production FastCGI recipe);
- gunicorn: ``gunicorn -k sync -w N`` (pre-forked sync workers: one connection at a time each);
- granian:  ``granian --interface wsgi --workers N --blocking-threads 1`` (a Rust event loop per
  worker holds the connections, one Python thread runs the application).

For each: req/s and server CPU per request at c=1/8/64 (wrk, bench/urls.lua, kept-alive
connections) on cached JPEG tiles and on IIIF info.json; the CPU an idle server uses; and the
latency of a client's tile requests while 100 idle connections and one slowloris client (a header
byte every 0.5 s) are held open. All run at once (idle, but for the one measured); each measure is
taken ``--rounds`` times, the servers' order alternating (A B C D, then D C B A), and added up,
so the drift of a shared machine hits each; read the ratios, and the CPU per request (a server's
own processes, from /proc), which the machine's other load moves less than req/s.

gunicorn and granian live in their own venv (they are not pyiip dependencies)::

    python3 -m venv /work/venvs/granian
    echo "$PWD/.venv/lib/python3.11/site-packages" > /work/venvs/granian/lib/python3.11/site-packages/pyiip.pth
    /work/venvs/granian/bin/pip install granian gunicorn
    .venv/bin/python bench/http_modes.py --others /work/venvs/granian/bin --data bench/data

``--data`` is bench/images.py's directory (made if missing). Prints a Markdown table; ``--json``
writes the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from images import ALIASES, ensure  # noqa: E402
from run import free_port, jtl_urls, run_wrk, total_errors, tree_cpu, wait_for_port, wrk_command  # noqa: E402
from run import lighttpd_config as lighttpd_conf  # noqa: E402

VENV_BIN = Path(sys.executable).parent
SETTINGS = {"JPEG_QUALITY": "75", "VERBOSITY": "0", "MAX_IMAGE_CACHE_SIZE": "64", "CLIENT_TIMEOUT": "30"}
SLOW_HEAD = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000


def settings(root: Path) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **SETTINGS, "FILESYSTEM_PREFIX": f"{root}/"}
    if "PYTHONPATH" in os.environ:  # a worktree's code, in every candidate
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def command(name: str, port: int, workers: int, others: Path, directory: Path, env: dict[str, str]) -> list[str]:
    if name == "pyiip":
        return [str(VENV_BIN / "pyiip"), "serve", "--port", str(port), "--workers", str(workers)]
    if name == "gunicorn":
        bind = f"127.0.0.1:{port}"
        return [
            str(others / "gunicorn"),
            "-k",
            "sync",
            "-w",
            str(workers),
            "-b",
            bind,
            "--chdir",
            str(HERE),
            "wsgi_app",
        ]
    if name == "granian":
        return [
            *(str(others / "granian"), "--interface", "wsgi", "--workers", str(workers), "--blocking-threads", "1"),
            *("--host", "127.0.0.1", "--port", str(port), "--working-dir", str(HERE), "wsgi_app:application"),
        ]
    config = directory / "lighttpd.conf"
    config.write_text(lighttpd_conf(directory, port, VENV_BIN / "pyiip.fcgi", env, workers))
    return [shutil.which("lighttpd") or "/usr/sbin/lighttpd", "-D", "-f", str(config)]


@contextlib.contextmanager
def running(name: str, workers: int, others: Path, root: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"http-modes-{name}-") as scratch:
        env = settings(root)
        process = subprocess.Popen(
            command(name, port, workers, others, Path(scratch), env),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(scratch) / "stderr", "w"),  # noqa: SIM115 - closed with the directory
            start_new_session=True,
        )
        try:
            wait_for_port(port, process)
            time.sleep(1.0)  # every worker up
            yield process, port
        finally:
            os.killpg(process.pid, 15)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


def load(process: subprocess.Popen, port: int, urls: Path, conc: int, seconds: float) -> dict:
    """wrk at ``conc`` connections: requests, errors, p99 ms, server CPU seconds."""
    before = tree_cpu(process.pid)
    result, _ = run_wrk(wrk_command(f"http://127.0.0.1:{port}", urls, conc, seconds), timeout=seconds + 60)
    return {
        "requests": result["requests"],
        "seconds": seconds,
        "errors": total_errors(result),
        "p99_ms": result["latency_ms"]["p99"],
        "cpu": tree_cpu(process.pid) - before,
    }


def summed(runs: list[dict]) -> dict:
    """Rounds added up: req/s over all of them, CPU ms per request, errors, the worst p99."""
    requests = sum(r["requests"] for r in runs)
    return {
        "rps": requests / sum(r["seconds"] for r in runs),
        "cpu_ms": 1000 * sum(r["cpu"] for r in runs) / requests if requests else float("nan"),
        "errors": sum(r["errors"] for r in runs),
        "p99_ms": max(r["p99_ms"] for r in runs),
    }


def idle_cpu(processes: dict[str, subprocess.Popen], seconds: float) -> dict[str, float]:
    """Percent of a core each whole server uses while nobody asks anything (all idle at once)."""
    before = {name: tree_cpu(process.pid) for name, process in processes.items()}
    time.sleep(seconds)
    return {name: 100 * (tree_cpu(process.pid) - before[name]) / seconds for name, process in processes.items()}


def drip(sockets: list[socket.socket], stop: threading.Event) -> None:
    """Slowloris: one more header byte to each socket every 0.5 s, never the end of the head."""
    sent = 0
    while not stop.wait(0.5) and sent < len(SLOW_HEAD):
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(SLOW_HEAD[sent : sent + 1])
        sent += 1


def held_open(port: int, tile: str, idle: int = 100, requests: int = 20, timeout: float = 5.0) -> dict:
    """A client's tile requests, one at a time, while ``idle`` silent connections and one slowloris are open."""
    peers = []
    for _ in range(idle + 1):
        with contextlib.suppress(OSError):
            peers.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    stop = threading.Event()
    dripper = threading.Thread(target=drip, args=(peers[-1:], stop))
    dripper.start()
    time.sleep(1.0)
    answered, latencies = 0, []
    try:
        for _ in range(requests):
            started = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
                    client.sendall(f"GET {tile} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                    reply = b""
                    while chunk := client.recv(65536):
                        reply += chunk
                if reply.startswith(b"HTTP/1.1 200"):
                    answered += 1
                    latencies.append(1000 * (time.monotonic() - started))
            except OSError:
                pass
    finally:
        stop.set()
        dripper.join()
        for sock in peers:
            sock.close()
    return {
        "answered": answered,
        "asked": requests,
        "connected": len(peers),
        "median_ms": statistics.median(latencies) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE / "data", help="bench/images.py's directory")
    parser.add_argument(
        "--others", type=Path, default=Path("/work/venvs/granian/bin"), help="gunicorn's and granian's bin"
    )
    parser.add_argument("--servers", default="pyiip,lighttpd,granian,gunicorn")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--conc", default="1,8,64")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each measure, the servers' order alternating")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle CPU measure")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    pyramids = ensure(args.data)
    rgb = pyramids["rgb_jpeg.tif"]
    lists = {
        "tile": jtl_urls(rgb, rgb.aliases(ALIASES), depth=3)[:2000],
        "info": [f"/iiif/3/{name}/info.json" for p in pyramids.values() for name in p.aliases(ALIASES)],
    }
    tile = lists["tile"][0]
    names = args.servers.split(",")
    concs = list(map(int, args.conc.split(",")))
    runs: dict[tuple[str, str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="http-modes-") as scratch, contextlib.ExitStack() as stack:
        files = {}
        for kind, urls in lists.items():
            files[kind] = Path(scratch) / f"{kind}.txt"
            files[kind].write_text("\n".join(urls) + "\n")
        servers = {name: stack.enter_context(running(name, args.workers, args.others, args.data)) for name in names}
        for process, port in servers.values():
            for kind in lists:
                load(process, port, files[kind], 8, 2.0)  # every worker has the images open, replies cached
        idle = idle_cpu({name: process for name, (process, _) in servers.items()}, args.idle)
        for round_ in range(args.rounds):
            for kind in lists:
                for conc in concs:
                    for name in names if round_ % 2 == 0 else names[::-1]:  # A B ..., then ... B A
                        run = load(*servers[name], files[kind], conc, args.seconds)
                        runs.setdefault((name, kind, conc), []).append(run)
                        print(f"round {round_} {name} {kind} c={conc}: {run}", file=sys.stderr, flush=True)
        results: dict[str, dict] = {}
        for name, (_, port) in servers.items():
            figures: dict = {"idle_cpu_percent": idle[name], "held_open": held_open(port, tile)}
            figures |= {f"{kind}_c{conc}": summed(runs[(name, kind, conc)]) for kind in lists for conc in concs}
            print(f"{name} held open: {figures['held_open']}", file=sys.stderr, flush=True)
            results[name] = figures
    print(table(results, concs))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


def table(results: dict[str, dict], concs: list[int]) -> str:
    head = ["server"] + [f"{kind} c={c} req/s (CPU ms/req)" for kind in ("tile", "info") for c in concs]
    head += ["idle CPU %", "100 idle + slowloris: 2nd client"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, figures in results.items():
        cells = [name]
        for kind in ("tile", "info"):
            for c in concs:
                f = figures[f"{kind}_c{c}"]
                errors = f" {f['errors']} errors" if f["errors"] else ""
                cells.append(f"{f['rps']:.0f} ({f['cpu_ms']:.2f}){errors}")
        cells.append(f"{figures['idle_cpu_percent']:.2f}")
        held = figures["held_open"]
        median = f", median {held['median_ms']:.1f} ms" if held["median_ms"] is not None else ""
        cells.append(f"{held['answered']}/{held['asked']} answered{median}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
