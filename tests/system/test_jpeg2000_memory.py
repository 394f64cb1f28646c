"""The JPEG 2000 reader's memory estimate (read_overhead, what the request budget checks) against peak RSS.

Each read runs in a fresh process, so its peak resident size is OpenJPEG's own
allocations for that one window; the estimate must cover it without being absurd.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.imaging import rgb_pattern
from tests.support.jpeg2000 import htj2k_codestream, jp2_bytes, write

MB = 1 << 20
# VmHWM (peak RSS of this process's own memory) rather than ru_maxrss, which a child inherits from its parent.
PROBE = """
import json, sys
from pyiip.read.jp2 import Jp2Source

def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

source = Jp2Source(sys.argv[1])
level, side = int(sys.argv[2]), int(sys.argv[3])
lv = source.info.levels[level]
before = peak()
pixels = source.read(level, (lv.width - side) // 2, (lv.height - side) // 2, side, side)
print(json.dumps([peak() - before, source.read_overhead(level, side, side) + pixels.nbytes]))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("jp2-memory")
    pixels = np.tile(rgb_pattern(1024, 1024, seed=5), (2, 2, 1))  # 2048 x 2048: untiled, one codestream tile
    return {
        "lossless.jp2": write(root / "lossless.jp2", jp2_bytes(pixels)),
        "lossy.jp2": write(root / "lossy.jp2", jp2_bytes(pixels, lossless=False)),
        "lossless.jhc": write(root / "lossless.jhc", htj2k_codestream(pixels)),
    }


@pytest.mark.parametrize("name", ["lossless.jp2", "lossy.jp2", "lossless.jhc"])
@pytest.mark.parametrize(("level", "side"), [(0, 256), (0, 1024), (2, 256)])
def test_estimate_covers_peak_rss(files, name, level, side):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(files[name]), str(level), str(side)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured, estimated = json.loads(done.stdout)
    assert measured <= estimated, (measured / MB, estimated / MB)
    assert estimated <= 3 * measured + 16 * MB, (measured / MB, estimated / MB)
