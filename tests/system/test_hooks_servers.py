"""The example hook (examples/token_hook.py), request ids and JSON logs through FastCGI (lighttpd) and HTTP."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyiip.hooks import ALLOW, Deny, MaxSize
from tests.integration.test_hooks import HOOK, call
from tests.integration.test_hooks import SPEC as HOOK_SPEC
from tests.support.mcserver import memcached as memcached_daemon
from tests.support.servers import VENV_BIN, free_port, get, http_server, lighttpd_config, require, running

TREE = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"
FULL = {"Authorization": f"Bearer {TOKEN}"}


def hook_env(directory: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": f"{TREE / 'src'}:{TREE}",  # this tree's code, and examples/ importable
        "PYIIP_HOOKS": "examples.token_hook:HOOK",
        "TOKEN_HOOK_TOKENS": TOKEN,
        "TOKEN_HOOK_PUBLIC_SIZE": "300",
        "TOKEN_HOOK_AUTH_URL": "https://auth.example.org/iiif",
        "LOG_FORMAT": "json",
        "VERBOSITY": "2",
        "LOGFILE": str(directory / "pyiip.log"),
    }


@pytest.fixture(params=["fastcgi", "http"])
def server(request, images, tmp_path) -> Iterator[tuple[str, Path]]:
    """A server of each mode over a root with ``rgb.tif`` and ``private/rgb.tif``; its base URL and log."""
    root = tmp_path / "root"
    (root / "private").mkdir(parents=True)
    shutil.copy(images.root / "rgb.tif", root / "rgb.tif")
    shutil.copy(images.root / "rgb.tif", root / "private" / "rgb.tif")
    env = hook_env(tmp_path)
    if request.param == "fastcgi":
        port = free_port()
        config = lighttpd_config(tmp_path, port, root, procs=1, env=env)
        context: contextlib.AbstractContextManager = running([require("lighttpd"), "-D", "-f", str(config)], port)
    else:
        port, context = http_server(root, env, workers=1)
    with context:
        yield f"http://127.0.0.1:{port}", tmp_path / "pyiip.log"


def test_token_for_full_access_public_size_limited_private_refused(server):
    base, _ = server
    info = json.loads(get(f"{base}/iiif/3/rgb.tif/info.json")[2])
    assert (info["maxWidth"], info["tiles"][0]["scaleFactors"]) == (300, [4, 8])
    probe = info["service"][-1]
    assert probe["type"] == "AuthProbeService2" and probe["id"] == "https://auth.example.org/iiif/probe/rgb.tif"
    assert info["rights"] == "http://creativecommons.org/licenses/by/4.0/"
    full = json.loads(get(f"{base}/iiif/3/rgb.tif/info.json", FULL)[2])
    assert full["tiles"][0]["scaleFactors"][0] == 1 and full.get("maxWidth", 5000) == 5000

    tile = "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=3,0"  # full resolution
    for _ in range(3):  # allowed, then kept: never given to the public after
        assert get(base + tile, FULL)[0] == 200
    status, headers, _ = get(base + tile)
    assert status == 403 and headers["Cache-Control"] == "no-cache"
    assert get(base + "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=1,0")[0] == 200

    status, headers, _ = get(f"{base}/iiif/3/private%2Frgb.tif/info.json")
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="images"'
    assert get(f"{base}/iiif/3/private%2Frgb.tif/info.json", FULL)[0] == 200
    assert get(f"{base}/iiif/3/private%2Frgb.tif/info.json", {"Authorization": "Bearer wrong"})[0] == 401
    assert get(f"{base}/")[0] == 401 and b"private/rgb.tif" in get(f"{base}/", FULL)[2]  # the list names them


def test_request_id_in_reply_and_json_log(server):
    base, logfile = server
    status, headers, _ = get(f"{base}/iiif/3/rgb.tif/info.json", {"X-Request-ID": "trace-7f3a"})
    assert status == 200 and headers["X-Request-ID"] == "trace-7f3a"
    made = get(f"{base}/iiif/3/rgb.tif/info.json", {"X-Request-ID": "no spaces <allowed>"})[1]["X-Request-ID"]
    assert made != "no spaces <allowed>" and len(made) > 16
    lines = [json.loads(line) for line in logfile.read_text().splitlines()]
    ids = {line.get("id"): line for line in lines if line.get("message") == "request"}
    assert ids["trace-7f3a"]["kind"] == "iiif_info" and ids["trace-7f3a"]["status"] == 200
    assert made in ids


def test_memcached_never_answers_a_caller_the_hook_refuses(images, make_app):
    """Two hosts sharing memcached: one renders for a full-access caller, the other refuses the same tile."""
    hook = HOOK
    hook.__init__()  # type: ignore[misc]
    tile = "/fcgi-bin/iipsrv.fcgi?FIF=rgb_deflate.tif&JTL=3,0"  # full resolution, rendered (deflate)
    with memcached_daemon() as daemon:
        shared = {"MEMCACHED_SERVERS": daemon.address, "MAX_IMAGE_CACHE_SIZE": "0", "PYIIP_HOOKS": HOOK_SPEC}
        first, second = make_app(images.root, **shared), make_app(images.root, **shared)
        assert call(first, tile)[0] == 200
        assert daemon.stats()["curr_items"] == 1
        hook.decision = Deny(403)
        assert call(second, tile)[0] == 403
        hook.decision = MaxSize(300)
        assert call(second, tile)[0] == 403
        hook.decision = ALLOW
        assert call(second, tile)[0] == 200 and daemon.stats()["get_hits"] == 1


def test_a_hook_that_cannot_be_imported_stops_the_start(tmp_path):
    env = {**hook_env(tmp_path), "PYIIP_HOOKS": "examples.no_such_hook:HOOK"}
    command = [str(VENV_BIN / "pyiip"), "serve", "--port", str(free_port()), "--root", str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "PYIIP_HOOKS 'examples.no_such_hook:HOOK': cannot import 'examples.no_such_hook'" in result.stderr
