"""AVIF_QUALITY, PREFERRED_FORMATS and IIIF_EXTRA_INFO: read as iipsrv reads them, refused at start-up when unusable."""

from __future__ import annotations

import pytest

from pyiip.config import ConfigError, extra_info, load, preferred_formats, render_options


@pytest.mark.parametrize(("text", "value"), [(None, 50), ("80", 80), ("-1", -1), ("-9", -1), ("400", 100)])
def test_avif_quality_as_iipsrv(text: str | None, value: int) -> None:
    settings = load({} if text is None else {"AVIF_QUALITY": text})
    assert settings.avif_quality == value and render_options(settings).avif_quality == value


def test_preferred_formats() -> None:
    assert preferred_formats(load({})) == []
    assert preferred_formats(load({"PREFERRED_FORMATS": " WebP, png,webp ,"})) == ["webp", "png"]


@pytest.mark.parametrize("value", ["jpeg", "png,jp2", "heic"])
def test_preferred_formats_not_served_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="PREFERRED_FORMATS"):
        load({"PREFERRED_FORMATS": value})


@pytest.mark.parametrize(
    ("text", "members"),
    [
        ("", {}),
        ('"rights": "http://creativecommons.org/licenses/by/4.0/"', {"rights": "http://creativecommons.org/licenses/by/4.0/"}),
        ('"service": [{"id": "https://example.org/auth", "type": "AuthProbeService2"}], "partOf": []',
         {"service": [{"id": "https://example.org/auth", "type": "AuthProbeService2"}], "partOf": []}),
        ('{"seeAlso": [{"id": "x"}]}', {"seeAlso": [{"id": "x"}]}),  # a whole object reads too
    ],
)  # fmt: skip
def test_extra_info_in_iipsrvs_syntax(text: str, members: dict) -> None:
    assert extra_info(load({"IIIF_EXTRA_INFO": text})) == members


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"rights": http://x', "IIIF_EXTRA_INFO must be JSON members"),
        ('"rights": "x",', "IIIF_EXTRA_INFO must be JSON members"),
        ("[1, 2]", "IIIF_EXTRA_INFO must be JSON members"),
        ('"width": 10', "IIIF_EXTRA_INFO may not set width"),
        ('"id": "x", "extraFormats": []', "IIIF_EXTRA_INFO may not set extraFormats, id"),
    ],
)
def test_bad_extra_info_stops_the_server(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load({"IIIF_EXTRA_INFO": text})
