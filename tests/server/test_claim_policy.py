"""The claim through the facility's policy (``WorkloadStore.hand_out``), on a real SQLite
file and a real PostgreSQL server, no HTTP: maintenance (with accounting off too),
credits and a grant, fair share, timeslots and the reservation recorded, sessions started
and kept active, a slot's end, the attempts limit, and the ``Waiting`` reasons read from
the same pick. Time is the service's clock moved with ``clock.set_offset``."""
from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from queueservice import clock, transitions
from queueservice.db import Database
from queueservice.settings import ServiceLimits
from queueservice.workloads import RECHECK_MS, WorkloadStore
from tests import facility_rows as rows

S = 1000  # ms


@pytest.fixture(autouse=True)
def clock_back() -> Iterator[None]:
    yield
    clock.set_offset(0)


@pytest.fixture
def store(db: Database) -> WorkloadStore:
    return WorkloadStore(db, ServiceLimits())


def add_device(db: Database) -> str:
    device_id = str(uuid.uuid4())
    with db.transaction() as conn:
        conn.execute("INSERT INTO devices (device_id, name, client_id, secret_hash, "
                     "created_at) VALUES (?, 'board', ?, 'x', ?)",
                     (device_id, device_id, clock.now_ms()))
    return device_id


def ready(store: WorkloadStore, device_id: str, *, priority: str = "MEDIUM",
          estimated: float = 10.0, **columns) -> str:
    """READY work (its file arrived now) with the facility columns given."""
    row, _ = store.create(account_id="someone", device_id=device_id, priority=priority,
                          user_given_name=None, sha256=None, now=clock.now_ms())
    if columns:
        rows.mark(store.db, row["work_id"], **columns)
    store.workload_uploaded(row["work_id"], clock.now_ms(), estimated)
    return row["work_id"]


def take(store: WorkloadStore, device_id: str) -> str | None:
    answer = store.hand_out(device_id, store.sequence_mark())
    return answer.row["work_id"] if answer.row else None


def why(store: WorkloadStore, device_id: str, work_id: str):
    sit = store.waiting(device_id, clock.now_ms())
    return None if sit is None else sit.decide().skipped.get(work_id)


def test_maintenance_holds_work_with_accounting_off_then_lets_it_run(store):
    device = add_device(store.db)
    now = clock.now_ms()
    rows.book(store.db, device, now - S, now + 60 * S, now, reason="cryostat warm-up")
    work = ready(store, device)
    answer = store.hand_out(device, store.sequence_mark())
    assert answer.row is None and answer.ended == []
    assert answer.recheck_at is not None  # within RECHECK_MS of the claim's moment
    assert now < answer.recheck_at <= clock.now_ms() + RECHECK_MS
    skip = why(store, device, work)
    assert skip.rule == "maintenance" and "cryostat warm-up" in skip.message
    assert skip.until == now + 60 * S
    assert store.get(work)["status"] == "READY"  # skipped work stays READY
    clock.set_offset(61 * S)
    assert take(store, device) == work
    assert store.get(work)["status"] == "EXECUTING"


def test_a_run_that_would_reach_maintenance_waits_and_a_shorter_one_goes(store):
    device = add_device(store.db)
    now = clock.now_ms()
    rows.book(store.db, device, now + 30 * S, now + 90 * S, now, reason="service")
    long = ready(store, device, estimated=60)
    short = ready(store, device, estimated=5)
    assert take(store, device) == short
    assert why(store, device, long).rule == "maintenance"


def test_no_team_can_spend_what_it_has_not_and_a_grant_lets_its_work_run(store):
    """Admitted at upload (its cost covered), then a price rise: the claim weighs it
    again, holds it, and a grant lets it run."""
    db = store.db
    device = add_device(db)
    now = clock.now_ms()
    rows.accounting(db)
    team = rows.team(db, now)
    rows.price(db, device, 1.0, 3.0, now - S)
    rows.ledger(db, team, "grant", 10.0, now)
    work = ready(store, device, estimated=10, team_id=team)  # 10 s x 1 = 10: admitted
    rows.price(db, device, 2.0, 3.0, now)
    assert take(store, device) is None
    skip = why(store, device, work)
    assert skip.rule == "credits" and "request credits" in skip.message
    assert "10.0 s x 2 = 20.0" in skip.message
    rows.ledger(db, team, "grant", 9.0, now)
    assert take(store, device) is None  # 19 cannot cover 20
    rows.ledger(db, team, "grant", 1.0, now)
    assert take(store, device) == work


def test_work_queued_without_a_team_runs_after_accounting_is_turned_on(store):
    device = add_device(store.db)
    work = ready(store, device)
    rows.accounting(store.db)
    assert take(store, device) == work


def test_fair_share_puts_the_team_with_less_recent_use_first(store):
    db = store.db
    device = add_device(db)
    now = clock.now_ms()
    rows.accounting(db)
    busy, quiet = rows.team(db, now), rows.team(db, now)
    for team in (busy, quiet):
        rows.ledger(db, team, "grant", 1000.0, now)
    rows.ledger(db, busy, "charge", -300.0, now - 3600 * S)
    first = ready(store, device, team_id=busy)
    second = ready(store, device, team_id=quiet)
    skip = why(store, device, first)
    assert skip.rule == "behind" and "fair share" in skip.message
    assert take(store, device) == second


def test_timeslot_work_runs_only_in_its_slot_which_is_recorded(store):
    db = store.db
    device = add_device(db)
    now = clock.now_ms()
    ours, theirs = rows.team(db, now), rows.team(db, now)
    slot = rows.book(db, device, now + 20 * S, now + 80 * S, now, team_id=ours)
    timed = ready(store, device, team_id=ours, timeslot=1, on_slot_end="wait")
    shared = ready(store, device, estimated=30, team_id=theirs)
    skip = why(store, device, timed)
    assert skip.rule == "needs_timeslot" and skip.until == now + 20 * S
    assert why(store, device, shared).rule == "reserved"  # 30 s would reach the slot
    assert take(store, device) is None
    clock.set_offset(21 * S)
    assert take(store, device) == timed
    assert store.get(timed)["reservation_id"] == slot
    assert why(store, device, shared).rule == "reserved"


def test_timeslot_work_without_a_slot_says_to_book_one(store):
    db = store.db
    device = add_device(db)
    work = ready(store, device, team_id=rows.team(db, clock.now_ms()), timeslot=1)
    assert take(store, device) is None
    skip = why(store, device, work)
    assert skip.rule == "needs_timeslot" and "userclient reserve" in skip.message


@pytest.mark.parametrize("choice,after", [("wait", "READY"), ("fail", "FAILED")])
def test_the_end_of_a_slot_stops_its_work_which_waits_or_fails(store, choice, after):
    db = store.db
    device = add_device(db)
    now = clock.now_ms()
    team = rows.team(db, now)
    slot = rows.book(db, device, now - S, now + 10 * S, now, team_id=team)
    work = ready(store, device, team_id=team, timeslot=1, on_slot_end=choice)
    assert take(store, device) == work
    assert store.end_slots(clock.now_ms()) == []  # the slot runs on
    clock.set_offset(11 * S)
    assert store.end_slots(clock.now_ms()) == [device]
    row = store.get(work)
    assert row["status"] == "EXECUTING" and row["cancel_requested"] == 1
    assert row["error_kind"] == transitions.SLOT_ENDED_KIND
    assert store.cancel_requested(device) == [work]  # the device is asked to stop it
    assert store.end_slots(clock.now_ms()) == []  # asked once
    done = store.report(device, work, outcome="CANCELLED", error_kind="cancelled",
                        now=clock.now_ms())
    assert done["status"] == after
    if after == "READY":
        assert done["cancel_requested"] == 0 and done["error_kind"] is None
        assert done["reservation_id"] == slot  # where it last ran
        assert why(store, device, work).rule == "needs_timeslot"
    else:
        assert done["error_kind"] == "slot_ended" and "timeslot ended" in done["error_message"]


def test_work_waiting_through_more_slots_than_attempts_is_never_failed_for_it(store):
    """A run stopped by its slot's end is no failed attempt: long work that needs more
    slots than the attempts limit (3) still waits for the next."""
    db = store.db
    device = add_device(db)
    team = rows.team(db, clock.now_ms())
    work = None
    for n in range(ServiceLimits().max_attempts + 2):
        now = clock.now_ms()
        rows.book(db, device, now - S, now + S, now, team_id=team)
        if work is None:
            work = ready(store, device, team_id=team, timeslot=1, on_slot_end="wait")
        assert take(store, device) == work, n
        clock.set_offset((2 * n + 2) * S)  # past this slot's end
        store.end_slots(clock.now_ms())
        back = store.report(device, work, outcome="CANCELLED", error_kind="cancelled",
                            now=clock.now_ms())
        assert (back["status"], back["attempts"]) == ("READY", 0), n


def test_the_owners_cancel_after_a_slot_end_still_cancels(store):
    db = store.db
    device = add_device(db)
    now = clock.now_ms()
    team = rows.team(db, now)
    rows.book(db, device, now - S, now + S, now, team_id=team)
    work = ready(store, device, team_id=team, timeslot=1, on_slot_end="wait")
    assert take(store, device) == work
    clock.set_offset(2 * S)
    store.end_slots(clock.now_ms())
    store.cancel(work, clock.now_ms())
    done = store.report(device, work, outcome="CANCELLED", now=clock.now_ms())
    assert done["status"] == "CANCELLED"


def test_a_started_session_holds_the_device_and_stays_active(store):
    db = store.db
    device = add_device(db)
    now = clock.now_ms()
    session = rows.session(db, device, "someone", now, max_seconds=600, idle_seconds=30)
    other = ready(store, device)
    first = ready(store, device, session_id=session)
    # not started: its first workload queues as usual
    assert why(store, device, first).rule == "behind"
    assert take(store, device) == other
    store.report(device, other, outcome="DONE", now=clock.now_ms())
    store.results_uploaded(other, clock.now_ms())
    assert take(store, device) == first
    started = rows.session_row(db, session)
    assert started["started_at"] is not None and started["last_activity_at"] is not None
    late = ready(store, device)
    clock.set_offset(20 * S)
    reported = clock.now_ms()
    store.report(device, first, outcome="DONE", now=reported)
    assert rows.session_row(db, session)["last_activity_at"] == reported
    store.results_uploaded(first, clock.now_ms())
    assert take(store, device) is None  # held: idle for a moment only, of its 30 s
    assert why(store, device, late).rule == "session"
    clock.set_offset(51 * S)  # idle past its limit: the hold is over
    assert take(store, device) == late


def test_the_attempts_limit_holds_on_the_policy_path(store):
    db = store.db
    device = add_device(db)
    now = clock.now_ms()
    rows.book(db, device, now + 3600 * S, now + 7200 * S, now)  # the policy rules
    worn = ready(store, device)
    nxt = ready(store, device)
    with db.transaction() as conn:
        conn.execute("UPDATE workloads SET attempts = ? WHERE work_id = ?",
                     (store.limits.max_attempts, worn))
    answer = store.hand_out(device, store.sequence_mark())
    assert answer.ended == [worn] and answer.row["work_id"] == nxt
    assert store.get(worn)["error_kind"] == "attempts_exhausted"


def test_a_device_with_no_rule_needs_no_policy(store):
    device = add_device(store.db)
    ready(store, device)
    assert store.waiting(device, clock.now_ms()) is None
    answer = store.hand_out(device, store.sequence_mark())
    assert answer.row is not None and answer.recheck_at is None
