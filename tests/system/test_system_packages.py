"""scripts/wait_for_dpkg_lock.py, which scripts/system-packages.sh runs before each apt-get: a lock held by
another process (a real POSIX record lock, as dpkg and apt take) is waited for, with its holder named, and
given up on after the timeout with a message."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "wait_for_dpkg_lock.py"


def wait(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_free_locks_pass_at_once_in_silence(tmp_path: Path) -> None:
    (tmp_path / "lock").write_bytes(b"")
    process = wait("--timeout", "30", str(tmp_path / "lock"), str(tmp_path / "absent"))
    assert process.wait(20) == 0 and process.stderr is not None and process.stderr.read() == ""


def test_a_held_lock_is_waited_for_and_its_holder_named(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    with open(lock, "w") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)  # this test process holds it, as an apt-get would
        process = wait("--timeout", "60", str(lock))
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.startswith(f"system-packages: waiting for {lock}, held by process {os.getpid()} (")
        assert "up to 60 s more" in line or "up to 59 s more" in line
        time.sleep(0.5)
        assert process.poll() is None  # still waiting
        fcntl.lockf(handle, fcntl.LOCK_UN)
        assert process.wait(20) == 0


def test_a_lock_held_past_the_timeout_fails_with_a_message(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    with open(lock, "w") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        process = wait("--timeout", "1", str(lock))
        assert process.wait(30) == 1
    assert process.stderr is not None
    lines = process.stderr.read().splitlines()
    assert lines[0].startswith(f"system-packages: waiting for {lock}, held by process {os.getpid()}")
    assert lines[-1] == (
        f"system-packages: gave up after 1 s: still locked: {lock} (process {os.getpid()}, "
        f"{Path(f'/proc/{os.getpid()}/comm').read_text().strip()}); let that apt-get or upgrade finish, then run again"
    )
