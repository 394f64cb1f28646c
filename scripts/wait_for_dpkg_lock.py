"""Wait, bounded, until no other process holds the dpkg and apt locks (scripts/system-packages.sh).

`make test` installs missing Debian packages; when another apt-get or an
unattended upgrade holds the lock, apt-get fails at once. This waits for the
locks instead, saying which process holds them, and gives up after
``--timeout`` seconds with a message. dpkg and apt take POSIX record locks
(fcntl), which ``F_GETLK`` reports with the holder's pid without taking them.

Usage: python3 scripts/wait_for_dpkg_lock.py [--timeout 300] [LOCK_FILE ...]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import struct
import sys
import time

LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock", "/var/cache/apt/archives/lock")
FLOCK = "hhqqi4x"  # struct flock on Linux (64-bit off_t): l_type, l_whence, l_start, l_len, l_pid
REPEAT = 30.0  # seconds between two "still waiting" lines


def holder(path: str) -> int | None:
    """The pid holding a POSIX lock on ``path`` that would block a writer, or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: no dpkg has run, or not Debian
    try:
        query = struct.pack(FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        reply = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return None
    finally:
        os.close(fd)
    kind, _, _, _, pid = struct.unpack(FLOCK, reply)
    return pid if kind != fcntl.F_UNLCK else None


def command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return "?"


def wait(paths: list[str], timeout: float) -> bool:
    """True once no path is locked; False after ``timeout`` seconds of waiting."""
    deadline = time.monotonic() + timeout
    said = -REPEAT
    while True:
        held = [(path, pid) for path in paths if (pid := holder(path)) is not None]
        if not held:
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if now - said >= REPEAT:
            said = now
            path, pid = held[0]
            left = deadline - now
            print(
                f"system-packages: waiting for {path}, held by process {pid} ({command(pid)}), up to {left:.0f} s more",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(min(1.0, max(0.05, deadline - now)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait at most (default: 300)")
    parser.add_argument("locks", nargs="*", default=list(LOCKS), help="lock files (default: dpkg's and apt's)")
    args = parser.parse_args()
    if wait(args.locks, args.timeout):
        return 0
    held = ", ".join(f"{path} (process {pid}, {command(pid)})" for path in args.locks if (pid := holder(path)))
    print(
        f"system-packages: gave up after {args.timeout:.0f} s: still locked: {held}; "
        "let that apt-get or upgrade finish, then run again",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
