"""``bench/bench_sessions.py`` runs its closed loop through a real service and a board
daemon on the simulated board, in a session and without one, and prints both lines of
figures (not asserted: they are wall-clock); a loop too short to measure is a one-line
usage error."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, str(REPO / "bench" / "bench_sessions.py")]


def test_the_bench_prints_the_turnaround_in_a_session_and_without():
    done = subprocess.run([*BENCH, "--n", "3", "--competing", "2"], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    for label in ("in a session", "without a session"):
        assert re.search(rf"^  {label} +p50 +[\d.]+ ms +p99 +[\d.]+ ms +\(n=2\)$",
                         done.stdout, re.M), done.stdout
    assert "closed loop of 3 tiny workloads while 2 shared ones stay queued" in done.stdout


def test_a_loop_of_one_step_is_refused():
    done = subprocess.run([*BENCH, "--n", "1"], capture_output=True, text=True, timeout=60,
                          cwd=REPO)
    assert done.returncode == 2 and "--n must be at least 2" in done.stderr
    assert "Traceback" not in done.stderr
