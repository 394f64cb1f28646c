"""bench/http_modes.py's arithmetic and report: rounds added up, the Markdown table. No server, no wrk run."""

from __future__ import annotations

import math

from tests.unit.test_bench import BENCH, _load

modes = _load("pyiip_bench_http_modes", BENCH / "http_modes.py")


def test_rounds_are_added_up_not_averaged():
    runs = [
        {"requests": 1000, "seconds": 5.0, "errors": 0, "p99_ms": 9.0, "cpu": 0.05},
        {"requests": 3000, "seconds": 5.0, "errors": 2, "p99_ms": 30.0, "cpu": 0.15},
    ]
    total = modes.summed(runs)
    assert total == {"rps": 400.0, "cpu_ms": 0.05, "errors": 2, "p99_ms": 30.0}
    assert math.isnan(modes.summed([{**runs[0], "requests": 0}])["cpu_ms"])


def test_table_has_a_row_per_server_and_says_who_answered():
    figure = {"rps": 2703.4, "cpu_ms": 0.081, "errors": 0, "p99_ms": 9.0}
    results = {
        "pyiip": {
            "idle_cpu_percent": 0.0,
            "held_open": {"answered": 20, "asked": 20, "connected": 101, "median_ms": 0.2},
            **{f"{kind}_c{c}": figure for kind in ("tile", "info") for c in (1, 8)},
        },
        "gunicorn": {
            "idle_cpu_percent": 0.01,
            "held_open": {"answered": 0, "asked": 20, "connected": 101, "median_ms": None},
            **{f"{kind}_c{c}": {**figure, "errors": 3} for kind in ("tile", "info") for c in (1, 8)},
        },
    }
    lines = modes.table(results, [1, 8]).splitlines()
    assert len(lines) == 4 and lines[0].count("|") == lines[2].count("|") == 1 + 1 + 4 + 2
    assert lines[2] == (
        "| pyiip | 2703 (0.08) | 2703 (0.08) | 2703 (0.08) | 2703 (0.08) | 0.00 | 20/20 answered, median 0.2 ms |"
    )
    assert lines[3].endswith("| 0.01 | 0/20 answered |") and "2703 (0.08) 3 errors" in lines[3]
