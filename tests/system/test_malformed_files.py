"""The pyiip convert command on malformed FITS files, as a process: exit status 1 and one line."""

from __future__ import annotations

import subprocess

from tests.support.hostile import malformed_fits
from tests.support.servers import VENV_BIN


def test_convert_command_exits_1_with_one_line(tmp_path):
    bad_fits = malformed_fits(tmp_path / "fits")
    for name in ("truncated_data", "compressed_garbled", "not_fits"):
        done = subprocess.run(
            [str(VENV_BIN / "pyiip"), "convert", str(bad_fits[name]), str(tmp_path / "out.tif")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, (name, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("pyiip convert: ") and "Traceback" not in done.stderr, (name, done.stderr)
