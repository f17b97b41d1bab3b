"""One workload on the simulated board, in its own process (workloads are hostile data).

    python -m mockboard.run WORKLOAD RESULTS SOCCFG_JSON [--memory-mb N]

Limits its own address space first, then runs ``executor.runner.run_workload``. Writes
``progress <done> <total>`` lines while it runs and one final ``outcome <json>`` line on
stdout. Stops (CANCELLED, with the programs done so far in the results file) on SIGTERM
or when its parent is gone.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import sys
import threading


def _limit_memory(megabytes: int) -> None:
    limit = megabytes * 1024 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mockboard.run")
    parser.add_argument("workload")
    parser.add_argument("results")
    parser.add_argument("soccfg")
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--work-id", default="")
    parser.add_argument("--device", default="")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # threads reserve address space
    _limit_memory(args.memory_mb)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("qick").setLevel(logging.ERROR)
    parent = os.getppid()
    stop = threading.Event()  # SIGTERM: stop between rounds, keep what is done
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    from executor.runner import open_board, run_workload
    from qickwork.errors import WorkloadError

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        board = open_board("simulated", soccfg_json=args.soccfg)
    except WorkloadError as exc:
        say("outcome " + json.dumps({"status": "FAILED", "error_kind": "device_error",
                                     "error_message": f"the mock board did not open: {exc}",
                                     "programs_done": 0, "programs_total": 0}))
        return 0
    outcome = run_workload(args.workload, args.results, board,
                           progress=lambda done, total: say(f"progress {done} {total}"),
                           should_stop=lambda: stop.is_set() or os.getppid() != parent,
                           work_id=args.work_id, device=args.device)
    say("outcome " + json.dumps({"status": outcome.status, "error_kind": outcome.error_kind,
                                 "error_message": outcome.error_message,
                                 "programs_done": outcome.programs_done,
                                 "programs_total": outcome.programs_total,
                                 "seconds": outcome.seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
