"""`make fuzz`: run each atheris target for FUZZ_SECONDS, keeping its corpus; fail on any crash.

    .venv/bin/python fuzz/run.py --seconds 60 [fuzz_parsers fuzz_tiff fuzz_jp2]

Corpora grow in fuzz/corpus/<target>/ (seeded from fuzz/seeds.py), crashes
are written to fuzz/artifacts/; both are ignored by git. Reproduce a crash with
``.venv/bin/python fuzz/fuzz_tiff.py fuzz/artifacts/crash-...``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("fuzz_parsers", "fuzz_tiff", "fuzz_jp2")


def run(target: str, seconds: int, rss_limit_mb: int = 3072) -> int:
    corpus = HERE / "corpus" / target.removeprefix("fuzz_")
    artifacts = HERE / "artifacts"
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(exist_ok=True)
    command = [
        sys.executable,
        str(HERE / f"{target}.py"),
        f"-max_total_time={seconds}",
        f"-rss_limit_mb={rss_limit_mb}",
        "-timeout=60",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/{target}-",
        str(corpus),
    ]
    print(f"fuzz: {target} for {seconds} s", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    tail = [line for line in done.stderr.splitlines() if line.startswith(("Done", "stat::number_of_executed_units"))]
    print("\n".join(tail[-2:]) or done.stderr[-3000:])
    if done.returncode != 0:
        start = done.stderr.find("=== Uncaught Python exception")
        print(done.stderr[start : start + 6000] if start >= 0 else done.stderr[-6000:], file=sys.stderr)
        print(f"fuzz: {target} FAILED (exit {done.returncode}); see {artifacts}", file=sys.stderr)
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description="run the atheris fuzz targets for a bounded time")
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("targets", nargs="*", default=list(TARGETS))
    args = parser.parse_args()
    failed = [t for t in args.targets if run(t, args.seconds) != 0]
    if failed:
        print(f"fuzz: crashes in {', '.join(failed)}", file=sys.stderr)
        return 1
    print("fuzz: no crash")
    return 0


if __name__ == "__main__":
    sys.exit(main())
