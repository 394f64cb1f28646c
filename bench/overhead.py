"""Where a request's time goes inside one pyiip process, over a benchmark scenario's URL list.

wrk figures say how fast; this says where. Each URL goes, as lighttpd would
send it, through the real FastCGI responder over a socket pair; the time
inside ``Application.handle`` (request object, reply headers, counters) and
inside the route's handler (protocol, caches, rendering) is taken apart
from the FastCGI layer's (records, name-value pairs, sockets). Medians over the list; the first pass
over it opens the images (and fills memcached); the measured pass starts
with an empty per-process LRU, so distinct tiles are rendered (or fetched
from memcached), as under wrk. The layers are timed inside that one pass
(``handle`` and the handlers wrapped), so they add up.

    .venv/bin/python bench/overhead.py iiif_info jtl_deflate memcached
    .venv/bin/python bench/overhead.py jtl_deflate --profile     # cProfile of the whole path

``memcached`` starts a private memcached on a free port, fills it, and measures hits.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import images  # noqa: E402
from run import PYIIP_SETTINGS, SHARED_SETTINGS, build_scenarios, free_port, stop_process  # noqa: E402

from pyiip import config  # noqa: E402
from pyiip.http import Request  # noqa: E402
from pyiip.respond import routes  # noqa: E402
from pyiip.respond.app import Application  # noqa: E402
from pyiip.server.fastcgi import STDIN, Responder, encode_record  # noqa: E402
from pyiip.server.fcgi_client import environ_for, opening  # noqa: E402


def lighttpd_params(uri: str) -> dict[str, str]:
    """The CGI variables lighttpd 1.4 sends for a request to the FastCGI endpoint."""
    path = uri.partition("?")[0]
    return environ_for(
        uri,
        host="127.0.0.1:8080",
        SERVER_SOFTWARE="lighttpd/1.4.69",
        SERVER_ADDR="127.0.0.1",
        REMOTE_PORT="40000",
        REDIRECT_STATUS="200",
        SCRIPT_FILENAME="/srv/www" + path,
        DOCUMENT_ROOT="/srv/www",
        REQUEST_SCHEME="http",
        CONTENT_LENGTH="0",
    )


def fastcgi_request(params: dict[str, str]) -> bytes:
    return opening(params) + encode_record(STDIN, 1)


def measure(app: Application, urls: list[str]) -> dict[str, float]:
    """Median µs per request: the whole FastCGI path, and inside it handle() and respond(), timed in one pass.

    A kept reply (replies.py) is answered without its handler: it counts 0 there.
    """
    inner: dict[str, list[int]] = {"handle": [], "respond": []}

    def timed(name: str, call: Callable) -> Callable:
        def run(*args: object) -> object:
            started = time.perf_counter_ns()
            try:
                return call(*args)
            finally:
                inner[name].append(time.perf_counter_ns() - started)

        return run

    route = routes.route

    def timed_route(request: Request) -> tuple[Callable, str]:
        """handle() looks the route up here: the handler it calls, timed, is the protocol layer."""
        handler, kind = route(request)
        return timed("respond", handler), kind

    routes.route = timed_route
    responder = Responder(timed("handle", app.handle), socket.socket())
    app.service.cache.lru.clear()
    whole = []
    try:
        for uri in urls:
            message = fastcgi_request(lighttpd_params(uri))
            server, client = socket.socketpair()
            client.sendall(message)
            answered = len(inner["respond"])
            started = time.perf_counter_ns()
            responder.serve_connection(server)
            whole.append(time.perf_counter_ns() - started)
            if len(inner["respond"]) == answered:
                inner["respond"].append(0)
            while client.recv(65536):
                pass
            client.close()
    finally:
        routes.route = route
    w, h, r = (statistics.median(v) / 1000 for v in (whole, inner["handle"], inner["respond"]))
    return {"whole": w, "fastcgi": w - h, "http": h - r, "respond": r}


def start_memcached() -> tuple[subprocess.Popen, str]:
    port = free_port()
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    process = subprocess.Popen([binary, "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-m", "512", "-u", "nobody"])
    time.sleep(0.3)
    return process, f"127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+")
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--requests", type=int, default=3000, help="URLs taken from each list")
    parser.add_argument("--profile", action="store_true", help="print the cProfile of the measured pass")
    args = parser.parse_args()
    data = args.data.resolve()
    scenarios = {s.name: s for s in build_scenarios(images.ensure(data))}
    print("| scenario | whole µs | FastCGI µs | HTTP µs | protocol + caches + rendering µs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in args.scenarios:
        scenario = scenarios[name]
        urls = (scenario.urls * (args.requests // len(scenario.urls) + 1))[: args.requests]
        env = {"FILESYSTEM_PREFIX": f"{data}/", **SHARED_SETTINGS, **PYIIP_SETTINGS}
        memcached = None
        if scenario.memcached:
            memcached, env["MEMCACHED_SERVERS"] = start_memcached()
        try:
            app = Application(config.load(env))
            for uri in urls:  # open the images (and fill memcached: each pass starts with an empty LRU)
                app.handle(lighttpd_params(uri))
            profile = cProfile.Profile() if args.profile else None
            if profile is not None:
                profile.enable()
            result = measure(app, urls)
            if profile is not None:
                profile.disable()
        finally:
            if memcached is not None:
                stop_process(memcached)
        print(
            f"| {name} | {result['whole']:.0f} | {result['fastcgi']:.0f} | {result['http']:.0f} "
            f"| {result['respond']:.0f} |",
            flush=True,
        )
        if profile is not None:
            pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
