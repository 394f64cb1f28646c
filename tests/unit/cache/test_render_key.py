"""The render cache key: the request model, the file, and every option that changes bytes (RenderOptions)."""

from __future__ import annotations

import dataclasses

import pytest

from pyiip import config
from pyiip.cache.rendered import RenderCache, render_namespace
from pyiip.config import render_options
from pyiip.model import ImageRequest, Region, RenderOptions


def changed(value: object) -> object:
    """Another value of the same type."""
    return not value if isinstance(value, bool) else type(value)(value + 1 if value != 1 else 0)


OPTIONS = [f.name for f in dataclasses.fields(RenderOptions)]


@pytest.mark.parametrize("name", OPTIONS)
def test_changing_any_byte_changing_option_changes_the_key(name):
    base = RenderOptions()
    other = dataclasses.replace(base, **{name: changed(getattr(base, name))})
    assert render_namespace(other) != render_namespace(base)


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_comes_from_the_setting_of_its_name(name):
    """A new option is read from the settings, and so reaches the key, or this fails."""
    settings = config.Settings()
    new = changed(getattr(settings, name))
    assert getattr(render_options(dataclasses.replace(settings, **{name: new})), name) == new


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JPEG_QUALITY", "60"),
        ("PNG_QUALITY", "5"),
        ("WEBP_QUALITY", "80"),
        ("INTERPOLATION", "0"),
        ("CODEC_PASSTHROUGH", "0"),
    ],
)
def test_the_memcached_key_of_the_same_request_differs_with_each_setting(app, variable, value):
    image = app.service.image("rgb.tif")
    request = ImageRequest(Region(0, 0, 256, 256), (256, 256))
    plain = RenderCache(config.load({"MAX_IMAGE_CACHE_SIZE": "0"}))
    other = RenderCache(config.load({"MAX_IMAGE_CACHE_SIZE": "0", variable: value}))
    assert other.digest(image, request) != plain.digest(image, request)
    assert RenderCache(config.load({"MAX_IMAGE_CACHE_SIZE": "0"})).digest(image, request) == plain.digest(
        image, request
    )


def test_settings_that_do_not_change_bytes_are_not_in_the_key(app):
    """MAX_CVT and ALLOW_UPSCALING shape the request model itself; the cache key need not name them again."""
    image = app.service.image("rgb.tif")
    request = ImageRequest(Region(0, 0, 256, 256), (256, 256))
    plain = RenderCache(config.load({}))
    other = RenderCache(config.load({"MAX_CVT": "300", "ALLOW_UPSCALING": "0", "CORS": "*"}))
    assert other.digest(image, request) == plain.digest(image, request)


def test_the_renderer_takes_the_options_the_cache_keys_on(app):
    service = app.service
    assert service.renderer.options is service.cache.options == render_options(app.settings)
    assert not hasattr(service.renderer, "settings")
