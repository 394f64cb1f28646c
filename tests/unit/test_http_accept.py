"""Accept q-values (pyiip.http.negotiate) and the IIIF choices made with them: info.json's type, the version."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiip.http import Request, media_ranges, negotiate
from pyiip.respond.iiif import negotiated_version
from pyiip.respond.iiif_info import content_type

LD, JSON = "application/ld+json", "application/json"
LD3 = 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'
LD2 = 'application/ld+json;profile="http://iiif.io/api/image/2/context.json"'


@pytest.mark.parametrize(
    ("accept", "offers", "chosen"),
    [
        ("", (LD, JSON), LD),
        ("application/ld+json;q=0", (LD, JSON), JSON),  # refused, though the server prefers it
        ("application/ld+json;q=0, */*", (LD, JSON), JSON),
        ("application/ld+json;q=0.5, application/json;q=0.9", (LD, JSON), JSON),  # highest q wins
        ("application/json;q=0.5, application/ld+json", (JSON, LD), LD),
        ("application/json, application/ld+json", (LD, JSON), LD),  # a tie: the server's order
        ("application/json, application/ld+json", (JSON, LD), JSON),
        ("*/*", (JSON, LD), JSON),
        ("application/*;q=0.2, application/json;q=0", (LD, JSON), LD),  # the most specific range counts
        ("image/png", (LD, JSON), LD),  # nothing named: the server's first
        ("application/ld+json;q=0, application/json;q=0", (LD, JSON), LD),  # everything refused: still a body
        ("APPLICATION/JSON ; Q=1", (LD, JSON), JSON),
        ("application/json;q=abc, application/ld+json;q=0", (LD, JSON), JSON),  # a bad q drops its range
    ],
)
def test_negotiate(accept: str, offers: tuple[str, ...], chosen: str) -> None:
    assert negotiate(accept, offers) == chosen


def test_media_ranges_keep_parameters_and_drop_garbage() -> None:
    assert media_ranges('application/ld+json; profile="x y"; q=0.5, garbage, text/html;q=2, a/b;q=nan') == [
        ("application/ld+json", {"profile": "x y"}, 0.5)
    ]


@given(
    st.text(max_size=80) | st.lists(st.sampled_from([",", ";", "q=", "=", "0.5", "*/*", JSON, " ", '"'])).map("".join)
)
def test_accept_parsing_never_raises(accept: str) -> None:
    for kind, _params, q in media_ranges(accept):
        assert kind.count("/") == 1 and 0.0 <= q <= 1.0
    assert negotiate(accept, (LD, JSON)) in (LD, JSON)
    assert content_type(2, accept) in (JSON, LD2)
    assert negotiated_version(Request("GET", "/", "", headers={"accept": accept}), 3) in (2, 3)


@pytest.mark.parametrize(
    ("version", "accept", "mime"),
    [
        (3, "application/ld+json;q=0", JSON),
        (3, "application/ld+json;q=0.1, application/json", JSON),
        (3, "application/json;q=0.1, application/ld+json", LD3),
        (2, "application/json;q=0, */*", LD2),
        (2, "application/ld+json;q=0.9, application/json;q=0.4", LD2),
    ],
)
def test_info_content_type_q_values(version: int, accept: str, mime: str) -> None:
    assert content_type(version, accept) == mime


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        (LD2 + ";q=0", 3),  # refusing 2 is no request for it
        (f"{LD2};q=0.5, {LD3};q=0.9", 3),
        (f"{LD2};q=0.9, {LD3};q=0.5", 2),
        (f"{LD2}, {LD3}", 3),  # a tie: IIIF_VERSION
        ("application/ld+json;profile=http://iiif.io/api/image/2/context.json", 2),  # unquoted
    ],
)
def test_version_by_q_values(accept: str, version: int) -> None:
    assert negotiated_version(Request("GET", "/", "", headers={"accept": accept}), 3) == version
