"""Identifiers -> objects in object storage: REMOTE_URL_TEMPLATE or S3_BUCKET locations, chosen at start-up.

Identifiers are refused if they hold ``.``/``..`` segments, control characters or look like URLs, and are
percent-encoded into the path of the configured template or key: a client cannot make the server fetch
another host.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from pyiip.config import ConfigError, Settings
from pyiip.errors import BadRequest, Forbidden
from pyiip.read.credentials import Chain, Fixed, credential_source
from pyiip.read.range_client import ObjectAddress
from pyiip.read.remote import RemoteStore
from pyiip.read.sigv4 import sign_v4
from pyiip.resolve.local import MAX_IDENTIFIER


def check_identifier(identifier: str) -> None:
    """Refuse identifiers that could name anything but an object under the configured location."""
    if not identifier:
        raise BadRequest("no image given")
    if len(identifier) > MAX_IDENTIFIER:
        raise BadRequest("image identifier too long")
    if any(ord(c) < 32 or ord(c) == 127 for c in identifier):
        raise BadRequest("invalid character in image identifier")
    if identifier.startswith(("/", "\\")) or "://" in identifier or identifier.startswith("//"):
        raise Forbidden("image path outside the image root")
    if any(segment in (".", "..") for segment in re.split(r"[/\\]", identifier)):
        raise Forbidden("image path outside the image root")


def encode_path(text: str) -> str:
    """Percent-encode all but unreserved characters and ``/`` (S3's UriEncode of an object key)."""
    return quote(text, safe="/")


class HttpLocation:
    """REMOTE_URL_TEMPLATE: ``{id}`` replaced by the percent-encoded identifier (+ FILESYSTEM_SUFFIX)."""

    def __init__(self, template: str, suffix: str = "") -> None:
        if template.count("{id}") != 1:
            raise ConfigError("REMOTE_URL_TEMPLATE must contain {id} exactly once")
        parts = urlsplit(template.replace("{id}", "\x00"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("REMOTE_URL_TEMPLATE must be an http:// or https:// URL with a host")
        if "\x00" in parts.netloc or "@" in parts.netloc:
            raise ConfigError("REMOTE_URL_TEMPLATE: {id} must be in the path, and no credentials in the URL")
        self.template = template
        self.suffix = suffix
        self.scheme = parts.scheme
        self.host = parts.netloc
        self._path_start = template.index(parts.netloc) + len(parts.netloc)

    def locate(self, identifier: str) -> ObjectAddress:
        check_identifier(identifier)
        url = self.template.replace("{id}", encode_path(identifier + self.suffix))
        path = url[self._path_start :] or "/"
        return ObjectAddress(url, self.scheme, self.host, path)

    def headers(self, target: ObjectAddress, headers: dict[str, str], deadline: float) -> dict[str, str]:
        return headers


class S3Location:
    """S3_BUCKET / S3_PREFIX: key = prefix + identifier + FILESYSTEM_SUFFIX, fetched by signed range GETs.

    Path-style URLs on S3_ENDPOINT_URL (MinIO, Ceph, moto...), virtual-hosted
    ones on AWS. Credentials come from read/credentials.py (the settings' keys or botocore's chain),
    asked for at each signature; without any, requests are unsigned (public buckets).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str = "",
        region: str = "us-east-1",
        credentials: Fixed | Chain | None = None,
        suffix: str = "",
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}", bucket):
            raise ConfigError(f"S3_BUCKET is not a bucket name: {bucket!r}")
        self.bucket, self.prefix, self.suffix = bucket, prefix, suffix
        self.region = region or "us-east-1"
        self.credentials = credentials
        self._keys: dict[tuple[str, str, str], bytes] = {}
        if endpoint:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or "@" in parts.netloc:
                raise ConfigError("S3_ENDPOINT_URL must be an http:// or https:// URL without credentials")
            self.scheme, self.host = parts.scheme, parts.netloc
            self.base = parts.path.rstrip("/") + "/" + encode_path(bucket) + "/"
        elif "." in bucket:
            self.scheme, self.host, self.base = "https", f"s3.{self.region}.amazonaws.com", f"/{bucket}/"
        else:
            self.scheme, self.host, self.base = "https", f"{bucket}.s3.{self.region}.amazonaws.com", "/"

    def locate(self, identifier: str) -> ObjectAddress:
        check_identifier(identifier)
        key = self.prefix + identifier + self.suffix
        return ObjectAddress(f"s3://{self.bucket}/{key}", self.scheme, self.host, self.base + encode_path(key))

    def headers(self, target: ObjectAddress, headers: dict[str, str], deadline: float) -> dict[str, str]:
        credentials = None if self.credentials is None else self.credentials.current(deadline)
        if credentials is None:
            return headers
        return sign_v4("GET", target.host, target.path, headers, credentials, self.region, key_cache=self._keys)


def remote_store(settings: Settings) -> RemoteStore | None:
    """The store the settings configure (REMOTE_URL_TEMPLATE or S3_BUCKET), or None for local files."""
    if settings.remote_url_template and settings.s3_bucket:
        raise ConfigError("set REMOTE_URL_TEMPLATE or S3_BUCKET, not both")
    if settings.remote_block_size < 4 or settings.remote_block_size > 65536:
        raise ConfigError("REMOTE_BLOCK_SIZE must be between 4 and 65536 KiB")
    if settings.remote_metadata_ttl < 0 or settings.remote_timeout <= 0 or settings.block_cache_size < 0:
        raise ConfigError("REMOTE_METADATA_TTL and BLOCK_CACHE_SIZE must be >= 0, REMOTE_TIMEOUT > 0")
    if settings.remote_url_template:
        location: HttpLocation | S3Location = HttpLocation(settings.remote_url_template, settings.filesystem_suffix)
    elif settings.s3_bucket:
        location = S3Location(
            settings.s3_bucket,
            settings.s3_prefix,
            endpoint=settings.s3_endpoint_url,
            region=settings.aws_region,
            credentials=credential_source(settings),
            suffix=settings.filesystem_suffix,
        )
    else:
        return None
    return RemoteStore(location, settings)
