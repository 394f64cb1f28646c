"""pyiip against VisiOmatic v3's own server: the same float image, tiles and display settings, CPU per tile.

VisiOmatic v3 (PyPI ``visiomatic``) is a FastAPI server that reads FITS itself and speaks its own
tile protocol; it pins numpy < 2, so it lives in its own virtualenv (made here when missing). Both
servers get the benchmark's float cube (bench/images.py): VisiOmatic the FITS it is converted
from (written next to it, same seeds), pyiip ``cube.tif``. Each runs as one process (VisiOmatic: one
uvicorn worker, one engine thread; pyiip: ``pyiip serve --workers 1``), JPEG quality 90 on both.

Two cases, each the same tiles (every tile of the three largest levels, shuffled anew each round):

- ``fixed``: the viewer's default for a float image (display gamma 2.2), one setting for all;
- ``changing``: a new contrast, gamma and range with every tile (``run.random_setting``), as when a
  user drags the sliders; pyiip gets them in VisiOmatic v2's order (``run.iip_display``),
  VisiOmatic v3 in its client's syntax (``v3_display``).

The load is bench/run.py's: wrk (bench/urls.lua) cycles through the case's URL list for ``--seconds``
at ``--conc`` connections, so a tile may be asked again; neither server keeps replies, so each one is
rendered (pyiip ``MAX_IMAGE_CACHE_SIZE=0``, no LRU of replies or decoded tiles; VisiOmatic
``--max_cache_tile_count 1``, its least allowed, for its LRU of encoded tiles, which the next tile
always replaces). Each server is warmed up first on tiles of the smaller levels (and a reply of each
checked to be a JPEG). CPU per tile is the server's process tree's CPU time (``run.tree_cpu``) over
the run divided by the tiles answered; latencies are wrk's. The servers take turns, case by case
(their order turning), so the drift of a shared machine hits both. Prints a Markdown table and
writes bench/results/visiomatic.json.

    .venv/bin/python bench/visiomatic_peer.py --data bench/data [--venv /work/venvs/visiomatic] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import images  # noqa: E402
import run  # noqa: E402

VERSION = "3.0.7"
FITS_NAME = "cube_r.fits"
QUALITY = 90
#: The viewers' default display gamma for 32-bit data (pyiip's and both VisiOmatic clients').
DEFAULT_GAMMA = 2.2
IIP_PATH = "/fcgi-bin/iipsrv.fcgi"
V3_PATH = "/api"


def ensure_venv(venv: Path) -> Path:
    """The ``visiomatic`` program of ``venv``, installing VisiOmatic VERSION (and numpy < 2) there first if missing."""
    program = venv / "bin" / "visiomatic"
    if not program.exists():
        run.log(f"making {venv} with visiomatic=={VERSION} (numpy < 2)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, f"visiomatic=={VERSION}", "numpy<2"], check=True)
    return program


def ensure_fits(directory: Path) -> Path:
    """The cube's FITS in ``directory`` (made once: about a minute)."""
    path = directory / FITS_NAME
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        run.log(f"writing {path}")
        images.write_cube_fits(path)
    return path


def v3_display(setting: run.Setting) -> str:
    """The display part of a VisiOmatic v3 tile URL, in its client's order (VTileLayer.js getTileSettingsURL):
    contrast, GAM as the display gamma itself to 4 decimals (v3 raises to 1/GAM), the channel (mono mode),
    then the range."""
    return (
        f"CNT={run.js_number(setting.contrast)}&GAM={setting.gamma:.4f}"
        f"&CHAN=1&MINMAX=1:{run.js_number(setting.low)},{run.js_number(setting.high)}&"
    )


def urls_for(
    server: str, cells: list[tuple[int, int]], settings: list[run.Setting | None], shift: int = 0
) -> list[str]:
    """One tile URL per cell (pyiip's IIP resolution, tile index), each with its setting (None: the viewer's
    default, which it leaves out). VisiOmatic's pyramid goes down to one tile, pyiip's stops earlier, so the
    same level is ``shift`` resolutions higher there."""
    urls = []
    for (res, tile), setting in zip(cells, settings, strict=True):
        if server == "pyiip":
            display = run.iip_display(setting) if setting else f"GAM={1 / DEFAULT_GAMMA:.4f}&CTW=1;1;1&"
            urls.append(f"{IIP_PATH}?FIF=cube.tif&{display}JTL={res},{tile}")
        else:
            display = v3_display(setting) if setting else "CHAN=1&"
            urls.append(f"{V3_PATH}?FIF={FITS_NAME}&{display}JTL={res + shift},{tile}")
    return urls


def v3_levels(port: int) -> int:
    """The levels of VisiOmatic's pyramid, from its INFO reply (the first request: it tiles the FITS then)."""
    status, _, body = run.fetch(port, f"{V3_PATH}?FIF={FITS_NAME}&INFO", timeout=600)
    if status != 200:
        raise SystemExit(f"VisiOmatic INFO: status {status}: {body[:300]!r}")
    return int(json.loads(body)["tile_levels"])


def measure(name: str, process: subprocess.Popen, port: int, urls: Path, conc: int, seconds: float) -> dict:
    """One wrk run over the list ``urls``: CPU ms per tile of the server's processes, p50/p99 ms, tiles/s."""
    cpu0 = run.tree_cpu(process.pid)
    command = run.wrk_command(f"http://127.0.0.1:{port}", urls, conc, seconds)
    result, _ = run.run_wrk(command, timeout=seconds + 120)
    cpu, tiles = run.tree_cpu(process.pid) - cpu0, result["requests"]
    if run.total_errors(result) or not tiles:
        raise SystemExit(f"{name}: {run.total_errors(result)} failed requests of {tiles}: {result['errors']}")
    latency = result["latency_ms"]
    return {
        "tiles": tiles,
        "cpu_ms_per_tile": 1000 * cpu / tiles,
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "mean_ms": latency["mean"],
        "tiles_per_s": tiles / result["duration_s"],
    }


def start(command: list[str], env: dict[str, str], port: int, workdir: Path, name: str) -> subprocess.Popen:
    """Start a server in its own session, its output in ``workdir``/``name``.log, and wait for its port."""
    output = (workdir / f"{name}.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=workdir, stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)  # fmt: skip
    run.wait_for_port(port, process, timeout=120)
    return process


def start_pyiip(data: Path, port: int, workdir: Path, src: Path = HERE.parent / "src") -> subprocess.Popen:
    """``pyiip serve`` with one worker, running the code in ``src`` (by default this checkout's)."""
    env = {**os.environ, "FILESYSTEM_PREFIX": f"{data}/", "VERBOSITY": "0", "JPEG_QUALITY": str(QUALITY),
           "MAX_IMAGE_CACHE_SIZE": "0"}  # fmt: skip
    env["PYTHONPATH"] = str(src.resolve())
    program = Path(sys.executable).parent / "pyiip"
    return start([str(program), "serve", "--workers", "1", "--port", str(port)], env, port, workdir, "pyiip")


def start_visiomatic(program: Path, fits_dir: Path, port: int, workdir: Path) -> subprocess.Popen:
    command = [
        str(program),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--thread_count", "1",
        "--data_dir", str(fits_dir), "--cache_dir", str(workdir / "cache"), "--quality", str(QUALITY),
        "--max_cache_tile_count", "1", "--no_browser",
    ]  # fmt: skip
    return start(command, {**os.environ, "PYTHONPATH": ""}, port, workdir, "visiomatic")


def warm(port: int, server: str, cells: list[tuple[int, int]], rng: random.Random, shift: int) -> None:
    """Have the server answer tiles of the smaller levels, fixed and changing: every one a 200, the first a JPEG."""
    settings = [None] * len(cells) + [run.random_setting(rng) for _ in cells]
    urls = urls_for(server, cells + cells, settings, shift)
    failed = run.fetch_all(port, urls, workers=2)
    status, _, body = run.fetch(port, urls[0])
    if failed or run.jpeg_size(body) is None:  # VisiOmatic says image/jpg
        raise SystemExit(f"{server} warm-up: {failed} of {len(urls)} failed; {urls[0]}: {status}, {body[:200]!r}")


def table(results: dict[str, dict[str, dict]]) -> str:
    lines = [
        "| display setting | tiles | pyiip CPU ms/tile | VisiOmatic v3 CPU ms/tile | VisiOmatic/pyiip "
        "| pyiip p50 / p99 ms | VisiOmatic p50 / p99 ms | tiles/s pyiip / VisiOmatic |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case, by_server in results.items():
        mine, theirs = by_server["pyiip"], by_server["visiomatic"]
        lines.append(
            f"| {case} | {mine['tiles']} | {mine['cpu_ms_per_tile']:.2f} | {theirs['cpu_ms_per_tile']:.2f} "
            f"| **{theirs['cpu_ms_per_tile'] / mine['cpu_ms_per_tile']:.1f}** "
            f"| {mine['p50_ms']:.1f} / {mine['p99_ms']:.1f} | {theirs['p50_ms']:.1f} / {theirs['p99_ms']:.1f} "
            f"| {mine['tiles_per_s']:.0f} / {theirs['tiles_per_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE / "data", help="the benchmark's images (made if missing)")
    parser.add_argument("--fits", type=Path, help="where the cube's FITS is written once (default: DATA/visiomatic)")
    parser.add_argument(
        "--venv",
        type=Path,
        default=Path(os.environ.get("PYIIP_VISIOMATIC_VENV") or "/work/venvs/visiomatic"),
        help="VisiOmatic's virtualenv (default: $PYIIP_VISIOMATIC_VENV, else /work/venvs/visiomatic)",
    )
    parser.add_argument(
        "--src", type=Path, default=HERE.parent / "src", help="the pyiip code to run (default: this one)"
    )
    parser.add_argument("--conc", type=int, default=4, help="connections at once (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of load per run (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per case and server, summed (default 1)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "visiomatic.json")
    args = parser.parse_args(argv)
    program = ensure_venv(args.venv)
    data = args.data.resolve()
    pyramid = images.ensure(data)["cube.tif"]
    fits_dir = (args.fits or data / "visiomatic").resolve()
    ensure_fits(fits_dir)
    rng = random.Random(20261205)
    cells = run.tile_cells(pyramid, 3)
    small = [cell for cell in run.tile_cells(pyramid, len(pyramid.levels)) if cell not in set(cells)]
    workdir = Path(tempfile.mkdtemp(prefix="pyiip-visiomatic-"))
    ports = {"pyiip": run.free_port(), "visiomatic": run.free_port()}
    processes: dict[str, subprocess.Popen] = {}
    results: dict[str, dict[str, dict]] = {}
    try:
        processes["pyiip"] = start_pyiip(data, ports["pyiip"], workdir, args.src)
        processes["visiomatic"] = start_visiomatic(program, fits_dir, ports["visiomatic"], workdir)
        run.log("VisiOmatic tiles the whole FITS on its first request")
        shift = v3_levels(ports["visiomatic"]) - len(pyramid.levels)
        for name, port in ports.items():
            run.log(f"warming {name} up")
            warm(port, name, small, rng, shift)
        order = ["pyiip", "visiomatic"]
        for index, case in enumerate(("fixed", "changing")):
            results[case] = {}
            for k in range(args.rounds):
                tiles = rng.sample(cells, len(cells))
                settings = [None if case == "fixed" else run.random_setting(rng) for _ in tiles]
                for name in order[(index + k) % 2 :] + order[: (index + k) % 2]:
                    urls = run.write_list(workdir, f"{case}-{k}-{name}", urls_for(name, tiles, settings, shift))
                    measured = measure(name, processes[name], ports[name], urls, args.conc, args.seconds)
                    run.log(f"{case} {name}: {measured['cpu_ms_per_tile']:.2f} ms CPU per tile, "
                            f"p50 {measured['p50_ms']:.1f} ms, p99 {measured['p99_ms']:.1f} ms")  # fmt: skip
                    results[case][name] = combine(results[case].get(name), measured)
    finally:
        for process in processes.values():
            run.stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "machine": run.machine_facts(),
        "visiomatic": VERSION,
        "pyiip": str(args.src.resolve()),
        "conc": args.conc,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "results": results,
    }
    report["markdown"] = table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(report["markdown"])
    return 0


def combine(before: dict | None, measured: dict) -> dict:
    """Rounds of one case and server as one: CPU and rate over all tiles, latencies of the slower round."""
    if before is None:
        return measured
    tiles = before["tiles"] + measured["tiles"]
    slower = max(before, measured, key=lambda r: r["p50_ms"])
    cpu = before["cpu_ms_per_tile"] * before["tiles"] + measured["cpu_ms_per_tile"] * measured["tiles"]
    return {
        **slower,
        "tiles": tiles,
        "cpu_ms_per_tile": cpu / tiles,
        "tiles_per_s": tiles / (before["tiles"] / before["tiles_per_s"] + measured["tiles"] / measured["tiles_per_s"]),
    }


if __name__ == "__main__":
    sys.exit(main())
