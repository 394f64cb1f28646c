"""Operations: the /health reply, Prometheus metrics, and the per-request log line.

Every process counts its own requests in plain ints and dicts: each is
single-threaded, so no lock is needed, and the hot path costs a few dict
increments. Under FastCGI a scrape of ``/metrics`` reaches whichever process
the web server picks, so every sample carries a ``pid`` label; sum over it in
queries (``sum by (kind) (rate(pyiip_requests_total[5m]))``).

The request line is logfmt (``key=value``), so log shippers parse it as is,
written at VERBOSITY >= 2 like iipsrv's per-request timing.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pyiip import __version__
from pyiip.http import Request, Response
from pyiip.log import LOGGER

if TYPE_CHECKING:
    from pyiip.service import Service

HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
LIVE_PATH = "/livez"
READY_PATH = "/readyz"
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
# Latency buckets (seconds): tiles take milliseconds, a large CVT seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """This process's request counters since it started (the cache tiers count their own lookups)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[tuple[str, int], int] = {}
        self.seconds: dict[str, float] = {}
        self.bytes: dict[str, int] = {}
        self.buckets: dict[str, list[int]] = {}

    def record(self, kind: str, status: int, seconds: float, size: int) -> None:
        """Count one answered request: a few dict operations, nothing more."""
        key = (kind, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
        self.bytes[kind] = self.bytes.get(kind, 0) + size
        counts = self.buckets.get(kind)
        if counts is None:
            counts = self.buckets[kind] = [0] * (len(BUCKETS) + 1)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1


METRICS = Metrics()


def _reset_after_fork() -> None:
    """A forked worker (``pyiip serve``, ``pyiip.fcgi --workers``) starts its own counters."""
    global METRICS
    METRICS = Metrics()


os.register_at_fork(after_in_child=_reset_after_fork)


def _logfmt(value: str) -> str:
    """A logfmt value: bare when safe, else double-quoted with JSON escapes (never a raw newline)."""
    if value and not any(c in value for c in ' "=\\') and value.isprintable():
        return value
    return json.dumps(value)


def finished(request: Request, kind: str, status: int, size: int, started: float) -> None:
    """Account for one request of ``kind`` (its route's) and, at VERBOSITY >= 2, log it with its time."""
    seconds = time.perf_counter() - started
    METRICS.record(kind, status, seconds, size)
    if LOGGER.isEnabledFor(logging.INFO):
        uri = request.path[:1000] + ("?" + request.query[:1000] if request.query else "")
        LOGGER.info(
            "request kind=%s status=%d bytes=%d ms=%.2f method=%s uri=%s",
            kind,
            status,
            size,
            seconds * 1000,
            request.method,
            _logfmt(uri),
        )


# --- health ---------------------------------------------------------------------------------------


ROOT_CHECK_INTERVAL = 2.0  # seconds a check (image root, object store) stands before it is made again
LOCAL_CLIENTS = ("", "127.0.0.1", "::1", "::ffff:127.0.0.1")  # the shipped web servers' rule for /metrics
_checks: dict[str, tuple[float, dict[str, Any]]] = {}  # image root or store -> (when checked, outcome)


def _recently(key: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``check()``'s outcome, made again only when the last is ROOT_CHECK_INTERVAL seconds old.

    A client looping on /health or /readyz costs a dict lookup, not a directory read or a
    request to the object store each time.
    """
    now = time.monotonic()
    known = _checks.get(key)
    if known is not None and now - known[0] < ROOT_CHECK_INTERVAL:
        return known[1]
    outcome = check()
    if len(_checks) >= 8:
        _checks.clear()
    _checks[key] = (now, outcome)
    return outcome


def _check_root(service: Service) -> dict[str, Any]:
    """The image root must be a directory this process can list; the reply never names it.

    Images in object storage are not probed here: a probe per health check would be a
    request to the store each time, and a failing store shows in the requests themselves
    (503) and in pyiip_remote_* metrics. /readyz probes it (``_check_store``).
    """
    if service.resolver.remote is not None:
        return {"ok": True, "source": "object storage, not probed"}
    root = service.resolver.root
    return _recently(root, lambda: _list_root(root))


def _check_store(service: Service) -> dict[str, Any]:
    """Where the images are read from answers: the image root lists, or the object store answers a read."""
    remote = service.resolver.remote
    if remote is None:
        return _check_root(service)

    def probe() -> dict[str, Any]:
        problem = remote.readable()
        return {"ok": False, "error": problem} if problem else {"ok": True}

    return _recently(f"remote {id(remote)}", probe)


def _list_root(root: str) -> dict[str, Any]:
    try:
        with os.scandir(root) as entries:
            next(entries, None)
    except NotADirectoryError:
        return {"ok": False, "error": "image root is not a directory"}
    except FileNotFoundError:
        return {"ok": False, "error": "image root does not exist"}
    except PermissionError:
        return {"ok": False, "error": "image root is not readable"}
    except OSError as exc:
        return {"ok": False, "error": f"image root unreadable: {exc.strerror or type(exc).__name__}"}
    return {"ok": True}


def _memcached_servers(service: Service) -> list[dict[str, Any]]:
    """Each server as the requests found it: failing from a refused, timed-out or reset operation on.

    No probe: a probe per /health waited up to its timeout on a stopped
    server, and clients looping on /health then held the worker from tiles.
    The requests' own operations (memcached.Cluster) leave a failing server
    out, retry it every few seconds and bring it back when it answers: that
    is the state reported here. A server no request has used yet is ok.
    """
    memcached = service.cache.memcached
    if memcached is None:
        return []
    down = memcached.down
    return [
        {"server": name, "ok": False, "error": "failed in recent requests; retried every few seconds"}
        if name in down
        else {"server": name, "ok": True}
        for name in memcached.names
    ]


def is_local(request: Request) -> bool:
    """A client on this host (REMOTE_ADDR 127.0.0.1 or ::1), or none named (an in-process call).

    The same addresses the shipped web-server rules allow for /metrics. A
    FastCGI peer names REMOTE_ADDR itself: one that can reach the FastCGI
    socket is trusted anyway. Behind an HTTP reverse proxy on this host
    every client looks local: keep /health details in its rules then.
    """
    return request.remote in LOCAL_CLIENTS


def health(service: Service, request: Request) -> Response:
    """200 ``ok``; 200 ``degraded`` when only memcached fails (images still served, slower); 503 ``fail``.

    A memcached outage is shared by every instance: failing the health check
    for it would take the whole pool out of a load balancer at once. The
    reply is made from state the process already has (no blocking probe).
    Only local clients get the details (servers, counters, pid); others the
    status alone, in the body and the status code.
    """
    root = _check_root(service)
    servers = _memcached_servers(service)
    if not root["ok"]:
        status = "fail"
    elif not all(s["ok"] for s in servers):
        status = "degraded"
    else:
        status = "ok"
    body: dict[str, Any] = {"status": status}
    if is_local(request):
        body |= {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - METRICS.started, 1),
            "requests": sum(METRICS.requests.values()),
            "checks": {"image_root": root, "memcached": servers if servers else "not configured"},
        }
    return Response(
        503 if status == "fail" else 200,
        (json.dumps(body, indent=1) + "\n").encode(),
        "application/json",
        cacheable=False,
    )


def live(service: Service, request: Request) -> Response:
    """/livez: 200 as long as the process's loop answers; nothing is checked (a restart would not mend it)."""
    return Response(200, b"ok\n", TEXT_TYPE, cacheable=False)


def ready(service: Service, request: Request) -> Response:
    """/readyz: 200 when images can be read (the image root lists, or the object store answers), else 503.

    For a load balancer or Kubernetes readinessProbe: an instance that cannot read its images
    is taken out of rotation, not restarted. Memcached does not count (images are served without
    it). Only local clients are told why.
    """
    check = _check_store(service)
    if check["ok"]:
        return Response(200, b"ready\n", TEXT_TYPE, cacheable=False)
    why = f": {check['error']}" if is_local(request) else ""
    return Response(503, f"not ready{why}\n".encode(), TEXT_TYPE, cacheable=False)


# --- metrics --------------------------------------------------------------------------------------


def _labels(pid: str, **labels: object) -> str:
    parts = [f'pid="{pid}"'] + [f'{k}="{_escape(str(v))}"' for k, v in labels.items()]
    return "{" + ",".join(parts) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{suffix}{labels} {_number(value)}" for suffix, labels, value in samples]
    return lines


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value)) if value == value else "NaN"


# stats() key suffix -> (metric, type, help); the prefix before it names the cache tier ("lru", "tile", "memcached").
_CACHE_FAMILIES = {
    "hits": ("pyiip_cache_hits_total", "counter", "Lookups answered by the cache, by tier."),
    "misses": ("pyiip_cache_misses_total", "counter", "Lookups the cache could not answer, by tier."),
    "evictions": ("pyiip_cache_evictions_total", "counter", "Entries dropped to make room, by tier."),
    "stores": ("pyiip_cache_stores_total", "counter", "Entries written, by tier."),
    "skipped": ("pyiip_cache_skipped_total", "counter", "Entries too large to store, by tier."),
    "errors": ("pyiip_cache_errors_total", "counter", "Failed cache operations (never a failed request), by tier."),
    "entries": ("pyiip_cache_entries", "gauge", "Entries held, by tier."),
    "bytes": ("pyiip_cache_bytes", "gauge", "Bytes held, by tier."),
    "down": ("pyiip_cache_servers_down", "gauge", "Servers currently left out of the hash ring, by tier."),
}


def cache_families(pid: str, stats: dict[str, int]) -> list[str]:
    """The caching layer's own counters (``RenderCache.stats()``), plus hit ratios per tier."""
    samples: dict[str, list[tuple[str, str, float]]] = {}
    tiers: dict[str, dict[str, int]] = {}
    for key, value in stats.items():
        tier, _, what = key.partition("_")
        tiers.setdefault(tier, {})[what] = value
        metric = _CACHE_FAMILIES.get(what)
        if metric is not None:
            samples.setdefault(what, []).append(("", _labels(pid, cache=tier), value))
    lines: list[str] = []
    for what, rows in samples.items():
        name, kind, help_text = _CACHE_FAMILIES[what]
        lines += _family(name, kind, help_text, rows)
    ratios = []
    for tier, values in tiers.items():
        if "hits" in values and "misses" in values:
            lookups = values["hits"] + values["misses"]
            ratios.append(("", _labels(pid, cache=tier), values["hits"] / lookups if lookups else float("nan")))
    lines += _family(
        "pyiip_cache_hit_ratio",
        "gauge",
        "Hits over lookups since the process started or was reloaded (NaN before any lookup), by tier.",
        ratios,
    )
    return lines


def _process_samples() -> tuple[float, float | None]:
    """CPU seconds and resident bytes of this process (RSS from /proc where there is one)."""
    times = os.times()
    rss = None
    try:
        with open("/proc/self/statm", "rb") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return times.user + times.system, rss


def metrics(service: Service, request: Request) -> Response:
    """This process's counters in the Prometheus text format (0.0.4)."""
    pid = str(os.getpid())
    m = METRICS
    lines: list[str] = []
    lines += _family(
        "pyiip_build_info",
        "gauge",
        "Version of the server answering this scrape.",
        [("", _labels(pid, version=__version__), 1)],
    )
    lines += _family(
        "pyiip_requests_total",
        "counter",
        "Requests answered by this process, by kind and HTTP status.",
        [("", _labels(pid, kind=k, code=s), n) for (k, s), n in sorted(m.requests.items())],
    )
    lines += _family(
        "pyiip_response_bytes_total",
        "counter",
        "Body bytes sent by this process, by kind.",
        [("", _labels(pid, kind=k), n) for k, n in sorted(m.bytes.items())],
    )
    duration: list[tuple[str, str, float]] = []
    for kind, counts in sorted(m.buckets.items()):
        running = 0
        for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            duration.append(("_bucket", _labels(pid, kind=kind, le=le), running))
        duration.append(("_sum", _labels(pid, kind=kind), m.seconds[kind]))
        duration.append(("_count", _labels(pid, kind=kind), running))
    lines += _family("pyiip_request_duration_seconds", "histogram", "Time from request to reply, by kind.", duration)
    stats = dict(service.cache.stats())
    remote = service.resolver.remote
    if remote is not None:  # images in object storage: the disk block cache is one more tier
        for key, count in remote.stats().items():
            if key.startswith("block_cache_"):
                stats["disk_" + key.removeprefix("block_cache_")] = count
            elif key.startswith("remote_"):
                lines += _family(
                    f"pyiip_{key}_total",
                    "counter",
                    f"Object storage: {key.removeprefix('remote_').replace('_', ' ')}.",
                    [("", _labels(pid), count)],
                )
    lines += cache_families(pid, stats)
    cpu, rss = _process_samples()
    lines += _family(
        "pyiip_process_start_time_seconds",
        "gauge",
        "Start of this process, Unix time.",
        [("", _labels(pid), m.started)],
    )
    lines += _family(
        "pyiip_process_cpu_seconds_total", "counter", "CPU time of this process.", [("", _labels(pid), cpu)]
    )
    if rss is not None:
        lines += _family(
            "pyiip_process_resident_memory_bytes",
            "gauge",
            "Resident memory of this process.",
            [("", _labels(pid), rss)],
        )
    return Response(200, ("\n".join(lines) + "\n").encode(), PROMETHEUS_TYPE, cacheable=False)


PATHS = {HEALTH_PATH: health, METRICS_PATH: metrics, LIVE_PATH: live, READY_PATH: ready}


def answer(service: Service, request: Request) -> Response:
    """``/health`` (also ``?HEALTH`` on the IIP endpoint, which every deployment maps), ``/metrics``,
    ``/livez`` or ``/readyz``."""
    return PATHS.get(request.path, health)(service, request)
