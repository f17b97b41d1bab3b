"""Benchmark of the workload path: prints figures, never passes or fails on time.

    .venv/bin/python bench/bench_workloads.py [--programs 1001] [--overhead-only]

1. build + serialize a frequency sweep of N programs (one per frequency): our workload
   format vs plain progs2json + gzip, time and file size;
2. programs per second through run_workload on the simulated board;
3. results written per second and peak memory (tracemalloc) for a large result;
4. the executor's overhead per program and per further round (what ``qickwork.estimate``'s
   PROGRAM_OVERHEAD_SECONDS and ROUND_OVERHEAD_SECONDS model), measured on the simulated
   board at full speed (a program's timeline takes no time there), and the estimate of a
   sweep side by side with its run on a real-time simulated board (time_scale=1).
   Run it on a board (``--kind qick``) to measure the real figure.
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


def _timed_run(board, programs: int, reps: int, rounds: int,
               repeat: int = 3) -> tuple[float, object]:
    """The shortest of ``repeat`` runs of ``run_workload`` on a sweep of ``programs``
    programs (the least disturbed by other processes), and its WorkloadManager."""
    from userclient.workload import WorkloadManager
    wm = WorkloadManager(board.soccfg)
    for f in np.linspace(100, 200, programs):
        wm.add(SweepV2(board.soccfg, reps=reps, final_delay=1.0, cfg={"freq": float(f)}),
               rounds=rounds)
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        wm.write(os.path.join(tmp, "w.gz"))
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = run_workload(os.path.join(tmp, "w.gz"), os.path.join(tmp, "r.h5"), board)
            best = min(best, time.perf_counter() - t0)
            if out.status != "DONE":
                raise SystemExit(f"the overhead run ended {out.status}: {out.error_message}")
    return best, wm


def bench_overhead(kind: str, programs: int, reps: int) -> None:
    """Section 4: the executor's own time per program, and estimate vs measured."""
    from qickwork.estimate import PROGRAM_OVERHEAD_SECONDS, ROUND_OVERHEAD_SECONDS
    fast = open_board(kind, "zcu216-v2", seed=1)        # time_scale 0: no program time
    _timed_run(fast, 5, 1, 1, repeat=1)                 # warm up (imports, caches)
    one, wm1 = _timed_run(fast, programs, 1, 1)
    ten, wm10 = _timed_run(fast, programs, 1, 10)
    # what the programs' own timelines would have taken (nothing on the fast simulation)
    run1 = wm1.estimate().seconds - wm1.estimate().overhead_seconds if kind == "qick" else 0.0
    run10 = wm10.estimate().seconds - wm10.estimate().overhead_seconds if kind == "qick" else 0.0
    per_program = (one - run1) / programs
    per_round = ((ten - run10) - (one - run1)) / (programs * 9)
    print(f"executor overhead on the {kind} board ({programs} one-shot programs): "
          f"{per_program * 1e3:.2f} ms per program (model PROGRAM_OVERHEAD_SECONDS "
          f"{PROGRAM_OVERHEAD_SECONDS * 1e3:.2f} ms), {per_round * 1e3:.2f} ms per further "
          f"round (model ROUND_OVERHEAD_SECONDS {ROUND_OVERHEAD_SECONDS * 1e3:.2f} ms)")
    board = fast if kind == "qick" else open_board(kind, "zcu216-v2", seed=1, time_scale=1.0)
    took, wm = _timed_run(board, programs, reps, 1)
    est = wm.estimate()
    where = "the board" if kind == "qick" else "a real-time simulated board (time_scale=1)"
    print(f"{programs}-program sweep, {reps} reps: estimated {est.seconds:.3f} s "
          f"({est.seconds - est.overhead_seconds:.3f} s in the programs' timelines + "
          f"{est.overhead_seconds:.3f} s overhead), measured {took:.3f} s on {where}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--programs", type=int, default=1001)
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--overhead-programs", type=int, default=201,
                        help="programs of the overhead measurement (section 4; default 201)")
    parser.add_argument("--overhead-only", action="store_true",
                        help="run only section 4")
    parser.add_argument("--kind", choices=["simulated", "qick"], default="simulated",
                        help="section 4 on the simulated board or the real one (on a board)")
    args = parser.parse_args()
    logging.getLogger("qick").setLevel(logging.ERROR)
    if args.overhead_only:
        bench_overhead(args.kind, args.overhead_programs, args.reps)
        return
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
    bench_overhead(args.kind, args.overhead_programs, args.reps)


if __name__ == "__main__":
    main()
