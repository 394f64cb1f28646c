"""Operations against hostile use, in-process: /health's rate, the index's cache, Vary, the shipped settings."""

from __future__ import annotations

import json
import os
import re
import shlex
import time

import pytest

from pyiip import config
from pyiip.respond import index
from pyiip.respond.app import Application
from tests.support.deploy import CONF, DEPLOY


def call(app: Application, uri: str, **environ: str) -> tuple[int, dict[str, str], bytes]:
    """One request through Application.handle, as the FastCGI and HTTP layers call it."""
    query = uri.partition("?")[2]
    env = {"REQUEST_URI": uri, "QUERY_STRING": query, "REQUEST_METHOD": "GET", "HTTP_HOST": "images.test", **environ}
    status, headers, body = app.handle(env)
    return int(status[:3]), dict(headers), bytes(body)


def vary(headers: dict[str, str]) -> set[str]:
    return {name.strip().lower() for name in headers.get("Vary", "").split(",") if name.strip()}


def test_health_checks_the_image_root_at_most_every_few_seconds(tmp_path, monkeypatch, make_app):
    app = make_app(tmp_path)
    reads = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: reads.append(path) or scandir(path))
    for _ in range(50):
        assert call(app, "/health")[0] == 200
    assert len(reads) == 1


def test_shipped_web_server_files_keep_metrics_local():
    """Apache and OpenLiteSpeed (Apache's loopback case runs in test_deploy_web): the rule is there."""
    apache = (CONF / "apache2" / "pyiip.conf").read_text()
    assert re.search(r'<Location "/metrics">\s*(#[^\n]*\n\s*)*Require local\s*</Location>', apache)
    ols = (CONF / "openlitespeed" / "pyiip.conf").read_text()
    block = re.search(r"context exp:\^/metrics\$ \{(.*?)\n\}", ols, re.S)
    assert block and re.search(r"allow\s+127\.0\.0\.1, ::1\s+deny\s+ALL", block.group(1))


def test_index_caches_per_directory_and_pages(tmp_path, monkeypatch, make_app):
    """25,000 files: the second listing reads no directory again; a page links 1000 images."""
    root = tmp_path / "many"
    root.mkdir()
    for number in range(25_000):
        (root / f"n{number:05}.tif").touch()
    settled = time.time() - 10
    os.utime(root, (settled, settled))  # changed long enough ago for its listing to be kept
    app = make_app(root)
    reads = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: reads.append(path) or scandir(path))
    started = time.perf_counter()
    status, _, first = call(app, "/")
    cold = time.perf_counter() - started
    assert status == 200 and len(reads) == 1
    started = time.perf_counter()
    status, _, again = call(app, "/")
    warm = time.perf_counter() - started
    assert status == 200 and again == first and len(reads) == 1  # the directory's mtime did not change
    print(f"GET / with 25,000 files: first {cold * 1000:.0f} ms, second {warm * 1000:.0f} ms")
    assert b"25000 image(s)" in first and first.count(b'class="image"') == index.PAGE_SIZE
    assert b"n00999.tif" in first and b"n01000.tif" not in first and b"page 1 of 25" in first
    status, _, last = call(app, "/?page=25")
    assert status == 200 and last.count(b'class="image"') == 1000 and b"n24999.tif" in last
    assert b"n23999.tif" not in last and b"?page=24" in last
    assert call(app, "/?page=99999999999")[2] == last  # out of range: the last page
    (root / "added.tif").touch()  # the directory changes: read again, and again while its mtime is recent
    assert b"25001 image(s)" in call(app, "/")[2] and len(reads) == 2
    (root / "added2.tif").touch()
    assert b"25002 image(s)" in call(app, "/")[2] and len(reads) == 3


def test_replies_vary_on_the_headers_they_read(images, make_app):
    app = make_app(images.root)
    status, headers, body = call(app, "/iiif/3/rgb.tif/info.json", HTTP_X_IIIF_ID="https://evil.test/x")
    assert status == 200 and json.loads(body)["id"] == "https://evil.test/x"
    assert {"x-iiif-id", "x-forwarded-proto", "accept"} <= vary(headers)
    status, headers, _ = call(app, "/iiif/3/rgb.tif/0,0,256,256/256,/0/default.jpg", HTTP_X_FORWARDED_PROTO="https")
    assert (
        status == 200
        and '<https://images.test/iiif/3/rgb.tif/0,0,256,256/max/0/default.jpg>;rel="canonical"' in (headers["Link"])
    )
    assert "x-forwarded-proto" in vary(headers)
    # A tile made without a request header varies on none.
    status, headers, _ = call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=0,0")
    assert status == 200 and "Vary" not in headers
    # With BASE_URL the ids do not depend on X-Forwarded-Proto: no Vary for it.
    based = make_app(images.root, BASE_URL="https://images.example.org/")
    status, headers, body = call(based, "/iiif/3/rgb.tif/info.json", HTTP_X_FORWARDED_PROTO="http")
    assert json.loads(body)["id"] == "https://images.example.org/iiif/3/rgb.tif"
    assert "x-forwarded-proto" not in vary(headers) and "x-iiif-id" in vary(headers)


def test_kept_replies_follow_the_varying_headers(images, make_app):
    """A reply kept for one value of X-IIIF-ID or X-Forwarded-Proto is never sent for another."""
    app = make_app(images.root)
    uri = "/iiif/3/rgb.tif/info.json"
    for _ in range(3):  # kept from the second time on
        assert json.loads(call(app, uri, HTTP_X_IIIF_ID="https://evil.test/x")[2])["id"] == "https://evil.test/x"
    assert json.loads(call(app, uri)[2])["id"] == "http://images.test/iiif/3/rgb.tif"
    for _ in range(3):
        body = call(app, uri, HTTP_X_FORWARDED_PROTO="https")[2]
        assert json.loads(body)["id"] == "https://images.test/iiif/3/rgb.tif"
    assert json.loads(call(app, uri, HTTP_X_FORWARDED_PROTO="http")[2])["id"] == "http://images.test/iiif/3/rgb.tif"
    assert app.service.cache.replies.hits >= 2  # the kept replies were used, and kept apart


def lighttpd_settings(text: str) -> dict[str, str]:
    return dict(re.findall(r'^\s*"([A-Z_]+)"\s*=>\s*"([^"]*)"', text, re.M))


def _apache(text: str) -> dict[str, str]:
    return dict(re.findall(r'^\s*FcgidInitialEnv\s+([A-Z_]+)\s+"([^"]*)"', text, re.M))


def _openlitespeed(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*env\s+([A-Z_]+)=(\S*)", text, re.M))


def _containerfile(text: str) -> dict[str, str]:
    block = re.search(r"^ENV (.*?)(?<!\\)\n", text, re.M | re.S)
    assert block
    return dict(item.split("=", 1) for item in shlex.split(block.group(1).replace("\\\n", " ")))


def _environment_file(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Z_]+)=(.*)$", text, re.M))


def _systemd(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in re.findall(r"^Environment=(.*)$", text, re.M):
        values |= dict(item.split("=", 1) for item in shlex.split(line))
    return values


SHIPPED = {
    CONF / "lighttpd" / "pyiip.conf": lighttpd_settings,
    CONF / "apache2" / "pyiip.conf": _apache,
    CONF / "openlitespeed" / "pyiip.conf": _openlitespeed,
    DEPLOY / "Containerfile": _containerfile,
    DEPLOY / "default" / "pyiip": _environment_file,  # nginx's processes (spawn-fcgi wrapper, systemd)
    DEPLOY / "systemd" / "pyiip.service": _systemd,  # when /etc/default/pyiip is missing
}


@pytest.mark.parametrize("path", list(SHIPPED), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_configuration_limits_process_memory(path):
    values = SHIPPED[path](path.read_text())
    assert "MAX_PROCESS_MEMORY" in values, path
    settings = config.load(values)  # accepted: at least MAX_REQUEST_MEMORY + 512
    assert settings.max_process_memory >= settings.max_request_memory + 512
