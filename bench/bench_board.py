"""Benchmark of the board daemon. Prints figures; never asserts on time.

    .venv/bin/python bench/bench_board.py [--n 100] [--n-long 100] [--baseline-n 5]

Against the real embedded queue service on loopback and a simulated board:

1. per-workload overhead: ``--n`` tiny workloads submitted back to back; the makespan
   (first ``StartedAt`` to last ``FinishedAt`` at the service) divided by N, minus the mean
   execution time the board measured (``DeviceSeconds``);
2. board utilization: ``--n-long`` workloads of about 1 s each (the simulated board's
   ``time_scale`` makes them take that long): sum of execution time / makespan;
3. the same two figures for a baseline loop written like the original device client:
   ask for work, sleep 5 s when there is none and after each job;
4. resident memory (RSS, psutil) of the supervisor, downloader and uploader together,
   sampled during the runs (peak) and at the end.

Targets (from the issue): overhead < 100 ms per workload on loopback; utilization > 95 %
for 1 s workloads; the three non-executor processes < 150 MB together.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Tuple

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudqueue.transfer import download_file, upload_file  # noqa: E402
from executor.runner import open_board, run_workload  # noqa: E402
from tests.board.conftest import BoardDaemon, make_workload  # noqa: E402
from tests.conftest import start_queue_service  # noqa: E402
from tests.helpers import wait_for  # noqa: E402

TIME_SCALE = 2000.0   # the simulated board's slow-down for the ~1 s workloads
BASELINE_SLEEP = 5.0  # the original device client's poll period


def parse_time(value) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.strptime(value.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def calibrate(tmp: Path, target: float) -> Tuple[Path, float]:
    """A workload that takes about ``target`` seconds on the simulated board at TIME_SCALE."""
    board = open_board("simulated", "zcu216-v2", seed=1, time_scale=TIME_SCALE)
    probe = make_workload(tmp / "probe.gz", programs=1, reps=50)
    per_rep = run_workload(str(probe), str(tmp / "probe.h5"), board).seconds / 50
    reps = max(1, int(target / per_rep))
    path = make_workload(tmp / "long.gz", programs=1, reps=reps)
    seconds = run_workload(str(path), str(tmp / "long.h5"), board).seconds
    return path, seconds


class RssSampler:
    """Peak and last RSS of the given processes together, sampled from a thread."""

    def __init__(self, pids: List[int], period: float = 0.25):
        self.procs = [psutil.Process(p) for p in pids]
        self.peak = self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = 0
        for p in self.procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        self.last = total
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.sample()

    def __enter__(self) -> "RssSampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def figures(admin, ids: List[str]) -> Dict[str, float]:
    works = [admin.get_workload(w) for w in ids]
    bad = [w for w in works if w.WorkStatus != "DONE"]
    if bad:
        raise SystemExit(f"bench_board: {len(bad)} workloads did not finish DONE: {bad[0]}")
    start = min(parse_time(w.StartedAt) for w in works)
    end = max(parse_time(w.FinishedAt) for w in works)
    run = [float(w.DeviceSeconds or 0.0) for w in works]
    makespan = end - start
    return {"n": len(ids), "makespan": makespan, "mean_run": statistics.mean(run),
            "overhead": makespan / len(ids) - statistics.mean(run),
            "utilization": sum(run) / makespan}


def submit_all(admin, device_id: str, path: Path, n: int) -> List[str]:
    ids = []
    for _ in range(n):
        answer = admin.create_workload(device_id)
        upload_file(answer["UploadUrl"], path)
        ids.append(answer["WorkId"])
    return ids


def wait_all(admin, ids: List[str], timeout: float) -> None:
    wait_for(lambda: all(admin.get_workload(w).terminal for w in ids[-3:]) and
             all(admin.get_workload(w).terminal for w in ids), timeout, interval=0.5,
             what="all workloads to finish")


def run_daemon(service, base: Path, tiny: Path, long: Path, args) -> Dict[str, Dict]:
    """Tiny workloads on a fast board, then ~1 s ones on a slowed one (two daemons)."""
    out: Dict[str, Dict] = {}
    rss = []
    for label, path, scale, n in (("tiny", tiny, 0.0, args.n),
                                  ("1 s", long, TIME_SCALE, args.n_long)):
        if n <= 0:
            continue
        daemon = BoardDaemon(base / label.replace(" ", ""), service,
                             supervisor={"heartbeat_seconds": "1",
                                         "heartbeat_timeout_seconds": "10",
                                         "queue_heartbeat_seconds": "5",
                                         "long_poll_seconds": "20"},
                             executor={"time_scale": str(scale)},
                             uploader={"retry_base_seconds": "1", "scan_seconds": "2"})
        try:
            daemon.start()
            status = daemon.status()
            pids = [status["pid"]] + [status["children"][c]["pid"]
                                      for c in ("downloader", "uploader")]
            with RssSampler(pids) as sampler:
                ids = submit_all(daemon.admin, daemon.device_id, path, n)
                wait_all(daemon.admin, ids, 60 + n * 5)
            out[label] = figures(daemon.admin, ids)
            rss.append((sampler.peak, sampler.last))
            daemon.stop()
        finally:
            daemon.cleanup()
    out["rss"] = {"peak": max(p for p, _ in rss), "last": max(l for _, l in rss)}
    return out


def baseline(service, base: Path, path: Path, n: int, scale: float) -> Dict[str, float]:
    """The original device client's loop: heartbeat, ask, run, upload; sleep 5 s when idle
    and after each job."""
    from cloudqueue.auth import ApiKeyAuth
    from cloudqueue.client import QueueClient
    from cloudqueue.config import write_atomically
    from boardcore.queuelink import device_client
    admin = QueueClient(service.url, ApiKeyAuth(service.admin_key))
    dev = admin.add_device("baseline-board", refresh_timeout=60)
    config, creds = base / "config", base / "credentials"
    base.mkdir(parents=True, exist_ok=True)
    config.write_text(f"[service]\napi_endpoint = {service.url}\noauth_endpoint = "
                      f"{service.root}\n[device]\nid = {dev['DeviceId']}\nname = baseline\n")
    write_atomically(creds,
                     f"[credentials]\nid = {dev['ClientId']}\nsecret = {dev['ClientSecret']}\n")
    client, device_id = device_client(str(config), str(creds))
    board = open_board("simulated", "zcu216-v2", seed=1, time_scale=scale)
    ids = submit_all(admin, device_id, path, n)
    finished = 0
    while finished < n:
        client.heartbeat(device_id, "ONLINE")
        work = client.get_work(device_id)  # no long poll: the original asked and slept
        if work is None:
            time.sleep(BASELINE_SLEEP)
            continue
        wid = work["WorkId"]
        download_file(work["WorkloadUrl"], base / "work.gz")
        ran = run_workload(str(base / "work.gz"), str(base / "results.h5"), board)
        url = client.results_upload_url(device_id, wid, device_seconds=ran.seconds)
        upload_file(url, base / "results.h5")
        finished += 1
        time.sleep(BASELINE_SLEEP)
    return figures(admin, ids)


def line(label: str, f: Dict[str, float]) -> str:
    return (f"  {label:<28} n={f['n']:<4} makespan {f['makespan']:8.2f} s   mean run "
            f"{f['mean_run'] * 1000:8.1f} ms   overhead {f['overhead'] * 1000:8.1f} ms/workload"
            f"   utilization {f['utilization'] * 100:5.1f} %")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="tiny workloads for the overhead")
    p.add_argument("--n-long", type=int, default=100, help="~1 s workloads for utilization")
    p.add_argument("--baseline-n", type=int, default=5,
                   help="workloads per baseline run (each costs 5 s of sleep)")
    p.add_argument("--seconds", type=float, default=1.0, help="length of the long workloads")
    args = p.parse_args()
    logging.getLogger("qick").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="qbench") as tmp_name:
        tmp = Path(tmp_name)
        tiny = make_workload(tmp / "tiny.gz", programs=1, reps=1)
        long, seconds = calibrate(tmp, args.seconds)
        print(f"simulated board: tiny workload, and one of {seconds:.2f} s at time_scale "
              f"{TIME_SCALE:g}")
        service = start_queue_service(tmp / "queue")
        try:
            daemon = run_daemon(service, tmp, tiny, long, args)
            base = {}
            if args.baseline_n > 0:
                base["tiny"] = baseline(service, tmp / "base-tiny", tiny, args.baseline_n, 0.0)
                base["1 s"] = baseline(service, tmp / "base-long", long, args.baseline_n,
                                       TIME_SCALE)
        finally:
            service.stop()
    print("per-workload overhead and utilization (back-to-back workloads, loopback):")
    for label in ("tiny", "1 s"):
        if label in daemon:
            print(line(f"daemon, {label} workloads", daemon[label]))
        if label in base:
            print(line(f"baseline 5 s poll, {label}", base[label]))
    rss = daemon["rss"]
    print(f"RSS of supervisor + downloader + uploader: peak {rss['peak'] / 2**20:.1f} MB, "
          f"at the end {rss['last'] / 2**20:.1f} MB")
    print("targets: overhead < 100 ms/workload; utilization > 95 % for 1 s workloads; "
          "RSS < 150 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
