"""Benchmark of the web portal's pages (issue 13): each page's server time with many
workloads stored. Prints figures; never asserts on time.

    .venv/bin/python bench/bench_portal.py [--workloads 100000] [--own 1000] [--requests 50]
                                           [--database postgresql://...]

The set-up: a served ``qick-queue`` (SQLite, or ``--database``); three devices; a user with
``--own`` workloads of their own among ``--workloads`` stored (the rest: a teammate's,
charged to their shared team, and 50 other owners'), 80 % DONE, 5 % FAILED, 5 %
CANCELLED, 10 % READY (in their devices' queues; ``--queued`` changes that), stored
straight through the store module; the team's ledger, ``--ledger`` charge lines a month
for a year (the usage page reads a month); an admin. Both log in through the portal's
own form.

Each page in ``PAGES`` (the one list: add a page there) is asked ``--requests`` times with
the logged-in cookie over one keep-alive connection, after one warm-up request; the
figure is the round trip on loopback (the service's time, plus the loopback's and this
client's, both small): median and p95. A page answering 404 is printed "not built".
"""
from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import pct  # noqa: E402
from queueservice.clock import now_ms  # noqa: E402
from queueservice.db import Database  # noqa: E402
from queueservice.settings import ServiceLimits  # noqa: E402
from queueservice.workloads import WorkloadStore  # noqa: E402
from tests.conftest import QueueService, start_queue_service  # noqa: E402
from tests.server.api import World, new_team  # noqa: E402
from tests.server.portal import Browser  # noqa: E402

#: every page measured, as (path, who asks): ``who`` is "user" (the one with ``--own``
#: workloads) or "admin". ``{device}``, ``{work}`` (one of the user's), ``{team}`` (the
#: user's team), ``{since}``/``{until}`` (UTC dates around the stored work) and
#: ``{last_month}`` (the month before this one: a whole month of the team's ledger) are
#: filled in.
PAGES: list[tuple[str, str]] = [
    ("/", "user"),
    ("/keys", "user"),
    ("/account", "user"),
    ("/portal/devices", "user"),
    ("/portal/devices/{device}", "user"),
    ("/portal/workloads", "user"),
    ("/portal/workloads?page=10", "user"),
    ("/portal/workloads?scope=team", "user"),
    ("/portal/workloads?device={device}&state=DONE", "user"),
    ("/portal/workloads?since={since}&until={until}", "user"),
    ("/portal/workloads/{work}", "user"),
    ("/portal/api/workloads/{work}", "user"),
    ("/portal/submit", "user"),
    ("/portal/teams", "user"),
    ("/portal/teams/{team}", "user"),
    ("/portal/teams/{team}/usage", "user"),
    ("/portal/teams/{team}/usage?month={last_month}", "user"),
    ("/portal/admin", "admin"),
    ("/portal/admin/users", "admin"),
    ("/portal/admin/devices", "admin"),
    ("/portal/admin/teams", "admin"),
    ("/portal/admin/prices", "admin"),
    ("/portal/admin/maintenance", "admin"),
]
OTHER_OWNERS = 50


def status_of(i: int, queued: int) -> str:
    """The i-th stored workload's state: ``queued`` % READY, 5 % FAILED, 5 % CANCELLED,
    the rest DONE."""
    r = i % 100
    return "READY" if r < queued else "FAILED" if r < queued + 5 else \
        "CANCELLED" if r < queued + 10 else "DONE"


def person(world: World, *, admin: bool = False) -> tuple[str, str]:
    """A user past the portal's first login: (UserId, the session cookie's value)."""
    body: dict[str, Any] = {"Email": f"bench-{uuid.uuid4().hex[:8]}@lab.test",
                            "FullName": "Bench Person"}
    if admin:
        body["Groups"] = ["Admin"]
    made = world.admin.post("/users", json=body)
    if made.status_code != 200:
        raise RuntimeError(f"POST /users: {made.status_code} {made.text}")
    browser = Browser(world.service.root)
    done = browser.first_login(body["Email"], made.json()["TemporaryPassword"])
    if done.status_code != 303 or browser.cookie is None:
        raise RuntimeError(f"the portal's first login: {done.status_code} {done.text[:300]}")
    return made.json()["UserId"], browser.cookie


def store(service: QueueService, devices: list[str], user_id: str, teammate_id: str,
          team_id: str, rows: int, own: int, queued: int) -> str:
    """Store ``rows`` workloads, ``own`` of them ``user_id``'s, 10 ms apart up to now;
    answers the pages' ``{work}``: the user's newest READY one (its page weighs its place
    in the device's queue), else their newest."""
    every = max(1, rows // own)  # the user's rows spread over the whole time range
    first = now_ms() - rows * 10
    newest: list[tuple[str, str]] = []

    def gen():
        mine = 0
        for i in range(rows):
            status = status_of(i, queued)
            if i % every == 0 and mine < own:  # the user's own mix, whatever ``every`` is
                status = status_of(mine, queued)
                owner, team, mine = user_id, (team_id if i % 3 == 0 else None), mine + 1
            elif i % 20 == 1:
                owner, team = teammate_id, team_id
            else:
                owner, team = str(uuid.UUID(int=i % OTHER_OWNERS)), None
            created = first + i * 10
            row = {"work_id": str(uuid.uuid4()), "device_id": devices[i % len(devices)],
                   "account_id": owner, "team_id": team, "priority": "MEDIUM",
                   "status": status, "created_at": created, "ready_at": created + 1,
                   "has_workload": 1, "workload_name": f"sweep {i}",
                   "estimated_seconds": 12.5, "programs_total": 10}
            if status != "READY":
                row.update(started_at=created + 2, finished_at=created + 5, attempts=1,
                           device_seconds=3.0, programs_done=10 if status == "DONE" else 4)
            if status == "FAILED":
                row.update(error_message="the board stopped", error_kind="device_error")
            if owner == user_id:
                newest.append((row["work_id"], status))
            yield row

    db = Database(service.database_target)
    t0 = time.monotonic()
    try:
        WorkloadStore(db, ServiceLimits()).bulk_insert(gen())
    finally:
        db.close()
    work, status = next((w for w in reversed(newest) if w[1] == "READY"), newest[-1])
    print(f"stored {rows} workloads ({len(newest)} the user's; {queued} % READY, in "
          f"{len(devices)} devices' queues) in "
          f"{time.monotonic() - t0:.1f} s; {{work}}: the user's newest {status} one")
    return work


def store_ledger(service: QueueService, team_id: str, users: list[str], devices: list[str],
                 per_month: int, months: int = 12) -> None:
    """Give the team ``per_month`` charge lines in each of the last ``months`` months (this
    one included: its lines end now), its people and devices taken in turn, each line a
    work of 1 to 10 board seconds; stored straight, with the running balance, as
    ``facility.append_line`` keeps it. The usage page reads a month's lines."""
    if per_month < 1:
        return
    month_ms = 30 * 86_400_000
    now = now_ms()
    rows, balance = [], 0.0
    for m in range(months - 1, -1, -1):
        start = now - (m + 1) * month_ms
        for i in range(per_month):
            seconds = -float(1 + i % 10)
            balance += seconds
            rows.append((team_id, "charge", seconds, users[i % len(users)],
                         start + (i + 1) * month_ms // per_month, str(uuid.uuid4()),
                         devices[i % len(devices)], balance))
    db = Database(service.database_target)
    t0 = time.monotonic()
    try:
        with db.transaction() as conn:
            for row in rows:
                conn.execute("INSERT INTO ledger (team_id, kind, seconds, user_id, at, "
                             "work_id, device_id, balance_after) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
    finally:
        db.close()
    print(f"stored {len(rows)} ledger lines ({per_month} a month for {months} months) in "
          f"{time.monotonic() - t0:.1f} s")


def timed(port: int, cookie: str, path: str, requests: int) -> tuple[int, list[float]]:
    """The page's status, and the round trip (s) of ``requests`` asks after a warm-up."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Cookie": f"qq_portal={cookie}"}
    try:
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            return answer.status, []
        out = []
        for _ in range(requests):
            t = time.perf_counter()
            conn.request("GET", path, headers=headers)
            answer = conn.getresponse()
            answer.read()
            out.append(time.perf_counter() - t)
            if answer.status != 200:
                raise RuntimeError(f"GET {path}: {answer.status} after a 200")
        return 200, out
    finally:
        conn.close()


def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        options = {"database": args.database} if args.database else {}
        service = start_queue_service(Path(tmp) / "queue", **options)
        try:
            world = World(service)
            devices = [world.device(f"bench-{n}") for n in range(3)]
            for device in devices:
                device.heartbeat()
            user_id, user_cookie = person(world)
            teammate_id, _ = person(world)
            _, admin_cookie = person(world, admin=True)
            team = new_team(world, scheduler=user_id)["TeamId"]
            added = world.admin.post(f"/teams/{team}/members",
                                     json={"User": teammate_id, "Role": "user"})
            if added.status_code != 201:
                raise RuntimeError(f"adding the teammate: {added.status_code} {added.text}")
            work = store(service, [d.id for d in devices], user_id, teammate_id, team,
                         args.workloads, args.own, args.queued)
            store_ledger(service, team, [user_id, teammate_id], [d.id for d in devices],
                         args.ledger)
            today = time.strftime("%Y-%m-%d", time.gmtime(now_ms() / 1000))
            yesterday = time.strftime("%Y-%m-%d", time.gmtime(now_ms() / 1000 - 86400))
            last_month = time.strftime("%Y-%m", time.gmtime(
                (now_ms() / 1000 // 86400 - int(today[8:])) * 86400))
            values = {"device": devices[0].id, "work": work, "team": team,
                      "since": yesterday, "until": today, "last_month": last_month}
            cookies = {"user": user_cookie, "admin": admin_cookie}
            print(f"{'page':<52}{'who':<7}{'median ms':>10}{'p95 ms':>10}")
            for path, who in PAGES:
                status, times = timed(service.port, cookies[who], path.format(**values),
                                      args.requests)
                if status == 404:
                    print(f"{path:<52}{who:<7}  not built")
                elif status != 200:
                    print(f"{path:<52}{who:<7}  answered {status}")
                else:
                    print(f"{path:<52}{who:<7}{pct(times, 50) * 1000:10.1f}"
                          f"{pct(times, 95) * 1000:10.1f}")
        finally:
            service.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=100_000)
    parser.add_argument("--own", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--queued", type=int, default=10, metavar="PCT",
                        help="the percentage of the stored workloads waiting READY in the "
                             "devices' queues (default 10: 10,000 of 100,000)")
    parser.add_argument("--ledger", type=int, default=20_000, metavar="LINES",
                        help="the team's charge lines in each of the last 12 months "
                             "(default 20,000; 0: none)")
    parser.add_argument("--database", metavar="URL",
                        help="keep the state in this PostgreSQL database (default: SQLite)")
    args = parser.parse_args()
    if min(args.own, args.requests) < 1 or args.own > args.workloads:
        parser.error("--own and --requests must be at least 1, and --own at most "
                     "--workloads")
    if not 0 <= args.queued <= 90:
        parser.error("--queued is a percentage from 0 to 90")
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
