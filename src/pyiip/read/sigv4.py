"""AWS Signature Version 4 for object-store requests without a body (S3 and compatible stores)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str = ""


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str = "s3") -> bytes:
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), date)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def sign_v4(
    method: str,
    host: str,
    path: str,
    headers: dict[str, str],
    credentials: Credentials,
    region: str,
    *,
    now: _dt.datetime | None = None,
    query: str = "",
    service: str = "s3",
    payload_hash: str = EMPTY_SHA256,
    key_cache: dict[tuple[str, str, str], bytes] | None = None,
) -> dict[str, str]:
    """AWS Signature Version 4 in the Authorization header, for a request without a body.

    ``path`` is already percent-encoded once (S3 does not encode it again);
    host, range and x-amz-* headers are signed. Returns the headers to send.
    ``key_cache`` keeps the day's signing key, for one secret (keys rotate) and region.
    """
    stamp = (now or _dt.datetime.now(_dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    date = stamp[:8]
    out = {**headers, "x-amz-date": stamp, "x-amz-content-sha256": payload_hash}
    if credentials.token:
        out["x-amz-security-token"] = credentials.token
    signed = {"host": host}
    for name, value in out.items():
        lower = name.lower()
        if lower == "range" or lower.startswith("x-amz-"):
            signed[lower] = " ".join(str(value).split())
    names = sorted(signed)
    pairs = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, _, v in (item.partition("=") for item in query.split("&") if item)
    )
    canonical = "\n".join(
        [
            method,
            path,
            "&".join(f"{k}={v}" for k, v in pairs),
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            payload_hash,
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    cache_key = (date, region, credentials.secret_key)  # refreshed credentials never meet an old key
    key = key_cache.get(cache_key) if key_cache is not None else None
    if key is None:
        key = signing_key(credentials.secret_key, date, region, service)
        if key_cache is not None:
            key_cache.clear()
            key_cache[cache_key] = key
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out
