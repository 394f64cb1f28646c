"""`make run` as a user starts it: the demo target's data, the run target's command line and environment.

make itself runs both targets (on a free port, into a temporary data directory, with a small
demo: DEMO_SIZE), so a change to the Makefile's command line or environment (CORS=*) is what
is tested. The install step is taken as done (-o: the shared venv is already installed).
The official IIIF validator then passes every level-2 test, cors included: 33 for 3.0, 30 for 2.0.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import free_port, get, wait_for_port
from tests.system.test_iiif_validator import VALIDATOR_ID, VALIDATOR_PNG, run_validator

REPO = Path(__file__).parents[2]
STAMP = ".venv/.installed-stamp"
VALIDATOR = VALIDATOR_ID  # at the root, under the identifier the validator asks for


def make(*arguments: str) -> list[str]:
    return ["make", "--no-print-directory", "-o", STAMP, *arguments]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not VALIDATOR_PNG.exists():
        pytest.fail(f"the validator's test image is missing: {VALIDATOR_PNG}")
    directory = tmp_path_factory.mktemp("data")
    done = subprocess.run(
        make("demo", f"DATA={directory}", "DEMO_SIZE=512", f"SHARED={VALIDATOR_PNG.parents[2]}"),
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return directory


@pytest.fixture(scope="module")
def server(data: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(make("run", f"DATA={data}", f"PORT={port}"), cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for_port(port, timeout=60, process=process)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # make and the server it started: the session begun here
        try:
            process.wait(30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def test_demo_files(data: Path) -> None:
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    assert files == [VALIDATOR, "demo/cube.tif", "demo/cutout.fits", "demo/rgb.tif"]


def test_index_opens_on_the_cube_and_lists_each_image_once(server: str) -> None:
    status, _, body = get(f"http://{server}/")
    html = body.decode()
    listed = re.findall(r'<a class="image" href="/viewer.html\?image=([^"]+)">', html)
    assert status == 200 and listed == ["demo%2Fcube.tif", "demo%2Fcutout.fits", "demo%2Frgb.tif", VALIDATOR]
    assert "FITS is not served directly" not in html  # FITS is served: resolve/fits_cache.py


def test_cors_is_on_and_claimed(server: str) -> None:
    status, headers, body = get(f"http://{server}/iiif/3/{VALIDATOR}/info.json", {"Origin": "http://example.org"})
    doc = json.loads(body)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    assert doc["profile"] == "level2" and "cors" not in doc["extraFeatures"]  # level 2 includes cors
    assert headers["Link"].startswith("<http://iiif.io/api/image/3/level2.json>")


@pytest.mark.parametrize(("prefix", "version", "count"), [("iiif/3", "3.0", 33), ("iiif/2", "2.0", 30)])
def test_validator_passes_everything_at_level_2(server: str, prefix: str, version: str, count: int) -> None:
    results, report = run_validator(server, prefix, VALIDATOR_ID, version, 2)
    assert len(results) == count and results.get("cors") == "PASS", report
    assert [name for name, outcome in results.items() if outcome != "PASS"] == [], report
