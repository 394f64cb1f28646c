"""AWS Signature Version 4 (read.sigv4): the AWS documentation's example and botocore agree."""

from __future__ import annotations

import datetime as dt

import pytest

from pyiip.read.sigv4 import Credentials, sign_v4
from pyiip.resolve.remote import S3Location


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
