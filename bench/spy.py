"""py-spy on pyiip's FastCGI processes while the benchmark loads them: where a scenario's time goes.

bench/overhead.py times the layers of a request in one process with no load;
this samples the real processes under lighttpd and wrk, as the benchmark runs
them. Each scenario runs through bench/run.py at c=8; py-spy attaches to every
pyiip.fcgi process lighttpd starts and samples only while they are busy
(iipsrv's turns leave them idle). Its figures are shares of pyiip's busy time.

    .venv/bin/python bench/spy.py jtl_deflate jtl_reencode memcached [--seconds 20] [--top 12]

Prints, per scenario, the share of samples by the file and by the function
that was running (its own time, what it calls in C included).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY_SPY = Path(sys.executable).parent / "py-spy"
# One frame of py-spy's raw (collapsed) output: "function (path:line)".
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")


def pyiip_processes(exclude: set[int]) -> set[int]:
    found = subprocess.run(["pgrep", "-f", "pyiip.fcgi"], capture_output=True, text=True).stdout.split()
    return {int(pid) for pid in found} - exclude


def record(scenario: str, seconds: float, workdir: Path) -> list[Path]:
    """Run the benchmark for one scenario and sample every pyiip process it starts."""
    before = pyiip_processes(set())
    command = [sys.executable, str(HERE / "run.py"), "--scenarios", scenario, "--conc", "8", "--soak", "0"]
    command += ["--seconds", str(seconds), "--json", str(workdir / "run.json"), "--plot", str(workdir / "run.png")]
    log = workdir / "bench.log"
    with log.open("w") as sink:
        bench = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sink)
    spies: dict[int, tuple[subprocess.Popen, Path]] = {}
    try:
        while bench.poll() is None:
            time.sleep(0.2)
            if "warm-up" not in log.read_text():
                continue  # not yet: the guard's requests (and the memcached scenario's fill) are not the load
            for pid in pyiip_processes(before) - set(spies):
                output = workdir / f"{scenario}-{pid}.txt"
                options = ["--nonblocking", "--full-filenames", "--rate", "200", "--format", "raw"]
                options += ["--output", str(output)]
                spy = subprocess.Popen(
                    [str(PY_SPY), "record", "--pid", str(pid), *options],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                spies[pid] = (spy, output)
    finally:
        if bench.poll() is None:
            bench.terminate()
        for spy, _ in spies.values():
            spy.wait(60)  # py-spy writes its output when the process it samples exits
    if bench.returncode:
        raise SystemExit(f"bench/run.py failed for {scenario} (exit {bench.returncode})")
    return [output for _, output in spies.values() if output.exists()]


def file_of(path: str) -> str:
    """``pyiip/fastcgi.py`` for pyiip's modules, the file name for the standard library and other packages."""
    marker = "/pyiip/"
    return path[path.rindex(marker) + 1 :] if marker in path else Path(path).name


def summarise(files: list[Path]) -> tuple[int, collections.Counter, collections.Counter]:
    """Samples, and their shares by the file and by the function running (own time).

    py-spy sees Python frames only: a codec or a system call counts for the
    Python function that called it (``encode`` is simplejpeg's encoder,
    ``decode_other`` tifffile's call of libdeflate and the predictor).
    """
    files_running: collections.Counter = collections.Counter()
    functions: collections.Counter = collections.Counter()
    total = 0
    for file in files:
        for line in file.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            leaf = FRAME.match(stack.rpartition(";")[2])
            if not count.isdigit() or leaf is None:
                continue
            samples = int(count)
            total += samples
            name = file_of(leaf["path"])
            files_running[name] += samples
            functions[f"{leaf['function']} ({name})"] += samples
    return total, files_running, functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    if not PY_SPY.exists():
        raise SystemExit(f"{PY_SPY} is missing: make bench installs it (the bench extra)")
    with tempfile.TemporaryDirectory(prefix="pyiip-spy-") as tmp:
        for scenario in args.scenarios:
            workdir = Path(tmp) / scenario
            workdir.mkdir()
            total, running, functions = summarise(record(scenario, args.seconds, workdir))
            print(f"\n{scenario}: {total} samples of busy pyiip processes")
            for heading, counts in (("file running", running), ("function running (own time)", functions)):
                print(f"\n| {heading} | share |\n| --- | ---: |")
                for name, count in counts.most_common(args.top):
                    print(f"| {name} | {100 * count / max(total, 1):.1f} % |")
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
