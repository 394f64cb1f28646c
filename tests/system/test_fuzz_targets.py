"""atheris runs each fuzz target briefly, as a process (`make fuzz` runs them for FUZZ_SECONDS each)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.test_fuzz_targets import FUZZ


@pytest.mark.parametrize("target", ["fuzz_parsers", "fuzz_tiff", "fuzz_jp2"])
def test_atheris_runs_the_target(target, tmp_path):
    pytest.importorskip("atheris", reason="make fuzz installs atheris")
    done = subprocess.run(
        [
            sys.executable,
            str(FUZZ / f"{target}.py"),
            "-max_total_time=4",
            "-rss_limit_mb=3072",
            f"-artifact_prefix={tmp_path}/",  # a crash is kept with the test's files, not in the work tree
            str(tmp_path / "corpus"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Done " in done.stderr
