"""``bench/bench_workloads.py --overhead-only`` measures the executor's overhead per program
on the simulated board and prints it beside the model's constants and the estimate (the
figures themselves are not asserted: they are wall-clock)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_bench_prints_the_measured_overhead_beside_the_model():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_workloads.py"),
                           "--overhead-only", "--overhead-programs", "4", "--reps", "5"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.search(r"executor overhead on the simulated board \(4 one-shot programs\): "
                     r"-?[\d.]+ ms per program \(model PROGRAM_OVERHEAD_SECONDS 2\.50 ms\), "
                     r"-?[\d.]+ ms per further round \(model ROUND_OVERHEAD_SECONDS 0\.20 ms\)",
                     done.stdout), done.stdout
    assert re.search(r"4-program sweep, 5 reps: estimated [\d.]+ s \([\d.]+ s in the programs' "
                     r"timelines \+ [\d.]+ s overhead\), measured [\d.]+ s on a real-time "
                     r"simulated board", done.stdout), done.stdout
