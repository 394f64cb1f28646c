"""X-Request-ID in replies and log lines, LOG_FORMAT=json, and the METRICS_DIR checks."""

from __future__ import annotations

import json
import os
import re

import pytest

from pyiip import config, log
from pyiip.config import ConfigError
from pyiip.respond.app import Application

TILE = "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=1,0"
MADE = re.compile(r"[0-9a-f]{16}-[0-9a-f]+")


def ask(app: Application, uri: str, request_id: str | None = None) -> dict[str, str]:
    environ = {"REQUEST_URI": uri, "QUERY_STRING": uri.partition("?")[2], "REQUEST_METHOD": "GET"}
    if request_id is not None:
        environ["HTTP_X_REQUEST_ID"] = request_id
    reply = app.handle(environ)
    assert reply.cgi_head().endswith(f"X-Request-ID: {reply.request_id}\r\n\r\n".encode())
    return dict(reply.all_headers())


@pytest.mark.parametrize("given", ["abc-123", "f" * 128, "req.1_2~3!#$%&'*+^`|"])
def test_a_valid_request_id_is_kept(images, make_app, given):
    assert ask(make_app(images.root), TILE, given)["X-Request-ID"] == given


@pytest.mark.parametrize("given", ["", "f" * 129, "two words", "line\nbreak", "<script>", 'q"uote', "é"])
def test_an_invalid_request_id_is_replaced(images, make_app, given):
    made = ask(make_app(images.root), TILE, given)["X-Request-ID"]
    assert made != given and MADE.fullmatch(made)


def test_made_ids_differ_and_a_kept_reply_carries_each_requests_own(images, make_app):
    app = make_app(images.root)
    made = [ask(app, TILE)["X-Request-ID"] for _ in range(4)]  # the third and fourth are kept replies
    assert len(set(made)) == 4 and all(MADE.fullmatch(m) for m in made)
    assert app.service.cache.replies.hits == 2
    assert ask(app, TILE, "mine")["X-Request-ID"] == "mine"


def test_browsers_may_read_the_request_id(images, make_app):
    headers = ask(make_app(images.root, CORS="*"), TILE)
    assert "X-Request-ID" in headers["Access-Control-Expose-Headers"]


def test_json_log_lines(images, tmp_path):
    logfile = tmp_path / "pyiip.log"
    settings = config.load(
        {"FILESYSTEM_PREFIX": f"{images.root}/", "VERBOSITY": "2", "LOGFILE": str(logfile), "LOG_FORMAT": "json"}
    )
    log.setup(settings)
    try:
        app = Application(settings)
        ask(app, TILE, "trace-42")
        ask(app, '/iiif/3/with "quote"\n.tif/info.json')
        log.LOGGER.error("plain message")
    finally:
        log.setup(config.load({"VERBOSITY": "0"}))
    lines = [json.loads(line) for line in logfile.read_text().splitlines()]  # every line one object
    tile = next(line for line in lines if line.get("kind") == "iip_tile")
    assert tile["id"] == "trace-42" and tile["status"] == 200 and tile["method"] == "GET" and tile["uri"] == TILE
    assert tile["level"] == "INFO" and tile["pid"] == os.getpid() and tile["message"] == "request"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", tile["time"])
    assert isinstance(tile["ms"], float) and tile["bytes"] > 0
    odd = next(line for line in lines if line.get("kind") == "iiif_info")
    assert odd["status"] == 404 and MADE.fullmatch(odd["id"]) and "%0A" in odd["uri"]
    assert {"message": "plain message", "level": "ERROR"}.items() <= lines[-1].items()


def test_log_format_must_be_text_or_json():
    with pytest.raises(ConfigError, match="LOG_FORMAT must be text or json"):
        config.load({"LOG_FORMAT": "xml"})


def test_metrics_dir_is_made_private_and_refused_when_others_may_write(tmp_path):
    made = tmp_path / "new" / "metrics"
    assert config.load({"METRICS_DIR": str(made)}).metrics_dir == str(made)
    assert made.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match=f"^METRICS_DIR {shared} is writable by its group or others"):
        config.load({"METRICS_DIR": str(shared)})  # config.private_directory's rules, tested there
