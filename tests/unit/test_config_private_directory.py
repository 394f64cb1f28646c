"""config.private_directory, the one rule for METRICS_DIR, FITS_CACHE_DIR and BLOCK_CACHE_DIR: made 0700,
refused unless a directory (not a link) of this user that no one else may write; one wording."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from pyiip.config import ConfigError, UnusableDirectory, private_directory

NOBODY = 65534
RULE = "it must be a directory (not a symbolic link) of this process's user"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def foreign_directory(tmp_path: Path) -> Path:
    """A directory owned by another user: chowned to nobody as root; as anyone else, ``/`` (root's, 0755)."""
    if os.geteuid() != 0:
        return Path("/")
    directory = tmp_path / "foreign"
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY, NOBODY)
    return directory


def test_an_absent_directory_is_made_private_and_named_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    old = os.umask(0)  # not even a permissive umask opens it
    try:
        made = private_directory("X_DIR", "new/dir")
    finally:
        os.umask(old)
    assert made == str(tmp_path / "new" / "dir") and mode(tmp_path / "new" / "dir") == 0o700


@pytest.mark.parametrize("bits", [0o700, 0o750, 0o755, 0o500])
def test_a_private_or_readable_directory_is_accepted(tmp_path: Path, bits: int) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    directory.chmod(bits)
    try:
        assert private_directory("X_DIR", str(directory)) == str(directory) and mode(directory) == bits
    finally:
        directory.chmod(0o700)


@pytest.mark.parametrize("bits", [0o770, 0o707, 0o720, 0o702, 0o1777])
def test_a_directory_writable_by_its_group_or_others_is_refused_in_the_one_wording(tmp_path: Path, bits: int) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    directory.chmod(bits)
    with pytest.raises(ConfigError) as refused:
        private_directory("X_DIR", str(directory))
    assert str(refused.value) == (
        f"X_DIR {directory} is writable by its group or others (mode {bits:04o}): another user could plant "
        f"files there; {RULE} (uid {os.geteuid()}) that no one else may write (chmod 700)"
    )
    assert not isinstance(refused.value, UnusableDirectory)  # refused, never merely turned off


def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = foreign_directory(tmp_path)
    uid = directory.stat().st_uid
    with pytest.raises(ConfigError, match=rf"^X_DIR {directory} belongs to uid {uid}: .*{re.escape(RULE)}"):
        private_directory("X_DIR", str(directory))


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigError, match=rf"^X_DIR {tmp_path / 'file'} is not a directory: .*{re.escape(RULE)}"):
        private_directory("X_DIR", str(tmp_path / "file"))


@pytest.mark.parametrize("target", ["ours", "foreign", "missing"])
def test_a_symbolic_link_is_refused_wherever_it_points(tmp_path: Path, target: str) -> None:
    """Even to a private directory of ours: whoever owns the link's parent (a sticky /tmp) may repoint it."""
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    pointed = {"ours": ours, "foreign": foreign_directory(tmp_path), "missing": tmp_path / "missing"}[target]
    (tmp_path / "link").symlink_to(pointed, target_is_directory=True)
    with pytest.raises(ConfigError, match=rf"^X_DIR {tmp_path / 'link'} is a symbolic link: .*{re.escape(RULE)}"):
        private_directory("X_DIR", str(tmp_path / "link"))
    assert not (tmp_path / "missing").exists()  # nothing made through a dangling link


def test_a_directory_that_cannot_be_made_is_unusable_not_unsafe(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    below = tmp_path / "file" / "dir"
    with pytest.raises(UnusableDirectory, match=rf"^X_DIR {below} cannot be used: Not a directory$"):
        private_directory("X_DIR", str(below))
