"""The per-process counter files: summing, the dead folded into the archive, gauges of the dead dropped."""

from __future__ import annotations

import json
import math
import os
import subprocess

from pyiip.respond import metric_files, metrics
from pyiip.respond.metric_files import Slots


def _reaped() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def worker(directory, pid: int) -> Slots:
    """The slot file another process (``pid``) would have."""
    return Slots(os.path.join(directory, f"{pid}{metric_files.SUFFIX}"))


def test_a_scrape_adds_the_live_keeps_the_dead_counters_and_drops_their_gauges(tmp_path):
    own = metric_files.open_slots(str(tmp_path))
    own.values[own.slot("cpyiip_requests_total{}")] = 3
    own.values[own.slot("gprocess_resident_memory_bytes{}")] = 100
    own.values[own.slot("xpyiip_cache_servers_down{}")] = 1
    alive = worker(tmp_path, os.getppid())
    alive.values[alive.slot("cpyiip_requests_total{}")] = 4
    alive.values[alive.slot("gprocess_resident_memory_bytes{}")] = 50
    alive.values[alive.slot("xpyiip_cache_servers_down{}")] = 2
    gone = _reaped()
    dead = worker(tmp_path, gone)
    dead.values[dead.slot("cpyiip_requests_total{}")] = 5
    dead.values[dead.slot("gprocess_resident_memory_bytes{}")] = 1000
    total = metric_files.collect(own)
    assert total["cpyiip_requests_total{}"] == 12
    assert total["gprocess_resident_memory_bytes{}"] == 150  # the dead process holds no memory
    assert total["xpyiip_cache_servers_down{}"] == 2  # the most any worker sees, not a sum
    assert not (tmp_path / f"{gone}.metrics").exists()
    assert json.loads((tmp_path / "archive.json").read_text()) == {"cpyiip_requests_total{}": 5}
    assert metric_files.collect(own)["cpyiip_requests_total{}"] == 12  # folded once, counted once


def test_a_file_left_under_this_pid_is_folded_before_counting_anew(tmp_path):
    left = worker(tmp_path, os.getpid())
    left.values[left.slot("cpyiip_requests_total{}")] = 7
    own = metric_files.open_slots(str(tmp_path))
    assert own.snapshot() == {}
    assert metric_files.collect(own)["cpyiip_requests_total{}"] == 7


def test_nan_marks_a_series_no_longer_kept_and_the_slots_have_an_end(tmp_path):
    slots = Slots()
    slots.values[slots.slot("gpyiip_cache_entries{}")] = math.nan
    assert slots.snapshot() == {}
    for n in range(metric_files.SLOTS + 10):
        slots.slot(f"cseries_{n}{{}}")
    assert slots.slot("cone_too_many{}") == metric_files.SCRATCH
    assert len(slots.snapshot()) == metric_files.SLOTS - 2  # the NaN one not shown


def test_a_torn_or_foreign_file_is_skipped(tmp_path):
    own = metric_files.open_slots(str(tmp_path))
    (tmp_path / f"{os.getppid()}.metrics").write_bytes(b"\xff" * 10)  # too short to hold a header
    (tmp_path / "notes.txt").write_text("not ours")
    assert metric_files.collect(own) == {}


def test_the_exposition_is_prometheus_text_with_cumulative_buckets():
    counted = metrics.Metrics()
    for seconds in (0.001, 0.003, 0.2, 99.0):
        counted.record("iip_tile", 200, seconds, 1000)
    text = metrics.exposition(counted.slots.snapshot(), 1)
    assert 'pyiip_request_duration_seconds_bucket{kind="iip_tile",le="0.005"} 2' in text
    assert 'pyiip_request_duration_seconds_bucket{kind="iip_tile",le="0.25"} 3' in text
    assert 'pyiip_request_duration_seconds_bucket{kind="iip_tile",le="+Inf"} 4' in text
    assert 'pyiip_request_duration_seconds_count{kind="iip_tile"} 4' in text
    assert 'pyiip_requests_total{kind="iip_tile",code="200"} 4' in text
    assert 'pyiip_response_bytes_total{kind="iip_tile"} 4000' in text
    assert "pid=" not in text and "# TYPE pyiip_request_duration_seconds histogram" in text
