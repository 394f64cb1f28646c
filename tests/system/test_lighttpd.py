"""FastCGI for real: lighttpd spawns two pyiip.fcgi instances with bin-path."""

import os
import subprocess
import time

import pytest

from tests.integration.test_iip_protocol import METADATA, visiomatic_parse
from tests.support.servers import (
    VENV_BIN,
    fastcgi_children,
    free_port,
    get,
    http_server,
    lighttpd_config,
    require,
    running,
)

REQUESTS = [
    f"/fcgi-bin/iipsrv.fcgi?FIF=float.tif{METADATA}",
    "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=3,3",
    "/fcgi-bin/iipsrv.fcgi?FIF=rgb_deflate.tif&JTL=2,1",
    "/fcgi-bin/iipsrv.fcgi?FIF=float.tif&MINMAX=1:90,200&GAM=0.4545&CMP=jet&CTW=1,0,0;0,1,0;0,0,1&JTL=2,1",
    "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&RGN=0.1,0.2,0.3,0.4&WID=300&CVT=jpeg",
    "/fcgi-bin/iipsrv.fcgi?FIF=missing.tif&JTL=0,0",
]


@pytest.fixture(scope="module")
def lighttpd(images, tmp_path_factory):
    binary = require("lighttpd")
    directory = tmp_path_factory.mktemp("lighttpd")
    port = free_port()
    config = lighttpd_config(directory, port, images.root)
    with running([binary, "-D", "-f", str(config)], port) as process:
        yield f"http://127.0.0.1:{port}", process, directory


def test_two_instances_answer(lighttpd):
    base, process, _ = lighttpd
    status, _headers, body = get(f"{base}{REQUESTS[0]}")
    assert status == 200, body
    assert visiomatic_parse(body.decode("latin-1"))["size"] == (700, 500)
    deadline = time.monotonic() + 10
    while len(fastcgi_children(process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(fastcgi_children(process.pid)) == 2


def test_same_bytes_as_the_http_mode(lighttpd, images):
    base, _, _ = lighttpd
    port, context = http_server(images.root, {"JPEG_QUALITY": "90", "VERBOSITY": "1"})
    with context:
        for path in REQUESTS:
            via_fcgi = get(f"{base}{path}")
            via_http = get(f"http://127.0.0.1:{port}{path}")
            assert via_fcgi[0] == via_http[0], path
            assert via_fcgi[2] == via_http[2], path
            for name in ("Content-Type", "Last-Modified", "Cache-Control"):
                assert via_fcgi[1][name] == via_http[1][name], (path, name)


def test_index_page_through_lighttpd(lighttpd):
    base, _, _ = lighttpd
    status, _, body = get(f"{base}/")
    assert status == 200 and b"rgb.tif" in body


def test_killed_instance_is_respawned(lighttpd):
    base, process, _ = lighttpd
    before = fastcgi_children(process.pid)
    os.kill(before[0], 9)
    deadline = time.monotonic() + 15
    ok = 0
    while time.monotonic() < deadline:
        status = get(f"{base}{REQUESTS[1]}")[0]
        ok += status == 200
        after = fastcgi_children(process.pid)
        if len(after) == 2 and before[0] not in after and ok >= 5:
            break
        time.sleep(0.1)
    assert before[0] not in fastcgi_children(process.pid)
    assert len(fastcgi_children(process.pid)) == 2
    assert get(f"{base}{REQUESTS[1]}")[0] == 200


def test_fcgi_refuses_a_terminal():
    result = subprocess.run([f"{VENV_BIN}/pyiip.fcgi"], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert result.returncode == 2 and "no FastCGI socket" in result.stderr


def test_fcgi_bind_bad_config_is_a_clear_error():
    port = free_port()
    env = {**os.environ, "JPEG_QUALITY": "best"}
    result = subprocess.run(
        [f"{VENV_BIN}/pyiip.fcgi", "--bind", f"127.0.0.1:{port}"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2 and "JPEG_QUALITY must be an integer" in result.stderr
