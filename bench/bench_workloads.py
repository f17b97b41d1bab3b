"""Benchmark of the workload path: prints figures, never passes or fails on time.

    .venv/bin/python bench/bench_workloads.py [--programs 1001]

1. build + serialize a frequency sweep of N programs (one per frequency): our workload
   format vs plain progs2json + gzip, time and file size;
2. programs per second through run_workload on the simulated board;
3. results written per second and peak memory (tracemalloc) for a large result.
"""
from __future__ import annotations

import argparse
import gzip
import logging
import os
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qick.helpers import progs2json  # noqa: E402

from executor.runner import open_board, run_workload  # noqa: E402
from qickwork import ResultsWriter, dumps_workload, entry_for  # noqa: E402
from qickwork.firmware import firmware_info  # noqa: E402
from tests.qick.programs import SweepV2  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--programs", type=int, default=1001)
    parser.add_argument("--reps", type=int, default=100)
    args = parser.parse_args()
    logging.getLogger("qick").setLevel(logging.ERROR)
    board = open_board("simulated", "zcu216-v2", seed=1)
    freqs = np.linspace(100, 200, args.programs)

    t0 = time.perf_counter()
    progs = [SweepV2(board.soccfg, reps=args.reps, final_delay=1.0, cfg={"freq": f}) for f in freqs]
    t_build = time.perf_counter() - t0

    t0 = time.perf_counter()
    plain = []
    for p in progs:
        d = p.dump_prog()
        d.update({"acqtype": "accumulated", "save_raw": False, "save_shots": False})
        plain.append(d)
    plain_bytes = gzip.compress(progs2json(plain).encode())
    t_plain = time.perf_counter() - t0

    t0 = time.perf_counter()
    info = firmware_info(board.soccfg)           # the soccfg is hashed once per workload
    ours = dumps_workload([entry_for(p, board.soccfg, rounds=1, firmware=info) for p in progs])
    t_ours = time.perf_counter() - t0

    from userclient.workload import WorkloadManager
    t0 = time.perf_counter()
    wm = WorkloadManager(board.soccfg)
    for p in progs:
        wm.add(p)                                # + the checks against the board
    managed = dumps_workload(wm.entries)
    t_wm = time.perf_counter() - t0
    print(f"build {args.programs} programs: {t_build:.2f} s")
    print(f"serialize  progs2json+gzip: {t_plain:.3f} s, {len(plain_bytes) / 1024:.1f} KiB")
    print(f"serialize  qickwork       : {t_ours:.3f} s, {len(ours) / 1024:.1f} KiB "
          f"(+{100 * (len(ours) / len(plain_bytes) - 1):.1f}% for firmware + acquire args)")
    print(f"serialize  WorkloadManager.add + dumps: {t_wm:.3f} s, {len(managed) / 1024:.1f} KiB")

    with tempfile.TemporaryDirectory() as tmp:
        wl = os.path.join(tmp, "w.gz")
        with open(wl, "wb") as f:
            f.write(ours)
        t0 = time.perf_counter()
        out = run_workload(wl, os.path.join(tmp, "r.h5"), board)
        took = time.perf_counter() - t0
        print(f"run on the simulated board: {out.status}, {out.programs_done} programs in "
              f"{took:.2f} s = {out.programs_done / took:.0f} programs/s")

        shape = (2000, 500, 1, 2)        # 1M shots of raw int64 I/Q per program
        raw = [np.random.default_rng(0).integers(-10**6, 10**6, shape, dtype=np.int64)]
        avg = [raw[0].mean(axis=0).astype(float)]
        n = 8
        tracemalloc.start()
        t0 = time.perf_counter()
        with ResultsWriter(os.path.join(tmp, "big.h5"), programs_total=n) as w:
            for i in range(n):
                w.add(i, acqtype="accumulated", seconds=0.0, avg=avg, raw=raw)
            w.finish("DONE", seconds=0.0)
        took = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        mb = n * raw[0].nbytes / 1e6
        size = os.path.getsize(os.path.join(tmp, "big.h5")) / 1e6
        print(f"results: {n} programs x {raw[0].nbytes / 1e6:.0f} MB raw in {took:.2f} s = "
              f"{mb / took:.0f} MB/s ({n / took:.1f} programs/s), file {size:.0f} MB, "
              f"peak extra memory {peak / 1e6:.1f} MB (one program's arrays: "
              f"{raw[0].nbytes / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
