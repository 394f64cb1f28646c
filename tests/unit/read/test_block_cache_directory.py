"""The block cache's directory (read.block_cache.check_directory): made 0700, refused when others can write there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pyiip.config import ConfigError
from pyiip.read.block_cache import BlockCache

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def foreign_directory(tmp_path: Path) -> Path:
    """A directory owned by another user: chowned to nobody as root; as anyone else, ``/`` (root's, 0755)."""
    if os.geteuid() != 0:
        return Path("/")
    directory = tmp_path / "foreign"
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY, NOBODY)
    return directory


def test_an_absent_directory_is_made_private(tmp_path: Path) -> None:
    old = os.umask(0)  # not even a permissive umask opens it
    try:
        cache = BlockCache(str(tmp_path / "new" / "blocks"), 1 << 20)
    finally:
        os.umask(old)
    assert cache.enabled and mode(tmp_path / "new" / "blocks") == 0o700
    cache.put("ab12.0", b"x" * 10)
    assert mode(tmp_path / "new" / "blocks" / "ab") == 0o700


@pytest.mark.parametrize("bits", [0o770, 0o707, 0o720, 0o702, 0o1777])
def test_a_directory_writable_by_others_is_refused(tmp_path: Path, bits: int) -> None:
    directory = tmp_path / "blocks"
    directory.mkdir()
    directory.chmod(bits)
    with pytest.raises(
        ConfigError,
        match=rf"BLOCK_CACHE_DIR {directory} is writable by its group or others "
        rf"\(mode {bits:04o}\).*chmod 700 {directory}$",
    ):
        BlockCache(str(directory), 1 << 20)


@pytest.mark.parametrize("bits", [0o700, 0o750, 0o755, 0o500])
def test_a_private_or_readable_directory_is_accepted(tmp_path: Path, bits: int) -> None:
    directory = tmp_path / "blocks"
    directory.mkdir()
    directory.chmod(bits)
    try:
        assert BlockCache(str(directory), 1 << 20).enabled
    finally:
        directory.chmod(0o700)


def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = foreign_directory(tmp_path)
    with pytest.raises(ConfigError, match=rf"belongs to uid {directory.stat().st_uid}, not to this process's user"):
        BlockCache(str(directory), 1 << 20)


def test_a_link_is_judged_by_its_owner_and_its_target(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir(mode=0o700)
    (tmp_path / "to-good").symlink_to(good)
    assert BlockCache(str(tmp_path / "to-good"), 1 << 20).enabled
    (tmp_path / "to-foreign").symlink_to(foreign_directory(tmp_path))
    with pytest.raises(ConfigError, match="belongs to uid"):
        BlockCache(str(tmp_path / "to-foreign"), 1 << 20)
    if os.geteuid() == 0:  # a link another user made, to a directory of ours: refused all the same
        os.lchown(tmp_path / "to-good", NOBODY, NOBODY)
        with pytest.raises(ConfigError, match=f"belongs to uid {NOBODY}"):
            BlockCache(str(tmp_path / "to-good"), 1 << 20)


def test_no_check_when_the_cache_is_off_and_an_unusable_path_only_turns_it_off(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    assert not BlockCache(str(open_dir), 0).enabled  # BLOCK_CACHE_SIZE=0: the directory is never used
    (tmp_path / "file").write_bytes(b"")
    cache = BlockCache(str(tmp_path / "file" / "blocks"), 1 << 20)  # cannot be made: off, logged
    assert not cache.enabled
