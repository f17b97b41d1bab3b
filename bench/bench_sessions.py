"""Benchmark of session turnaround (issue 12 item 6). Prints figures; never asserts on time.

    .venv/bin/python bench/bench_sessions.py [--n 30] [--competing 10]

Against the real embedded queue service on loopback and a board daemon on the simulated
board: a closed loop of ``--n`` tiny workloads, each submitted (and its file uploaded) as
soon as the previous one's results are in (the user long-polls ``GET /workloads/{id}``).
Its turnaround is "results of one in -> the next one running": the service's
``StartedAt`` of workload i+1 minus the ``FinishedAt`` of workload i (both the service's
clock), p50 and p99. It runs twice: in a session (``SessionId``), and without one; in
both, other users' shared work stays queued all along (another client keeps
``--competing`` tiny workloads waiting).

Without a session each step of the loop waits behind the shared work queued before it; in
a session, once started, the device runs only the session's work, so the next step goes
first. That hold is the claim's (``scheduling.pick`` in the hand-out).

Target (from the issue): session turnaround p50 under 20 ms on the simulated board.
"""
from __future__ import annotations

import argparse
import collections
import logging
import sys
import tempfile
import threading
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ms  # noqa: E402
from cloudqueue.auth import ApiKeyAuth  # noqa: E402
from cloudqueue.client import QueueClient  # noqa: E402
from cloudqueue.models import Workload  # noqa: E402
from cloudqueue.transfer import upload_file  # noqa: E402
from tests.board.conftest import BoardDaemon, make_workload  # noqa: E402
from tests.conftest import start_queue_service  # noqa: E402
from tests.helpers import wait_for  # noqa: E402


def at(value) -> float:
    """A wire time (or the model's datetime) as seconds since the epoch."""
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.strptime(value.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def submit(client: QueueClient, device_id: str, path: Path,
           session_id: str | None = None) -> str:
    answer = client.create_workload(device_id, session_id=session_id)
    upload_file(answer["UploadUrl"], path)
    return answer["WorkId"]


def wait_done(client: QueueClient, work_id: str) -> Workload:
    """Long-poll the workload until it is finished (each answer held until it changes)."""
    work = client.get_workload(work_id)
    while not work.terminal:
        work = client.get_workload(work_id, wait_seconds=20, seen=work.ChangeToken)
    if work.WorkStatus != "DONE":
        raise SystemExit(f"bench_sessions: workload {work_id} ended {work.WorkStatus}: "
                         f"{work.ErrorMessage}")
    return work


def keep_queued(client: QueueClient, device_id: str, path: Path, count: int,
                stop: threading.Event, submitted: list[str]) -> None:
    """Other users' shared work: keep ``count`` workloads queued until ``stop``. The queue
    runs them in order, so only the oldest unfinished ones are looked at (a light load)."""
    pending: collections.deque[str] = collections.deque()
    while not stop.is_set():
        while pending and client.get_workload(pending[0]).terminal:
            pending.popleft()
        for _ in range(count - len(pending)):
            pending.append(submit(client, device_id, path))
            submitted.append(pending[-1])
        stop.wait(0.1)


def closed_loop(client: QueueClient, other: QueueClient, device_id: str, path: Path, n: int,
                competing: int, in_session: bool) -> list[float]:
    """Turnarounds (s) of an ``n``-step closed loop while ``competing`` shared workloads
    stay queued (``other`` submits them)."""
    stop, others = threading.Event(), []
    feeder = threading.Thread(target=keep_queued,
                              args=(other, device_id, path, competing, stop, others))
    feeder.start()
    wait_for(lambda: len(others) >= competing, 60, what="the shared work to be queued")
    session = client.open_session(device_id, max_minutes=30) if in_session else None
    sid = session["SessionId"] if session else None
    done = []
    try:
        for _ in range(n):
            done.append(wait_done(client, submit(client, device_id, path, sid)))
    finally:
        stop.set()
        feeder.join()
        if sid:
            client.close_session(sid)
    wait_for(lambda: all(client.get_workload(w).terminal for w in others), 300,
             interval=0.2, what="the competing work to finish")
    return [at(after.StartedAt) - at(before.FinishedAt) for before, after in zip(done, done[1:])]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=30, help="steps of the closed loop")
    p.add_argument("--competing", type=int, default=10,
                   help="shared workloads kept queued, as other users'")
    args = p.parse_args()
    if args.n < 2:
        p.error("--n must be at least 2 (a turnaround is between two steps)")
    logging.getLogger("qick").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="qbench") as tmp_name:
        tmp = Path(tmp_name)
        tiny = make_workload(tmp / "tiny.gz", programs=1, reps=1)
        service = start_queue_service(tmp / "queue")
        daemon = BoardDaemon(tmp / "board", service,
                             supervisor={"long_poll_seconds": "20"})
        try:
            daemon.start()
            figures = {}
            for label, in_session in (("in a session", True), ("without a session", False)):
                other = QueueClient(service.url, ApiKeyAuth(service.admin_key))
                figures[label] = closed_loop(daemon.admin, other, daemon.device_id, tiny,
                                             args.n, args.competing, in_session)
            daemon.stop()
        finally:
            daemon.cleanup()
            service.stop()
    print(f"closed loop of {args.n} tiny workloads while {args.competing} shared ones stay "
          "queued, simulated board, loopback:")
    print("turnaround: results of one in -> the next one running (the service's clock)")
    for label, values in figures.items():
        print(f"  {label:<18} {ms(values)}")
    print("target: in a session p50 < 20 ms. Without a session each step waits behind "
          "the shared work queued before it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
