"""End to end: `pyiip serve` on a free port, real HTTP, decoded pixels."""

import http.client
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
import simplejpeg

from tests.integration.test_iip_protocol import METADATA, visiomatic_parse
from tests.support.servers import get, http_server


@pytest.fixture(scope="module")
def server(images):
    port, context = http_server(images.root, {"CORS": "*", "JPEG_QUALITY": "90"})
    with context as process:
        yield f"http://127.0.0.1:{port}", process


def test_metadata_and_tiles(server, images):
    base, _ = server
    status, headers, body = get(f"{base}/fcgi-bin/iipsrv.fcgi?FIF=rgb_deflate.tif{METADATA}")
    assert status == 200 and headers["Content-Type"] == "application/vnd.netfpx"
    assert visiomatic_parse(body.decode())["size"] == (1100, 900)
    status, headers, body = get(f"{base}/fcgi-bin/iipsrv.fcgi?FIF=rgb_deflate.tif&JTL=3,6")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Cache-Control"] == "max-age=86400"
    tile = simplejpeg.decode_jpeg(body).astype(int)
    expected = images.arrays["rgb_deflate"][0][256:512, 256:512].astype(int)
    assert np.abs(tile - expected).mean() < 2.5  # JPEG_QUALITY=90 from the environment


def test_conditional_and_head(server):
    base, _ = server
    url = f"{base}/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=0,0"
    status, headers, body = get(url)
    assert status == 200
    status, _, body = get(url, {"If-Modified-Since": headers["Last-Modified"]})
    assert (status, body) == (304, b"")
    status, head_headers, body = get(url, method="HEAD")
    assert status == 200 and body == b"" and head_headers["Content-Length"] == headers["Content-Length"]
    status, headers, _ = get(url, method="OPTIONS")
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"
    assert get(url, method="DELETE")[0] == 405


def test_index_links_every_image(server):
    base, _ = server
    status, headers, body = get(f"{base}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for identifier in ("rgb.tif", "float.tif", "nested/deeper/float_notags.tif"):
        assert identifier.encode() in body


def test_errors_keep_the_server_up(server):
    base, process = server
    for query in ("FIF=../../etc/passwd&JTL=0,0", "FIF=rgb.tif&JTL=99,99", "FIF=%00", "JTL=1", "FIF=rgb.tif&CTW=x"):
        status, _, _body = get(f"{base}/fcgi-bin/iipsrv.fcgi?{query}")
        assert 400 <= status < 500, (query, status)
    assert get(f"{base}/nope")[0] == 404
    assert process.poll() is None
    assert get(f"{base}/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=0,0")[0] == 200


def test_kept_replies_are_sent_alike_with_a_date_of_their_own(server):
    """Replies asked again are kept (replies.py); the server's own headers must not stick to them."""
    base, _ = server
    address = urlsplit(base)
    seen = []
    for attempt in range(8):  # every worker keeps it from its second request on
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        connection.request("GET", "/fcgi-bin/iipsrv.fcgi?FIF=rgb_deflate.tif&JTL=3,7")
        reply = connection.getresponse()
        body = reply.read()
        headers = reply.getheaders()
        connection.close()
        names = [name for name, _ in headers]
        assert reply.status == 200 and len(names) == len(set(names)), names  # nothing added twice
        seen.append(({k: v for k, v in headers if k not in ("Date", "X-Request-ID")}, body, dict(headers)["Date"]))
        if attempt == 3:
            time.sleep(1.1)
    assert all(entry[:2] == seen[0][:2] for entry in seen)
    assert seen[-1][2] != seen[0][2]  # each reply dated when sent
