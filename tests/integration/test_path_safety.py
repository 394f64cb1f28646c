"""Traversal and injection attempts through every protocol: all refused, no reply names a server path.

Each identifier is tried in every place a protocol takes one (IIP FIF, the
IIIF, DeepZoom and Zoomify paths and their ``?IIIF=``/``?DeepZoom=``/
``?Zoomify=`` forms), in-process through the WSGI application and, for a
sample, over real HTTP with the raw bytes on the request line.
"""

from __future__ import annotations

import pytest

from pyiip.http import Request

# As they appear in a URL (already percent-encoded where the attack needs it).
ATTEMPTS = [
    "../outside/passwd",
    "../outside/secret.tif",
    "%2e%2e/outside/secret.tif",
    "%2E%2E%2Foutside%2Fsecret.tif",
    "..%2foutside%2fsecret.tif",
    ".%2e/outside/secret.tif",
    "%252e%252e%252foutside%252fsecret.tif",  # double encoding
    "..%252foutside%252fsecret.tif",
    "%25252e%25252e/outside/secret.tif",  # triple
    "nested/../../outside/secret.tif",
    "nested/deeper/../../../outside/secret.tif",
    "nested/%2e%2e/%2e%2e/outside/passwd",
    "./../outside/secret.tif",
    "....//....//outside/passwd",
    "..;/outside/secret.tif",
    "..%5coutside%5csecret.tif",  # backslashes
    "..%5c..%5coutside%5csecret.tif",
    "nested%5c..%5c..%5coutside%5csecret.tif",
    "..%c0%afoutside%c0%afsecret.tif",  # overlong UTF-8 slash
    "%u002e%u002e/outside/secret.tif",
    "link_out.tif",  # a symlink to a file outside
    "dir_out/secret.tif",  # through a symlinked directory
    "dir_out/passwd",
    "/etc/passwd",  # absolute paths
    "%2fetc%2fpasswd",
    "//etc/passwd",
    "{outside}/secret.tif",
    "file:///etc/passwd",
    "http://127.0.0.1:1/rgb.tif",
    "~root/.bashrc",
    "rgb.tif%00.png",  # NUL
    "%00../outside/secret.tif",
    "rgb.tif%00",
    "nested/deeper/../../../../../../../../../../etc/passwd",
    "../" * 300 + "etc/passwd",  # very long
    "a" * 5000 + ".tif",
    "%s%s%s%s%n.tif",  # format strings
    "%x%x%x%x%p.tif",
    "%25s%25n%25x.tif",
    "{0.__class__}.tif",
    "${HOME}.tif",
    "$(id).tif",
    "%60id%60.tif",
    "rgb.tif%0d%0aX-Injected:%20yes",  # header injection
    "rgb.tif%0aX-Injected:1",
]

URLS = [
    "/fcgi-bin/iipsrv.fcgi?FIF={id}&OBJ=IIP,1.0&OBJ=Max-size",
    "/fcgi-bin/iipsrv.fcgi?FIF={id}&JTL=0,0",
    "/fcgi-bin/iipsrv.fcgi?FIF={id}&WID=100&CVT=jpeg",
    "/fcgi-bin/iipsrv.fcgi?FIF={id}&PFL=0:0,0-10,0",
    "/fcgi-bin/iipsrv.fcgi?IIIF={id}/info.json",
    "/fcgi-bin/iipsrv.fcgi?IIIF={id}/full/max/0/default.jpg",
    "/fcgi-bin/iipsrv.fcgi?DeepZoom={id}.dzi",
    "/fcgi-bin/iipsrv.fcgi?DeepZoom={id}_files/0/0_0.jpg",
    "/fcgi-bin/iipsrv.fcgi?Zoomify={id}/ImageProperties.xml",
    "/fcgi-bin/iipsrv.fcgi?Zoomify={id}/TileGroup0/0-0-0.jpg",
    "/iiif/3/{id}/info.json",
    "/iiif/3/{id}/full/max/0/default.jpg",
    "/iiif/3/{id}",
    "/iiif/2/{id}/info.json",
    "/iiif/2/{id}/0,0,10,10/full/0/default.png",
    "/iiif/{id}/full/max/0/default.jpg",
    "/deepzoom/{id}.dzi",
    "/deepzoom/{id}_files/0/0_0.jpg",
    "/zoomify/{id}/ImageProperties.xml",
    "/zoomify/{id}/TileGroup0/0-0-0.jpg",
]


def test_the_table_is_long_enough():
    assert len(ATTEMPTS) >= 30 and len(URLS) >= 16


def leaks(body: bytes, images) -> list[str]:
    text = body.decode("latin-1")
    return [
        marker
        for marker in (str(images.root), str(images.outside), "root:x:0:0", "/etc/passwd", "X-Injected")
        if marker in text
    ]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a[:40])
def test_every_protocol_refuses(app, images, attempt):
    identifier = attempt.replace("{outside}", str(images.outside))
    for template in URLS:
        uri = template.replace("{id}", identifier)
        path, _, query = uri.partition("?")
        request = Request("GET", path, query)
        response = app.respond(request)
        _status, headers, body = app.finish(request, response)
        assert 400 <= response.status < 500, (uri, response.status)
        assert not response.content_type.startswith(("image/", "application/json", "application/xml")), uri
        assert not leaks(body, images), (uri, leaks(body, images), body[:200])
        for name, value in headers:
            assert "\n" not in value and "\r" not in value and name.lower() != "x-injected", (uri, name)


def test_inside_names_still_work(app):
    for uri in (
        "/fcgi-bin/iipsrv.fcgi?FIF=link_in.tif&OBJ=Max-size",
        "/iiif/3/nested%2Fdeeper%2Ffloat_notags.tif/info.json",
    ):
        path, _, query = uri.partition("?")
        assert app.respond(Request("GET", path, query)).status == 200, uri
