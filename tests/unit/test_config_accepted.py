"""Settings: iipsrv variables pyiip has no use for are accepted and not stored."""

from __future__ import annotations

import dataclasses

from pyiip import config


def test_filename_pattern_is_accepted_but_not_stored():
    settings = config.load({"FILENAME_PATTERN": "_pyr_", "JPEG_QUALITY": "60"})
    assert settings.jpeg_quality == 60
    assert "filename_pattern" not in {f.name for f in dataclasses.fields(settings)}
