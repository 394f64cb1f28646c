"""pyiip pyramid as a process: a progress bar on a terminal, none into a pipe; a mistake is exit 2, one line."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
from pathlib import Path

import numpy as np
import pyvips

from tests.support.servers import VENV_BIN


def _image(directory: Path) -> Path:
    path = directory / "photo.jpg"
    noise = np.random.default_rng(2).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)
    pyvips.Image.new_from_array(noise).jpegsave(str(path))
    return path


def _on_terminal(command: list[str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal 100 columns wide; (status, what the terminal got)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    try:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        return process.wait(timeout=120), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)


def test_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    source = _image(tmp_path)
    status, shown = _on_terminal([str(VENV_BIN / "pyiip"), "pyramid", str(source), str(tmp_path / "a.tif")])
    assert status == 0 and "a.tif: 100%|" in shown, shown
    status, shown = _on_terminal([str(VENV_BIN / "pyiip"), "pyramid", "--quiet", str(source), str(tmp_path / "b.tif")])
    assert status == 0 and shown == ""
    done = subprocess.run([str(VENV_BIN / "pyiip"), "pyramid", str(source), str(tmp_path / "c.tif")],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif", "c.tif", "photo.jpg"]


def test_a_mistake_on_a_terminal_is_one_line_without_glib_noise(tmp_path: Path) -> None:
    source = _image(tmp_path)
    status, shown = _on_terminal(
        [str(VENV_BIN / "pyiip"), "pyramid", str(source), str(tmp_path / "a.tif"), "--tile", "0"]
    )
    assert status == 2
    assert shown == "pyiip pyramid: --tile must be an integer from 16 to 4096, a multiple of 16, not 0\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]
