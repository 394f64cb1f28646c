"""The block cache's directory goes through config.private_directory (its rules are tested there): made 0700,
refused under BLOCK_CACHE_DIR's name when unsafe, and only turned off when it cannot be made."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from pyiip.config import ConfigError, load
from pyiip.read.block_cache import LOGGER, BlockCache, check_settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_absent_directory_is_made_private(tmp_path: Path) -> None:
    old = os.umask(0)  # not even a permissive umask opens it
    try:
        cache = BlockCache(str(tmp_path / "new" / "blocks"), 1 << 20)
    finally:
        os.umask(old)
    assert cache.enabled and mode(tmp_path / "new" / "blocks") == 0o700
    cache.put("ab12.0", b"x" * 10)
    assert mode(tmp_path / "new" / "blocks" / "ab") == 0o700


def test_an_unsafe_directory_is_refused_by_the_cache_and_at_start_up(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    with pytest.raises(ConfigError, match=f"^BLOCK_CACHE_DIR {shared} is writable by its group or others"):
        BlockCache(str(shared), 1 << 20)
    (tmp_path / "link").symlink_to(tmp_path / "new", target_is_directory=True)
    (tmp_path / "new").mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=f"^BLOCK_CACHE_DIR {tmp_path / 'link'} is a symbolic link"):
        check_settings(load({"S3_BUCKET": "images", "BLOCK_CACHE_DIR": str(tmp_path / "link")}))


def test_no_check_when_the_cache_is_off_and_an_unusable_path_only_turns_it_off(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(LOGGER, "propagate", True)  # to caplog, even after a test ran log.setup (propagate off)
    caplog.set_level(logging.ERROR, logger=LOGGER.name)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    assert not BlockCache(str(open_dir), 0).enabled  # BLOCK_CACHE_SIZE=0: the directory is never used
    check_settings(load({"S3_BUCKET": "images", "BLOCK_CACHE_DIR": str(open_dir), "BLOCK_CACHE_SIZE": "0"}))
    (tmp_path / "file").write_bytes(b"")
    unusable = tmp_path / "file" / "blocks"
    check_settings(load({"S3_BUCKET": "images", "BLOCK_CACHE_DIR": str(unusable)}))  # no start-up error
    cache = BlockCache(str(unusable), 1 << 20)  # cannot be made: off, logged
    assert not cache.enabled
    assert f"block cache {unusable} disabled: BLOCK_CACHE_DIR {unusable} cannot be used: Not a directory" in caplog.text
