"""Microseconds per 256x256 float32 tile through the astro display pipeline, in-process.

Measures the pipeline alone (apply_display) and a whole uncached
JTL request (read, pipeline, JPEG encode, reply), on a synthetic sky like
the benchmark cube, each with the same display setting every time ("fixed")
and with a new contrast every time ("new"), as a viewer's slider sends.
Prints a Markdown table; medians and 10th percentiles of many repeats, so a
busy machine shows in the spread. To compare two versions, run the same
script with each one's src/ first:

    .venv/bin/python bench/pipeline.py
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/pipeline.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
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
    print(
        "| 256x256 float32 tile | pipeline alone µs, fixed (median / p10) | new setting each "
        "| whole JTL request µs, fixed | new setting each |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, *cells in rows:
        print(f"| {name} | " + " | ".join(f"{median:.0f} / {p10:.0f}" for median, p10 in cells) + " |")


def _measure(app: Application, channels: int, query: str) -> list[tuple[float, float]]:
    """Pipeline alone and whole request, each with a fixed setting and a new one every time, for one case."""
    image = app.service.image(f"sky{channels}.tif")
    tile = image.source.read(0, 512, 512, TILE, TILE)
    display = _display(app, channels, query)
    counter = iter(range(1, 10**9))

    def contrast() -> str:
        return f"{1 + next(counter) * 1e-4:.4f}"  # a new CNT each time, as a slider sends

    def request(changing: bool) -> None:
        tweak = f"&CNT={contrast()}" if changing else ""
        target = f"FIF=sky{channels}.tif&{query}{tweak}&JTL=3,{next(counter) % 64}"
        assert app.respond(Request("GET", "/fcgi-bin/iipsrv.fcgi", target)).status == 200

    return [
        timed(lambda: apply_display(tile, image.minmax, display), 300),
        timed(lambda: apply_display(tile, image.minmax, replace(display, contrast=float(contrast()))), 100),
        timed(lambda: request(False), 300),
        timed(lambda: request(True), 100),
    ]


def _display(app: Application, channels: int, query: str) -> Display:
    """The Display the IIP parser builds for these parameters."""
    from pyiip.parse import iip

    return iip.view(query).display(channels)


if __name__ == "__main__":
    main()
