"""bench/: the wrk Lua script (run in-process under LuaJIT with a stub of wrk's API), the URL
lists, the lighttpd settings and the report formatting. No server, no wrk run."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import random
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str, path: Path):
    """bench/run.py under a name of its own (other tools have a run.py too)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


run = _load("pyiip_bench_run", BENCH / "run.py")
images = sys.modules["images"]  # bench/images.py, which run.py imports
Pyramid = run.Pyramid

# --- the Lua script, under wrk's calling sequence: setup(thread) in the main state, then
# init(args) in the thread's own state; request()/response() per request; done() in the main state.


def _runtime():
    try:
        from lupa import luajit21 as flavour  # wrk embeds LuaJIT
    except ImportError:
        from lupa import lua51 as flavour
    return flavour.LuaRuntime(unpack_returned_tuples=True)


class FakeWrk:
    """wrk's Lua API, just enough of it: separate Lua states, thread:get/set."""

    def __init__(self, list_file: Path, nthreads: int) -> None:
        script = run.LUA.read_text()
        self.main = _runtime()
        self.main.execute(script)
        self.main.execute("out = {}; io.write = function(s) table.insert(out, s) end")
        self.threads = []
        for _ in range(nthreads):
            state = _runtime()
            state.execute("wrk = {format = function(method, path) return method .. ' ' .. path end}")
            state.execute(script)
            handle = self.main.table()
            g = state.globals()

            def setter(_self, name, value, g=g):
                g[name] = value

            def getter(_self, name, g=g):
                return g[name]

            handle.set, handle.get = setter, getter
            self.main.globals().setup(handle)
            g.init(state.table(str(list_file), str(nthreads)))
            self.threads.append(state)

    def requests(self, thread: int, count: int) -> list[str]:
        g = self.threads[thread].globals()
        return [g.request() for _ in range(count)]

    def respond(self, thread: int, status: int) -> None:
        state = self.threads[thread]
        state.globals().response(status, state.table(), "")

    def done(self, requests: int = 10, latency_us=(1500, 2500, 9000, 1800.5, 12000)) -> dict:
        make = self.main.eval(
            "function(p50, p90, p99, mean, max) return {mean = mean, max = max, percentile ="
            " function(self, p) if p == 50 then return p50 elseif p == 90 then return p90 else return p99 end end} end"
        )
        summary = self.main.eval(
            f"{{duration = 2500000, requests = {requests}, bytes = 123456,"
            " errors = {connect = 1, read = 2, write = 3, status = 4, timeout = 5}}"
        )
        self.main.globals().done(summary, make(*latency_us), self.main.table())
        return run.parse_wrk("wrk banner\n" + "".join(self.main.globals().out.values()))


@pytest.fixture
def url_list(tmp_path):
    path = tmp_path / "urls.txt"
    path.write_text("# a comment\n/a\n\n/b\n/c  \n")
    return path


def test_threads_cycle_from_their_own_offsets(url_list):
    wrk = FakeWrk(url_list, 2)
    assert wrk.requests(0, 4) == ["GET /a", "GET /b", "GET /c", "GET /a"]
    assert wrk.requests(1, 4) == ["GET /b", "GET /c", "GET /a", "GET /b"]


def test_done_prints_one_json_line_with_errors_by_kind(url_list):
    wrk = FakeWrk(url_list, 2)
    for status in (200, 204, 302, 404, 500, 503):
        wrk.respond(0, status)
    wrk.respond(1, 403)
    result = wrk.done()
    assert result["requests"] == 10 and result["bytes"] == 123456 and result["urls"] == 3
    assert result["duration_s"] == 2.5 and result["threads"] == 2
    assert result["errors"] == {
        "connect": 1, "read": 2, "write": 3, "timeout": 5, "status": 4,
        "non2xx": 5, "1xx": 0, "3xx": 1, "4xx": 2, "5xx": 2,
    }  # fmt: skip
    assert result["latency_ms"] == {"p50": 1.5, "p90": 2.5, "p99": 9.0, "mean": 1.8, "max": 12.0}
    assert run.total_errors(result) == 1 + 2 + 3 + 5 + 5


def test_no_reply_gives_null_latency_not_invalid_json(url_list):
    result = FakeWrk(url_list, 1).done(requests=0, latency_us=(0, 0, 0, math.nan, 0))
    assert result["requests"] == 0 and result["latency_ms"]["mean"] is None


def test_parse_wrk_needs_the_result_line():
    with pytest.raises(ValueError):
        run.parse_wrk("Running 1s test\n")


# --- URL lists

PYRAMID = Pyramid("p.tif", ((1000, 600), (500, 300), (250, 150)))


def test_jtl_urls_cover_every_tile_of_every_level():
    urls = run.jtl_urls(PYRAMID, PYRAMID.aliases(2))
    assert len(urls) == 2 * (4 * 3 + 2 * 2 + 1)
    assert urls[0] == "/fcgi-bin/iipsrv.fcgi?FIF=p.tif&JTL=2,0"
    assert urls[11] == "/fcgi-bin/iipsrv.fcgi?FIF=p.tif&JTL=2,11"
    assert urls[16] == "/fcgi-bin/iipsrv.fcgi?FIF=p.tif&JTL=0,0"
    assert urls[17].startswith("/fcgi-bin/iipsrv.fcgi?FIF=p-1.tif&")
    assert run.jtl_urls(PYRAMID, ["p.tif"], depth=1, commands="QLT=75&")[-1].endswith("FIF=p.tif&QLT=75&JTL=2,11")


def test_iiif_aligned_urls_are_the_cells_a_viewer_asks_for():
    urls = run.iiif_aligned_urls(PYRAMID, ["p.tif"])
    assert len(urls) == 4 * 3 + 2 * 2 + 1
    assert urls[0] == "/fcgi-bin/iipsrv.fcgi?IIIF=p.tif/0,0,256,256/256,/0/default.jpg"
    assert urls[11] == "/fcgi-bin/iipsrv.fcgi?IIIF=p.tif/768,512,232,88/232,/0/default.jpg"
    assert urls[15].endswith("/512,512,488,88/244,/0/default.jpg")
    assert urls[16].endswith("/0,0,1000,600/250,/0/default.jpg")


def test_random_regions_stay_inside_the_image():
    rng = random.Random(1)
    for url in run.iiif_region_urls(Pyramid("p.tif", ((3000, 2000),)), 200, rng):
        x, y, w, h = (int(v) for v in url.split("/")[3].split(","))
        assert (w, h) == (1024, 1024) and 0 <= x <= 3000 - w and 0 <= y <= 2000 - h
    for url in run.cvt_urls("p.tif", 200, rng):
        x, y, w, h = (float(v) for v in url.split("RGN=")[1].split("&")[0].split(","))
        assert 0.25 <= w <= 1 and w == h and x + w <= 1.0001 and y + h <= 1.0001
        assert url.endswith("&WID=1000&CVT=jpeg")


def test_scenarios_name_many_distinct_urls():
    jpeg = Pyramid("rgb_jpeg.tif", tuple((10000 >> k, 10000 >> k) for k in range(7)))
    pyramids = {
        "rgb_jpeg.tif": jpeg,
        "rgb_deflate.tif": Pyramid("rgb_deflate.tif", jpeg.levels),
        "cube.tif": Pyramid("cube.tif", tuple((8000 >> k, 8000 >> k) for k in range(6))),
        **{name: Pyramid(name, images.jpeg2000_levels(10000, 10000)) for name in images.JPEG2000},
    }
    scenarios = {s.name: s for s in run.build_scenarios(pyramids)}
    assert set(scenarios) == {
        "jtl_jpeg", "jtl_deflate", "jtl_reencode", "jtl_repeat", "iiif_region",
        "iiif_aligned", "iiif_info", "cvt", "float", "interactive", "memcached", "jp2_lossless", "jp2_lossy",
        "htj2k_lossy",
    }  # fmt: skip
    assert scenarios["jtl_repeat"].urls == ["/fcgi-bin/iipsrv.fcgi?FIF=rgb_deflate.tif&JTL=6,820"]
    for name, scenario in scenarios.items():
        assert len(set(scenario.urls)) == len(scenario.urls), name
        if name not in ("jtl_repeat", "iiif_info"):
            assert len(scenario.urls) >= 2000, name
    assert scenarios["jtl_jpeg"].urls != sorted(scenarios["jtl_jpeg"].urls)  # shuffled
    assert run.build_scenarios(pyramids)[0].urls == scenarios["jtl_jpeg"].urls  # deterministic
    assert all("QLT=75&JTL=" in u for u in scenarios["jtl_reencode"].urls)
    assert all("MINMAX=1:" in u and "&GAM=0.5&CMP=JET&JTL=" in u for u in scenarios["float"].urls)
    assert scenarios["float"].servers == scenarios["interactive"].servers == ("iipsrv-omp1", "iipsrv", "pyiip")
    names = [s.name for s in run.build_scenarios(pyramids)]
    assert names[names.index("memcached") - 1] == "interactive"
    assert scenarios["memcached"].memcached and scenarios["iiif_info"].kind == "json"
    assert scenarios["jtl_jpeg"].target == scenarios["jtl_repeat"].target == 2.0
    lossy = scenarios["jp2_lossy"].urls
    assert all("IIIF=rgb_lossy.jp2/" in u for u in lossy) and any(",1024,1024/256,/" in u for u in lossy)
    corner = "/fcgi-bin/iipsrv.fcgi?IIIF=rgb_lossy.jhc/9216,9216,784,784/196,/0/default.jpg"  # at scale 4
    assert corner in scenarios["htj2k_lossy"].urls and scenarios["htj2k_lossy"].servers == ("pyiip",)
    assert images.jpeg2000_levels(10000, 7001)[-1] == (157, 110)


def test_interactive_urls_are_a_viewer_dragging_its_sliders():
    from pyiip.parse import iip

    cube = Pyramid("cube.tif", tuple((8000 >> k, 8000 >> k) for k in range(6)))
    urls = run.interactive_urls(cube, 500, random.Random(2))
    queries = [u.split("?", 1)[1] for u in urls]
    displays = [iip.view(q).display(1) for q in queries]
    assert len({d for d in displays}) > 490  # a new setting (nearly) every tile
    for query, display in zip(queries, displays, strict=True):
        names = [part.split("=")[0] for part in query.split("&")]
        assert names == ["FIF", "CNT", "GAM", "MINMAX", "CTW", "JTL"]  # VisiOmatic v2's order
        assert 0.05 <= display.contrast <= 10 and 0.2 <= display.gamma <= 2
        ((channel, low, high),) = display.minmax
        assert channel == 0 and 80 <= low <= 100 < 200 <= high <= 3000
        assert display.twist == ((1.0,), (1.0,), (1.0,))
        res, tile = (int(v) for v in query.rsplit("JTL=", 1)[1].split(","))
        assert res in (3, 4, 5) and 0 <= tile < (1024 if res == 5 else 256 if res == 4 else 64)
    assert run.js_number(95.0) == "95" and run.js_number(1.35) == "1.35" and run.js_number(2500.5) == "2500.5"


# --- server settings


def test_both_servers_get_the_same_settings(tmp_path):
    iipsrv = run.server_env(run.VARIANTS["iipsrv"], tmp_path, tmp_path / "log", None, "127.0.0.1:9")
    omp1 = run.server_env(run.VARIANTS["iipsrv-omp1"], tmp_path, tmp_path / "log", None, "127.0.0.1:9")
    pyiip = run.server_env(run.VARIANTS["pyiip"], tmp_path, tmp_path / "log", None, "127.0.0.1:9")
    for env in (iipsrv, omp1, pyiip):
        assert env["FILESYSTEM_PREFIX"] == f"{tmp_path}/" and env["JPEG_QUALITY"] == "75"
        assert env["MAX_CVT"] == "5000" and env["MAX_IMAGE_CACHE_SIZE"] == "10"
        assert env["CORS"] == "*" and env["VERBOSITY"] == "0"
    assert iipsrv["MEMCACHED_SERVERS"] == "127.0.0.1:9" and "MEMCACHED_SERVERS" not in pyiip
    assert omp1["OMP_NUM_THREADS"] == "1" and "OMP_NUM_THREADS" not in iipsrv
    shared = run.server_env(run.VARIANTS["pyiip"], tmp_path, tmp_path / "log", "127.0.0.1:5", "127.0.0.1:9")
    assert shared["MEMCACHED_SERVERS"] == "127.0.0.1:5"
    config = run.lighttpd_config(tmp_path, 8123, run.DEBIAN_IIPSRV, {"CORS": '*"x'})
    assert '"bin-path" => "/usr/lib/iipimage-server/iipsrv.fcgi"' in config
    assert '"CORS" => "*\\"x"' in config and '"max-procs" => 2' in config and "server.port = 8123" in config
    assert "OMP_NUM_THREADS" not in run.clean_env()


# --- replies and report


def test_guard_checks_of_a_reply():
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buffer, "JPEG", progressive=True)
    body = buffer.getvalue()
    assert run.jpeg_size(body) == (300, 200)
    assert run.check_reply("jpeg", 200, "image/jpeg", body) == (None, (300, 200))
    assert run.check_reply("jpeg", 404, "text/plain", b"no")[0].startswith("status 404")
    assert "not image/jpeg" in run.check_reply("jpeg", 200, "text/html", body)[0]
    assert run.check_reply("jpeg", 200, "image/jpeg", b"GIF89a")[0] == "body is not a JPEG"
    info = json.dumps({"width": 10, "height": 20}).encode()
    assert run.check_reply("json", 200, "application/ld+json", info) == (None, (10, 20))
    assert "not JSON" in run.check_reply("json", 200, "text/plain", info)[0]


def _run(scenario, server, conc, rps, errors=0):
    return {
        "scenario": scenario, "server": server, "conc": conc, "rps": rps, "error_count": errors,
        "requests": int(rps * 20), "server_cpu_ms_per_request": 1.5 if server == "pyiip" else 0.75,
        "latency_ms": {"p50": 1.234, "p99": 56.78},
    }  # fmt: skip


def test_ratios_targets_and_table():
    scenarios = [
        run.Scenario("jtl_jpeg", "JTL distinct", ["/x"], target=2.0),
        run.Scenario("float", "float tiles", ["/y"], servers=("iipsrv-omp1", "iipsrv", "pyiip")),
    ]
    runs = [
        _run("jtl_jpeg", "iipsrv", 8, 1000), _run("jtl_jpeg", "pyiip", 8, 2500),
        _run("jtl_jpeg", "iipsrv", 64, 1000), _run("jtl_jpeg", "pyiip", 64, 900, errors=3),
        _run("float", "iipsrv-omp1", 8, 1000), _run("float", "iipsrv", 8, 100), _run("float", "pyiip", 8, 900),
        _run("float", "iipsrv-omp1", 1, 0), _run("float", "iipsrv", 1, 0), _run("float", "pyiip", 1, 0),
    ]  # fmt: skip
    assert [(r["scenario"], r["reference"], r["conc"], r["ratio"]) for r in run.ratios(runs, scenarios)] == [
        ("jtl_jpeg", "iipsrv", 8, 2.5),
        ("jtl_jpeg", "iipsrv", 64, 0.9),
        ("float", "iipsrv-omp1", 1, None),
        ("float", "iipsrv-omp1", 8, 0.9),
        ("float", "iipsrv", 1, None),
        ("float", "iipsrv", 8, 9.0),
    ]
    assert [(t["scenario"], t["reference"], t["ok"]) for t in run.targets(runs, scenarios)] == [
        ("jtl_jpeg", "iipsrv", True),
        ("float", "iipsrv-omp1", False),
        ("float", "iipsrv", True),
    ]
    table = run.markdown_table(runs, scenarios).splitlines()
    assert len(table) == 2 + 6
    assert table[2] == (
        "| JTL distinct | iipsrv | 8 | 1000 | 2500 | **2.50** | 1.23 / 56.8 | 1.23 / 56.8 | 0 / 0 | 0.75 / 1.50 |"
    )
    assert "| 0 / 3 |" in table[3] and "iipsrv OMP_NUM_THREADS=1 | 1 | 0 | 0 | **n/a** |" in table[4]
    assert table[4].endswith("| n/a / n/a |")  # no request served: no CPU per request
    targets = run.targets_table(run.targets(runs, scenarios), scenarios)
    assert "| JTL distinct | iipsrv | >= 2 | 2.50 | 0 | met |" in targets and "**missed**" in targets


def test_render_a_saved_report():
    scenarios = [run.Scenario("jtl_jpeg", "JTL distinct", [], target=2.0)]
    runs = [_run("jtl_jpeg", "iipsrv", 8, 1000), _run("jtl_jpeg", "pyiip", 8, 2500)]
    for r in runs:
        r.update(cpu_pct={"other": 50.0}, processes_replaced=False)
    report = {
        "quick": False, "seconds": 20, "runs": runs, "loadavg_end": [0.5, 0, 0], "guard_warnings": ["w"],
        "machine": {"nproc": 2, "cpu_model": "CPU", "memory_gb": 4, "os": "Debian", "kernel": "6",
                    "loadavg": [1, 0, 0]},
        "versions": {"pyiip_commit": "abc", "iipimage-server": "1.1"},
        "memory": {"pyiip": {"1": {"first_kb": 2048, "last_kb": 4096, "peak_kb": 4096}}},
        "soak": {"server": "pyiip", "seconds": 600, "conc": 8, "rps": 300, "errors": 0, "first_rss_kb": 1024,
                 "peak_rss_kb": 2048, "last_rss_kb": 2048, "growth_second_half_kb": 0},
        "targets": run.targets(runs, scenarios),
    }  # fmt: skip
    markdown, heading = run.render(report, scenarios)
    assert heading == "pyiip abc vs iipsrv 1.1, 2 x CPU, 20 s runs"
    report["versions"].update(iipsrv="1.3", iipsrv_obj="IIP-server:3.65")  # --iipsrv: the release it answered
    assert run.render(report, scenarios)[1] == "pyiip abc vs iipsrv 1.3, 2 x CPU, 20 s runs"
    assert "other programs used 50% of one core" in markdown and "| pyiip | 1 | 2 | 4 | 4 |" in markdown
    assert "| JTL distinct | iipsrv | >= 2 | 2.50 | 0 | met |" in markdown and "\n- w" in markdown
    assert "Soak: pyiip 600 s at c=8, 300 req/s, 0 errors" in markdown


def test_iipsrv_version_is_its_obj_reply_and_server_header():
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version, sys_version = "iipsrv/1.3", ""
        asked: list[str] = []  # noqa: RUF012

        def do_GET(self):
            self.asked.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"Content-Type: application/vnd.netfpx\r\n\r\nIIP-server:3.65\r\n")  # 1.3's body

        def log_message(self, *args):
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), Handler) as httpd:
        threading.Thread(target=httpd.handle_request, daemon=True).start()
        found = run.iipsrv_version(httpd.server_port)
        Handler.server_version = "lighttpd"  # a release that sends no Server header of its own
        threading.Thread(target=httpd.handle_request, daemon=True).start()
        older = run.iipsrv_version(httpd.server_port)
    assert Handler.asked == [f"{run.ENDPOINT}?OBJ=IIP-server"] * 2
    assert found == {"iipsrv": "1.3", "iipsrv_obj": "IIP-server:3.65"}
    assert older["iipsrv"].startswith("unknown")
    assert run.iipsrv_release({**older, "iipimage-server": "1.1-2"}) == "1.1-2"


# --- A/B of pyiip versions (--pyiip REF, twice or more)


def test_a_commit_runs_from_its_own_archive_with_its_own_entry_point(tmp_path):
    import subprocess
    import tomllib

    variant = run.checkout_variant("HEAD", tmp_path)
    short = run.git("rev-parse", "--short=7", "HEAD")
    src = tmp_path / f"pyiip-{short}" / "src"
    assert variant.name == f"pyiip@{short}" and variant.label == f"pyiip {short} (HEAD)"
    assert variant.is_pyiip and variant.env == {**run.PYIIP_SETTINGS, "PYTHONPATH": str(src)}
    entry = tomllib.loads((run.REPO / "pyproject.toml").read_text())["project"]["scripts"]["pyiip.fcgi"]
    module, function = entry.split(":")
    launcher = variant.binary.read_text()
    assert launcher.startswith(f"#!{sys.executable}\n") and f"from {module} import {function}\n" in launcher
    # Everything but the start of the server: the checkout's pyiip wins over the venv's editable one.
    imports = launcher.split("\nfrom ")[0] + "\n" + f"import {module}; print({module}.__file__)"
    done = subprocess.run([sys.executable, "-c", imports], capture_output=True, text=True, env={}, check=True)
    assert done.stdout.startswith(str(src / "pyiip")), done.stdout


def test_versions_table_combines_rounds_and_names_what_fell_below():
    scenarios = [run.Scenario("jtl_jpeg", "JTL distinct", []), run.Scenario("iiif_info", "info.json", [])]
    runs = [
        {**_run("jtl_jpeg", "pyiip@aaaaaaa", 8, 1000), "label": "pyiip aaaaaaa"},
        {**_run("jtl_jpeg", "pyiip@bbbbbbb", 8, 900), "label": "pyiip bbbbbbb (main)"},
        {**_run("jtl_jpeg", "pyiip@bbbbbbb", 8, 1100), "label": "pyiip bbbbbbb (main)"},
        {**_run("jtl_jpeg", "pyiip@aaaaaaa", 8, 1000), "label": "pyiip aaaaaaa"},
        {**_run("iiif_info", "pyiip@aaaaaaa", 8, 1000), "label": "pyiip aaaaaaa"},
        {**_run("iiif_info", "pyiip@bbbbbbb", 8, 960, errors=1), "label": "pyiip bbbbbbb (main)"},
    ]
    merged = run.by_key(runs)[("jtl_jpeg", "pyiip@bbbbbbb", 8)]
    assert merged["requests"] == 18000 + 22000 and merged["rounds"] == 2
    assert merged["rps"] == pytest.approx(40000 / (20 + 20)) and merged["server_cpu_ms_per_request"] == 0.75
    table = run.versions_table(runs, scenarios, ["pyiip@aaaaaaa", "pyiip@bbbbbbb"]).splitlines()
    assert table[0] == "A = pyiip aaaaaaa  B = pyiip bbbbbbb (main)"
    assert table[2].startswith("| scenario | c | A req/s | B req/s | B/A | A p50 / p99 ms | B p50 / p99 ms |")
    assert table[2].endswith("| server CPU ms/req A / B | B/A by round |")
    assert table[4] == (
        "| JTL distinct | 8 | 1000 | 1000 | **1.00** | 1.23 / 56.8 | 1.23 / 56.8 | 0 / 0 | 0.75 / 0.75 | 0.90 1.10 |"
    )
    assert table[5].startswith("| info.json | 8 | 1000 | 960 | **0.96** |") and "| 0 / 1 |" in table[5]
    assert table[-1] == "Below 0.97 at c=8: info.json (B/A 0.96)."


# --- bench/overhead.py: the per-layer split of a request, in-process


def test_overhead_layers_add_up_and_leave_the_application_as_it_was(settings):
    from pyiip.respond import routes
    from pyiip.respond.app import Application

    route = routes.route

    overhead = _load("pyiip_bench_overhead", BENCH / "overhead.py")
    app = Application(settings)
    tiles = [f"/fcgi-bin/iipsrv.fcgi?FIF=rgb_deflate.tif&JTL=3,{n}" for n in range(20)]  # all distinct
    for uri in tiles:
        status, _headers, body = app.handle(overhead.lighttpd_params(uri))
        assert status == "200 OK" and body
    layers = overhead.measure(app, tiles)
    assert set(layers) == {"whole", "fastcgi", "http", "respond"}
    assert all(layers[name] > 0 for name in ("fastcgi", "http", "respond")), layers
    assert routes.route is route  # the timing wrapper is gone: handle() looks routes up as before
    kept = overhead.measure(app, ["/fcgi-bin/iipsrv.fcgi?IIIF=rgb.tif/info.json"] * 9)  # a kept reply from the 3rd on
    assert kept["respond"] == 0 and kept["fastcgi"] > 0 and kept["http"] > 0, kept


# --- bench/spy.py: py-spy's raw stacks summed by the file and the function running


def test_spy_sums_samples_by_what_was_running(tmp_path):
    spy = _load("pyiip_bench_spy", BENCH / "spy.py")
    raw = tmp_path / "1234.txt"
    raw.write_text(
        "serve (/srv/src/pyiip/fcgi.py:40);_respond (/srv/src/pyiip/fastcgi.py:300);"
        "decode_other (/usr/lib/python3/site-packages/tifffile/tifffile.py:9017) 30\n"
        "serve (/srv/src/pyiip/fcgi.py:40);encode (/srv/src/pyiip/encode.py:52) 10\n"
        "serve (/srv/src/pyiip/fcgi.py:40);_pairs (/srv/src/pyiip/fastcgi.py:60) 10\n"
    )
    other = tmp_path / "1235.txt"
    other.write_text("serve (/srv/src/pyiip/fcgi.py:40);_pairs (/srv/src/pyiip/fastcgi.py:61) 50\n")
    total, files, functions = spy.summarise([raw, other])
    assert total == 100
    assert files == {"tifffile.py": 30, "pyiip/encode.py": 10, "pyiip/fastcgi.py": 60}
    assert functions.most_common(1) == [("_pairs (pyiip/fastcgi.py)", 60)]
    assert functions["decode_other (tifffile.py)"] == 30


# --- bench/visiomatic_peer.py: the URLs each server gets, and the accounting


peer = _load("pyiip_bench_peer", BENCH / "visiomatic_peer.py")


def test_peer_asks_both_servers_for_the_same_tiles_and_settings():
    setting = run.Setting(contrast=2.5, gamma=2.2, low=95.0, high=1234.5)
    cells = [(5, 17), (4, 3)]
    pyiip = peer.urls_for("pyiip", cells, [setting, None])
    v3 = peer.urls_for("visiomatic", cells, [setting, None], shift=1)
    assert pyiip == [
        "/fcgi-bin/iipsrv.fcgi?FIF=cube.tif&CNT=2.5&GAM=0.4545&MINMAX=1:95,1234.5&CTW=1;1;1&JTL=5,17",
        "/fcgi-bin/iipsrv.fcgi?FIF=cube.tif&GAM=0.4545&CTW=1;1;1&JTL=4,3",  # the viewer's default, gamma 2.2
    ]
    # v3's client: CNT, GAM as the display gamma, CHAN (mono mode), MINMAX; its default sends only CHAN.
    assert v3 == [
        "/api?FIF=cube_r.fits&CNT=2.5&GAM=2.2000&CHAN=1&MINMAX=1:95,1234.5&JTL=6,17",
        "/api?FIF=cube_r.fits&CHAN=1&JTL=5,3",
    ]


def test_peer_accounting():
    a = {"tiles": 100, "cpu_ms_per_tile": 2.0, "p50_ms": 3.0, "p99_ms": 9.0, "mean_ms": 3.5, "tiles_per_s": 50.0}
    b = {"tiles": 300, "cpu_ms_per_tile": 1.0, "p50_ms": 4.0, "p99_ms": 8.0, "mean_ms": 4.5, "tiles_per_s": 100.0}
    both = peer.combine(a, b)
    assert both["tiles"] == 400 and both["cpu_ms_per_tile"] == 1.25 and both["p50_ms"] == 4.0
    assert both["tiles_per_s"] == 400 / (2 + 3)
    me = run.descendants(os.getpid())
    assert me[0] == os.getpid() and run.tree_cpu(os.getpid()) > 0


def test_pyiip_runs_the_tree_pythonpath_names(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "src:/x")
    assert run.pyiip_path() == {"PYTHONPATH": f"{tmp_path}/src:/x"}
    monkeypatch.delenv("PYTHONPATH")
    assert run.pyiip_path() == {}
