"""End to end through the facility's rules: a real queue service and a real board daemon
(supervisor, executor on the simulated board, downloader, uploader). A maintenance window
a few seconds long holds work, then lets it run; an exhausted balance holds shared work
(Waiting rule ``credits``) until an admin's grant (through the teams, prices and grants
API); a weekly window's edge, reached by the
served process's clock offset (``QICK_QUEUE_CLOCK_OFFSET_MS``), lets waiting work start;
a timeslot's end stops the work running in it, which goes back to waiting.

The facility rows (bookings, windows, teams, the accounting switch, a workload's team)
are written straight into the service's database (``tests/facility_rows.py``): their own
APIs are other slices'."""
from __future__ import annotations

from pathlib import Path

import pytest

from cloudqueue.models import parse_time
from cloudqueue.transfer import upload_file
from queueservice import clock
from queueservice.db import Database
from queueservice.scheduling import DAY_MS, WEEK_MS
from queueservice.settings import DEFAULT_ADMIN_EMAIL
from tests import facility_rows as rows
from tests.board.conftest import BoardDaemon, make_workload
from tests.helpers import wait_for
from tests.server.api import Api
from userclient.display import shown_status

S = 1000  # ms
_MONDAY_MS = -3 * DAY_MS  # 1969-12-29, a Monday


@pytest.fixture
def db(queue_service):
    database = Database(queue_service.database_target)
    yield database
    database.close()


def submit(board: BoardDaemon, db: Database, path: Path, **columns) -> str:
    """A workload on the board's device, with the facility columns given (set before its
    file arrives, as submit will)."""
    answer = board.admin.create_workload(board.device_id)
    if columns:
        rows.mark(db, answer["WorkId"], **columns)
    upload_file(answer["UploadUrl"], path)
    return answer["WorkId"]


def polled_since(db: Database, device_id: str, moment: int) -> bool:
    """Whether the device called the service after ``moment`` (a poll touches it first)."""
    with db.reading() as conn:
        seen = conn.execute("SELECT last_seen FROM devices WHERE device_id = ?",
                            (device_id,)).fetchone()[0]
    return seen is not None and seen > moment


def test_maintenance_holds_work_then_lets_it_run(board_factory, db, workload):
    board = board_factory().start()
    now = clock.now_ms()
    end = now + 4 * S
    rows.book(db, board.device_id, now - S, end, now, reason="cryostat refill")
    work_id = submit(board, db, workload)
    held = board.admin.get_workload(work_id)
    assert held.WorkStatus == "READY" and shown_status(held) == "WAITING", held
    assert held.extra["Waiting"]["Rule"] == "maintenance"
    assert "cryostat refill" in held.extra["Waiting"]["Message"]
    done = board.wait_terminal(work_id, timeout=40)
    assert done.WorkStatus == "DONE", (done, board.log())
    assert done.StartedAt.timestamp() * 1000 >= end  # nothing ran in maintenance


def test_an_exhausted_balance_holds_shared_work_until_a_grant(board_factory, db, workload):
    """Through the facility's own API: a team, a price, a grant; the work is admitted
    (its cost covered), then a price rise leaves the balance short: the board, started
    now, is handed nothing (Waiting ``credits``) until an admin's grant."""
    board = board_factory()
    admin = Api(board.service.url, board.service.admin_key)
    made = admin.post("/teams", json={"Name": "lab", "Scheduler": DEFAULT_ADMIN_EMAIL})
    assert made.status_code == 201, made.text
    team = made.json()["TeamId"]
    prices = f"/devices/{board.device_id}/prices"
    assert admin.put(prices, json={"PerUsedSecond": 1, "PerReservedSecond": 1}).ok
    assert admin.post(f"/teams/{team}/grants", json={"Seconds": 1, "Note": "start"}).ok
    answer = board.admin.create_workload(board.device_id, team=team)
    upload_file(answer["UploadUrl"], workload)
    work_id = answer["WorkId"]
    estimated = board.admin.get_workload(work_id).extra["EstimatedCost"]
    assert 0 < estimated <= 1
    rise = 2 / estimated  # the run now costs twice the balance
    assert admin.put(prices, json={"PerUsedSecond": rise, "PerReservedSecond": 1}).ok
    board.start()
    started = clock.now_ms()
    held = board.admin.get_workload(work_id)
    assert held.extra["Waiting"]["Rule"] == "credits", held
    assert "request credits" in held.extra["Waiting"]["Message"]
    # the board keeps asking, and is handed nothing while the balance is short
    wait_for(lambda: polled_since(db, board.device_id, started + 2500), 20,
             what="the board polling again")
    assert board.admin.get_workload(work_id).WorkStatus == "READY"
    granted = admin.post(f"/teams/{team}/grants", json={"Seconds": 2, "Note": "more"})
    assert granted.status_code == 201, granted.text
    done = board.wait_terminal(work_id, timeout=40)
    assert done.WorkStatus == "DONE", (done, board.log())
    assert done.extra["Cost"] > 0


def test_a_window_edge_reached_by_the_clock_offset_lets_waiting_work_start(
        queue_service_factory, tmp_path, workload):
    real = clock.now_ms()
    opening = _MONDAY_MS + ((real - _MONDAY_MS) // WEEK_MS + 1) * WEEK_MS  # next Monday
    offset = opening - 8 * S - real  # the service's now: 8 s before Monday 00:00 UTC
    service = queue_service_factory(env={clock.OFFSET_ENV: str(offset)})
    database = Database(service.database_target)
    board = BoardDaemon(tmp_path / "board", service)
    try:
        rows.window(database, board.device_id, 0, 0, 60, clock.now_ms() + offset)
        board.start()
        work_id = submit(board, database, workload)
        held = board.admin.get_workload(work_id)
        assert held.extra["Waiting"]["Rule"] == "outside_window", held
        until = parse_time(held.extra["Waiting"]["Until"])
        assert round(until.timestamp() * 1000) == opening  # Monday 00:00 UTC
        assert held.EstimatedStartAt is not None
        assert held.EstimatedStartAt.timestamp() * 1000 >= opening
        done = board.wait_terminal(work_id, timeout=40)
        assert done.WorkStatus == "DONE", (done, board.log())
        assert done.StartedAt.timestamp() * 1000 >= opening
    finally:
        board.cleanup()
        database.close()


def test_a_slots_end_stops_its_work_which_waits_for_the_next_slot(board_factory, db,
                                                                   tmp_path):
    long_work = make_workload(tmp_path / "long.gz", programs=6, reps=300)
    board = board_factory(executor={"time_scale": "2000"}).start()  # ~2000x slower
    now = clock.now_ms()
    team = rows.team(db, now)
    slot = rows.book(db, board.device_id, now - S, now + 3 * S, now, team_id=team)
    work_id = submit(board, db, long_work, team_id=team, timeslot=1, on_slot_end="wait")
    wait_for(lambda: board.admin.get_workload(work_id).WorkStatus == "EXECUTING", 20,
             what="the work running in its slot")
    back = wait_for(lambda: (lambda w: w if w.WorkStatus != "EXECUTING" else None)(
        board.admin.get_workload(work_id)), 40, what="the work stopped")
    assert back.WorkStatus == "READY", (back, board.log())
    assert back.extra["Waiting"]["Rule"] == "needs_timeslot", (back, board.log())
    with db.reading() as conn:
        row = dict(conn.execute("SELECT reservation_id, cancel_requested FROM workloads "
                                "WHERE work_id = ?", (work_id,)).fetchone())
    assert row == {"reservation_id": slot, "cancel_requested": 0}
    nxt = clock.now_ms()
    rows.book(db, board.device_id, nxt, nxt + 600 * S, nxt, team_id=team)
    done = board.wait_terminal(work_id, timeout=60)
    assert done.WorkStatus == "DONE", (done, board.log())
