"""Side-by-side benchmark of pyiip and iipsrv, each under lighttpd with 2 FastCGI processes.

``make bench`` runs this (``make bench QUICK=1`` for a 3 s smoke run). Both servers get the same
settings, the same URL lists and the same wrk driver (bench/urls.lua), and their runs alternate
within one invocation, so machine drift affects both. Prints a Markdown table and writes
bench/results/latest.json and the plot (docs/bench.png; bench/results/bench.png when quick).
See docs/performance.md, for the scenarios and how to read the ratios.

The iipsrv is Debian's (iipimage-server, 1.1) unless ``--iipsrv PATH`` or ``IIPSRV=PATH`` names
another FastCGI binary, e.g. iipsrv 1.3 built from the upstream source (``IIPSRV=/path/iipsrv.fcgi
make bench``); the report records the version it answers (``OBJ=IIP-server``, Server header).

A/B of pyiip versions, for a change that must not cost speed (no iipsrv, same images, settings and
lighttpd; each commit extracted with ``git archive`` and run with this venv)::

    .venv/bin/python bench/run.py --pyiip d53d1a8 --pyiip main --conc 8 --seconds 10 --rounds 2

The table gives each version's req/s and CPU ms per request, and its ratio to the first's (B/A).
``--rounds N`` alternates the versions' timed runs (A B, B A, ...) and sums them, so the drift of a
shared machine hits both.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from images import ALIASES, Pyramid  # noqa: E402

DEBIAN_IIPSRV = Path("/usr/lib/iipimage-server/iipsrv.fcgi")
IIPSRV = Path(os.environ.get("IIPSRV") or DEBIAN_IIPSRV)
PYIIP = Path(sys.executable).parent / "pyiip.fcgi"
LUA = HERE / "urls.lua"
ENDPOINT = "/fcgi-bin/iipsrv.fcgi"
PROCS = 2

# The settings both servers get (iipsrv's names; pyiip reads the same variables).
SHARED_SETTINGS = {
    "JPEG_QUALITY": "75",
    "MAX_CVT": "5000",
    "MAX_IMAGE_CACHE_SIZE": "10",
    "CORS": "*",
    "VERBOSITY": "0",
}
# iipsrv 1.1 speaks IIIF 2 only on ?IIIF=; pyiip answers the same version there.
PYIIP_SETTINGS = {"IIIF_VERSION": "2"}


# --------------------------------------------------------------------------------------------
# Scenarios and their URL lists


@dataclass(slots=True)
class Scenario:
    """One workload: a URL list, what its replies must be, and which servers run it."""

    name: str
    title: str
    urls: list[str]
    kind: str = "jpeg"  # "jpeg" or "json": the guard's check of the replies
    servers: tuple[str, ...] = ("iipsrv", "pyiip")
    memcached: bool = False
    target: float = 1.0  # pyiip/iipsrv at c=8, against every iipsrv variant in ``servers``


def iip(fif: str, commands: str) -> str:
    """An IIP request path, as VisiOmatic and iipsrv's clients write it."""
    return f"{ENDPOINT}?FIF={fif}&{commands}"


def iiif(identifier: str, rest: str) -> str:
    """A IIIF request in iipsrv's query form, which both servers answer."""
    return f"{ENDPOINT}?IIIF={identifier}/{rest}"


def tiles_across(size: int, tile: int) -> int:
    return -(-size // tile)


def tile_cells(pyramid: Pyramid, depth: int) -> list[tuple[int, int]]:
    """(IIP resolution, tile index) of every tile of the ``depth`` largest levels."""
    count = len(pyramid.levels)
    return [
        (count - 1 - k, tile)
        for k, (w, h) in enumerate(pyramid.levels[:depth])
        for tile in range(tiles_across(w, pyramid.tile) * tiles_across(h, pyramid.tile))
    ]


def jtl_urls(pyramid: Pyramid, names: Sequence[str], depth: int | None = None, commands: str = "") -> list[str]:
    """Every tile of the ``depth`` largest levels (all by default), for each name; IIP res 0 is the smallest."""
    cells = tile_cells(pyramid, depth or len(pyramid.levels))
    return [iip(name, f"{commands}JTL={res},{tile}") for name in names for res, tile in cells]


def iiif_region_urls(
    pyramid: Pyramid, count: int, rng: random.Random, region: int = 1024, size: int = 256
) -> list[str]:
    """Random unaligned square regions, scaled down: what a IIIF client asking for thumbnails of details sends."""
    w, h = pyramid.size
    urls: dict[str, None] = {}
    while len(urls) < count:
        x, y = rng.randrange(w - region + 1), rng.randrange(h - region + 1)
        urls[iiif(pyramid.name, f"{x},{y},{region},{region}/{size},/0/default.jpg")] = None
    return list(urls)


def iiif_aligned_urls(pyramid: Pyramid, names: Sequence[str], scales: Sequence[int] = (1, 2, 4)) -> list[str]:
    """The tile requests a IIIF viewer computes from info.json: a cell of the grid at scale s, ceil(w/s) wide."""
    width, height = pyramid.size
    urls = []
    for name in names:
        for s in scales:
            cell = pyramid.tile * s
            for y in range(0, height, cell):
                for x in range(0, width, cell):
                    w, h = min(cell, width - x), min(cell, height - y)
                    urls.append(iiif(name, f"{x},{y},{w},{h}/{-(-w // s)},/0/default.jpg"))
    return urls


def cvt_urls(name: str, count: int, rng: random.Random, width: int = 1000) -> list[str]:
    """CVT of random square regions (a quarter to all of the image's side) at WID=1000."""
    urls = []
    for _ in range(count):
        side = rng.uniform(0.25, 1.0)
        x, y = (math.floor(rng.uniform(0, 1 - side) * 1e4) / 1e4 for _ in range(2))
        urls.append(iip(name, f"RGN={x:.4f},{y:.4f},{side:.4f},{side:.4f}&WID={width}&CVT=jpeg"))
    return urls


@dataclass(frozen=True, slots=True)
class Setting:
    """Where a viewer's display sliders stand: contrast, display gamma (the slider's value) and the range."""

    contrast: float
    gamma: float
    low: float
    high: float


def js_number(value: float) -> str:
    """A number as JavaScript's toString prints it (shortest round trip, no trailing ".0")."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def random_setting(rng: random.Random) -> Setting:
    """A slider position, on the steps of the viewer's sliders (contrast 0-10 and gamma 0.5-5 by 0.05) and a
    range around the cube's sky (95) and its bright objects."""
    return Setting(
        rng.randint(1, 200) / 20, rng.randint(10, 100) / 20, rng.randint(1600, 2000) / 20, rng.randint(4000, 60000) / 20
    )


def iip_display(setting: Setting) -> str:
    """The display part of a tile URL in VisiOmatic v2's order, as pyiip's viewer sends it (static/viewer.js):
    CNT, GAM as 1/gamma to 4 decimals, the 1-based MINMAX, then CTW, which is always sent."""
    return (
        f"CNT={js_number(setting.contrast)}&GAM={1 / setting.gamma:.4f}"
        f"&MINMAX=1:{js_number(setting.low)},{js_number(setting.high)}&CTW=1;1;1&"
    )


def interactive_urls(pyramid: Pyramid, count: int, rng: random.Random, depth: int = 3) -> list[str]:
    """Random tiles of the ``depth`` largest levels, each with a new slider position: a user dragging the
    contrast, gamma and range sliders, where every tile of every step has a setting the server has not seen."""
    cells = tile_cells(pyramid, depth)
    urls = []
    for _ in range(count):
        res, tile = rng.choice(cells)
        urls.append(iip(pyramid.name, f"{iip_display(random_setting(rng))}JTL={res},{tile}"))
    return urls


def jpeg2000_urls(pyramid: Pyramid, rng: random.Random, regions: int = 2000) -> list[str]:
    """Random 1024 px regions to 256 px and the tile-aligned requests of scales 1, 2 and 4 of one JPEG 2000 file."""
    return iiif_region_urls(pyramid, regions, rng) + iiif_aligned_urls(pyramid, [pyramid.name])


def shuffled(urls: list[str], rng: random.Random) -> list[str]:
    urls = list(urls)
    rng.shuffle(urls)
    return urls


def build_scenarios(pyramids: dict[str, Pyramid], seed: int = 20261123) -> list[Scenario]:
    """The benchmark's scenarios. Lists are shuffled (fixed seed) and, unless the scenario is about
    repetition, far larger than what either server's caches hold (10 MB per process), so a
    "distinct" URL is rendered, not served from memory: more names of the same file (hard links)
    multiply the tiles where an image has too few."""
    rng = random.Random(seed)
    jpeg, deflate, cube = pyramids["rgb_jpeg.tif"], pyramids["rgb_deflate.tif"], pyramids["cube.tif"]
    jp2_lossless, jp2_lossy = pyramids["rgb_lossless.jp2"], pyramids["rgb_lossy.jp2"]
    htj2k_lossy = pyramids["rgb_lossy.jhc"]
    full = len(deflate.levels) - 1
    w, h = deflate.levels[0]
    middle = (tiles_across(h, deflate.tile) // 2) * tiles_across(w, deflate.tile) + tiles_across(w, deflate.tile) // 2
    float_urls = [
        url
        for minmax in ("1:95,400", "1:90,2000")
        for url in jtl_urls(cube, cube.aliases(2), depth=2, commands=f"MINMAX={minmax}&GAM=0.5&CMP=JET&")
    ]
    info = [iiif(name, "info.json") for p in (jpeg, deflate, cube) for name in p.aliases(ALIASES)]
    scenarios = [
        Scenario("jtl_jpeg", "JTL distinct tiles, JPEG pyramid", jtl_urls(jpeg, jpeg.aliases(4)), target=2.0),
        Scenario("jtl_deflate", "JTL distinct tiles, deflate pyramid", jtl_urls(deflate, deflate.aliases(ALIASES))),
        Scenario(
            "jtl_reencode",
            "JTL re-encoded (QLT=75 of a Q90 JPEG pyramid)",
            jtl_urls(jpeg, jpeg.aliases(ALIASES), commands="QLT=75&"),
        ),
        Scenario(
            "jtl_repeat", "JTL, one tile repeated (deflate)", [iip(deflate.name, f"JTL={full},{middle}")], target=2.0
        ),
        Scenario("iiif_region", "IIIF random 1024 px regions to 256 px", iiif_region_urls(jpeg, 20000, rng)),
        Scenario("iiif_aligned", "IIIF tile-aligned requests", iiif_aligned_urls(jpeg, jpeg.aliases(4))),
        Scenario("iiif_info", "IIIF info.json", info, kind="json"),
        Scenario("cvt", "CVT WID=1000 of random regions", cvt_urls(jpeg.name, 2000, rng)),
        Scenario(
            "float",
            "float32 cube tiles, MINMAX+GAM+CMP",
            float_urls,
            servers=("iipsrv-omp1", "iipsrv", "pyiip"),
        ),
        Scenario(
            "memcached",
            "memcached hits (JTL deflate, cache filled first)",
            jtl_urls(deflate, deflate.aliases(ALIASES), commands="QLT=75&"),
            memcached=True,
        ),
        Scenario("jp2_lossless", "JPEG 2000 lossless: IIIF regions and tiles", jpeg2000_urls(jp2_lossless, rng)),
        Scenario("jp2_lossy", "JPEG 2000 lossy: IIIF regions and tiles", jpeg2000_urls(jp2_lossy, rng)),
        Scenario(
            "htj2k_lossy",
            "HTJ2K lossy: IIIF regions and tiles",
            jpeg2000_urls(htj2k_lossy, rng),
            servers=("pyiip",),  # iipsrv 1.1 opens .jp2/.jpx/.j2k names only, and OpenJPEG 2.5.0 misdecodes HT windows
        ),
    ]
    for scenario in scenarios:
        scenario.urls = shuffled(scenario.urls, rng)
    # Random already, from its own generator, so that the other lists stay as they were; before memcached.
    interactive = Scenario(
        "interactive",
        "float32 cube tiles, a new CNT+GAM+MINMAX each",
        interactive_urls(cube, 20000, random.Random(seed + 1)),
        servers=("iipsrv-omp1", "iipsrv", "pyiip"),
    )
    scenarios.insert([s.name for s in scenarios].index("memcached"), interactive)
    return scenarios


# --------------------------------------------------------------------------------------------
# Servers


@dataclass(frozen=True, slots=True)
class Variant:
    """A server configuration: which FastCGI program, with which extra environment."""

    name: str
    label: str
    binary: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_pyiip(self) -> bool:
        return self.binary.name == "pyiip.fcgi"


def iipsrv_variants(binary: Path) -> dict[str, Variant]:
    """The iipsrv configurations, of the binary ``--iipsrv`` names."""
    return {
        "iipsrv": Variant("iipsrv", "iipsrv", binary),
        "iipsrv-omp1": Variant("iipsrv-omp1", "iipsrv OMP_NUM_THREADS=1", binary, {"OMP_NUM_THREADS": "1"}),
    }


def pyiip_path() -> dict[str, str]:
    """The PYTHONPATH this runs under, made absolute, for pyiip's FastCGI processes: ``PYTHONPATH=src
    bench/run.py`` measures that tree's pyiip (with the modules compiled in it), not the venv's install."""
    entries = [str(Path(e).resolve()) for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    return {"PYTHONPATH": os.pathsep.join(entries)} if entries else {}


VARIANTS = {
    **iipsrv_variants(IIPSRV),
    "pyiip": Variant("pyiip", "pyiip", PYIIP, {**PYIIP_SETTINGS, **pyiip_path()}),
}

# The FastCGI program of a pyiip checked out from git: the same venv's Python, the checkout's src/
# first on sys.path, and the entry point that commit's pyproject.toml names (it moves with the code).
LAUNCHER = """#!{python}
import sys
sys.path.insert(0, {src!r})
import pyiip
if not pyiip.__file__.startswith({src!r}):
    sys.exit("pyiip came from " + pyiip.__file__ + ", not from {src}")
from {module} import {function}
sys.exit({function}())
"""


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def checkout_variant(ref: str, workdir: Path) -> Variant:
    """A pyiip variant at git commit ``ref``: its src/ and pyproject.toml extracted with git archive
    into ``workdir``, run by a launcher named pyiip.fcgi with the venv's Python and packages.

    Why not the venv's own pyiip.fcgi with PYTHONPATH: its entry point is the one of the installed
    commit, which another commit may not have. PYTHONPATH is set too (absolute) so anything the
    server starts imports the same code."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    short = commit[:7]
    root = workdir / f"pyiip-{short}"
    root.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src", "pyproject.toml"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    entry = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]["pyiip.fcgi"]
    module, function = entry.split(":")
    src = str(root / "src")
    launcher = root / "bin" / "pyiip.fcgi"
    launcher.parent.mkdir(exist_ok=True)
    launcher.write_text(LAUNCHER.format(python=sys.executable, src=src, module=module, function=function))
    launcher.chmod(0o755)
    label = short if ref.startswith(short) else f"{short} ({ref})"
    return Variant(f"pyiip@{short}", f"pyiip {label}", launcher, {**PYIIP_SETTINGS, "PYTHONPATH": src})


def server_env(variant: Variant, root: Path, logfile: Path, memcached: str | None, dead_memcached: str) -> dict:
    """The bin-environment of one server: the shared settings, its own extras, and memcached.

    iipsrv 1.1 uses memcached on localhost unless told otherwise, so without the memcached
    scenario it is pointed at a port nothing listens on (pyiip's memcached is off unless set).
    """
    env = {"FILESYSTEM_PREFIX": f"{root}/", **SHARED_SETTINGS, "LOGFILE": str(logfile), **variant.env}
    if memcached:
        env["MEMCACHED_SERVERS"] = memcached
    elif not variant.is_pyiip:
        env["MEMCACHED_SERVERS"] = dead_memcached
    return env


def lighttpd_config(directory: Path, port: int, binary: Path, env: dict[str, str], procs: int = PROCS) -> str:
    """lighttpd with mod_fastcgi starting ``procs`` processes of ``binary`` (bin-path) for every URL."""

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    environment = ", ".join(f"{quote(k)} => {quote(v)}" for k, v in env.items())
    return f"""server.modules = ( "mod_fastcgi" )
server.document-root = {quote(str(directory))}
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = {quote(str(directory / "error.log"))}
server.breakagelog = {quote(str(directory / "stderr.log"))}
fastcgi.server = ( "/" => ((
    "socket" => {quote(str(directory / "fcgi.sock"))},
    "bin-path" => {quote(str(binary))},
    "bin-environment" => ( {environment} ),
    "min-procs" => {procs}, "max-procs" => {procs},
    "check-local" => "disable"
)) )
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, by the process's own PID."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


def clean_env() -> dict[str, str]:
    """lighttpd passes its environment to the FastCGI processes: give it nothing that changes them."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
    for name in ("HOME", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def proc_children(parent: int, program: str) -> list[int]:
    """PIDs of the processes whose parent is ``parent`` and whose command line names ``program``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and program.encode() in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants: a server however it forks (bench/visiomatic_peer.py)."""
    return sum(cpu_seconds(p) or 0.0 for p in descendants(pid))


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


class Server:
    """lighttpd and its FastCGI processes for one variant, on a free port; stopped by PID."""

    def __init__(self, variant: Variant, workdir: Path, root: Path, memcached: str | None, dead: str) -> None:
        self.variant = variant
        self.name = variant.name + ("+memcached" if memcached else "")
        self.directory = workdir / self.name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = server_env(variant, root, self.directory / "server.log", memcached, dead)
        self.config = self.directory / "lighttpd.conf"
        self.config.write_text(lighttpd_config(self.directory, self.port, variant.binary, self.env))
        self.process: subprocess.Popen | None = None
        self.children: list[int] = []
        self.memory: dict[int, list[int]] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        lighttpd = shutil.which("lighttpd") or "/usr/sbin/lighttpd"
        self.process = subprocess.Popen(
            [lighttpd, "-D", "-f", str(self.config)], env=clean_env(), start_new_session=True
        )
        wait_for_port(self.port, self.process)
        deadline = time.monotonic() + 60
        while len(self.find_children()) < PROCS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {PROCS} FastCGI processes did not start; see {self.directory}")
            time.sleep(0.1)
        self.children = self.find_children()

    def find_children(self) -> list[int]:
        assert self.process is not None
        return proc_children(self.process.pid, self.variant.binary.name)

    def stop(self) -> None:
        if self.process is None:
            return
        children = self.find_children()
        stop_process(self.process)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in children:  # lighttpd ends them; any left over is ours, killed by its PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process = None

    def sample(self) -> dict:
        """RSS (kB) and CPU seconds of each FastCGI process, and of lighttpd."""
        assert self.process is not None
        children = self.find_children()
        rss = {pid: rss_kb(pid) for pid in children}
        for pid, value in rss.items():
            if value is not None:
                self.memory.setdefault(pid, []).append(value)
        return {
            "children": children,
            "rss_kb": [rss[pid] for pid in children],
            "cpu_s": sum(cpu_seconds(pid) or 0.0 for pid in children),
            "lighttpd_cpu_s": cpu_seconds(self.process.pid) or 0.0,
        }

    def log_tail(self, lines: int = 20) -> str:
        text = []
        for name in ("error.log", "stderr.log", "server.log"):
            path = self.directory / name
            if path.exists():
                text += [f"--- {path}", *path.read_text(errors="replace").splitlines()[-lines:]]
        return "\n".join(text)


class Memcached:
    """A private memcached on a free port (never the system one on 11211)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        command = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "1024", "-t", "2", "-c", "1024"]
        if os.getuid() == 0:
            command += ["-u", "root"]
        self.process = subprocess.Popen(command, start_new_session=True)
        wait_for_port(self.port, self.process)

    def stats(self) -> dict[str, int]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"stats\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        stats = {}
        for line in data.decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "STAT" and parts[2].isdigit():
                stats[parts[1]] = int(parts[2])
        return stats

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


# --------------------------------------------------------------------------------------------
# Correctness guard


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF marker, or None when it is not a JPEG."""
    if not data.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
            i += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + length
    return None


def fetch(port: int, path: str, timeout: float = 60) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        reply = connection.getresponse()
        return reply.status, reply.getheader("Content-Type", ""), reply.read()
    finally:
        connection.close()


def iipsrv_version(port: int) -> dict[str, str]:
    """What an iipsrv says it is: its ``OBJ=IIP-server`` reply (the protocol, e.g. ``IIP-server:3.65``)
    and the Server header that comes with it (the release: ``iipsrv/1.3``, Debian's ``iipsrv/1.1``)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", f"{ENDPOINT}?OBJ=IIP-server")
        reply = connection.getresponse()
        body = reply.read().decode("latin-1")
        server = reply.getheader("Server", "")
    finally:
        connection.close()
    release = server.split("/", 1)[1].strip() if server.startswith("iipsrv/") else ""
    # 1.3 puts a second copy of its headers in the body of an OBJ reply: keep the object's line.
    obj = next((line for line in body.splitlines() if line.startswith("IIP-server:")), body.strip()[:200])
    return {"iipsrv": release or "unknown (no iipsrv Server header)", "iipsrv_obj": obj}


def check_reply(kind: str, status: int, content_type: str, body: bytes) -> tuple[str | None, object]:
    """(problem or None, what the reply shows: JPEG size or info.json size) for one reply."""
    if status != 200:
        return f"status {status}: {body[:200]!r}", None
    if kind == "jpeg":
        if not content_type.startswith("image/jpeg"):
            return f"Content-Type {content_type!r}, not image/jpeg", None
        size = jpeg_size(body)
        return (None, size) if size else ("body is not a JPEG", None)
    if content_type.split(";")[0].strip() not in ("application/json", "application/ld+json"):
        return f"Content-Type {content_type!r}, not JSON", None
    try:
        info = json.loads(body)
        return None, (info["width"], info["height"])
    except (ValueError, KeyError) as exc:
        return f"not an info.json: {exc}", None


def guard(scenario: Scenario, servers: Sequence[Server], samples: int = 6) -> list[str]:
    """Fetch a few URLs of the list from every server: each must be a 200 of the right type, and
    the servers must agree on the image size (within 2 px). Returns warnings; raises on failure."""
    rng = random.Random(scenario.name)
    urls = scenario.urls[:3] + rng.sample(scenario.urls, min(len(scenario.urls), samples - 3))
    warnings = []
    for url in dict.fromkeys(urls):
        seen = {}
        for server in servers:
            problem, size = check_reply(scenario.kind, *fetch(server.port, url))
            if problem:
                raise SystemExit(f"guard: {server.name} {url}: {problem}\n{server.log_tail()}")
            seen[server.name] = size
        sizes = list(seen.values())
        if any(abs(a - b) > 2 for s in sizes for a, b in zip(s, sizes[0], strict=True)):
            raise SystemExit(f"guard: servers disagree on the size of {url}: {seen}")
        if len(set(sizes)) > 1:
            warnings.append(f"{scenario.name}: sizes differ slightly for {url}: {seen}")
    return warnings


# --------------------------------------------------------------------------------------------
# wrk


def parse_wrk(output: str) -> dict:
    """The JSON line bench/urls.lua's done() prints."""
    for line in reversed(output.splitlines()):
        if line.startswith('{"wrk"'):
            result = json.loads(line)
            result.pop("wrk")
            return result
    raise ValueError(f"no result line in wrk output:\n{output[-2000:]}")


def wrk_command(base: str, urls: Path, conc: int, seconds: float) -> list[str]:
    threads = min(2, conc)
    command = ["wrk", "-t", str(threads), "-c", str(conc), "-d", f"{seconds:g}s", "--timeout", "10s"]
    return [*command, "-s", str(LUA), base, "--", str(urls), str(threads)]


def fetch_all(port: int, urls: Sequence[str], workers: int = 8) -> int:
    """Ask for every URL once, ``workers`` at a time, on kept-alive connections; the number not 200."""
    chunks = [urls[k::workers] for k in range(workers)]
    failed = [0] * workers

    def worker(k: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for url in chunks[k]:
                try:
                    connection.request("GET", url)
                    reply = connection.getresponse()
                    reply.read()
                    failed[k] += reply.status != 200
                except (OSError, http.client.HTTPException):
                    failed[k] += 1
                    connection.close()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(failed)


def run_wrk(command: list[str], timeout: float) -> tuple[dict, float]:
    """Run wrk; (its result, its CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return parse_wrk(done.stdout), cpu


def total_errors(result: dict) -> int:
    """Failed requests: wrk's socket errors and timeouts, and every reply that is not a 2xx."""
    e = result["errors"]
    return e["connect"] + e["read"] + e["write"] + e["timeout"] + max(e["status"], e["non2xx"])


def timed_run(server: Server, scenario: Scenario, urls: Path, conc: int, seconds: float, mc: Memcached | None) -> dict:
    """One wrk run with CPU, memory and (for memcached) hit accounting around it."""
    before = server.sample()
    busy0, total0 = machine_busy()
    stats0 = mc.stats() if mc else None
    load = os.getloadavg()[0]
    result, wrk_cpu = run_wrk(wrk_command(server.base, urls, conc, seconds), timeout=seconds + 120)
    busy1, total1 = machine_busy()
    after = server.sample()
    elapsed = result["duration_s"] or seconds
    machine = 100.0 * (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)
    server_cpu = 100.0 * (after["cpu_s"] - before["cpu_s"]) / elapsed
    lighttpd_cpu = 100.0 * (after["lighttpd_cpu_s"] - before["lighttpd_cpu_s"]) / elapsed
    run = {
        "scenario": scenario.name,
        "server": server.variant.name,
        "label": server.variant.label,
        "conc": conc,
        "seconds": seconds,
        "requests": result["requests"],
        "rps": result["requests"] / elapsed,
        "bytes": result["bytes"],
        "mean_reply_bytes": result["bytes"] / max(1, result["requests"]),
        "latency_ms": result["latency_ms"],
        "errors": result["errors"],
        "error_count": total_errors(result),
        "cpu_pct": {
            "server": server_cpu,
            "lighttpd": lighttpd_cpu,
            "wrk": 100.0 * wrk_cpu / elapsed,
            "machine": machine,
            "other": machine - server_cpu - lighttpd_cpu - 100.0 * wrk_cpu / elapsed,
        },
        "server_cpu_ms_per_request": 1000.0 * (after["cpu_s"] - before["cpu_s"]) / max(1, result["requests"]),
        "rss_kb_before": before["rss_kb"],
        "rss_kb_after": after["rss_kb"],
        "processes_replaced": before["children"] != after["children"],
        "loadavg_1min_before": load,
    }
    if mc and stats0:
        stats1 = mc.stats()
        run["memcached"] = {k: stats1.get(k, 0) - stats0.get(k, 0) for k in ("get_hits", "get_misses", "cmd_set")}
    return run


# --------------------------------------------------------------------------------------------
# Report


def grouped(runs: Iterable[dict]) -> dict[tuple[str, str, int], list[dict]]:
    """The runs by (scenario, server, concurrency): the rounds of each (--rounds), in their order."""
    out: dict[tuple[str, str, int], list[dict]] = {}
    for r in runs:
        out.setdefault((r["scenario"], r["server"], r["conc"]), []).append(r)
    return out


def by_key(runs: Iterable[dict]) -> dict[tuple[str, str, int], dict]:
    """The runs by (scenario, server, concurrency), the rounds of each combined into one."""
    return {key: combined(rounds) for key, rounds in grouped(runs).items()}


def combined(rounds: Sequence[dict]) -> dict:
    """Rounds of one scenario, server and concurrency as one run: req/s over their summed time, CPU
    per request over all their requests, errors summed, latencies of the median round."""
    if len(rounds) == 1:
        return rounds[0]
    requests = sum(r["requests"] for r in rounds)
    elapsed = sum(r["requests"] / r["rps"] for r in rounds if r["rps"])
    cpu = [r["server_cpu_ms_per_request"] * r["requests"] for r in rounds if r.get("server_cpu_ms_per_request")]
    return {
        **sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2],
        "requests": requests,
        "rps": requests / elapsed if elapsed else 0.0,
        "error_count": sum(r["error_count"] for r in rounds),
        "server_cpu_ms_per_request": sum(cpu) / requests if cpu and requests else None,
        "rounds": len(rounds),
    }


def ratios(runs: Sequence[dict], scenarios: Sequence[Scenario]) -> list[dict]:
    """pyiip/iipsrv req/s for each scenario, concurrency and iipsrv variant that ran."""
    table = by_key(runs)
    out = []
    for scenario in scenarios:
        for reference in (s for s in scenario.servers if s != "pyiip"):
            for conc in sorted({r["conc"] for r in runs if r["scenario"] == scenario.name}):
                mine, theirs = table.get((scenario.name, "pyiip", conc)), table.get((scenario.name, reference, conc))
                if mine and theirs:
                    ratio = mine["rps"] / theirs["rps"] if theirs["rps"] else None  # no reply at all: no ratio
                    out.append({"scenario": scenario.name, "reference": reference, "conc": conc, "ratio": ratio})
    return out


def targets(runs: Sequence[dict], scenarios: Sequence[Scenario], conc: int = 8) -> list[dict]:
    """The issue's targets at c=8: the ratio against each iipsrv variant, with zero errors on both sides."""
    table = by_key(runs)
    out = []
    for entry in ratios(runs, scenarios):
        if entry["conc"] != conc:
            continue
        scenario = next(s for s in scenarios if s.name == entry["scenario"])
        errors = sum(table[(scenario.name, s, conc)]["error_count"] for s in ("pyiip", entry["reference"]))
        out.append(
            {
                **entry,
                "need": scenario.target,
                "errors": errors,
                "ok": entry["ratio"] is not None
                and entry["ratio"] >= scenario.target
                and errors == 0
                and table[(scenario.name, "pyiip", conc)]["rps"] > 0,
            }
        )
    return out


def _rounds(report: dict) -> str:
    return f"{report['rounds']} x " if report.get("rounds", 1) > 1 else ""


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown_table(runs: Sequence[dict], scenarios: Sequence[Scenario]) -> str:
    """One row per scenario, iipsrv variant and concurrency: req/s, p50/p99 ms, errors, ratio."""
    table = by_key(runs)
    lines = [
        "| scenario | iipsrv | c | iipsrv req/s | pyiip req/s | pyiip/iipsrv "
        "| iipsrv p50 / p99 ms | pyiip p50 / p99 ms | errors iipsrv / pyiip | server CPU ms/req iipsrv / pyiip |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in ratios(runs, scenarios):
        scenario = next(s for s in scenarios if s.name == entry["scenario"])
        theirs = table[(scenario.name, entry["reference"], entry["conc"])]
        mine = table[(scenario.name, "pyiip", entry["conc"])]
        lat = "{p50} / {p99}"
        lines.append(
            f"| {scenario.title} | {VARIANTS[entry['reference']].label} | {entry['conc']} "
            f"| {theirs['rps']:.0f} | {mine['rps']:.0f} | **{_num(entry['ratio'])}** "
            f"| {lat.format(p50=_num(theirs['latency_ms']['p50']), p99=_num(theirs['latency_ms']['p99']))} "
            f"| {lat.format(p50=_num(mine['latency_ms']['p50']), p99=_num(mine['latency_ms']['p99']))} "
            f"| {theirs['error_count']} / {mine['error_count']} "
            f"| {_cpu_ms(theirs)} / {_cpu_ms(mine)} |"
        )
    return "\n".join(lines)


def _cpu_ms(run: dict) -> str:
    value = run.get("server_cpu_ms_per_request")
    return "n/a" if value is None or not run.get("requests", 1) else _num(value)


def targets_table(entries: Sequence[dict], scenarios: Sequence[Scenario]) -> str:
    titles = {s.name: s.title for s in scenarios}
    lines = ["| target at c=8 | against | need | ratio | errors | |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for e in entries:
        lines.append(
            f"| {titles[e['scenario']]} | {VARIANTS[e['reference']].label} | >= {e['need']:g} "
            f"| {_num(e['ratio'])} | {e['errors']} | {'met' if e['ok'] else '**missed**'} |"
        )
    return "\n".join(lines)


# The bar for a change that should not cost speed: no scenario below this ratio at c=8.
VERSION_FLOOR = 0.97


def versions_table(runs: Sequence[dict], scenarios: Sequence[Scenario], names: Sequence[str]) -> str:
    """pyiip versions side by side, one row per scenario and concurrency: each version's req/s, its
    ratio to the first version's (A), p50 / p99 ms, errors and server CPU ms per request, and with
    --rounds the ratio in each round (how far the machine's drift moves it); then the scenarios
    whose ratio at c=8 is below VERSION_FLOOR."""
    table, rounds = by_key(runs), grouped(runs)
    labels = {r["server"]: r["label"] for r in runs}
    letters = [chr(ord("A") + k) for k in range(len(names))]
    head = [f"{x} req/s" for x in letters] + [f"{x}/A" for x in letters[1:]]
    head += (
        [f"{x} p50 / p99 ms" for x in letters]
        + [
            "errors " + " / ".join(letters),
            "server CPU ms/req " + " / ".join(letters),
        ]
        + [f"{x}/A by round" for x in letters[1:]]
    )
    lines = [
        "  ".join(f"{x} = {labels.get(n, n)}" for x, n in zip(letters, names, strict=True)),
        "",
        "| scenario | c | " + " | ".join(head) + " |",
        "| --- | ---: |" + " ---: |" * len(head),
    ]
    below = []
    for scenario in scenarios:
        for conc in sorted({r["conc"] for r in runs if r["scenario"] == scenario.name}):
            row = [table.get((scenario.name, n, conc)) for n in names]
            if not all(row):
                continue
            base = row[0]["rps"]
            ratios = [r["rps"] / base if base else None for r in row[1:]]
            below += [f"{scenario.title} ({x}/A {_num(q)})" for x, q in zip(letters[1:], ratios, strict=True)
                      if conc == 8 and (q is None or q < VERSION_FLOOR)]  # fmt: skip
            cells = [f"{r['rps']:.0f}" for r in row] + [f"**{_num(q)}**" for q in ratios]
            cells += [f"{_num(r['latency_ms']['p50'])} / {_num(r['latency_ms']['p99'])}" for r in row]
            cells += [" / ".join(str(r["error_count"]) for r in row), " / ".join(_cpu_ms(r) for r in row)]
            cells += [
                _by_round(rounds[(scenario.name, names[0], conc)], rounds[(scenario.name, n, conc)]) for n in names[1:]
            ]
            lines.append(f"| {scenario.title} | {conc} | " + " | ".join(cells) + " |")
    if any(r["conc"] == 8 for r in runs):
        lines += ["", f"Below {VERSION_FLOOR:g} at c=8: " + ("; ".join(below) if below else "none") + "."]
    return "\n".join(lines)


def _by_round(firsts: Sequence[dict], others: Sequence[dict]) -> str:
    """The ratio of the k-th run of one version to the k-th of the first: the runs of a round are adjacent."""
    return " ".join(_num(b["rps"] / a["rps"] if a["rps"] else None) for a, b in zip(firsts, others, strict=False))


def memory_summary(servers: Iterable[Server]) -> dict[str, dict]:
    """Per server, per FastCGI process: RSS first seen, last seen and peak (kB)."""
    out = {}
    for server in servers:
        out[server.name] = {
            str(pid): {"first_kb": values[0], "last_kb": values[-1], "peak_kb": max(values), "samples": len(values)}
            for pid, values in server.memory.items()
        }
    return out


def memory_table(summary: dict[str, dict]) -> str:
    lines = ["| server | process | RSS first MB | RSS last MB | peak MB |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, processes in summary.items():
        for pid, m in processes.items():
            first, last, peak = (m[k] / 1024 for k in ("first_kb", "last_kb", "peak_kb"))
            lines.append(f"| {name} | {pid} | {first:.0f} | {last:.0f} | {peak:.0f} |")
    return "\n".join(lines)


def plot(runs: Sequence[dict], scenarios: Sequence[Scenario], path: Path, title: str) -> None:
    """Throughput (solid, left axis) and p99 latency (dashed, right axis, log) against concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    shown = [s for s in scenarios if any(r["scenario"] == s.name for r in runs)]
    cols = max(1, min(4, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    labels = {r["server"]: r["label"] for r in runs}
    palette = iter(("tab:purple", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"))
    colours = {"iipsrv": "tab:blue", "iipsrv-omp1": "tab:green", "pyiip": "tab:orange"}
    colours = {name: colours.get(name) or next(palette, "tab:gray") for name in labels}
    for ax, scenario in zip(axes.flat, shown, strict=False):
        right = ax.twinx()
        for server in scenario.servers:
            points = sorted((r["conc"], r["rps"], r["latency_ms"]["p99"]) for r in by_key(runs).values()
                            if r["scenario"] == scenario.name and r["server"] == server)  # fmt: skip
            if not points:
                continue
            conc, rps, p99 = zip(*points, strict=True)
            ax.plot(conc, rps, "o-", color=colours[server], label=f"{labels[server]} req/s")
            right.plot(conc, p99, "s--", color=colours[server], alpha=0.6, label=f"{labels[server]} p99")
        ax.set_xscale("log", base=2)
        concs = sorted({r["conc"] for r in runs})
        ax.set_xticks(concs, [str(c) for c in concs])
        ax.set_ylim(bottom=0)
        right.set_yscale("log")
        right.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        right.yaxis.set_major_formatter(ScalarFormatter())
        right.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(scenario.title, fontsize=9)
        ax.set_xlabel("concurrency", fontsize=8)
        ax.set_ylabel("req/s", fontsize=8)
        right.set_ylabel("p99 ms", fontsize=8)
        ax.tick_params(labelsize=7)
        right.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    handles = [
        plt.Line2D([], [], color=colours[s], marker=m, linestyle=ls, label=f"{labels[s]} {what}")
        for s in colours
        for m, ls, what in (("o", "-", "req/s"), ("s", "--", "p99 latency"))
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1 if rows == 1 else 0.06, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Machine facts


def _command_output(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def machine_facts() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory = next(
        line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    os_release = (
        dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
        .get("PRETTY_NAME", "")
        .strip('"')
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "os": os_release,
        "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "loadavg": os.getloadavg(),
    }


def versions() -> dict:
    from importlib import metadata

    import pyvips

    def deb(package: str) -> str:
        return _command_output(["dpkg-query", "-W", "-f=${Version}", package])

    commit = _command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _command_output(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    out = {
        "pyiip": metadata.version("pyiip"),
        "pyiip_commit": commit + ("-dirty" if dirty else ""),
        "python": platform.python_version(),
        "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
        "iipimage-server": deb("iipimage-server"),
        "lighttpd": deb("lighttpd"),
        "memcached": deb("memcached"),
        "wrk": deb("wrk"),
    }
    for package in ("numpy", "simplejpeg", "tifffile", "imagecodecs", "pyvips", "pymemcache"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[package] = metadata.version(package)
    return out


# --------------------------------------------------------------------------------------------
# Main


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def write_list(directory: Path, name: str, urls: Sequence[str]) -> Path:
    path = directory / f"{name}.txt"
    path.write_text("\n".join(urls) + "\n")
    return path


def rotated(items: Sequence, by: int) -> list:
    by %= len(items)
    return list(items[by:]) + list(items[:by])


def soak(server: Server, urls: Path, seconds: float, conc: int = 8) -> dict:
    """A long mixed load on one server, sampling the RSS of its processes."""
    log(f"soak: {server.name} for {seconds:g} s at c={conc}")
    interval = max(1.0, seconds / 60)
    process = subprocess.Popen(wrk_command(server.base, urls, conc, seconds), stdout=subprocess.PIPE, text=True)
    started = time.monotonic()
    samples = []
    while process.poll() is None:
        samples.append({"t": round(time.monotonic() - started, 1), "rss_kb": server.sample()["rss_kb"]})
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(interval)
    output = process.stdout.read() if process.stdout else ""
    result = parse_wrk(output)
    peaks = [max(s["rss_kb"]) for s in samples if s["rss_kb"]]
    half = peaks[len(peaks) // 2 :] or peaks
    return {
        "server": server.name,
        "seconds": seconds,
        "conc": conc,
        "requests": result["requests"],
        "rps": result["requests"] / (result["duration_s"] or seconds),
        "errors": total_errors(result),
        "samples": samples,
        "peak_rss_kb": max(peaks) if peaks else None,
        "first_rss_kb": peaks[0] if peaks else None,
        "last_rss_kb": peaks[-1] if peaks else None,
        "growth_second_half_kb": (max(half) - half[0]) if half else None,
    }


def iipsrv_release(versions: dict) -> str:
    """The iipsrv the report measured: the release it answered with, else (older reports, or a
    release that sends no Server header) the Debian package's version."""
    release = versions.get("iipsrv", "")
    return release if release[:1].isdigit() else versions.get("iipimage-server", "")


def render(report: dict, scenarios: Sequence[Scenario]) -> tuple[str, str]:
    """The Markdown report (tables, notes, soak) and the plot's title, from the JSON report."""
    m = report["machine"]
    others = [r["cpu_pct"]["other"] for r in report["runs"] if "cpu_pct" in r]
    other = sum(others) / len(others) if others else 0.0
    compared = report.get("pyiip_versions", [])
    against = (
        " vs ".join(v["label"] for v in compared)
        if compared
        else f"pyiip {report['versions']['pyiip_commit']} vs iipsrv {iipsrv_release(report['versions'])}"
    )
    heading = f"{against}, {m['nproc']} x {m['cpu_model']}, {_rounds(report)}{report['seconds']:g} s runs" + (
        " (QUICK: smoke test, not a measurement)" if report["quick"] else ""
    )
    tables = (
        [versions_table(report["runs"], scenarios, [v["name"] for v in compared])]
        if compared
        else [markdown_table(report["runs"], scenarios), targets_table(report["targets"], scenarios)]
    )
    markdown = "\n\n".join(
        [
            f"### {heading}",
            f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, {m['os']}, kernel {m['kernel']}; "
            f"load average {m['loadavg'][0]:.1f} at the start, {report['loadavg_end'][0]:.1f} at the end; "
            f"other programs used {other:.0f}% of one core on average during the runs "
            f"(lighttpd, wrk and the servers excluded; the machine has {100 * m['nproc']}%).",
            *tables,
            memory_table(report["memory"]),
        ]
    )
    notes = [f"ABORTED: {report['aborted']}"] if "aborted" in report else []
    notes += [
        f"{r['scenario']} c={r['conc']} {r['server']}: a FastCGI process was replaced during the run"
        for r in report["runs"]
        if r["processes_replaced"]
    ]
    notes += [
        f"{r['scenario']} c={r['conc']} {r['server']}: memcached hits {r['memcached']['get_hits']}, "
        f"misses {r['memcached']['get_misses']} for {r['requests']} requests"
        for r in report["runs"]
        if "memcached" in r
    ]
    notes += report.get("guard_warnings", [])
    if notes:
        markdown += "\n\n" + "\n".join(f"- {note}" for note in notes)
    if report.get("soak", {}).get("peak_rss_kb"):
        s = report["soak"]
        markdown += (
            f"\n\nSoak: {s['server']} {s['seconds']:g} s at c={s['conc']}, {s['rps']:.0f} req/s, "
            f"{s['errors']} errors; largest process RSS {s['first_rss_kb'] / 1024:.0f} MB at the start, "
            f"{s['peak_rss_kb'] / 1024:.0f} MB peak, {s['last_rss_kb'] / 1024:.0f} MB at the end "
            f"(growth over the second half: {s['growth_second_half_kb'] / 1024:.1f} MB)."
        )
    return markdown, heading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--iipsrv",
        type=Path,
        default=IIPSRV,
        help=f"the iipsrv FastCGI binary to compare against (default $IIPSRV, else Debian's {DEBIAN_IIPSRV})",
    )
    parser.add_argument("--seconds", type=float, help="length of each timed run (default 20; 3 when quick)")
    parser.add_argument("--conc", default="1 8 64", help='concurrency levels (default "1 8 64")')
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 3 s runs, 1 s warm-up, 10 s soak, plot not in docs/"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="timed runs per scenario, server and concurrency, the servers' order turning at each (A B, B A...), "
        "combined in the tables: interleaves the servers so drift of a shared machine hits all (default 1)",
    )
    parser.add_argument("--warmup", type=float, help="warm-up per scenario and server, in seconds (default 3)")
    parser.add_argument("--soak", type=float, help="seconds of mixed load on pyiip, RSS sampled (default 600)")
    parser.add_argument("--scenarios", help="comma-separated subset of the scenario names")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="where the images are made and kept")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument("--plot", type=Path, help="PNG (default docs/bench.png; bench/results/bench.png when quick)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (configs, logs, URL lists)")
    parser.add_argument("--from-json", type=Path, help="measure nothing: redo the tables and plot of a saved run")
    parser.add_argument(
        "--pyiip",
        action="append",
        metavar="REF",
        dest="refs",
        help="A/B of pyiip versions instead of pyiip against iipsrv: a git commit (or branch, tag) of this "
        "repository, given twice or more; each runs from its own `git archive` with this venv, and the table "
        "shows each version's req/s against the first's (no iipsrv; no soak unless --soak)",
    )
    args = parser.parse_args(argv)
    if args.refs is not None and len(args.refs) < 2:
        parser.error("--pyiip compares versions: give it at least twice")
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        scenarios = [
            Scenario(s["name"], s["title"], [], servers=tuple(s["servers"]), target=s["target_c8"])
            for s in report["scenarios"]
        ]
        default_plot = HERE / "results" / "bench.png" if report["quick"] else REPO / "docs" / "bench.png"
        publish(report, scenarios, args.json if "--json" in (argv or sys.argv) else args.from_json,
                args.plot or default_plot)  # fmt: skip
        return 0
    seconds = args.seconds or (3.0 if args.quick else 20.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    soak_seconds = args.soak if args.soak is not None else (0.0 if args.refs else 10.0 if args.quick else 600.0)
    plot_path = args.plot or (HERE / "results" / "bench.png" if args.quick else REPO / "docs" / "bench.png")
    concs = [int(c) for c in args.conc.replace(",", " ").split()]

    import images

    pyramids = images.ensure(args.data.resolve())
    scenarios = build_scenarios(pyramids)
    if args.scenarios:
        wanted = set(args.scenarios.split(","))
        unknown = wanted - {s.name for s in scenarios}
        if unknown:
            raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
        scenarios = [s for s in scenarios if s.name in wanted]
    workdir = Path(tempfile.mkdtemp(prefix="pyiip-bench-"))
    variants = {**VARIANTS, **iipsrv_variants(args.iipsrv.resolve())}
    compared = [checkout_variant(ref, workdir) for ref in args.refs or []]
    if compared:
        if len({v.name for v in compared}) < len(compared):
            raise SystemExit(f"--pyiip names the same commit twice: {' '.join(args.refs)}")
        variants.update((v.name, v) for v in compared)
        for scenario in scenarios:
            scenario.servers = tuple(v.name for v in compared)
    needed = {variants[v].binary for s in scenarios for v in s.servers}
    programs = {
        "wrk": shutil.which("wrk"),
        "lighttpd": shutil.which("lighttpd") or "/usr/sbin/lighttpd",
        "memcached": shutil.which("memcached"),
        **{binary.name: str(binary) for binary in needed},
    }
    for program, path in programs.items():
        if not path or not os.path.exists(path):
            raise SystemExit(f"{program} is not installed: run `make bench`, which installs it")

    report: dict = {
        "quick": args.quick,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "rounds": args.rounds,
        "concurrency": concs,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "versions": {**versions(), "iipsrv_binary": str(args.iipsrv.resolve())},
        "settings": {"shared": SHARED_SETTINGS, "pyiip": PYIIP_SETTINGS, "fastcgi_processes": PROCS},
        "pyiip_versions": [
            {"name": v.name, "ref": ref, "commit": git("rev-parse", ref), "label": v.label}
            for ref, v in zip(args.refs or [], compared, strict=True)
        ],
        "scenarios": [
            {"name": s.name, "title": s.title, "urls": len(s.urls), "servers": list(s.servers), "target_c8": s.target}
            for s in scenarios
        ],
    }
    if report["machine"]["loadavg"][0] > 3:
        log(f"warning: load average {report['machine']['loadavg'][0]:.1f}: the CPU is shared, figures are noisy")

    dead = f"127.0.0.1:{free_port()}"
    root = args.data.resolve()
    servers: dict[str, Server] = {}
    everything: list[Server] = []
    memcached: Memcached | None = None
    runs: list[dict] = []
    warnings: list[str] = []
    first: dict[str, float] = {}  # seconds to answer the first 4 x PROCS URLs of each scenario, per server

    def start_server(server: Server) -> None:
        """Start a server; the first iipsrv started says which release it is, for the report."""
        server.start()
        if not server.variant.is_pyiip and "iipsrv_obj" not in report["versions"]:
            report["versions"].update(iipsrv_version(server.port))
            log(f"iipsrv {report['versions']['iipsrv']} ({report['versions']['iipsrv_obj']}): {server.variant.binary}")

    try:
        needed = {v for s in scenarios if not s.memcached for v in s.servers}
        for name in sorted(needed):
            servers[name] = Server(variants[name], workdir, root, None, dead)
            everything.append(servers[name])
            start_server(servers[name])
            log(f"{servers[name].name} on port {servers[name].port}, processes {servers[name].children}")
        lists = {s.name: write_list(workdir, s.name, s.urls) for s in scenarios}
        for scenario in scenarios:
            if not scenario.memcached:
                warnings += guard(scenario, [servers[v] for v in scenario.servers])
        log("guard passed: every server answers every list with the right replies")

        for index, scenario in enumerate(scenarios):
            mc = None
            if scenario.memcached:
                memcached = Memcached()
                memcached.start()
                mc = memcached
                group = [Server(variants[v], workdir, root, memcached.address, dead) for v in scenario.servers]
                everything += group
                for server in group:
                    start_server(server)
                warnings += guard(scenario, group)
                for server in group:
                    log(f"{scenario.name}: filling memcached through {server.name} ({len(scenario.urls)} URLs)")
                    failed = fetch_all(server.port, scenario.urls)
                    if failed:
                        warnings.append(f"{scenario.name}: {failed} URLs failed while filling through {server.name}")
            else:
                group = [servers[v] for v in scenario.servers]
            for server in group:
                log(f"{scenario.name}: warm-up {server.name} {warmup:g} s")
                # A process's first request of a kind can take seconds (imports, tables): have
                # every process answer some before the timed warm-up, whatever its length.
                started = time.monotonic()
                fetch_all(server.port, scenario.urls[: 4 * PROCS], workers=2 * PROCS)
                first[f"{scenario.name} {server.name}"] = round(time.monotonic() - started, 3)
                run_wrk(wrk_command(server.base, lists[scenario.name], 8, warmup), timeout=warmup + 120)
            for j, conc in enumerate(concs):
                for server in (s for k in range(args.rounds) for s in rotated(group, index + j + k)):
                    run = timed_run(server, scenario, lists[scenario.name], conc, seconds, mc)
                    runs.append(run)
                    log(
                        f"{scenario.name} c={conc} {server.name}: {run['rps']:.0f} req/s, "
                        f"p50 {run['latency_ms']['p50']} ms, p99 {run['latency_ms']['p99']} ms, "
                        f"errors {run['error_count']}, server CPU {run['cpu_pct']['server']:.0f}%"
                    )
            if scenario.memcached:
                for server in group:
                    server.stop()
                memcached.stop()
                memcached = None

        if soak_seconds > 0:
            # Every list but the single tile, whatever --scenarios chose, on its own pyiip.
            mixed = [u for s in build_scenarios(pyramids) if not s.memcached and s.name != "jtl_repeat" for u in s.urls]
            soaked = compared[-1].name if compared else "pyiip"  # the last version compared
            if soaked not in servers:
                servers[soaked] = Server(variants[soaked], workdir, root, None, dead)
                everything.append(servers[soaked])
                servers[soaked].start()
            try:
                report["soak"] = soak(
                    servers[soaked], write_list(workdir, "soak", shuffled(mixed, random.Random(7))), soak_seconds
                )
            except (RuntimeError, ValueError, OSError) as exc:
                report["soak"] = {"error": str(exc)}
                log(f"soak failed: {exc}")
    except (Exception, KeyboardInterrupt) as exc:  # keep what was measured
        report["aborted"] = f"{type(exc).__name__}: {exc}"
        log(f"aborted: {report['aborted']}; writing the runs done so far")
        if not runs:
            raise
    finally:
        for server in everything:
            server.stop()
        if memcached is not None:
            memcached.stop()
        if args.keep:
            log(f"configs, logs and URL lists kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    report["loadavg_end"] = os.getloadavg()
    report["runs"] = runs
    report["memory"] = memory_summary(everything)
    report["guard_warnings"] = warnings
    report["priming_seconds"] = first
    publish(report, scenarios, args.json, plot_path)
    return 1 if "aborted" in report else 0


def publish(report: dict, scenarios: Sequence[Scenario], json_path: Path, plot_path: Path) -> None:
    """Write the JSON, the Markdown next to it and the plot; print the Markdown."""
    report["ratios"] = ratios(report["runs"], scenarios)
    report["targets"] = targets(report["runs"], scenarios)
    markdown, heading = render(report, scenarios)
    report["markdown"] = markdown
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    json_path.with_suffix(".md").write_text(markdown + "\n")
    try:
        plot(report["runs"], scenarios, plot_path, heading)
        plotted = f" and {plot_path}"
    except ImportError:  # matplotlib comes with the bench extra; the tables need nothing
        plotted = " (no plot: matplotlib is not installed, `make bench` installs it)"
    print(markdown)
    log(f"wrote {json_path}, {json_path.with_suffix('.md')}{plotted}")


if __name__ == "__main__":
    sys.exit(main())
