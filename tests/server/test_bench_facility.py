"""``bench/bench_facility.py`` runs both set-ups (accounting and calendars off, then on)
and prints every figure and the side-by-side table. With them on, the waiting timeslot
work it stores is weighed at every hand-out and never handed out (no slot is open), so the
figures measure what they say. The figures themselves are wall-clock: not asserted. Bad
options get a one-line error."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, str(REPO / "bench" / "bench_facility.py")]
NUMBER = r"[\d.]+"


def test_the_bench_prints_both_setups_and_the_table():
    done = subprocess.run([*BENCH, "--samples", "3", "--seconds", "0.3", "--threads", "2",
                           "--teams", "4", "--reservations", "8", "--waiting", "40"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "accounting and calendars off" in out and "accounting and calendars on" in out, out
    assert "stored 4 teams, 8 reservations, 40 waiting workloads" in out, out
    assert "timeslot workloads still waiting: 40 of 40" in out, out
    for metric in ("hand-out p50 ms (long poll)", "hand-out p99 ms (long poll)",
                   "submit req/s (2 threads)", "status req/s (2 threads)"):
        assert re.search(rf"^{re.escape(metric)} +{NUMBER} +{NUMBER} +{NUMBER}$", out,
                         re.MULTILINE), out


def test_bad_options_get_a_one_line_error():
    done = subprocess.run([*BENCH, "--threads", "0"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("bench_facility.py: error: ") and "at least 1" in error, error
