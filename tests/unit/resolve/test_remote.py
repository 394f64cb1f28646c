"""Units of the remote resolver (resolve.remote): identifier safety, locations, settings."""

from __future__ import annotations

import pytest

from pyiip import config
from pyiip.errors import BadRequest, Forbidden
from pyiip.resolve.remote import HttpLocation, S3Location, check_identifier, remote_store

# --- SigV4 ---------------------------------------------------------------------------------------


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
