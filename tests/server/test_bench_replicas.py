"""``bench/bench_replicas.py`` runs its three set-ups (SQLite; PostgreSQL with one and with
three replicas on a server of its own) and prints every figure and the summary table; the
three replicas all answer (the client's round-robin reaches each) and none answers a 5xx.
The figures themselves are not asserted: they are wall-clock. Bad options get a one-line
error."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.pgserver import find_binaries, unavailable

REPO = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, str(REPO / "bench" / "bench_replicas.py")]
NUMBER = r"[\d.]+"


def test_the_bench_prints_each_setup_and_the_table():
    if find_binaries() is None:
        unavailable("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
    done = subprocess.run([*BENCH, "--samples", "1", "--rows", "50", "--seconds", "0.3",
                           "--threads", "2", "--wait-seconds", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for title in ("SQLite, 1 process", "PostgreSQL, 1 replica", "PostgreSQL, 3 replicas"):
        assert f"== {title} ==" in out, out
    assert "round-robin over the 3 replicas' URLs, a load balancer's job" in out, out
    assert "upload on replica A, device on B" in out, out
    answered = re.findall(r"answers per replica: (.*)", out)
    assert len(answered) == 3, out
    per_replica = re.findall(r"r(\d) (\d+) \((\d+) 5xx\)", answered[2])
    assert [r for r, _, _ in per_replica] == ["0", "1", "2"], answered[2]
    assert all(int(n) > 0 and errors == "0" for _, n, errors in per_replica), answered[2]
    for metric in ("submit req/s, 2 threads", "status req/s, 2 threads", "hand-over p50 ms",
                   "hand-over p99 ms", "list p50 ms, slowest kind",
                   "list p99 ms, slowest kind"):
        assert re.search(rf"^{re.escape(metric)} +{NUMBER} +{NUMBER} +{NUMBER}$", out,
                         re.MULTILINE), out
    assert re.search(rf"submit, 3 replicas / 1 replica: {NUMBER}x \(2 threads\)", out), out


def test_bad_options_get_a_one_line_error():
    for args, says in ((["--setups", "sqlite,pg9"], "give a comma-separated subset of "
                                                    "sqlite,pg1,pg3"),
                       (["--threads", "4,x"], "give positive numbers"),
                       (["--wait-seconds", "30"], "at most 20"),
                       (["--database", "/tmp/queue.db"], "give a postgresql://")):
        done = subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        error = done.stderr.strip().splitlines()[-1]
        assert error.startswith("bench_replicas.py: error: ") and says in error, error
