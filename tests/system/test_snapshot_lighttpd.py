"""VisiOmatic v2's "Native pixels" snapshot through the shipped lighttpd recipe (conf/lighttpd, MAX_CVT=5000).

A JPEG of at most MAX_CVT a side comes back, through FastCGI processes that
lighttpd spawns with the shipped environment, never the 413 the client
cannot show.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import simplejpeg

from pyiip.tools.demo import write_demo_data
from tests.support.deploy import lighttpd_conf, process, settings_env
from tests.support.servers import free_port, get, require, wait_for_port

SNAPSHOT = (
    "/fcgi-bin/iipsrv.fcgi?FIF=demo/cube.tif&GAM=0.4545&MINMAX=1:95,400"
    "&CTW=0,0,1;0,1,0;1,0,0&RGN=-0.75,-0.24,2.5,1.48&WID={}&CVT=jpeg"
)


@pytest.fixture(scope="module")
def lighttpd(tmp_path_factory: pytest.TempPathFactory):
    binary = require("lighttpd")
    root = tmp_path_factory.mktemp("snapshot")
    write_demo_data(root / "demo", size=1024, progress=False)
    directory = tmp_path_factory.mktemp("snapshot-lighttpd")
    env = settings_env(root, directory / "pyiip.log")
    if os.environ.get("PYTHONPATH"):  # lighttpd gives its processes bin-environment alone: the code under test
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in os.environ["PYTHONPATH"].split(os.pathsep))
    port = free_port()
    config = lighttpd_conf(directory, port, env)
    assert "MAX_CVT" not in env and '"MAX_CVT"              => "5000"' in (directory / "pyiip.conf").read_text()
    assert subprocess.run([binary, "-tt", "-f", str(config)], capture_output=True).returncode == 0
    with process([binary, "-D", "-f", str(config)], lambda: wait_for_port(port, 0.2)):
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("width", [20480, 40960])
def test_native_pixels_snapshot_is_a_jpeg_within_max_cvt(lighttpd, width):
    status, headers, body = get(lighttpd + SNAPSHOT.format(width), timeout=120)
    assert status == 200 and headers["Content-Type"] == "image/jpeg", (status, body[:200])
    height, wide = simplejpeg.decode_jpeg_header(body)[:2]
    assert wide == height and 2500 < wide <= 5000
    assert f"_{wide}x{height}.jpg" in headers["Content-Disposition"]
