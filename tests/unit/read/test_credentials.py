"""Where S3 credentials come from (read.credentials), without a network: settings, profile files, no botocore."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pyiip import config
from pyiip.read.credentials import Chain, Fixed, credential_source
from pyiip.read.sigv4 import Credentials, sign_v4

S3 = {"S3_BUCKET": "images", "S3_ENDPOINT_URL": "http://127.0.0.1:9"}


@pytest.fixture
def profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A shared credentials file with a default profile, and nothing else botocore could find."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "credentials"
    path.write_text("[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return path


def test_the_signing_key_cache_holds_one_key_per_secret() -> None:
    """Refreshed credentials on the same day and region must not be signed with the old secret's key."""
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    keys: dict[tuple[str, str, str], bytes] = {}
    for credentials in (Credentials("A1", "first"), Credentials("A2", "second"), Credentials("A1", "first")):
        cached = sign_v4("GET", "h", "/k", {}, credentials, "us-east-1", now=now, key_cache=keys)
        assert cached == sign_v4("GET", "h", "/k", {}, credentials, "us-east-1", now=now)


def test_keys_in_the_settings_are_used_as_they_are() -> None:
    source = credential_source(config.load({**S3, "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"}))
    assert isinstance(source, Fixed)
    assert source.current(0.0) == Credentials("AKID", "s", "")


def test_a_profile_is_found_by_the_chain(profile: Path) -> None:
    source = credential_source(config.load(S3))
    assert isinstance(source, Chain)
    assert source.current(time.monotonic() + 10) == Credentials("AKIDPROFILE", "profile-secret", "")


def test_a_missing_profile_or_a_broken_config_file_stops_start_up(
    profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(config.ConfigError, match="'nobody'"):
        credential_source(config.load(S3))
    monkeypatch.delenv("AWS_PROFILE")
    profile.write_text("[default\naws_access_key_id\n")
    with pytest.raises(config.ConfigError, match="AWS configuration"):
        credential_source(config.load(S3))


class _HeldEndpoint(http.server.BaseHTTPRequestHandler):
    """ECS container credentials; the first request is held until the test releases it."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        server.calls += 1  # type: ignore[attr-defined]
        if server.calls == 1:  # type: ignore[attr-defined]
            server.release.wait(20)  # type: ignore[attr-defined]
        expiration = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = json.dumps({"AccessKeyId": "ASIAECS", "SecretAccessKey": "s", "Token": "t", "Expiration": expiration})
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


def test_a_forked_child_resolves_its_own_credentials(profile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers fork after start-up: a child must not wait for its parent's resolving thread, which it lacks."""
    profile.write_text("")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HeldEndpoint)
    server.daemon_threads = True
    server.calls, server.release = 0, threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{server.server_port}/creds")
    try:
        chain = Chain(10.0)  # its thread's request is held
        while server.calls == 0:  # type: ignore[attr-defined]
            time.sleep(0.01)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report and leave without running pytest's exit handlers
            try:
                found = chain.current(time.monotonic() + 5)
                os.write(write, (found.access_key if found else "none").encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read, "rb") as pipe:
            assert pipe.read() == b"ASIAECS"
        server.release.set()  # type: ignore[attr-defined]
        assert chain.current(time.monotonic() + 10) == Credentials("ASIAECS", "s", "t")
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


def test_without_botocore_keys_still_sign_and_the_rest_is_unsigned_with_a_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("botocore", "botocore.session", "botocore.config", "botocore.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)  # as if the 's3' extra were not installed
    logger = logging.getLogger("pyiip")
    monkeypatch.setattr(logger, "propagate", True)
    with caplog.at_level(logging.WARNING, logger="pyiip"):
        assert credential_source(config.load(S3)) is None
    assert "botocore is not installed" in caplog.text and "pyiip[s3]" in caplog.text
    keys = credential_source(config.load({**S3, "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"}))
    assert isinstance(keys, Fixed)


def test_botocore_is_imported_only_for_s3_without_keys(tmp_path: Path) -> None:
    """A local-file server, and an S3 one with keys in its settings, never load botocore."""
    script = f"""
import sys
from pyiip import config
from pyiip.http import Request
from pyiip.respond.app import Application
from tests.support.imaging import rgb_pattern, write_vips_pyramid
write_vips_pyramid({str(tmp_path / "local.tif")!r}, rgb_pattern(300, 200))
app = Application(config.load({{"FILESYSTEM_PREFIX": {str(tmp_path)!r} + "/", "VERBOSITY": "0"}}))
assert app.respond(Request(method="GET", path="/iiif/3/local.tif/info.json", query="")).status == 200
assert app.respond(Request(method="GET", path="/iiif/3/local.tif/full/100,/0/default.jpg", query="")).status == 200
keys = {{"S3_BUCKET": "bucket", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "VERBOSITY": "0"}}
Application(config.load(keys))
print("botocore" in sys.modules)
Application(config.load({{"S3_BUCKET": "bucket", "VERBOSITY": "0"}}))
print("botocore" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    repo = Path(__file__).resolve().parents[3]
    env["PYTHONPATH"] = os.pathsep.join([str(repo / "src"), str(repo), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_botocore_is_the_s3_extra_and_the_container_image_installs_it() -> None:
    """Optional for local files, present where IRSA and task roles are the rule (the container image)."""
    import tomllib

    repo = Path(__file__).resolve().parents[3]
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("botocore") for d in project["dependencies"])
    assert any(d.startswith("botocore") for d in project["optional-dependencies"]["s3"])
    assert "'.[s3]'" in (repo / "deploy" / "Containerfile").read_text()
