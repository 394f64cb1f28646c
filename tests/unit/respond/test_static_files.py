"""The viewer page and its static files: routes, content types, gzip, and no way out of static/."""

import gzip
import os

import pytest

from pyiip.http import Request
from pyiip.respond import static_files


def get(app, path: str, query: str = "", headers: dict[str, str] | None = None):
    return app.respond(Request("GET", path, query, headers=headers or {}))


@pytest.mark.parametrize(
    "relative",
    [
        "",
        "../cli.py",
        "..",
        "vendor/../../cli.py",
        "./viewer.js",
        ".hidden.js",
        "a//viewer.js",
        "vendor\\leaflet\\leaflet.js",
        "viewer.js\x00.css",
        "/etc/passwd",
        "__init__.py",
        "vendor",
        "missing.js",
        "x" * 600 + ".js",
    ],
)
def test_resolve_refuses(relative):
    assert static_files.resolve(relative) is None


def test_resolve_refuses_symlinks_out(tmp_path):
    root, outside = tmp_path / "static", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.js").write_text("secret")
    (root / "ok.js").write_text("ok")
    os.symlink(outside / "secret.js", root / "link.js")
    os.symlink(outside, root / "dir")
    assert static_files.resolve("ok.js", root) == (root / "ok.js").resolve()
    assert static_files.resolve("link.js", root) is None
    assert static_files.resolve("dir/secret.js", root) is None


def test_viewer_files_served(app):
    reply = get(app, "/static/viewer.js")
    assert reply.status == 200 and reply.content_type.startswith("text/javascript")
    assert b"pyiipViewer" in reply.body and reply.mtime is not None
    packed = get(app, "/static/viewer.js", headers={"accept-encoding": "gzip, deflate"})
    assert ("Content-Encoding", "gzip") in packed.headers and gzip.decompress(packed.body) == reply.body
    assert get(app, "/static/viewer.css").content_type.startswith("text/css")
    leaflet = get(app, "/static/vendor/leaflet/leaflet.js")
    assert leaflet.status == 200, "Leaflet is not built: run `make install` (scripts/build-viewer.sh)"


@pytest.mark.parametrize(
    "path",
    [
        "/static/",
        "/static/%2e%2e/app.py",
        "/static/..%2fcli.py",
        "/static/../cli.py",
        "/static/%2e%2e%2f%2e%2e%2fetc/passwd",
        "/static/%00.js",
        "/static/%ff.js",
        "/static/vendor/leaflet/../../../service.py",
    ],
)
def test_static_escapes_are_404(app, path):
    assert get(app, path).status == 404


def test_landing_page_lists_and_views(app):
    for path, query in (("/", ""), ("/viewer.html", "image=float.tif")):
        reply = get(app, path, query)
        assert reply.status == 200 and reply.content_type.startswith("text/html")
        page = reply.body.decode()
        for identifier in ("rgb.tif", "float.tif", "nested/deeper/float_notags.tif"):
            assert f">{identifier}</a>" in page
        assert 'href="/viewer.html?image=nested%2Fdeeper%2Ffloat_notags.tif"' in page
        for script in ("vendor/leaflet/leaflet.js", "wcs.js", "iip.js", "viewer.js"):
            assert f'src="/static/{script}?v=' in page
        assert 'data-iip="/fcgi-bin/iipsrv.fcgi"' in page
