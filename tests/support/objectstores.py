"""Object stores for the remote-source tests: nginx serving files with ranges, moto's S3 server, and a
hostile store that drips, ignores Range or streams endless bodies on purpose.

nginx and moto run as real servers on free loopback ports, stopped by their
PIDs, and both log every request with its Range header, so tests can check
which bytes were read. The hostile store is a threaded loopback server in
the test process.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import VENV_BIN, free_port, require, stop, wait_for_port

LOG_FORMAT = (
    '$request_method $request_uri $status "$http_range" $body_bytes_sent "$http_if_match" "$http_if_none_match"'
)


@dataclass(frozen=True)
class Access:
    """One request as an object store saw it."""

    method: str
    path: str
    status: int
    range: str  # "" when none was sent
    sent: int  # body bytes (nginx), -1 when the log does not say (moto)
    if_match: str = ""
    if_none_match: str = ""

    @property
    def span(self) -> tuple[int, int] | None:
        """The (first, last) bytes a ``bytes=a-b`` Range asked for."""
        if not self.range.startswith("bytes="):
            return None
        first, _, last = self.range[6:].partition("-")
        return int(first), int(last)


@dataclass
class Nginx:
    """nginx serving ``root`` at ``/images/``, with two misbehaving locations for the fault tests.

    ``/norange/`` serves the same files but ignores Range (``max_ranges 0``:
    a 200 with the whole file); ``/errorpage/`` answers everything with a 200
    HTML error page, as some proxies and misconfigured stores do.
    """

    root: Path
    directory: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "access.log"

    def start(self) -> Nginx:
        nginx = require("nginx")
        self.port = free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = self.directory / "temp"
        temp.mkdir(exist_ok=True)
        user = "user root root;" if os.geteuid() == 0 else ""  # the workers must read pytest's 0700 temp dirs
        config = self.directory / "nginx.conf"
        config.write_text(
            f"""worker_processes 1;
{user}
pid {self.directory}/nginx.pid;
error_log {self.directory}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format ranges '{LOG_FORMAT}';
    access_log {self.log_path} ranges;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{self.port};
        location /images/ {{ alias {self.root}/; }}
        location /norange/ {{ alias {self.root}/; max_ranges 0; }}
        location /errorpage/ {{ default_type text/html; return 200 "<html><body>Service error</body></html>"; }}
    }}
}}
"""
        )
        command = [nginx, "-p", str(self.directory), "-c", str(config), "-g", "daemon off;"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port, process=self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, timeout=5)
            if self.process.stderr is not None:
                self.process.stderr.close()

    def _settled_log(self, at_least: int) -> str:
        """The log once it holds ``at_least`` lines and stops growing.

        nginx writes a line after sending the reply, so a client can hold the
        reply before its line is written.
        """
        deadline = time.monotonic() + 5.0
        text = self.log_path.read_text() if self.log_path.exists() else ""
        while time.monotonic() < deadline:
            time.sleep(0.05)
            again = self.log_path.read_text() if self.log_path.exists() else ""
            if again == text and text.count("\n") >= at_least:
                break
            text = again
        return text

    def log(self, at_least: int = 1) -> list[Access]:
        """The requests logged so far (waiting up to 5 s for ``at_least`` of them)."""
        out = []
        for line in self._settled_log(at_least).splitlines():
            method, path, status, rest = line.split(" ", 3)
            quoted = rest.split('"')  # ['', range, ' sent ', if-match, ' ', if-none-match, '']
            out.append(
                Access(method, path, int(status), _dash(quoted[1]), int(quoted[2]), _dash(quoted[3]), _dash(quoted[5]))
            )
        return out

    def clear_log(self) -> None:
        self.log_path.write_text("")  # nginx appends with O_APPEND: truncation is safe


def _dash(value: str) -> str:
    """A logged header value: ``-`` when absent; nginx writes quotes as ``\\x22``."""
    return "" if value == "-" else value.replace("\\x22", '"')


@contextlib.contextmanager
def nginx(root: Path, directory: Path) -> Iterator[Nginx]:
    server = Nginx(root, directory).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class MotoS3:
    """moto's standalone server with request recording and SigV4 checking turned on.

    The first three requests (creating an IAM user, its access key and an
    inline policy allowing S3) go unauthenticated, as moto's
    INITIAL_NO_AUTH_ACTION_COUNT allows; every later request must carry a
    valid signature made with that key.
    """

    directory: Path
    port: int = 0
    process: subprocess.Popen | None = None
    access_key: str = ""
    secret_key: str = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def recording(self) -> Path:
        return self.directory / "moto-recording.jsonl"

    def start(self) -> MotoS3:
        self.port = free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        program = shutil.which("moto_server", path=str(VENV_BIN)) or str(VENV_BIN / "moto_server")
        command = [program, "-H", "127.0.0.1", "-p", str(self.port)]
        if not os.path.exists(program):
            command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        env = {
            **os.environ,
            "INITIAL_NO_AUTH_ACTION_COUNT": "3",
            "MOTO_ENABLE_RECORDING": "1",
            "MOTO_RECORDER_FILEPATH": str(self.recording),
            "AWS_ACCESS_KEY_ID": "setup",
            "AWS_SECRET_ACCESS_KEY": "setup",
        }
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=60, process=self.process)
        iam = self._client("iam", "setup", "setup")
        iam.create_user(UserName="pyiip")
        key = iam.create_access_key(UserName="pyiip")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="pyiip", PolicyName="s3", PolicyDocument=json.dumps(policy))
        return self

    def _client(self, service: str, access_key: str, secret_key: str):
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def s3(self):
        """A boto3 S3 client signing with the pyiip user's key."""
        return self._client("s3", self.access_key, self.secret_key)

    def allow_unsigned(self, count: int) -> None:
        """Let the next ``count`` requests through unauthenticated (STS AssumeRoleWithWebIdentity is unsigned)."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=str(count).encode(),
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away from request.data
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def role(self, name: str) -> str:
        """The ARN of a new role allowed S3 (2 unsigned requests): what web identity tokens are exchanged for."""
        self.allow_unsigned(2)
        iam = self._client("iam", "setup", "setup")
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Federated": "oidc"}, "Action": "sts:AssumeRoleWithWebIdentity"}
            ],
        }
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_role_policy(RoleName=name, PolicyName="s3", PolicyDocument=json.dumps(policy))
        return arn

    def temporary_credentials(self, role_arn: str, count: int) -> list[dict[str, str]]:
        """``count`` sets of STS credentials for the role (AccessKeyId, SecretAccessKey, SessionToken)."""
        self.allow_unsigned(count)
        sts = self._client("sts", "setup", "setup")
        return [
            sts.assume_role_with_web_identity(RoleArn=role_arn, RoleSessionName=f"s{i}", WebIdentityToken="token")[
                "Credentials"
            ]
            for i in range(count)
        ]

    def clear_log(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/recorder/reset-recording", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def log(self) -> list[Access]:
        """GETs of objects recorded since the last clear_log (moto records requests, not statuses)."""
        out = []
        if not self.recording.exists():
            return out
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            path = entry["url"].split("://", 1)[-1].partition("/")[2]
            out.append(
                Access(
                    entry["method"],
                    "/" + path,
                    -1,
                    headers.get("range", ""),
                    -1,
                    headers.get("if-match", ""),
                    headers.get("if-none-match", ""),
                )
            )
        return out

    def signers(self) -> list[tuple[str, str]]:
        """(access key id, security token) of each GET recorded since the last clear_log; ("", "") unsigned."""
        out = []
        for line in self.recording.read_text().splitlines() if self.recording.exists() else ():
            entry = json.loads(line)
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            if entry["method"] == "GET":
                key = headers.get("authorization", "").partition("Credential=")[2].partition("/")[0]
                out.append((key, headers.get("x-amz-security-token", "")))
        return out

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, timeout=5)


@contextlib.contextmanager
def moto_s3(directory: Path) -> Iterator[MotoS3]:
    server = MotoS3(directory)
    try:
        yield server.start()
    finally:
        server.stop()


# --- a hostile object store -----------------------------------------------------------------------

HOSTILE_MODES = (
    "good",
    "drip",
    "dripall",
    "norange",
    "wholerange",
    "overlong",
    "trailing",
    "unbounded",
    "chunked",
    "error403",
    "error503",
)
STREAM_PIECE = bytes(1 << 20)


class HostileHandler(http.server.BaseHTTPRequestHandler):
    """``GET /MODE/NAME``: file NAME under the store's root, served as MODE says.

    good: an honest 206. drip: an honest 206 whose body comes one byte every
    ``interval`` seconds; dripall: the status line and headers drip too.
    The others stream ``extra`` bytes of zeros (generated, never on disk):
    norange answers 200 with the whole file and the zeros after it;
    wholerange the same as a 206 whose Content-Range says so; overlong an
    honest Content-Range with a Content-Length that counts the zeros;
    trailing honest headers, and the zeros after the body they announce;
    unbounded the same without Content-Length until it closes; chunked as
    chunks; error403 and error503 an error whose body is the zeros (error503
    chunked).
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        store: HostileStore = self.server.store  # type: ignore[attr-defined]
        mode, _, name = self.path.lstrip("/").partition("/")
        store.requests.append(self.path)
        try:
            data = (store.root / name).read_bytes()
        except OSError:
            data = None
        if mode not in HOSTILE_MODES or data is None:
            self._head(404, [("Content-Length", "0")])
            return
        first, last = self._range(len(data))
        body = data[first : last + 1]
        honest = [("ETag", '"v1"'), ("Content-Range", f"bytes {first}-{last}/{len(data)}")]
        if mode == "good":
            self._head(206, [*honest, ("Content-Length", str(len(body)))])
            self.wfile.write(body)
        elif mode in ("drip", "dripall"):
            self._drip(206, [*honest, ("Content-Length", str(len(body)))], body, store, mode == "dripall")
        else:
            status, headers, head = _streamed(mode, data, body, honest, store.extra)
            self._head(status, headers)
            self._stream(head, store.extra, chunked=("Transfer-Encoding", "chunked") in headers)

    def _range(self, size: int) -> tuple[int, int]:
        first, _, last = (self.headers.get("Range") or "bytes=0-")[6:].partition("-")
        return int(first), min(int(last or size - 1), size - 1)

    def _head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def _drip(self, status: int, headers: list[tuple[str, str]], body: bytes, store: HostileStore, all_: bool) -> None:
        """Send the reply a byte per ``store.interval`` (only its body unless ``all_``) until the client leaves."""
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        head = b"".join(self._headers_buffer) + b"\r\n"  # type: ignore[attr-defined]
        self._headers_buffer = []  # type: ignore[attr-defined]
        if not all_:
            self.wfile.write(head)
        reply = head + body if all_ else body
        self.close_connection = True
        for position in range(len(reply)):
            if store.stopping.wait(store.interval):
                return
            try:
                self.wfile.write(reply[position : position + 1])
                self.wfile.flush()
            except OSError:
                return

    def _stream(self, head: bytes, zeros: int, *, chunked: bool = False) -> None:
        """``head`` then ``zeros`` zero bytes, in 1 MiB pieces, until done or the client leaves."""
        self.close_connection = True
        pieces = [head] + [STREAM_PIECE] * (zeros // len(STREAM_PIECE)) + [STREAM_PIECE[: zeros % len(STREAM_PIECE)]]
        try:
            for piece in pieces:
                if not piece:
                    continue
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                else:
                    self.wfile.write(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            return


def _streamed(
    mode: str, data: bytes, body: bytes, honest: list[tuple[str, str]], extra: int
) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, bytes before the zeros) of a streaming mode of HostileHandler."""
    whole = len(data) + extra
    chunked = ("Transfer-Encoding", "chunked")
    error = ("Content-Type", "application/xml")
    return {
        "norange": (200, [("ETag", '"v1"'), ("Content-Length", str(whole))], data),
        "wholerange": (
            206,
            [("ETag", '"v1"'), ("Content-Range", f"bytes 0-{whole - 1}/{whole}"), ("Content-Length", str(whole))],
            data,
        ),
        "overlong": (206, [*honest, ("Content-Length", str(len(body) + extra))], body),
        "trailing": (206, [*honest, ("Content-Length", str(len(body)))], body),
        "unbounded": (206, [*honest, ("Connection", "close")], body),
        "chunked": (206, [*honest, chunked], body),
        "error403": (403, [error, ("Content-Length", str(extra))], b""),
        "error503": (503, [error, chunked], b""),
    }[mode]


class _HostileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # clients hang up on hostile replies: that is the point


@dataclass
class HostileStore:
    """The hostile store on a free loopback port; ``base`` + ``/MODE/NAME`` is an object URL."""

    root: Path
    interval: float = 0.5  # seconds between the bytes of a drip
    extra: int = 1 << 30  # zeros after the honest bytes in the streaming modes
    requests: list[str] = None  # type: ignore[assignment]
    stopping: threading.Event = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.requests = []
        self.stopping = threading.Event()
        self.server = _HostileServer(("127.0.0.1", 0), HostileHandler)
        self.server.store = self  # type: ignore[attr-defined]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@contextlib.contextmanager
def hostile_store(root: Path, **kw) -> Iterator[HostileStore]:
    store = HostileStore(root, **kw)
    thread = threading.Thread(target=store.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield store
    finally:
        store.stopping.set()
        store.server.shutdown()
        store.server.server_close()
        thread.join(10)
