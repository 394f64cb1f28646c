"""A reload (SIGHUP) whose BLOCK_CACHE_DIR another user could write to is refused: the old settings serve on."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyiip import config


def test_a_reload_to_an_open_block_cache_directory_keeps_the_old_settings(make_app, tmp_path: Path) -> None:
    app = make_app(S3_BUCKET="images", BLOCK_CACHE_DIR=str(tmp_path / "private"))
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o700
    before = app.service
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o775)
    shared.chmod(0o775)
    with pytest.raises(config.ConfigError, match=f"BLOCK_CACHE_DIR {shared} is writable by its group or others"):
        app.reload(config.load({"S3_BUCKET": "images", "BLOCK_CACHE_DIR": str(shared), "VERBOSITY": "0"}))
    assert app.service is before and app.settings.block_cache_dir == str(tmp_path / "private")
