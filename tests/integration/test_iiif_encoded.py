"""Percent-encoded IIIF parameters through the application: /iiif/3/, /iiif/2/, /iiif/{id} and ?IIIF=.

Each encoded request must answer exactly what its plain spelling answers
(same bytes, same canonical Link, never encoded); a double-encoded or broken
escape is a 400 on every route.
"""

from __future__ import annotations

import pytest

from pyiip.http import Request, Response

# (encoded, plain); the ^ forms are 3.0 only.
BOTH = [
    ("full/%21200,200/0/default.jpg", "full/!200,200/0/default.jpg"),
    ("0%2C0%2C100%2C100/max/0/default.jpg", "0,0,100,100/max/0/default.jpg"),
    ("0%2c0%2c100%2c100/max/0/default.jpg", "0,0,100,100/max/0/default.jpg"),
    ("pct%3A10,10,20,20/max/0/default.jpg", "pct:10,10,20,20/max/0/default.jpg"),
    ("full/pct%3a10/0/default%2Ejpg", "full/pct:10/0/default.jpg"),
    ("full/120,/%2190/gray%2epng", "full/120,/!90/gray.png"),
]
V3 = [
    ("full/%5Emax/0/default.jpg", "full/^max/0/default.jpg"),
    ("0,0,50,50/%5e120,/0/default.jpg", "0,0,50,50/^120,/0/default.jpg"),
]
BAD = [
    "full/%255Emax/0/default.jpg",
    "full/max/0/default%252Ejpg",
    "full/%5/0/default.jpg",
    "full/%5Gmax/0/default.jpg",
]


@pytest.fixture(scope="module")
def ask(images, make_app):
    app = make_app(images.root, MAX_CVT="400")  # ^max stays small

    def get(path: str, query: str = "") -> Response:
        return app.respond(Request("GET", path, query, host="testhost"))

    return get


def _forms(version: int, params: str) -> list[tuple[str, str]]:
    """The routes a request may take: (path, query)."""
    forms = [(f"/iiif/{version}/rgb.tif/{params}", "")]
    if version == 3:  # the version-less routes answer with IIIF_VERSION (3)
        forms += [(f"/iiif/rgb.tif/{params}", ""), ("/fcgi-bin/iipsrv.fcgi", f"IIIF=rgb.tif/{params}")]
    return forms


def _link(response: Response) -> str:
    return next(v for k, v in response.headers if k == "Link")


@pytest.mark.parametrize(("version", "encoded", "plain"), [(v, e, p) for v in (2, 3) for e, p in BOTH] + [
    (3, e, p) for e, p in V3
])  # fmt: skip
def test_encoded_parameters_answer_as_plain_ones(ask, version: int, encoded: str, plain: str) -> None:
    for (path, query), (plain_path, plain_query) in zip(_forms(version, encoded), _forms(version, plain), strict=True):
        got, expected = ask(path, query), ask(plain_path, plain_query)
        assert got.status == 200, (path, query, got.body)
        assert (got.body, got.content_type) == (expected.body, expected.content_type)
        assert _link(got) == _link(expected) and "%" not in _link(got).split("rgb.tif/")[1]


def test_iiif_query_with_encoded_slashes_and_parameters(ask) -> None:
    got = ask("/fcgi-bin/iipsrv.fcgi", "IIIF=rgb.tif%2Ffull%2F%5Emax%2F0%2Fdefault%2Ejpg")
    assert got.status == 200 and got.body == ask("/iiif/3/rgb.tif/full/^max/0/default.jpg").body


@pytest.mark.parametrize("params", BAD)
def test_double_encoded_or_broken_escapes_are_400_on_every_route(ask, params: str) -> None:
    for version in (2, 3):
        for path, query in _forms(version, params):
            response = ask(path, query)
            assert response.status == 400, (path, query, response.body)
