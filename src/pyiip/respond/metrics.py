"""Prometheus metrics of all of a host's workers in one scrape (``/metrics``).

Each process counts its requests into its own slots (metric_files.py), a
few in-place float increments per request; its cache tiers' counters and its
CPU and memory are copied there at most once a second, after a request (and
by the scrape itself). A scrape, whichever worker answers it, adds up every
worker's series, those of dead workers included, so no series carries a
``pid`` label and none restarts when a worker is replaced. Without a shared
directory (METRICS_DIR, or the one ``pyiip serve`` and ``pyiip.fcgi
--workers`` make for their workers), a process reports itself alone.

Names follow Prometheus' guide: counters end in ``_total``, the units are
seconds and bytes, caches expose hits and misses (a ratio is a query:
``rate(hits) / (rate(hits) + rate(misses))``).
"""

from __future__ import annotations

import bisect
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pyiip import __version__
from pyiip.http import Request, Response
from pyiip.respond import metric_files
from pyiip.respond.metric_files import Slots

if TYPE_CHECKING:
    from pyiip.service import Service

METRICS_PATH = "/metrics"
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Latency buckets (seconds): tiles take milliseconds, a large CVT seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BOUNDS = (*(repr(b) for b in BUCKETS), "+Inf")
SYNC_INTERVAL = 1.0  # seconds between copies of the cache and process figures into the slots


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series(mode: str, name: str, **labels: object) -> str:
    """A slot key: the mode (metric_files says which), the name and the label text as exposed."""
    text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return f"{mode}{name}{{{text}}}"


class Metrics:
    """This process's slots, and the positions of each (kind, status)'s request series in them."""

    def __init__(self, slots: Slots | None = None) -> None:
        self.started = time.time()
        self.slots = slots or Slots()
        self.values = self.slots.values
        self._positions: dict[tuple[str, int], tuple[int, int, int, int]] = {}
        self.synced = 0.0  # perf_counter of the last copy of the cache and process figures
        self._figured: set[str] = set()  # the keys of that copy

    def record(self, kind: str, status: int, seconds: float, size: int) -> None:
        """Count one answered request: a dict lookup and four in-place increments."""
        found = self._positions.get((kind, status))
        if found is None:
            found = self._add(kind, status)
        count, total, sent, buckets = found
        values = self.values
        values[count] += 1
        values[total] += seconds
        values[sent] += size
        values[buckets + bisect.bisect_left(BUCKETS, seconds)] += 1

    def _add(self, kind: str, status: int) -> tuple[int, int, int, int]:
        slot = self.slots.slot
        first = slot(series("b", "pyiip_request_duration_seconds_bucket", kind=kind, le=_BOUNDS[0]))
        for i, bound in enumerate(_BOUNDS[1:], 1):  # contiguous: a kind's buckets are added together
            if slot(series("b", "pyiip_request_duration_seconds_bucket", kind=kind, le=bound)) != first + i:
                first = metric_files.SCRATCH - len(BUCKETS)  # never: only when the slots are full
        found = (
            slot(series("c", "pyiip_requests_total", kind=kind, code=status)),
            slot(series("c", "pyiip_request_duration_seconds_sum", kind=kind)),
            slot(series("c", "pyiip_response_bytes_total", kind=kind)),
            first,
        )
        self._positions[(kind, status)] = found
        return found

    def requests(self) -> int:
        """Requests this process answered (for /health)."""
        values = self.values
        return int(sum(values[count] for count, _total, _sent, _buckets in self._positions.values()))

    def sync(self, service: Service, now: float) -> None:
        """Copy the cache tiers' counters and this process's CPU and memory into the slots."""
        self.synced = now
        values, slot = self.values, self.slots.slot
        current = figures(service)
        for key in self._figured - current.keys():  # a tier gone (a reload without memcached): not shown
            values[slot(key)] = math.nan
        for key, value in current.items():
            values[slot(key)] = value
        self._figured = set(current)


METRICS = Metrics()
_workers_dir: str | None = None  # the private directory a supervisor made for its workers


def _reset_after_fork() -> None:
    """A forked process starts with its own counters, in memory until ``start`` gives it a file."""
    global METRICS
    METRICS = Metrics()


os.register_at_fork(after_in_child=_reset_after_fork)


def start(directory: str) -> None:
    """Count in ``directory`` (METRICS_DIR, already checked by config.load), else in the supervisor's one."""
    global METRICS
    directory = directory or _workers_dir or ""
    slots = METRICS.slots
    if not directory or (slots.path is not None and os.path.dirname(slots.path) == directory):
        return
    METRICS = Metrics(metric_files.open_slots(directory))


def share_among_workers(configured: str) -> Callable[[], None]:
    """A supervisor's: a private directory its workers count in when METRICS_DIR names none; the cleanup."""
    global _workers_dir
    if configured:
        return lambda: None
    _workers_dir = tempfile.mkdtemp(prefix="pyiip-metrics-")  # 0700, this user's
    made = _workers_dir
    return lambda: shutil.rmtree(made, ignore_errors=True)


# stats() key suffix -> (mode, metric); the prefix before it names the cache tier ("lru", "tile", "memcached").
_CACHE_SERIES = {
    "hits": ("c", "pyiip_cache_hits_total"),
    "misses": ("c", "pyiip_cache_misses_total"),
    "evictions": ("c", "pyiip_cache_evictions_total"),
    "stores": ("c", "pyiip_cache_stores_total"),
    "skipped": ("c", "pyiip_cache_skipped_total"),
    "errors": ("c", "pyiip_cache_errors_total"),
    "entries": ("g", "pyiip_cache_entries"),
    "bytes": ("g", "pyiip_cache_bytes"),
    "down": ("x", "pyiip_cache_servers_down"),
}


def figures(service: Service) -> dict[str, float]:
    """The series not counted per request: cache tiers, object storage, CPU and resident memory."""
    stats = dict(service.cache.stats())
    out: dict[str, float] = {}
    remote = service.resolver.remote
    if remote is not None:  # images in object storage: the disk block cache is one more tier
        for key, count in remote.stats().items():
            if key.startswith("block_cache_"):
                stats["disk_" + key.removeprefix("block_cache_")] = count
            elif key.startswith("remote_"):
                out[series("c", f"pyiip_{key}_total")] = count
    for key, value in stats.items():
        tier, _, what = key.partition("_")
        found = _CACHE_SERIES.get(what)
        if found is not None:
            out[series(found[0], found[1], cache=tier)] = value
    times = os.times()
    out[series("c", "process_cpu_seconds_total")] = times.user + times.system
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        out[series("g", "process_resident_memory_bytes")] = pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return out


# name -> (type, help); the order of the families in the reply.
FAMILIES = {
    "pyiip_build_info": ("gauge", "Version of the server answering this scrape."),
    "pyiip_requests_total": ("counter", "Requests answered, by kind and HTTP status."),
    "pyiip_response_bytes_total": ("counter", "Body bytes sent, by kind."),
    "pyiip_request_duration_seconds": ("histogram", "Time from request to reply, by kind."),
    "pyiip_cache_hits_total": ("counter", "Lookups answered by the cache, by tier."),
    "pyiip_cache_misses_total": ("counter", "Lookups the cache could not answer, by tier."),
    "pyiip_cache_evictions_total": ("counter", "Entries dropped to make room, by tier."),
    "pyiip_cache_stores_total": ("counter", "Entries written, by tier."),
    "pyiip_cache_skipped_total": ("counter", "Entries too large to store, by tier."),
    "pyiip_cache_errors_total": ("counter", "Failed cache operations (never a failed request), by tier."),
    "pyiip_cache_entries": ("gauge", "Entries held in the workers' memory, by tier."),
    "pyiip_cache_bytes": ("gauge", "Bytes held in the workers' memory, by tier."),
    "pyiip_cache_servers_down": ("gauge", "Servers left out of the hash ring by some worker, by tier."),
    "process_cpu_seconds_total": ("counter", "CPU time of the workers, those that ended included."),
    "process_resident_memory_bytes": ("gauge", "Resident memory of the live workers."),
    "pyiip_workers": ("gauge", "Processes whose counts this scrape adds up."),
}


def _family_of(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in FAMILIES:
            return name.removesuffix(suffix)
    return name


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 2**53 else repr(value)


def _histogram(samples: dict[str, float]) -> Iterator[str]:
    """Buckets made cumulative, with each kind's ``_count``: the slots hold one count per bucket."""
    kinds: dict[str, list[float]] = {}
    for key, value in samples.items():
        labels = key[key.index("{") : -1]
        kind, _, le = labels.rpartition(",le=")
        kinds.setdefault(kind, [0.0] * len(_BOUNDS))[_BOUNDS.index(le.strip('"'))] += value
    name = "pyiip_request_duration_seconds"
    for kind, counts in sorted(kinds.items()):
        running = 0.0
        for bound, count in zip(_BOUNDS, counts, strict=True):
            running += count
            yield f'{name}_bucket{kind},le="{bound}"}} {_number(running)}'
        yield f"{name}_count{kind}}} {_number(running)}"


def exposition(total: dict[str, float], workers: int) -> str:
    """The Prometheus text (0.0.4) of summed series."""
    total = {**total, series("g", "pyiip_build_info", version=__version__): 1, series("g", "pyiip_workers"): workers}
    grouped: dict[str, dict[str, float]] = {name: {} for name in FAMILIES}
    for key, value in total.items():
        name = key[1 : key.index("{")]
        grouped.setdefault(_family_of(name), {})[key] = value
    lines: list[str] = []
    for family, samples in grouped.items():
        if not samples and family != "pyiip_requests_total":
            continue
        what = family.removeprefix("pyiip_remote_").removesuffix("_total").replace("_", " ")
        kind, help_text = FAMILIES.get(family, ("counter", f"Object storage: {what}."))
        lines += [f"# HELP {family} {help_text}", f"# TYPE {family} {kind}"]
        buckets = {k: v for k, v in samples.items() if k[0] == "b"}
        for key, value in sorted(samples.items()):
            if key[0] != "b":
                text = key[1:-2] if key.endswith("{}") else key[1:]
                lines.append(f"{text} {_number(value)}")
        if buckets:
            lines += _histogram(buckets)
    return "\n".join(lines) + "\n"


def answer(service: Service, request: Request) -> Response:
    """``/metrics``: every worker's series summed (the web server keeps it to local clients)."""
    metrics = METRICS
    metrics.sync(service, time.perf_counter())
    total = metric_files.collect(metrics.slots)
    return Response(200, exposition(total, _live_workers(metrics.slots)).encode(), PROMETHEUS_TYPE, cacheable=False)


def _live_workers(slots: Slots) -> int:
    if slots.path is None:
        return 1
    names = os.listdir(os.path.dirname(slots.path))
    return sum(1 for name in names if name.endswith(metric_files.SUFFIX))
