"""Benchmark of a facility's queue (issue 12): the embedded service with accounting and
calendars on, beside the same bench with them off. Prints figures; never asserts on time.

    .venv/bin/python bench/bench_facility.py [--samples 50] [--seconds 3] [--threads 4]
                                             [--teams 100] [--reservations 1000]
                                             [--waiting 10000]

Both set-ups store the same number of workloads and serve the same users:
- **off**: no prices, no bookings; the ``--waiting`` workloads are finished (DONE);
- **on**: accounting on (a price on the device), ``--teams`` teams each with a grant and
  members, ``--reservations`` timeslots booked on the measured device over the coming
  weeks (none now), and ``--waiting`` timeslot workloads of those teams READY on the
  measured device, each waiting for its team's slot: every hand-out weighs them all.

Figures: hand-out latency (upload start -> the long-polling device handed the work;
p50/p99) and submit/status requests/s, with ``bench.common``'s measures.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (device_parked, handout_latency, ms, pct,  # noqa: E402
                          submit_status_rates)
from queueservice import facility  # noqa: E402
from queueservice.clock import now_ms  # noqa: E402
from queueservice.db import Database  # noqa: E402
from tests.conftest import start_queue_service  # noqa: E402
from tests.server.api import World  # noqa: E402

SLOT_MS = 30 * 60_000
GRANT_SECONDS = 1e8


def populate(database: Path, device_id: str, bench_users: list[str], args: argparse.Namespace,
             on: bool) -> None:
    """Store the set-up's teams, grants, bookings and workloads straight through SQL."""
    db = Database(database)
    now = now_ms()
    teams = [str(uuid.uuid4()) for _ in range(args.teams)]
    t0 = time.monotonic()
    try:
        with db.transaction() as conn:
            for i, team_id in enumerate(teams):
                conn.execute("INSERT INTO teams (team_id, name, created_by, created_at) "
                             "VALUES (?, ?, ?, ?)", (team_id, f"bench-team-{i}", "bench", now))
                facility.append_line(conn, team_id, "grant", GRANT_SECONDS, "bench", "bench",
                                     now)
            for j, user_id in enumerate(bench_users):  # each bench user in one team
                conn.execute("INSERT INTO team_members (team_id, user_id, role, is_default, "
                             "added_at) VALUES (?, ?, 'scheduler', 1, ?)",
                             (teams[j % len(teams)], user_id, now))
            if on:
                facility.set_accounting(conn, True)
                conn.execute("INSERT INTO prices (device_id, per_used_second, "
                             "per_reserved_second, since, set_by) VALUES (?, 1, 2, ?, ?)",
                             (device_id, now, "bench"))
                first = now + 3600_000  # the first slot in an hour, then one every hour
                for k in range(args.reservations):
                    start = first + k * 2 * SLOT_MS
                    conn.execute(
                        "INSERT INTO bookings (booking_id, device_id, kind, team_id, start_at, "
                        "end_at, created_by, created_at, cost) VALUES (?, ?, 'reservation', "
                        "?, ?, ?, 'bench', ?, ?)",
                        (str(uuid.uuid4()), device_id, teams[k % len(teams)], start,
                         start + SLOT_MS, now, SLOT_MS / 1000 * 2))
            for n in range(args.waiting):
                team_id = teams[n % len(teams)]
                row = {"work_id": str(uuid.uuid4()), "device_id": device_id,
                       "account_id": bench_users[0], "priority": "MEDIUM",
                       "created_at": now - (args.waiting - n), "team_id": team_id,
                       "estimated_seconds": 10.0}
                if on:
                    row.update(status="READY", ready_at=row["created_at"], ready_seq=-n - 1,
                               has_workload=1, timeslot=1, on_slot_end="wait")
                else:
                    row.update(status="DONE", finished_at=row["created_at"])
                conn.execute(f"INSERT INTO workloads ({', '.join(row)}) VALUES "
                             f"({', '.join('?' for _ in row)})", tuple(row.values()))
    finally:
        db.close()
    print(f"  stored {args.teams} teams, {args.reservations if on else 0} reservations, "
          f"{args.waiting} {'waiting' if on else 'finished'} workloads in "
          f"{time.monotonic() - t0:.1f} s")


def measure(on: bool, args: argparse.Namespace) -> dict[str, float | list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        service = start_queue_service(Path(tmp) / "queue")
        try:
            world = World(service)
            device = world.device()
            users = [world.user() for _ in range(args.threads + 1)]
            populate(service.data_dir / "queue.db", device.id, [u for _, u in users], args, on)
            latencies = handout_latency(users[0][0], device, args.samples, None,
                                        parked=device_parked(service))
            print(f"  hand-out (long poll)  {ms(latencies)}")
            submits, statuses = submit_status_rates([api for api, _ in users[1:]],
                                                    world.device().id, args.seconds)
            if on:  # the set-up measured what it says: no timeslot work ran outside a slot
                db = Database(service.data_dir / "queue.db")
                try:
                    with db.reading() as conn:
                        left = conn.execute("SELECT COUNT(*) FROM workloads WHERE timeslot = 1 "
                                            "AND status = 'READY'").fetchone()[0]
                finally:
                    db.close()
                print(f"  timeslot workloads still waiting: {left} of {args.waiting}")
        finally:
            service.stop()
    return {"handout": latencies, "submit": submits, "status": statuses}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--reservations", type=int, default=1000)
    parser.add_argument("--waiting", type=int, default=10_000)
    args = parser.parse_args()
    if min(args.samples, args.threads, args.teams) < 1 or args.seconds <= 0 or \
            min(args.reservations, args.waiting) < 0:
        parser.error("--samples, --threads and --teams must be at least 1, --seconds more "
                     "than 0, --reservations and --waiting not negative")
    results = {}
    for name, on in (("off", False), ("on", True)):
        print(f"accounting and calendars {name}")
        results[name] = measure(on, args)
    off, on = results["off"], results["on"]
    print(f"\n{'':36}{'off':>16}{'on':>16}{'on / off':>10}")
    for q in (50, 99):
        a, b = pct(off["handout"], q) * 1000, pct(on["handout"], q) * 1000
        print(f"{f'hand-out p{q} ms (long poll)':36}{a:16.1f}{b:16.1f}{b / a:10.2f}")
    for key in ("submit", "status"):
        a, b = off[key], on[key]
        print(f"{f'{key} req/s ({args.threads} threads)':36}{a:16.0f}{b:16.0f}{b / a:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
