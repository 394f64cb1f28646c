"""The viewer's pixel values under the pointer, in headless Chromium against `pyiip serve`: one IIP VAL
request once the pointer rests (none per move), for the FITS pixel under it, showing the FITS values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support import visiomatic
from tests.support.browser import chromium, missing, wait_for
from tests.support.servers import get, http_server

W, H, C = 600, 400, 3
MOVES = """
const map = document.getElementById("map"), box = map.getBoundingClientRect();
for (const [fx, fy] of arguments[0]) {
  map.dispatchEvent(new MouseEvent("mousemove", {bubbles: true, clientX: box.left + fx * box.width,
                                                  clientY: box.top + fy * box.height}));
}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    reason = missing()
    if reason:
        pytest.fail(reason)
    work = tmp_path_factory.mktemp("values")
    planes = visiomatic.sky(W, H, C)
    root = work / "root"
    root.mkdir()
    visiomatic.write_cube(planes, work / "cube.fits", root / "cube.tif")
    port, context = http_server(Path(root))
    with context:
        yield f"http://127.0.0.1:{port}", planes


def val_requests(driver) -> list[str]:
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('&VAL='))"
    )


def test_values_under_the_pointer(served) -> None:
    base, planes = served
    with chromium(1000, 700) as driver:
        driver.get(f"{base}/viewer.html?image=cube.tif")
        wait_for(lambda: driver.execute_script("return !!(window.pyiipViewer && pyiipViewer.settled())"), 60, "tiles")
        assert val_requests(driver) == []
        # Five moves at once, then a rest: one request, for where the pointer stopped.
        driver.execute_script(MOVES, [[0.3, 0.3], [0.35, 0.4], [0.4, 0.45], [0.45, 0.5], [0.5, 0.55]])
        shown = wait_for(
            lambda: driver.execute_script(
                "const n = document.getElementById('values'); return n.dataset.values && n.dataset"
            ),
            30,
            "values shown",
        )
        (asked,) = val_requests(driver)
        x, y = int(shown["x"]), int(shown["y"])
        assert asked.endswith(f"&VAL={x},{y}")
        values = json.loads(shown["values"])
        assert values == json.loads(get(asked)[2])["values"]
        assert values == [0.0 if np.isnan(v) else v for v in planes[:, y - 1, x - 1].tolist()]
        coords = driver.execute_script("return document.getElementById('coords').dataset")
        assert abs(float(coords["x"]) - x) <= 0.5 and abs(float(coords["y"]) - y) <= 0.5  # the pixel under the pointer
        text = driver.find_element("id", "values").text
        assert all(f"{v:.7g}"[:5] in text for v in values)
        assert driver.execute_script("return pyiipViewer.errors") == 0
