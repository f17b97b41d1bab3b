"""``bench/bench_portal.py`` stores the workloads it says, logs its user and admin in
through the portal's own form, and prints one line for every page of its list: figures
(median and p95, ms) for every page, each answering (all the slices are built: a page
that answers 404 prints "not built" and fails here). The figures are wall-clock: not
asserted. Bad options get a one-line error."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.bench_portal import PAGES

REPO = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, str(REPO / "bench" / "bench_portal.py")]
NUMBER = r"[\d.]+"


def test_the_bench_prints_a_line_for_every_page():
    done = subprocess.run([*BENCH, "--workloads", "300", "--own", "60", "--requests", "3",
                           "--ledger", "50"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "stored 300 workloads (60 the user's; 10 % READY" in out, out
    assert "stored 600 ledger lines (50 a month for 12 months)" in out, out
    table = out.splitlines()
    table = table[table.index(next(t for t in table if t.startswith("page "))) + 1:]
    lines = {line.split()[0]: line for line in table}
    assert set(lines) == {path for path, _ in PAGES}, out
    for path, who in PAGES:
        assert re.fullmatch(rf"{re.escape(path)} +{who} +{NUMBER} +{NUMBER}",
                            lines[path]), lines[path]


def test_bad_options_get_a_one_line_error():
    done = subprocess.run([*BENCH, "--own", "10", "--workloads", "5"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("bench_portal.py: error: ") and "at most --workloads" in error, \
        error
    done = subprocess.run([*BENCH, "--queued", "95"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "--queued is a percentage" in done.stderr, done.stderr
