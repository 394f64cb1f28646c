"""/livez and /readyz: liveness answers whatever the images do; readiness fails (503) when they cannot be read.

Against a local image root that goes away, a real nginx object store, a store that refuses (403),
fails (503) or drips its reply, and a port nobody listens on.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pyiip import config
from pyiip.respond import ops
from pyiip.respond.app import Application
from tests.integration.test_ops import call
from tests.support.imaging import rgb_pattern, write_vips_pyramid
from tests.support.objectstores import hostile_store, nginx
from tests.support.servers import free_port


def probe(app: Application, path: str, remote: str = "") -> tuple[int, str]:
    """(status, body) of a probe, from a local client unless ``remote`` names another address."""
    environ = {"REQUEST_URI": path, "QUERY_STRING": "", "REQUEST_METHOD": "GET", "REMOTE_ADDR": remote}
    found: dict = {}
    body = b"".join(app(environ, lambda status, headers: found.update(status=int(status[:3]), headers=dict(headers))))
    assert found["headers"]["Cache-Control"] == "no-cache"  # never kept by a cache in front
    return found["status"], body.decode()


def store_app(template: str, tmp_path: Path, **env: str) -> Application:
    return Application(
        config.load(
            {"REMOTE_URL_TEMPLATE": template, "BLOCK_CACHE_DIR": str(tmp_path / "blocks"), "VERBOSITY": "0", **env}
        )
    )


def test_ready_while_the_root_lists_then_not(tmp_path, make_app):
    root = tmp_path / "images"
    root.mkdir()
    write_vips_pyramid(root / "rgb.tif", rgb_pattern(300, 200, seed=1))
    app = make_app(root)
    assert probe(app, "/livez") == (200, "ok\n")
    assert probe(app, "/readyz") == (200, "ready\n")
    root.rename(tmp_path / "gone")
    time.sleep(ops.ROOT_CHECK_INTERVAL + 0.1)  # the last check stands that long
    assert probe(app, "/readyz") == (503, "not ready: image root does not exist\n")
    assert probe(app, "/readyz", "192.0.2.7") == (503, "not ready\n")  # the reason for local clients only
    assert probe(app, "/livez") == (200, "ok\n")  # alive all the same: a restart would not bring the images back
    assert call(app, "/health")[0] == 503


def test_ready_with_an_object_store_that_answers(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    write_vips_pyramid(root / "rgb.tif", rgb_pattern(300, 200, seed=1))
    with nginx(root, tmp_path / "nginx") as origin:
        app = store_app(f"{origin.base}/images/{{id}}", tmp_path)
        assert probe(app, "/readyz") == (200, "ready\n")  # .readyz is not there: a 404 is an answer
        assert [(a.path, a.status, a.range) for a in origin.log()] == [("/images/.readyz", 404, "bytes=0-0")]


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("error403", "object store refused access (status 403)"),
        ("error503", "object store failing (status 503)"),
        ("dripall", "object store: no answer within 0.5 s"),
    ],
)
def test_not_ready_when_the_store_cannot_be_read(tmp_path, mode, why):
    (tmp_path / ".readyz").write_bytes(b"x" * 100)
    with hostile_store(tmp_path, interval=0.5) as store:
        app = store_app(f"{store.base}/{mode}/{{id}}", tmp_path, REMOTE_TIMEOUT="0.5")
        started = time.monotonic()
        assert probe(app, "/readyz") == (503, f"not ready: {why}\n")
        assert time.monotonic() - started < 5  # one try, not REMOTE_TIMEOUT's retries
        assert probe(app, "/livez") == (200, "ok\n")


def test_not_ready_when_nothing_listens(tmp_path):
    app = store_app(f"http://127.0.0.1:{free_port()}/{{id}}", tmp_path)
    assert probe(app, "/readyz") == (503, "not ready: object store unreachable (ConnectionRefusedError)\n")
