"""Operations: the /health reply, and each request's accounting (metrics.py) and log line.

The request line is logfmt (``key=value``) or, with LOG_FORMAT=json, one
JSON object (log.py), written at VERBOSITY >= 2 like iipsrv's per-request
timing. It names the request id (``X-Request-ID``) the reply carries.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyiip import __version__
from pyiip.http import Request, Response
from pyiip.log import LOGGER
from pyiip.respond import metrics

if TYPE_CHECKING:
    from pyiip.service import Service

HEALTH_PATH = "/health"
METRICS_PATH = metrics.METRICS_PATH
LIVE_PATH = "/livez"
READY_PATH = "/readyz"
TEXT_TYPE = "text/plain; charset=utf-8"


def finished(service: Service, request: Request, kind: str, status: int, size: int, started: float, rid: str) -> None:
    """Account for one request of ``kind`` (its route's) and, at VERBOSITY >= 2, log it with its time and id."""
    now = time.perf_counter()
    seconds = now - started
    counted = metrics.METRICS
    counted.record(kind, status, seconds, size)
    if now - counted.synced >= metrics.SYNC_INTERVAL:  # the cache and process figures, for other workers' scrapes
        counted.sync(service, now)
    if LOGGER.isEnabledFor(logging.INFO):
        uri = request.path[:1000] + ("?" + request.query[:1000] if request.query else "")
        fields = {
            "kind": kind,
            "status": status,
            "bytes": size,
            "ms": round(seconds * 1000, 2),
            "method": request.method,
            "uri": uri,
            "id": rid,
        }
        LOGGER.info("request", extra={"request": fields})


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
            "uptime_seconds": round(time.time() - metrics.METRICS.started, 1),
            "requests": metrics.METRICS.requests(),
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


PATHS = {HEALTH_PATH: health, METRICS_PATH: metrics.answer, LIVE_PATH: live, READY_PATH: ready}


def answer(service: Service, request: Request) -> Response:
    """``/health`` (also ``?HEALTH`` on the IIP endpoint, which every deployment maps), ``/metrics``,
    ``/livez`` or ``/readyz``."""
    return PATHS.get(request.path, health)(service, request)
