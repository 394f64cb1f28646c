"""A real memcached for the cache tests: on a free loopback port, stopped by its PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.servers import free_port, require, stop, wait_for_port


@dataclass
class Memcached:
    port: int
    process: subprocess.Popen | None = None
    item_size: str = "1m"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Memcached:
        """Start (or restart, on the same port) the daemon."""
        command = [require("memcached"), "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
        command += ["-I", self.item_size, "-t", "1"]
        if os.getuid() == 0:
            command += ["-u", "nobody"]  # memcached refuses to run as root
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)
        return self

    def kill(self) -> None:
        """SIGKILL: a crash, not a clean shutdown."""
        if self.process is not None:
            stop(self.process, signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: a memcached that accepts connections but never answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        # The signal is only queued when kill returns: a loaded machine may still let it answer once.
        stat = f"/proc/{self.process.pid}/stat"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(stat) as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "T":
                    return
            time.sleep(0.005)
        raise TimeoutError("memcached did not stop on SIGSTOP")

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stats(self) -> dict[str, int]:
        """The numeric counters of ``stats`` (get_hits, get_misses, curr_items, ...)."""
        from pymemcache.client.base import Client

        client = Client(("127.0.0.1", self.port), connect_timeout=2, timeout=2)
        try:
            raw = client.stats()
        finally:
            client.close()
        out = {}
        for key, value in raw.items():
            name = key.decode() if isinstance(key, bytes) else key
            with contextlib.suppress(TypeError, ValueError):
                out[name] = int(value)
        return out

    def stop(self) -> None:
        """SIGKILL: a test cache holds nothing worth a graceful shutdown, which takes memcached a second."""
        if self.process is not None:
            stop(self.process, signal.SIGKILL)


@contextlib.contextmanager
def memcached(item_size: str = "1m") -> Iterator[Memcached]:
    daemon = Memcached(free_port(), item_size=item_size).start()
    try:
        yield daemon
    finally:
        daemon.stop()
