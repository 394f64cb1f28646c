"""Settings from iipsrv's environment variables."""

import pytest

from pyiip.config import ConfigError, Settings, load


def test_defaults_are_iipsrvs():
    s = load({})
    assert (s.jpeg_quality, s.max_cvt, s.max_image_cache_size, s.cache_control) == (75, 5000, 10.0, "max-age=86400")
    assert s.memcached_servers == ""  # off unless configured
    assert s == Settings()


@pytest.mark.parametrize(
    ("env", "attr", "value"),
    [
        ({"JPEG_QUALITY": "150"}, "jpeg_quality", 100),
        ({"JPEG_QUALITY": "0"}, "jpeg_quality", 1),
        ({"MAX_CVT": "0"}, "max_cvt", 5000),
        ({"MAX_CVT": "-1"}, "max_cvt", -1),
        ({"MAX_CVT": "-7"}, "max_cvt", 1),
        ({"VERBOSITY": "-3"}, "verbosity", 0),
        ({"MAX_IMAGE_METADATA_CACHE_SIZE": "12"}, "max_metadata_cache_size", 12),
        ({"ALLOW_UPSCALING": "0"}, "allow_upscaling", False),
        ({"FILESYSTEM_PREFIX": "/images/"}, "filesystem_prefix", "/images/"),
        ({"PNG_QUALITY": "12"}, "png_quality", 9),
    ],
)
def test_values(env, attr, value):
    assert getattr(load(env), attr) == value


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JPEG_QUALITY": "high"}, "JPEG_QUALITY must be an integer, got 'high'"),
        ({"MAX_IMAGE_CACHE_SIZE": "lots"}, "MAX_IMAGE_CACHE_SIZE must be a number"),
        ({"MAX_IMAGE_CACHE_SIZE": "-1"}, "must not be negative"),
        ({"IIIF_VERSION": "4"}, "IIIF_VERSION must be 2 or 3"),
        ({"ALLOW_UPSCALING": "maybe"}, "ALLOW_UPSCALING must be 0 or 1"),
        ({"CORS": "*\r\nX-Evil: 1"}, "CORS must be a single header value"),
    ],
)
def test_bad_values_are_refused_clearly(env, message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        load(env)


@pytest.mark.parametrize("value", ["iiif=>IIIF", "deepzoom=>deepzoom,zoomify=>Zoomify", "/iiif=>iiif", ""])
def test_uri_map_of_the_served_prefixes(value):
    assert load({"URI_MAP": value}).uri_map == value


@pytest.mark.parametrize("value", ["images=>iiif", "iip=>iip", "iiif"])
def test_uri_map_other_prefixes_are_refused(value):
    with pytest.raises(ConfigError, match="URI_MAP"):
        load({"URI_MAP": value})
