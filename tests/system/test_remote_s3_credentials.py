"""S3 credentials from botocore's chain, against moto's S3 and STS (which check every signature and token).

A web identity token exchanged at STS (Kubernetes IRSA) in a real ``pyiip serve``, a profile in a
shared credentials file, EC2 instance metadata (IMDSv2), ECS container credentials near expiry
served by a local endpoint that hands out a new STS session at each call, and that endpoint lying
(bad JSON, expired credentials, silence).
Each test isolates botocore from the machine: no ~/.aws, no instance metadata.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pyiip import config
from pyiip.http import Request, Response
from pyiip.read import credentials
from pyiip.respond.app import Application
from tests.support.imaging import rgb_pattern, write_vips_pyramid
from tests.support.objectstores import MotoS3, moto_s3
from tests.support.servers import VENV_BIN, free_port, get, http_server

BUCKET = "images"
ADVISORY = 15 * 60  # botocore refreshes credentials this many seconds before they expire


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    root = tmp_path_factory.mktemp("s3-credentials")
    write_vips_pyramid(root / "rgb.tif", np.tile(rgb_pattern(512, 512, seed=3), (2, 2, 1)))
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        client = server.s3()
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(str(root / "rgb.tif"), BUCKET, "rgb.tif")
        client.upload_file(str(root / "rgb.tif"), BUCKET, "copy.tif")
        yield server


@pytest.fixture(scope="module")
def role(s3: MotoS3) -> str:
    return s3.role("pyiip-reader")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """An environment where botocore finds nothing of this machine's; tests add their one source."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    env = {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def pyiip_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The pyiip logger's records (it may not propagate once a server set it up in this process)."""
    logger = logging.getLogger("pyiip")
    attach = not logger.propagate
    if attach:
        logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield caplog
    finally:
        if attach:
            logger.removeHandler(caplog.handler)
        logger.setLevel(level)


def s3_settings(s3: MotoS3, tmp_path: Path, **extra: str) -> dict[str, str]:
    """S3 settings without keys (the chain's turn); every request probes the object (TTL 0)."""
    return {
        "S3_BUCKET": BUCKET,
        "S3_ENDPOINT_URL": s3.endpoint,
        "BLOCK_CACHE_DIR": str(tmp_path / "blocks"),
        "REMOTE_BLOCK_SIZE": "16",
        "REMOTE_METADATA_TTL": "0",
        "VERBOSITY": "0",
        **extra,
    }


def info(app: Application, identifier: str = "rgb.tif") -> Response:
    return app.respond(Request(method="GET", path=f"/iiif/3/{identifier}/info.json", query=""))


# --- the chain's sources -------------------------------------------------------------------------


def test_a_web_identity_token_is_exchanged_at_sts_by_a_real_server(
    s3: MotoS3, role: str, aws: dict[str, str], tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("eyJhbGciOi.a-projected-service-account-token.sig")
    env = {
        **aws,
        **s3_settings(s3, tmp_path),
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
        "AWS_ROLE_ARN": role,
        "AWS_ROLE_SESSION_NAME": "pyiip",
        "AWS_ENDPOINT_URL_STS": s3.endpoint,
    }
    s3.clear_log()
    s3.allow_unsigned(1)  # AssumeRoleWithWebIdentity is unsigned; every S3 request after it is checked
    port, server = http_server(tmp_path, env, workers=1)
    with server:
        status, _headers, body = get(f"http://127.0.0.1:{port}/iiif/3/rgb.tif/info.json", timeout=30)
        assert status == 200, body
        assert get(f"http://127.0.0.1:{port}/iiif/3/rgb.tif/0,0,256,256/256,/0/default.jpg")[0] == 200
    signers = s3.signers()
    assert signers and len(set(signers)) == 1
    key, session = signers[0]
    assert key.startswith("ASIA") and session  # STS session credentials, token sent with each request


def test_a_profile_of_the_shared_credentials_file(
    s3: MotoS3, aws: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path(aws["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        f"[default]\naws_access_key_id = AKIAWRONGWRONGWRONG0\naws_secret_access_key = wrong\n\n"
        f"[reader]\naws_access_key_id = {s3.access_key}\naws_secret_access_key = {s3.secret_key}\n"
    )
    Path(aws["AWS_CONFIG_FILE"]).write_text("[profile reader]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_PROFILE", "reader")
    s3.clear_log()
    assert info(Application(config.load(s3_settings(s3, tmp_path)))).status == 200
    assert set(s3.signers()) == {(s3.access_key, "")}

    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(config.ConfigError, match="'nobody'"):
        Application(config.load(s3_settings(s3, tmp_path)))


@pytest.mark.parametrize("entry", ["serve", "fcgi"])
def test_a_missing_profile_stops_the_server_before_its_workers(entry: str, aws: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    command = {
        "serve": [str(VENV_BIN / "pyiip"), "serve", "--port", str(port), "--workers", "2"],
        "fcgi": [str(VENV_BIN / "pyiip.fcgi"), "--bind", f"127.0.0.1:{port}", "--workers", "2"],
    }[entry]
    env = {**os.environ, "AWS_PROFILE": "nobody", "S3_BUCKET": BUCKET, "LOGFILE": "-"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == "pyiip: AWS_PROFILE names profile 'nobody', found in no AWS config or credentials file\n"


def test_without_any_credentials_requests_are_unsigned_and_logged(
    s3: MotoS3, aws: dict[str, str], tmp_path: Path, pyiip_log: pytest.LogCaptureFixture
) -> None:
    s3.clear_log()
    assert info(Application(config.load(s3_settings(s3, tmp_path)))).status == 502  # moto refuses: 403
    assert set(s3.signers()) == {("", "")}
    assert "none found by botocore's credential chain" in pyiip_log.text


# --- ECS container credentials: expiry and lies ----------------------------------------------------


class CredentialEndpoint(http.server.ThreadingHTTPServer):
    """An ECS container-credentials endpoint on loopback: a new STS session per call, or a lie.

    ``mode``: good (the next session, expiring ``lifetime`` seconds from now), badjson, expired (a
    real session whose Expiration has passed) or slow (no answer until the endpoint stops).
    """

    daemon_threads = True

    def __init__(self, sessions: list[dict], lifetime: float) -> None:
        super().__init__(("127.0.0.1", 0), _CredentialHandler)
        self.sessions, self.lifetime = sessions, lifetime
        self.mode = "good"
        self.calls = 0
        self.stopping = threading.Event()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v2/credentials/task"

    def answer(self) -> bytes:
        self.calls += 1
        if self.mode == "slow":
            self.stopping.wait(60)
        if self.mode == "badjson":
            return b'{"AccessKeyId": "ASIA'
        session = self.sessions[min(self.calls, len(self.sessions)) - 1]
        lifetime = -60 if self.mode == "expired" else self.lifetime
        expiration = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lifetime)
        document = {
            "AccessKeyId": session["AccessKeyId"],
            "SecretAccessKey": session["SecretAccessKey"],
            "Token": session["SessionToken"],
            "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return json.dumps(document).encode()


IMDS_ROLES = "/latest/meta-data/iam/security-credentials/"
IMDS_TOKEN = "imds-session-token"


class _CredentialHandler(http.server.BaseHTTPRequestHandler):
    """The ECS endpoint at any path; EC2 instance metadata (IMDSv2: a PUT token, then GETs with it) under /latest/."""

    def log_message(self, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._reply(200, IMDS_TOKEN.encode())
        else:
            self._reply(400, b"")

    def do_GET(self) -> None:
        if not self.path.startswith("/latest/"):
            self._reply(200, self.server.answer())  # type: ignore[attr-defined]
        elif self.headers.get("X-aws-ec2-metadata-token") != IMDS_TOKEN:
            self._reply(401, b"")
        elif self.path == IMDS_ROLES:
            self._reply(200, b"pyiip-node")
        elif self.path == IMDS_ROLES + "pyiip-node":
            document = json.loads(self.server.answer())  # type: ignore[attr-defined]
            self._reply(200, json.dumps({"Code": "Success", "Type": "AWS-HMAC", **document}).encode())
        else:
            self._reply(404, b"")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def sessions(s3: MotoS3, role: str) -> list[dict]:
    return s3.temporary_credentials(role, 4)


@pytest.fixture
def endpoint(
    sessions: list[dict], aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[CredentialEndpoint]:
    server = CredentialEndpoint(sessions, ADVISORY + 3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", server.uri)
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_instance_metadata_v2(
    s3: MotoS3, endpoint: CredentialEndpoint, sessions: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EC2 instance metadata, last in the chain, with IMDSv2's session token (our endpoint refuses without it)."""
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{endpoint.server_port}/")
    s3.clear_log()
    assert info(Application(config.load(s3_settings(s3, tmp_path)))).status == 200
    assert set(s3.signers()) == {(sessions[0]["AccessKeyId"], sessions[0]["SessionToken"])}
    assert endpoint.calls == 1


def test_expiring_container_credentials_are_refreshed_while_serving(
    s3: MotoS3,
    endpoint: CredentialEndpoint,
    sessions: list[dict],
    tmp_path: Path,
    pyiip_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(credentials, "FRESH_FOR", 1.0)  # botocore asked once a second, not once per 30 s
    app = Application(config.load(s3_settings(s3, tmp_path)))
    s3.clear_log()
    for _ in range(5):  # fresh credentials: no call to the endpoint after the first
        assert info(app).status == 200
    assert endpoint.calls == 1
    assert {key for key, _ in s3.signers()} == {sessions[0]["AccessKeyId"]}
    time.sleep(3.5)  # now within botocore's advisory window: refreshed in the background, the old ones serve on
    deadline = time.monotonic() + 20
    while sessions[1]["AccessKeyId"] not in {key for key, _ in s3.signers()} and time.monotonic() < deadline:
        assert info(app).status == 200
        time.sleep(0.05)
    signers = s3.signers()
    assert (sessions[1]["AccessKeyId"], sessions[1]["SessionToken"]) in signers
    assert {key for key, _ in signers} <= {sessions[0]["AccessKeyId"], sessions[1]["AccessKeyId"]}
    assert endpoint.calls == 2
    # An object never read: no stale version to fall back on, the new credentials must be accepted.
    assert info(app, "copy.tif").status == 200
    assert s3.signers()[-1] == (sessions[1]["AccessKeyId"], sessions[1]["SessionToken"])
    assert "access denied" not in pyiip_log.text and "cannot revalidate" not in pyiip_log.text


@pytest.mark.parametrize(
    ("mode", "timeout", "logged"),
    [
        ("badjson", 5, "CredentialRetrievalError"),  # after botocore's 3 attempts, 1 s apart
        ("expired", 5, "still expired"),
        ("slow", 1, "did not answer within REMOTE_TIMEOUT"),
    ],
)
def test_a_lying_credential_endpoint_gives_503_and_a_log_line(
    mode: str,
    timeout: int,
    logged: str,
    s3: MotoS3,
    endpoint: CredentialEndpoint,
    tmp_path: Path,
    pyiip_log: pytest.LogCaptureFixture,
) -> None:
    endpoint.mode = mode
    app = Application(config.load(s3_settings(s3, tmp_path, REMOTE_TIMEOUT=str(timeout))))
    started = time.monotonic()
    reply = info(app)
    assert time.monotonic() - started < timeout + 3  # REMOTE_TIMEOUT bounds it, not the endpoint's silence
    assert reply.status == 503
    assert ("Retry-After", "5") in reply.headers
    assert b"credentials" in reply.body and b"127.0.0.1" not in reply.body
    assert "S3 credentials:" in pyiip_log.text and logged in pyiip_log.text
    if mode != "slow":  # the provider recovers: so does the same application
        endpoint.mode = "good"
        assert info(app).status == 200
