"""Microseconds per 256x256 float32 tile through the astro display pipeline, in-process.

Measures the pipeline alone (apply_display) and a whole uncached
JTL request (read, pipeline, JPEG encode, reply), on a synthetic sky like
the benchmark cube. Prints a Markdown table; medians and 10th percentiles
of many repeats, so a busy machine shows in the spread.

    .venv/bin/python bench/pipeline.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from pyiip import config
from pyiip.http import Request
from pyiip.model import Display
from pyiip.process.display import apply_display
from pyiip.respond.app import Application

TILE = 256
CASES = {
    "1 channel, MINMAX+GAM+CMP=jet": (1, "MINMAX=1:95,400&GAM=0.5&CMP=jet"),
    "1 channel, MINMAX only (grey)": (1, "MINMAX=1:95,400"),
    "3 channels, colour CTW (VisiOmatic default)": (3, "GAM=0.4545&CTW=0,0,1;0,1,0;1,0,0"),
}


def sky(channels: int, size: int = 2048, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 5, (size, size, channels)).astype(np.float32)
    ys, xs = rng.integers(0, size, (2, 3000))
    data[ys, xs] += rng.pareto(1.5, 3000).astype(np.float32)[:, None] * 500
    return data


def timed(function, repeats: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[len(samples) // 10]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for channels in (1, 3):
            data = sky(channels)
            tifffile.imwrite(
                Path(directory) / f"sky{channels}.tif",
                data[:, :, 0] if channels == 1 else data,
                tile=(TILE, TILE),
                photometric="minisblack",
                planarconfig="contig" if channels > 1 else None,
                extratags=[
                    (340, "d", channels, [95.0] * channels, True),
                    (341, "d", channels, [400.0] * channels, True),
                ],
            )
        app = Application(
            config.load({"FILESYSTEM_PREFIX": directory + "/", "VERBOSITY": "0", "MAX_IMAGE_CACHE_SIZE": "0"})
        )
        for name, (channels, query) in CASES.items():
            rows.append((name, *_measure(app, channels, query)))
    print("| 256x256 float32 tile | pipeline alone µs (median / p10) | whole JTL request µs (median / p10) |")
    print("| --- | --- | --- |")
    for name, alone, whole in rows:
        print(f"| {name} | {alone[0]:.0f} / {alone[1]:.0f} | {whole[0]:.0f} / {whole[1]:.0f} |")


def _measure(app: Application, channels: int, query: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """(pipeline alone, whole request) timings for one case."""
    image = app.service.image(f"sky{channels}.tif")
    tile = image.source.read(0, 512, 512, TILE, TILE)
    display = _display(app, channels, query)
    alone = timed(lambda: apply_display(tile, image.minmax, display), 300)
    counter = iter(range(10**9))

    def request() -> None:
        target = f"FIF=sky{channels}.tif&{query}&JTL=3,{next(counter) % 64}"
        assert app.respond(Request("GET", "/fcgi-bin/iipsrv.fcgi", target)).status == 200

    return alone, timed(request, 300)


def _display(app: Application, channels: int, query: str) -> Display:
    """The Display the IIP parser builds for these parameters."""
    from pyiip.parse import iip

    return iip.view(query).display(0)


if __name__ == "__main__":
    main()
