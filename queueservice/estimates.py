"""A workload's own board time, estimated from its file when the file arrives.

The service reads the uploaded workload as the executor would (``qickwork.read_workload``:
hostile data, decompression capped) and sums the static estimate of each program
(``qickwork.estimate``) with the tProc timing clock the program recorded when it was
compiled, plus the executor's measured per-program overhead (``program_overhead``), as
``userclient estimate`` does. The result feeds ``EstimatedSeconds`` and the queue's
``EstimatedStartAt`` (``policy.estimated_start``; ``scheduling.forecast`` on a device the
facility's rules apply to). It is a best effort: a file it cannot read (not ours, the
original client's without a recorded clock, too large, or qickwork not installed) has no
estimate, and the device's recent measured time stands in for it.

qickwork imports numpy and h5py (never qick) and only when a workload file arrives.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger("qick_queue")

#: files larger than this (decompressed) get no estimate: the device's measured mean is used
MAX_ESTIMATE_BYTES = 64 * 2**20


def workload_seconds(path: str | os.PathLike) -> float | None:
    """Estimated board time of the workload file at ``path``, or None when unknown."""
    try:
        from qickwork.errors import WorkloadError
        from qickwork.estimate import estimate_dump, program_overhead
        from qickwork.workload import read_workload
    except ImportError as exc:  # a service installed without qickwork's numpy/h5py
        log.debug("no workload estimates: %s", exc)
        return None
    try:
        entries = read_workload(path, max_bytes=MAX_ESTIMATE_BYTES)
        total = 0.0
        for entry in entries:
            if entry.f_time is None:  # the original client's file: no timing clock
                return None
            clock = {"tprocs": [{"f_time": entry.f_time}]}
            rounds = entry.acquire.rounds
            total += (estimate_dump(entry.dump, clock, rounds=rounds).seconds
                      + program_overhead(rounds))
    except (WorkloadError, ValueError, TypeError, KeyError, ArithmeticError):
        return None  # a file the board will refuse: it runs for no time worth estimating
    return total
