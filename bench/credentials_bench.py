"""What S3 credentials cost per signature: settings' keys, botocore's chain when fresh, the signature itself.

A loopback ECS container-credentials endpoint hands out credentials valid for an hour, so the chain
resolves to botocore RefreshableCredentials; then each path runs in one process, side by side:

    .venv/bin/python bench/credentials_bench.py [--count 200000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import json
import os
import threading
import time
from collections.abc import Callable

from pyiip.read.credentials import Chain, Fixed
from pyiip.read.sigv4 import Credentials, sign_v4


class Endpoint(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        expiration = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = json.dumps(
            {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "secret", "Token": "token", "Expiration": expiration}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def per_call(work: Callable[[], object], count: int) -> float:
    """Microseconds per call of ``work``, best of 3 runs of ``count`` calls."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            work()
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200000)
    count = parser.parse_args().count
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.update(
        {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{server.server_port}/creds",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        os.environ.pop(name, None)
    started = time.perf_counter()
    chain = Chain(10.0)
    deadline = time.monotonic() + 10
    assert chain.current(deadline) is not None
    print(f"chain resolved (ECS endpoint on loopback) in {(time.perf_counter() - started) * 1e3:.1f} ms")
    fixed = Fixed(Credentials("AKIDEXAMPLE", "secret"))
    keys: dict[tuple[str, str, str], bytes] = {}
    headers = {"Range": "bytes=0-262143"}
    credentials = Credentials("ASIAEXAMPLE", "secret", "token")
    from botocore.credentials import RefreshableCredentials

    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    metadata = {"access_key": "ASIA", "secret_key": "secret", "token": "token", "expiry_time": expiry}
    botocore_credentials = RefreshableCredentials.create_from_metadata(metadata, dict, "bench")

    def botocore_check() -> object:
        botocore_credentials.refresh_needed()
        return botocore_credentials.get_frozen_credentials()

    rows = {
        "Fixed.current (settings' keys)": per_call(lambda: fixed.current(deadline), count),
        "botocore refresh_needed() + get_frozen_credentials()": per_call(botocore_check, count // 10),
        "Chain.current, fresh (botocore RefreshableCredentials)": per_call(lambda: chain.current(deadline), count),
        "sign_v4, signing key cached": per_call(
            lambda: sign_v4("GET", "s3.example", "/b/k.tif", headers, credentials, "us-east-1", key_cache=keys),
            count // 10,
        ),
    }
    for name, micros in rows.items():
        print(f"{name:58s} {micros:7.2f} us")
    ratio = rows["Chain.current, fresh (botocore RefreshableCredentials)"] / rows["sign_v4, signing key cached"]
    print(f"chain lookup / signature: {ratio:.2f}")
    server.shutdown()


if __name__ == "__main__":
    main()
