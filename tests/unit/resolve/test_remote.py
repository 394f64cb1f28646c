"""Units of the remote source: SigV4 signing, identifier safety, locations, settings, the disk block cache."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest

from pyiip import config
from pyiip.errors import BadRequest, Forbidden
from pyiip.read.block_cache import BlockCache
from pyiip.read.sigv4 import Credentials, sign_v4
from pyiip.resolve.remote import HttpLocation, S3Location, check_identifier, remote_store

# --- SigV4 ---------------------------------------------------------------------------------------


def test_sigv4_matches_the_aws_documentation_example() -> None:
    """ "GET Object" in AWS's "Signature Calculations for the Authorization Header" (single chunk)."""
    headers = sign_v4(
        "GET",
        "examplebucket.s3.amazonaws.com",
        "/test.txt",
        {"Range": "bytes=0-9"},
        Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        "us-east-1",
        now=dt.datetime(2013, 5, 24, tzinfo=dt.UTC),
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


@pytest.mark.parametrize("key", ["plain.tif", "dir/with space+plus=eq&amp.tif", "ünï/cödé~.tif"])
def test_sigv4_agrees_with_botocore(key: str) -> None:
    botocore = pytest.importorskip("botocore")
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    location = S3Location("bucket", "pre/", endpoint="http://127.0.0.1:9000", region="eu-west-3")
    target = location.locate(key)
    now = dt.datetime(2024, 2, 29, 12, 34, 56, tzinfo=dt.UTC)
    ours = sign_v4(
        "GET",
        target.host,
        target.path,
        {"Range": "bytes=100-199"},
        Credentials("AKID", "secret/key+x", "token=="),
        "eu-west-3",
        now=now,
    )
    request = AWSRequest(method="GET", url=f"http://{target.host}{target.path}", headers={"Range": "bytes=100-199"})
    request.context["timestamp"] = now.strftime("%Y%m%dT%H%M%SZ")
    request.headers["X-Amz-Content-SHA256"] = ours["x-amz-content-sha256"]
    auth = S3SigV4Auth(BotoCredentials("AKID", "secret/key+x", "token=="), "s3", "eu-west-3")
    request.headers["X-Amz-Date"] = request.context["timestamp"]
    request.headers["X-Amz-Security-Token"] = "token=="
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    assert ours["Authorization"].endswith("Signature=" + signature), botocore.__version__


# --- identifiers and locations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "error"),
    [
        ("", BadRequest),
        ("a\x00b", BadRequest),
        ("a\nb", BadRequest),
        ("x" * 2000, BadRequest),
        ("../a.tif", Forbidden),
        ("a/../../b.tif", Forbidden),
        ("a/./b.tif", Forbidden),
        ("a\\..\\b.tif", Forbidden),
        ("/etc/passwd", Forbidden),
        ("//evil.example/x", Forbidden),
        ("http://evil.example/x.tif", Forbidden),
    ],
)
def test_unsafe_identifiers_are_refused(identifier: str, error: type) -> None:
    with pytest.raises(error):
        check_identifier(identifier)


def test_http_template_keeps_the_host_and_encodes_the_identifier() -> None:
    location = HttpLocation("https://images.example.org:8443/iiif/{id}?download=1", ".tif")
    target = location.locate("dir/a b#?&@:x")
    assert target.host == "images.example.org:8443" and target.scheme == "https"
    assert target.path == "/iiif/dir/a%20b%23%3F%26%40%3Ax.tif?download=1"
    assert target.name == "https://images.example.org:8443" + target.path


@pytest.mark.parametrize(
    "template",
    [
        "https://example.org/images/",  # no {id}
        "https://{id}.example.org/x",  # {id} in the host
        "https://example.org{id}",  # nor right after it
        "ftp://example.org/{id}",
        "https://user:pw@example.org/{id}",
        "https://example.org/{id}/{id}",
    ],
)
def test_unsafe_templates_are_configuration_errors(template: str) -> None:
    with pytest.raises(config.ConfigError):
        HttpLocation(template)


def test_s3_addressing() -> None:
    aws = S3Location("my-bucket", "a/", region="eu-central-1")
    target = aws.locate("b c.tif")
    assert (target.host, target.path) == ("my-bucket.s3.eu-central-1.amazonaws.com", "/a/b%20c.tif")
    assert target.scheme == "https"
    assert target.name == "s3://my-bucket/a/b c.tif"
    dotted = S3Location("my.bucket", region="us-west-2").locate("x.tif")
    assert (dotted.host, dotted.path) == ("s3.us-west-2.amazonaws.com", "/my.bucket/x.tif")
    minio = S3Location("bkt", endpoint="http://127.0.0.1:9000/base").locate("x.tif")
    assert (minio.scheme, minio.host, minio.path) == ("http", "127.0.0.1:9000", "/base/bkt/x.tif")
    with pytest.raises(config.ConfigError):
        S3Location("bad/bucket")


def test_settings() -> None:
    settings = config.load({"S3_BUCKET": "b", "AWS_DEFAULT_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    assert settings.aws_region == "eu-west-1" and "s3cr3t" not in repr(settings)
    assert config.load({"AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "ap-south-1"}).aws_region == "ap-south-1"
    assert remote_store(config.load({})) is None
    with pytest.raises(config.ConfigError):
        remote_store(config.load({"S3_BUCKET": "b", "REMOTE_URL_TEMPLATE": "http://h/{id}"}))
    with pytest.raises(config.ConfigError):
        remote_store(config.load({"S3_BUCKET": "b", "REMOTE_BLOCK_SIZE": "0"}))
    with pytest.raises(config.ConfigError):
        config.load({"BLOCK_CACHE_SIZE": "lots"})


# --- the block cache -----------------------------------------------------------------------------


def test_blocks_round_trip_and_bad_files_are_misses(tmp_path: Path) -> None:
    cache = BlockCache(str(tmp_path / "c"), 1 << 20)
    cache.put("ab12.0", b"x" * 1000)
    assert cache.get("ab12.0", 1000) == b"x" * 1000
    assert cache.get("ab12.0", 999) is None  # a block of the wrong size is dropped
    assert cache.get("ab12.0", 1000) is None
    assert cache.get("ab12.1", 10) is None
    assert not list((tmp_path / "c").rglob("*.tmp"))


def test_eviction_is_least_recently_used_and_bounded(tmp_path: Path) -> None:
    block = 10_000
    cache = BlockCache(str(tmp_path / "c"), 100_000)
    for i in range(8):
        cache.put(f"aa{i:02d}.0", bytes([i]) * block)
    old = time.time() - 1000
    for i in range(8):  # make the order of use explicit: 0 is the oldest, 7 the newest...
        os.utime(tmp_path / "c" / "aa" / f"aa{i:02d}.0", (old + i, old + i))
    cache.get("aa00.0", block)  # ...but 0 was just read: it counts as recent
    for i in range(8, 14):
        cache.put(f"aa{i:02d}.0", bytes([i]) * block)
    cache.trim()
    assert cache.usage() <= 100_000
    assert cache.get("aa00.0", block) == bytes([0]) * block
    assert cache.get("aa01.0", block) is None and cache.get("aa13.0", block) is not None
    assert cache.evictions > 0


def test_several_processes_share_one_directory(tmp_path: Path) -> None:
    directory = str(tmp_path / "shared")
    budget = 64 * 4096
    children = []
    for _worker in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            status = 0
            try:
                cache = BlockCache(directory, budget)
                for i in range(200):
                    name = f"{(i * 7) % 150:04x}.{i % 3}"
                    payload = name.encode().ljust(4096, b".")
                    found = cache.get(name, 4096)
                    if found is not None and found != payload:
                        status = 1
                    cache.put(name, payload)
            except Exception:
                status = 2
            os._exit(status)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    cache = BlockCache(directory, budget)
    # Each process may overshoot by a sixteenth of the budget between its scans.
    assert cache.usage() <= budget * (1 + 4 / 16)
    cache.trim()
    assert cache.usage() <= budget
    assert not list(Path(directory).rglob("*.tmp"))


def test_an_unusable_directory_disables_the_cache_without_failing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = BlockCache(str(blocker / "blocks"), 1 << 20)
    cache.put("ab.0", b"data")
    assert cache.get("ab.0", 4) is None and not cache.enabled
    assert BlockCache(str(tmp_path / "zero"), 0).get("ab.0", 4) is None
