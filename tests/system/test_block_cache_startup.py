"""A block-cache directory other users could write to stops `pyiip serve` and `pyiip.fcgi` at start-up:
one line naming the directory and the fix, exit status 2, before any worker or socket."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import VENV_BIN, free_port, running


def settings(directory: Path) -> dict[str, str]:
    return {"S3_BUCKET": "images", "BLOCK_CACHE_DIR": str(directory), "LOGFILE": "-"}


def commands(port: int) -> dict[str, list[str]]:
    return {
        "serve": [str(VENV_BIN / "pyiip"), "serve", "--port", str(port), "--workers", "2"],
        "fcgi": [str(VENV_BIN / "pyiip.fcgi"), "--bind", f"127.0.0.1:{port}", "--workers", "2"],
    }


@pytest.mark.parametrize("entry", ["serve", "fcgi"])
def test_an_open_block_cache_directory_stops_the_server(tmp_path: Path, entry: str) -> None:
    directory = tmp_path / "blocks"
    directory.mkdir()
    directory.chmod(0o777)
    port = free_port()
    command = commands(port)[entry]
    env = {**os.environ, **settings(directory)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (
        f"pyiip: BLOCK_CACHE_DIR {directory} is writable by its group or others (mode 0777): another user could "
        f"plant files there; it must be a directory (not a symbolic link) of this process's user (uid {os.geteuid()}) "
        "that no one else may write (chmod 700)\n"
    )
    directory.chmod(0o700)  # the fix it names: the same command line then serves
    with running(command, port, settings(directory), stderr=subprocess.DEVNULL) as server:
        assert server.poll() is None
