"""Operations in-process: /health, /metrics (Prometheus text), request kinds, the request log line."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import timeit

import pytest

from pyiip import config, log
from pyiip.http import Request
from pyiip.respond import metrics, routes
from pyiip.respond.app import Application

# A sample line of the Prometheus text format 0.0.4: name{labels} value.
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$')


def call(app: Application, uri: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Through the WSGI entry point, as a front end calls it (so requests are counted)."""
    query = uri.partition("?")[2]
    found: dict = {}

    def start_response(status: str, headers: list) -> None:
        found["status"], found["headers"] = int(status[:3]), dict(headers)

    body = b"".join(app({"REQUEST_URI": uri, "QUERY_STRING": query, "REQUEST_METHOD": method}, start_response))
    return found["status"], found["headers"], body


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Check every line against the text format and return {(name, labels): value}."""
    samples = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("counter", "gauge", "histogram"), line
            typed.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        name, labels, value = match.group(1), match.group(2) or "", match.group(3)
        assert re.sub(r"_(bucket|sum|count)$", "", name) in typed or name in typed, name
        pairs = frozenset(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', labels))
        samples[(name, pairs)] = float(value)
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    found = [v for (n, pairs), v in samples.items() if n == name and wanted <= set(pairs)]
    assert len(found) == 1, (name, labels, found)
    return found[0]


@pytest.mark.parametrize(
    ("path", "query", "kind"),
    [
        ("/fcgi-bin/iipsrv.fcgi", "FIF=a.tif&JTL=1,2", "iip_tile"),
        ("/fcgi-bin/iipsrv.fcgi", "fif=a.tif&ptl=1,2", "iip_tile"),
        ("/fcgi-bin/iipsrv.fcgi", "FIF=a.tif&TIL=1,0-3", "iip_tile"),
        ("/fcgi-bin/iipsrv.fcgi", "FIF=a.tif&WID=300&CVT=jpeg", "iip_cvt"),
        ("/fcgi-bin/iipsrv.fcgi", "FIF=a.tif&PFL=0:1,1-5,5", "iip_profile"),
        ("/fcgi-bin/iipsrv.fcgi", "FIF=a.tif&obj=IIP,1.0&obj=max-size", "iip_metadata"),
        ("/fcgi-bin/iipsrv.fcgi", "FIF=a.tif", "iip_other"),
        ("/fcgi-bin/iipsrv.fcgi", "IIIF=a.tif/info.json", "iiif_info"),
        ("/fcgi-bin/iipsrv.fcgi", "IIIF=a.tif/full/max/0/default.jpg", "iiif_image"),
        ("/fcgi-bin/iipsrv.fcgi", "HEALTH", "health"),
        # Counted as what answers it: IIIF= hands a query over only as its first key.
        ("/fcgi-bin/iipsrv.fcgi", "FIF=a.tif&IIIF=a.tif/info.json&JTL=1,2", "iip_tile"),
        ("/static/viewer.js", "", "other"),
        ("/viewer.html", "image=a.tif", "other"),
        ("/", "page=2", "index"),
        ("/iiif/3/a%2Fb.tif/info.json", "", "iiif_info"),
        ("/iiif/2/a.tif/0,0,10,10/full/0/default.jpg", "", "iiif_image"),
        ("/deepzoom/a.tif.dzi", "", "deepzoom"),
        ("/zoomify/a.tif/TileGroup0/0-0-0.jpg", "", "zoomify"),
        ("/fcgi-bin/iipsrv.fcgi", "DeepZoom=a.tif_files/8/0_0.jpg", "deepzoom"),
        ("/fcgi-bin/iipsrv.fcgi", "Zoomify=a.tif/ImageProperties.xml", "zoomify"),
        ("/health", "", "health"),
        ("/metrics", "", "metrics"),
        ("/", "", "index"),
        ("/favicon.ico", "", "other"),
    ],
)
def test_request_kinds(path, query, kind):
    """The route table names each request's kind for the metrics."""
    assert routes.route(Request("GET", path, query))[1] == kind


def test_health_ok_and_no_server_path(images, make_app):
    app = make_app(images.root)
    status, headers, body = call(app, "/health")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-cache"
    reply = json.loads(body)
    assert reply["status"] == "ok" and reply["pid"] == os.getpid()
    assert reply["checks"] == {"image_root": {"ok": True}, "memcached": "not configured"}
    assert str(images.root) not in body.decode()
    # iipsrv deployments map only the IIP endpoint: the same check as a query, in any case
    assert call(app, "/fcgi-bin/iipsrv.fcgi?HEALTH")[2].startswith(b"{")
    assert json.loads(call(app, "/fcgi-bin/iipsrv.fcgi?health")[2])["status"] == "ok"
    assert call(app, "/health", "HEAD")[2] == b""


def test_health_fails_without_the_image_root(tmp_path, make_app):
    root = tmp_path / "gone"
    root.mkdir()
    app = make_app(root)
    root.rmdir()
    status, _, body = call(app, "/health")
    assert status == 503
    reply = json.loads(body)
    assert reply["status"] == "fail" and reply["checks"]["image_root"]["error"] == "image root does not exist"
    assert str(root) not in body.decode()


def test_health_fails_on_an_unreadable_image_root(tmp_path, make_app):
    if os.geteuid() == 0:
        pytest.skip("root reads any directory")  # pragma: no cover - CI runs as root or not
    root = tmp_path / "closed"
    root.mkdir(mode=0)
    try:
        status, _, body = call(make_app(root), "/health")
        assert status == 503 and json.loads(body)["checks"]["image_root"]["error"] == "image root is not readable"
    finally:
        root.chmod(0o755)


def tiles(app: Application, count: int) -> None:
    """Distinct tile requests: each one a memcached get (and set) when the LRU is off."""
    for number in range(count):
        call(app, f"/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&WID={100 + number}&CVT=jpeg")


def test_health_memcached_that_is_not_memcached(images, make_app):
    """Something on the port that never answers is a failing memcached once a request found it so."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        app = make_app(images.root, MEMCACHED_SERVERS=f"127.0.0.1:{port}", MAX_IMAGE_CACHE_SIZE="0")
        tiles(app, 1)
        status, _, body = call(app, "/health")
    reply = json.loads(body)
    assert status == 200 and reply["status"] == "degraded"
    assert reply["checks"]["memcached"][0]["ok"] is False


def test_metrics_count_requests_by_kind_and_status(images, make_app):
    metrics.METRICS = metrics.Metrics()  # this test's counts only
    app = make_app(images.root)
    for uri in (
        "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=0,0",
        "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=1,0",
        "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=1,0",  # asked again: its reply is kept
        "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=1,0",  # a kept reply
        "/fcgi-bin/iipsrv.fcgi?FIF=missing.tif&JTL=0,0",
        "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&WID=100&CVT=jpeg",
        "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&obj=IIP,1.0&obj=max-size",
    ):
        call(app, uri)
    status, headers, body = call(app, "/metrics")
    assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    samples = parse_metrics(body.decode())
    assert not any(("pid", str(os.getpid())) in labels for _name, labels in samples)  # one server, not a process
    assert value(samples, "pyiip_requests_total", kind="iip_tile", code="200") == 4
    assert value(samples, "pyiip_requests_total", kind="iip_tile", code="404") == 1
    assert value(samples, "pyiip_requests_total", kind="iip_cvt", code="200") == 1
    assert value(samples, "pyiip_requests_total", kind="iip_metadata", code="200") == 1
    assert value(samples, "pyiip_request_duration_seconds_count", kind="iip_tile") == 5
    assert value(samples, "pyiip_request_duration_seconds_bucket", kind="iip_tile", le="+Inf") == 5
    buckets = [v for (n, p), v in samples.items() if n.endswith("_bucket") and ("kind", "iip_tile") in p]
    assert buckets == sorted(buckets)  # cumulative
    assert value(samples, "pyiip_request_duration_seconds_sum", kind="iip_tile") > 0
    assert value(samples, "pyiip_response_bytes_total", kind="iip_tile") > 0
    # The caches' own counters: the third of the same tile is a kept reply (the other six GETs, and
    # this scrape, missed there); below it, the CVT missed the rendered images.
    hits = value(samples, "pyiip_cache_hits_total", cache="reply")
    misses = value(samples, "pyiip_cache_misses_total", cache="reply")
    assert hits == 1 and misses == 7
    assert not any(name.endswith("_ratio") for name, _labels in samples)  # a ratio is a query of the counters
    assert value(samples, "pyiip_cache_misses_total", cache="lru") >= 1
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "process_resident_memory_bytes") > 1e6
    assert value(samples, "pyiip_build_info") == 1 and value(samples, "pyiip_workers") == 1
    # The scrape itself is counted, for the next scrape.
    samples = parse_metrics(call(app, "/metrics")[2].decode())
    assert value(samples, "pyiip_requests_total", kind="metrics", code="200") == 1


def test_metrics_and_health_with_images_in_object_storage(images, make_app):
    """The remote store's counters (object storage requests, disk block cache) join the cache families."""

    class Store:
        def stats(self) -> dict[str, int]:
            return {"remote_requests": 7, "remote_bytes": 4096, "block_cache_hits": 3, "block_cache_misses": 1}

    app = make_app(images.root)
    app.service.resolver.remote = Store()
    samples = parse_metrics(call(app, "/metrics")[2].decode())
    assert value(samples, "pyiip_remote_requests_total") == 7
    assert value(samples, "pyiip_remote_bytes_total") == 4096
    assert value(samples, "pyiip_cache_hits_total", cache="disk") == 3
    assert value(samples, "pyiip_cache_misses_total", cache="disk") == 1
    reply = json.loads(call(app, "/health")[2])
    assert reply["status"] == "ok" and reply["checks"]["image_root"]["source"] == "object storage, not probed"


def test_metrics_are_cheap():
    """The per-request accounting is a dict lookup and four in-place increments: well under 20 µs."""
    counted = metrics.Metrics()
    request = Request("GET", "/fcgi-bin/iipsrv.fcgi", "FIF=big/cube.tif&MINMAX=1:0,100&CMP=jet&JTL=5,1234")
    runs = timeit.repeat(lambda: counted.record(routes.route(request)[1], 200, 0.003, 20000), number=2000, repeat=5)
    assert min(runs) / 2000 < 20e-6  # the best of 5: other processes on the machine do not count
    assert counted.requests() == 10000


def test_request_log_line_at_verbosity_2(images, tmp_path):
    logfile = tmp_path / "iipsrv.log"
    settings = config.load({"FILESYSTEM_PREFIX": f"{images.root}/", "VERBOSITY": "2", "LOGFILE": str(logfile)})
    log.setup(settings)
    try:
        app = Application(settings)
        call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=0,0")
        call(app, '/iiif/3/with%20space "quoted".tif/info.json')
    finally:
        log.setup(config.load({"VERBOSITY": "0"}))
    lines = logfile.read_text().splitlines()
    line = next(x for x in lines if "kind=iip_tile" in x)
    pattern = (
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} pyiip\[(\d+)\] INFO request kind=iip_tile status=200 "
        r'bytes=(\d+) ms=(\d+\.\d\d) method=GET uri="/fcgi-bin/iipsrv.fcgi\?FIF=rgb.tif&JTL=0,0" id=[0-9a-f]{16}-\w+$'
    )
    match = re.match(pattern, line)
    assert match, line
    assert int(match.group(1)) == os.getpid() and int(match.group(2)) > 0
    odd = next(x for x in lines if "info.json" in x)  # quotes escaped: one record, still parseable
    assert r'uri="/iiif/3/with%20space%20\"quoted\".tif/info.json" id=' in odd  # raw space encoded


@pytest.mark.parametrize(("verbosity", "expected"), [("0", 0), ("1", 0), ("2", 1)])
def test_request_lines_only_from_verbosity_2(images, tmp_path, verbosity, expected):
    logfile = tmp_path / "iipsrv.log"
    settings = config.load({"FILESYSTEM_PREFIX": f"{images.root}/", "VERBOSITY": verbosity, "LOGFILE": str(logfile)})
    log.setup(settings)
    try:
        call(Application(settings), "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=0,0")
        logging.getLogger("pyiip").error("an error line")
    finally:
        log.setup(config.load({"VERBOSITY": "0"}))
    text = logfile.read_text() if logfile.exists() else ""
    assert text.count(" request kind=") == expected
    assert ("an error line" in text) == (verbosity != "0")
