"""The FITS cache without a build: cube names, the directory's checks, errors left by a builder, settings."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import pytest

from pyiip.config import ConfigError, load
from pyiip.errors import NotFound, SourceError, TooLarge, Unavailable
from pyiip.log import LOGGER
from pyiip.resolve.fits_cache import ERROR_TTL, FitsCache, cache_directory, is_fits


def cache(directory: Path, **env: str) -> FitsCache:
    return FitsCache(load({"FITS_CACHE_DIR": str(directory), **env}))


def test_fits_names() -> None:
    assert all(is_fits(n) for n in ("a.fits", "b.FIT", "c.fts", "d.fits.fz", "dir.tif/e.Fits"))
    assert not any(is_fits(n) for n in ("a.tif", "a.fits.gz", "a.fz", "fits"))


def test_the_key_follows_the_file_identity(tmp_path: Path) -> None:
    fits_cache = cache(tmp_path / "cache")
    path = tmp_path / "a.fits"
    path.write_bytes(b"1" * 2880)
    first = fits_cache.key(os.stat(path))
    assert fits_cache.key(os.stat(path)) == first
    os.utime(path, ns=(1, 1))
    touched = fits_cache.key(os.stat(path))
    path.write_bytes(b"1" * 5760)
    os.utime(path, ns=(1, 1))
    grown = fits_cache.key(os.stat(path))
    replacement = tmp_path / "b.fits"
    replacement.write_bytes(b"1" * 5760)
    os.utime(replacement, ns=(1, 1))
    os.replace(replacement, path)  # same size and mtime, another inode
    assert len({first, touched, grown, fits_cache.key(os.stat(path))}) == 4


def test_the_directory_is_made_private_and_an_unsafe_one_refused(tmp_path: Path) -> None:
    """config.private_directory's rules (tested there), applied under FITS_CACHE_DIR's name."""
    assert os.stat(cache(tmp_path / "new").directory).st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match=f"^FITS_CACHE_DIR {shared} is writable by its group or others"):
        cache(shared)


def test_an_unsafe_default_directory_is_refused_not_ignored(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = Path(cache_directory(load({})))
    planted.symlink_to(tmp_path, target_is_directory=True)  # another user's, say, in a shared /tmp
    with pytest.raises(ConfigError, match=f"^FITS_CACHE_DIR {planted} is a symbolic link"):
        FitsCache(load({}))


def test_a_failed_build_answers_until_it_expires(tmp_path: Path) -> None:
    fits_cache = cache(tmp_path / "cache", FITS_BUILD_WAIT="0")
    path = tmp_path / "a.fits"
    path.write_bytes(b"")
    base = tmp_path / "cache" / fits_cache.key(os.stat(path))
    for status, kind in ((413, TooLarge), (404, SourceError)):
        Path(f"{base}.error").write_text(json.dumps({"status": status, "message": "a.fits: why"}))
        with pytest.raises(kind, match=r"a\.fits: why"):
            fits_cache.cube(str(path), os.stat(path))
    old = time.time() - ERROR_TTL - 1
    os.utime(f"{base}.error", (old, old))
    Path(f"{base}.lock").touch()
    with open(f"{base}.lock") as held:  # a build in progress elsewhere: no new one, a 503 at once
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(Unavailable) as caught:
            fits_cache.cube(str(path), os.stat(path))
    assert ("Retry-After", "5") in caught.value.headers


def test_size_zero_serves_no_fits(tmp_path: Path) -> None:
    fits_cache = cache(tmp_path / "unused", FITS_CACHE_SIZE="0")
    assert not (tmp_path / "unused").exists()
    with pytest.raises(NotFound, match="FITS_CACHE_SIZE"):
        fits_cache.cube(str(tmp_path / "a.fits"), os.stat(tmp_path))


@pytest.mark.parametrize(
    ("name", "value"),
    [("FITS_CACHE_SIZE", "-1"), ("FITS_BUILD_TIMEOUT", "0"), ("FITS_BUILD_TIMEOUT", "1e9"),
     ("FITS_BUILD_WAIT", "-1"), ("FITS_BUILD_WAIT", "nan"), ("FITS_CACHE_SIZE", "big")],
)  # fmt: skip
def test_bad_settings_stop_the_server(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load({name: value})


def test_settings_are_read() -> None:
    settings = load({"FITS_CACHE_DIR": "/x", "FITS_CACHE_SIZE": "12.5", "FITS_BUILD_TIMEOUT": "30",
                     "FITS_BUILD_WAIT": "0"})  # fmt: skip
    assert (settings.fits_cache_dir, settings.fits_cache_size) == ("/x", 12.5)
    assert (settings.fits_build_timeout, settings.fits_build_wait) == (30.0, 0.0)


def test_a_default_directory_that_cannot_be_made_turns_fits_off(tmp_path: Path, monkeypatch, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    monkeypatch.setattr(tempfile, "tempdir", str(blocker))  # $TMPDIR is a file: nothing can be made under it
    monkeypatch.setattr(LOGGER, "propagate", True)  # to caplog, even after a test ran log.setup (propagate off,
    caplog.set_level(logging.WARNING, logger=LOGGER.name)  # its level maybe above WARNING)
    fits_cache = FitsCache(load({}))
    assert not fits_cache.enabled and "FITS files are not served" in caplog.text
    with pytest.raises(NotFound, match="FITS_CACHE_DIR"):
        fits_cache.cube(str(tmp_path / "a.fits"), os.stat(tmp_path))
    with pytest.raises(ConfigError, match="FITS_CACHE_DIR"):
        cache(blocker / "asked")  # a directory asked for by name stops the server instead


def test_no_build_starts_while_every_builder_slot_is_taken(tmp_path: Path) -> None:
    fits_cache = cache(tmp_path / "cache", FITS_BUILD_WAIT="0")
    path = tmp_path / "a.fits"
    path.write_bytes(b"")
    held = []
    for number in range(fits_cache.builders):  # builds running for other files
        handle = open(tmp_path / "cache" / f"builders-{number}.slot", "w")  # noqa: SIM115 - closed below
        fcntl.flock(handle, fcntl.LOCK_EX)
        held.append(handle)
    try:
        with pytest.raises(Unavailable):
            fits_cache.cube(str(path), os.stat(path))
        base = tmp_path / "cache" / fits_cache.key(os.stat(path))
        with open(f"{base}.lock") as lock:  # no builder took this file's lock
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        for handle in held:
            handle.close()
