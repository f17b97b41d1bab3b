"""Sessions (issue 12 item 6), on each engine.

In the service's own process (``app.open_service``, the housekeeping sweep as it runs,
the clock moved with ``clock.set_offset``): a started session is closed at its maximum
time or its idle limit (never while its work runs), one never started closes idle with no
charge, the held time is charged once as a ``session`` ledger line (at most its maximum
time, nothing for a late sweep), closing cancels its queued work; with accounting on a
team is required and its balance must cover the session's most.

Over raw HTTP against the real service: open, list, read, close; one open session per
device; who sees and closes what; ``SessionId`` on submit and its refusals; bad input.
"""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from cloudqueue.errors import BadRequest, Conflict, NotFound
from queueservice import clock, facility
from queueservice.app import housekeep, open_service
from queueservice.datadir import init_data_dir
from queueservice.httpedge import Service
from queueservice.identities import Principal, user_principal_of
from queueservice.sessions import SessionStore
from queueservice.settings import DEFAULT_ADMIN_EMAIL, ServiceLimits
from queueservice.teams import TeamStore
from tests.server.api import World, assert_error, put_file, status, submit

MINUTE = 60_000
ADMIN = Principal("user", "admin-of-the-test", "admin@lab.test", ("Admin",))


# -- in the service's process, with the clock seam -----------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    database = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    init_data_dir(tmp_path, port=0, admin_email=DEFAULT_ADMIN_EMAIL, database=database)
    # leases long enough that the board (which never calls here) keeps its work
    service, db = open_service(tmp_path, ServiceLimits(lease_seconds=86400),
                               database=database)
    yield service
    clock.set_offset(0)
    db.close()


class Lab:
    """A user in a team with credits, a device priced at 2 credits per used second."""

    def __init__(self, svc: Service, *, accounting: bool = True, grant: float = 10_000):
        self.svc = svc
        self.db = svc.workloads.db
        self.store = SessionStore(self.db)
        now = clock.now_ms()
        row, _key, _pw = svc.identities.add_user(f"u{uuid.uuid4().hex[:8]}@lab.test", "U",
                                                 [], now)
        self.user = user_principal_of(row)
        self.device = svc.identities.add_device("board", 60, now)[0]["device_id"]
        teams = TeamStore(self.db)
        self.team = teams.create(f"team-{uuid.uuid4().hex[:6]}", now, caller=ADMIN,
                                 scheduler=self.user.id)["team_id"]
        with self.db.transaction() as conn:
            facility.set_accounting(conn, accounting)
            conn.execute("INSERT INTO prices (device_id, per_used_second, per_reserved_second, "
                         "since, set_by) VALUES (?, 2.0, 3.0, 0, ?)", (self.device, ADMIN.id))
        if grant:
            teams.grant(self.team, grant, "allocation", now, caller=ADMIN)

    def open(self, **kw) -> dict:
        return self.store.open(self.device, clock.now_ms(), caller=self.user, **kw)

    def queue(self, session_id: str | None) -> str:
        """A workload in the session, its file uploaded: READY."""
        now = clock.now_ms()
        row, _ = self.svc.workloads.create(account_id=self.user.id, device_id=self.device,
                                           priority="MEDIUM", user_given_name=None,
                                           sha256=None, now=now, session_id=session_id)
        self.svc.workloads.workload_uploaded(row["work_id"], now, 1.0)
        return row["work_id"]

    def hand_out(self, session_id: str) -> str:
        """The claim hands the device its next work, the session's, and records the
        session's activity (``situation.note_session_activity``)."""
        self.svc.workloads.touch_device(self.device, clock.now_ms())
        row, _ = self.svc.workloads.claim(self.device, self.svc.workloads.sequence_mark())
        assert row["session_id"] == session_id
        return row["work_id"]

    def finish(self, session_id: str, work_id: str) -> None:
        now = clock.now_ms()
        self.svc.workloads.report(self.device, work_id, outcome="DONE", device_seconds=0.5,
                                  now=now)
        self.svc.workloads.results_uploaded(work_id, now)

    def session(self, session_id: str) -> dict:
        return self.store.get(session_id, self.user)

    def lines(self) -> list[dict]:
        with self.db.reading() as conn:
            return [dict(r) for r in conn.execute(
                "SELECT * FROM ledger WHERE team_id = ? AND kind = 'session' "
                "ORDER BY entry_id", (self.team,)).fetchall()]

    def sweep_at(self, ms: int) -> list[str]:
        """The housekeeping sweep, as it runs, with the service's clock at ``ms`` (and a
        few ms on: the clock runs; so a test asks seconds before a limit, not 1 ms)."""
        clock.set_offset(0)
        clock.set_offset(ms - clock.now_ms())
        _leases, ended, _uploads = housekeep(self.svc)
        return ended


def test_a_started_session_closes_at_its_max_time_and_is_charged_once(svc):
    lab = Lab(svc)
    s = lab.open(max_seconds=600, idle_seconds=600)
    assert (s["started_at"], s["closed_at"], s["team_id"]) == (None, None, lab.team)
    work = lab.queue(s["session_id"])
    assert lab.hand_out(s["session_id"]) == work
    started = lab.session(s["session_id"])["started_at"]
    assert lab.session(s["session_id"])["ends_at"] == started + 10 * MINUTE

    assert lab.sweep_at(started + 5 * MINUTE) == []
    lab.finish(s["session_id"], work)          # activity: the idle limit starts again
    assert lab.sweep_at(started + 10 * MINUTE - 5_000) == []
    assert lab.sweep_at(started + 10 * MINUTE + 45_000) == [lab.device]  # a late sweep
    closed = lab.session(s["session_id"])
    assert (closed["close_reason"], closed["charged_seconds"]) == ("max_time", 600.0)
    assert closed["cost"] == 1200.0            # 600 s held x 2 per used second
    [line] = lab.lines()
    assert (line["seconds"], line["session_id"], line["device_id"]) == \
        (-1200.0, s["session_id"], lab.device)
    # exactly once: another sweep and a close by its owner change nothing
    assert lab.sweep_at(started + 20 * MINUTE) == []
    again, closed_now = lab.store.close(s["session_id"], clock.now_ms(), caller=lab.user)
    assert not closed_now and again["close_reason"] == "max_time"
    assert len(lab.lines()) == 1
    with lab.db.reading() as conn:
        assert facility.balance(conn, lab.team) == 10_000 - 1200


def test_an_idle_session_closes_at_its_idle_limit_and_pays_to_there(svc):
    lab = Lab(svc)
    s = lab.open(max_seconds=3600, idle_seconds=120)
    work = lab.queue(s["session_id"])
    lab.hand_out(s["session_id"])
    started = lab.session(s["session_id"])["started_at"]
    lab.sweep_at(started + 30_000)
    lab.finish(s["session_id"], work)
    last = lab.session(s["session_id"])["last_activity_at"]
    assert last >= started + 30_000
    assert lab.session(s["session_id"])["ends_at"] == last + 120_000  # nothing runs
    assert lab.sweep_at(last + 120_000 - 5_000) == []
    assert lab.sweep_at(last + 120_000 + 20_000) == [lab.device]
    closed = lab.session(s["session_id"])
    assert closed["close_reason"] == "idle"
    assert closed["charged_seconds"] == (last + 120_000 - started) / 1000
    assert [line["seconds"] for line in lab.lines()] == [-2 * closed["charged_seconds"]]


def test_running_work_keeps_a_session_from_idling_but_not_past_its_max_time(svc):
    lab = Lab(svc)
    s = lab.open(max_seconds=600, idle_seconds=60)
    lab.queue(s["session_id"])
    lab.hand_out(s["session_id"])               # EXECUTING, and stays so
    started = lab.session(s["session_id"])["started_at"]
    assert lab.session(s["session_id"])["ends_at"] == started + 10 * MINUTE  # not idle
    assert lab.sweep_at(started + 5 * MINUTE) == []
    assert lab.session(s["session_id"])["closed_at"] is None
    assert lab.sweep_at(started + 10 * MINUTE) == [lab.device]
    closed = lab.session(s["session_id"])
    assert (closed["close_reason"], closed["charged_seconds"]) == ("max_time", 600.0)


def test_a_session_never_started_closes_idle_with_no_charge_unless_work_waits(svc):
    lab = Lab(svc)
    waiting = lab.open(max_seconds=600, idle_seconds=60)
    lab.queue(waiting["session_id"])            # queued, never handed out
    opened = waiting["opened_at"]
    assert lab.sweep_at(opened + 30 * MINUTE) == []
    assert lab.session(waiting["session_id"])["closed_at"] is None
    lab.store.close(waiting["session_id"], clock.now_ms(), caller=lab.user)

    other = Lab(svc)
    empty = other.open(max_seconds=600, idle_seconds=60)
    assert other.sweep_at(empty["opened_at"] + 55_000) == []
    assert other.sweep_at(empty["opened_at"] + 60_000) == [other.device]
    closed = other.session(empty["session_id"])
    assert (closed["close_reason"], closed["charged_seconds"], closed["cost"]) == \
        ("idle", 0.0, None)
    assert other.lines() == []


def test_closing_cancels_the_queued_work_and_lets_the_running_one_finish(svc):
    lab = Lab(svc)
    s = lab.open()
    running = lab.queue(s["session_id"])
    lab.hand_out(s["session_id"])
    queued = [lab.queue(s["session_id"]) for _ in range(2)]
    shared = lab.queue(None)
    closed, closed_now = lab.store.close(s["session_id"], clock.now_ms(), caller=lab.user)
    assert closed_now and closed["close_reason"] == "closed" and closed["workloads"] == 3
    for work_id in queued:
        row = svc.workloads.get(work_id)
        assert (row["status"], row["error_kind"]) == ("CANCELLED", "session_closed")
        assert "submit it again" in row["error_message"]
    assert svc.workloads.get(running)["status"] == "EXECUTING"
    assert svc.workloads.get(shared)["status"] == "READY"
    lab.finish(s["session_id"], running)        # its results still arrive
    assert svc.workloads.get(running)["status"] == "DONE"
    assert lab.session(s["session_id"])["last_activity_at"] is not None
    with pytest.raises(Conflict, match="was closed \\(closed\\).*session open"):
        lab.queue(s["session_id"])


def test_closes_at_once_charge_the_session_exactly_once(svc):
    lab = Lab(svc)
    s = lab.open()
    lab.queue(s["session_id"])
    lab.hand_out(s["session_id"])
    clock.set_offset(30_000)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: lab.store.close(s["session_id"], clock.now_ms(),
                                                          caller=lab.user), range(6)))
    assert sum(closed for _row, closed in answers) == 1
    assert len(lab.lines()) == 1
    assert lab.sweep_at(clock.now_ms() + 3600_000) == []
    assert len(lab.lines()) == 1


def test_with_accounting_a_session_needs_a_team_that_can_pay_its_most(svc):
    lab = Lab(svc, grant=1000)
    # no team of theirs: refused, with what to do
    row, _k, _p = svc.identities.add_user(f"x{uuid.uuid4().hex[:6]}@lab.test", "X", [],
                                          clock.now_ms())
    loner = user_principal_of(row)
    with pytest.raises(BadRequest, match="give Team") as refused:
        lab.store.open(lab.device, clock.now_ms(), caller=loner)
    assert refused.value.kind == "team_required"
    with pytest.raises(NotFound, match=f"no team {lab.team} of yours"):
        lab.store.open(lab.device, clock.now_ms(), caller=loner, team=lab.team)
    # 1000 credits cannot pay 10 minutes at 2 per second (1200): refused with the numbers
    with pytest.raises(Conflict, match=r"balance 1000\.0 .* 10 minutes x 2 = 1200\.0") as poor:
        lab.open(max_seconds=600)
    assert poor.value.kind == "insufficient_credits"
    assert lab.open(max_seconds=480)["team_id"] == lab.team     # 960 fits; default team


def test_without_accounting_no_team_is_needed_and_nothing_is_charged(svc):
    lab = Lab(svc, accounting=False, grant=0)
    s = lab.open(max_seconds=600, idle_seconds=600)
    lab.queue(s["session_id"])
    lab.hand_out(s["session_id"])
    started = lab.session(s["session_id"])["started_at"]
    assert lab.sweep_at(started + 10 * MINUTE) == [lab.device]
    closed = lab.session(s["session_id"])
    assert (closed["charged_seconds"], closed["cost"]) == (600.0, None)
    assert lab.lines() == []


# -- over HTTP ------------------------------------------------------------------------------
def open_session(api, device_id: str, **body) -> dict:
    resp = api.post("/sessions", json={"Device": device_id, **body})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_open_list_read_and_close_a_session(world: World):
    alice, alice_id = world.user()
    device = world.device()
    made = open_session(alice, device.id, MaxMinutes=10)
    assert (made["State"], made["DeviceId"], made["UserId"]) == ("open", device.id, alice_id)
    assert (made["MaxMinutes"], made["IdleMinutes"]) == (10, 5)
    assert made["StartedAt"] is None and made["EndsAt"] is None and made["TeamId"] is None
    assert made["OpenedAt"].endswith("Z") and made["Workloads"] == 0
    assert alice.get(f"/sessions/{made['SessionId']}").json() == made
    assert [s["SessionId"] for s in alice.get("/sessions").json()] == [made["SessionId"]]
    assert alice.get("/sessions", params={"State": "closed"}).json() == []
    assert alice.get("/sessions", params={"Device": "another"}).json() == []

    closed = alice.call("DELETE", f"/sessions/{made['SessionId']}")
    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert (body["State"], body["CloseReason"], body["HeldSeconds"], body["Cost"]) == \
        ("closed", "closed", 0.0, None)
    again = alice.call("DELETE", f"/sessions/{made['SessionId']}")  # a retry: the same
    assert again.status_code == 200 and again.json() == body
    assert [s["SessionId"] for s in alice.get("/sessions", params={"State": "closed"}).json()] \
        == [made["SessionId"]]


def test_a_device_has_one_open_session_at_a_time(world: World):
    alice, _ = world.user()
    bob, _ = world.user()
    device = world.device()
    first = open_session(alice, device.id, MaxMinutes=20)
    refused = bob.post("/sessions", json={"Device": device.id})
    message = assert_error(refused, 409, "session_open")["ErrorMessage"]
    assert "has an open session already" in message and "at most 20 minutes" in message
    assert "try again after it ends" in message
    other_device = world.device()
    open_session(bob, other_device.id)         # another device is free
    alice.call("DELETE", f"/sessions/{first['SessionId']}")
    open_session(bob, device.id)                # and this one once the first is closed


def test_opens_at_once_on_one_device_leave_one_session_open(world: World):
    device = world.device()
    users = [world.user()[0] for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda api: api.post("/sessions", json={"Device": device.id}),
                                users))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 5
    opened = world.admin.get("/sessions", params={"Device": device.id, "State": "open"})
    assert len(opened.json()) == 1


def test_the_list_is_newest_first_and_limited(world: World):
    alice, _ = world.user()
    device = world.device()
    made = []
    for _ in range(3):
        made.append(open_session(alice, device.id)["SessionId"])
        alice.call("DELETE", f"/sessions/{made[-1]}")
    everything = alice.get("/sessions").json()
    assert sorted(s["SessionId"] for s in everything) == sorted(made)
    opened = [s["OpenedAt"] for s in everything]
    assert opened == sorted(opened, reverse=True)
    listed = alice.get("/sessions", params={"Limit": 2}).json()
    assert [s["SessionId"] for s in listed] == [s["SessionId"] for s in everything[:2]]
    bad = alice.get("/sessions", params={"Limit": 0})
    assert "Limit must be a whole number from 1 to 1000" in assert_error(bad, 400)["ErrorMessage"]


def test_only_the_owner_and_admins_see_and_close_a_session(world: World):
    alice, _ = world.user()
    mallory, _ = world.user()
    device = world.device()
    made = open_session(alice, device.id)
    path = f"/sessions/{made['SessionId']}"
    for resp in (mallory.get(path), mallory.call("DELETE", path)):
        assert "session list" in assert_error(resp, 404, "not_found")["ErrorMessage"]
    assert made["SessionId"] not in {s["SessionId"] for s in mallory.get("/sessions").json()}
    assert made["SessionId"] in {s["SessionId"] for s in world.admin.get("/sessions").json()}
    closed = world.admin.call("DELETE", path)
    assert closed.status_code == 200 and closed.json()["State"] == "closed"


def test_work_is_submitted_in_a_session_and_cancelled_when_it_closes(world: World):
    alice, _ = world.user()
    bob, _ = world.user()
    device, elsewhere = world.device(), world.device()
    made = open_session(alice, device.id)
    sid = made["SessionId"]
    work = submit(alice, device.id, SessionId=sid)
    shown = status(alice, work)
    assert (shown["SessionId"], shown["WorkStatus"]) == (sid, "READY")
    assert alice.get(f"/sessions/{sid}").json()["Workloads"] == 1

    not_hers = bob.post("/workloads", json={"DeviceId": device.id, "SessionId": sid})
    assert f"no session {sid} of yours" in assert_error(not_hers, 404)["ErrorMessage"]
    wrong = alice.post("/workloads", json={"DeviceId": elsewhere.id, "SessionId": sid})
    assert "submit to its device" in assert_error(wrong, 400, "session_device")["ErrorMessage"]
    for extra in ({"Team": "any"}, {"Timeslot": True}):  # the session's team pays
        paying = alice.post("/workloads", json={"DeviceId": device.id, "SessionId": sid,
                                                **extra})
        assert "leave Team and Timeslot out" in assert_error(paying, 400)["ErrorMessage"]
    capped = alice.post("/workloads", json={"DeviceId": device.id, "SessionId": sid,
                                            "MaxSeconds": 5})
    assert capped.status_code == 201
    assert status(alice, capped.json()["WorkId"])["MaxSeconds"] == 5
    announced = alice.post("/workloads", json={"DeviceId": device.id, "SessionId": sid})
    assert announced.status_code == 201

    alice.call("DELETE", f"/sessions/{sid}")
    ended = status(alice, work)
    assert (ended["WorkStatus"], ended["ErrorKind"]) == ("CANCELLED", "session_closed")
    late = put_file(announced.json()["UploadUrl"], b"late file")   # cancelled, too
    assert late.status_code == 409
    closed = alice.post("/workloads", json={"DeviceId": device.id, "SessionId": sid})
    assert "open a new one" in assert_error(closed, 409, "session_closed")["ErrorMessage"]


@pytest.mark.parametrize("body,words", [
    ({"Device": None}, "the field Device is required"),
    ({"Device": 5}, "the field Device must be a string"),
    ({"MaxMinutes": 0}, "MaxMinutes must be more than 0"),
    ({"MaxMinutes": 481}, "MaxMinutes must be between 0 and 480"),
    ({"MaxMinutes": "ten"}, "MaxMinutes must be an integer or a number"),
    ({"MaxMinutes": 10, "IdleMinutes": 11}, "IdleMinutes must be more than 0 and at most "
                                            "MaxMinutes (10)"),
    ({"IdleMinutes": -1}, "IdleMinutes must be between 0 and 480"),
])
def test_bad_session_requests_say_what_is_wrong(world: World, body, words):
    alice, _ = world.user()
    device = world.device()
    resp = alice.post("/sessions", json={"Device": device.id, **body})
    assert words in assert_error(resp, 400)["ErrorMessage"]


def test_unknown_devices_sessions_and_states_are_refused(world: World):
    alice, _ = world.user()
    nowhere = alice.post("/sessions", json={"Device": "no-such-device"})
    assert "no device no-such-device" in assert_error(nowhere, 404, "not_found")["ErrorMessage"]
    assert_error(alice.get("/sessions/nope"), 404, "not_found")
    bad = alice.get("/sessions", params={"State": "sleeping"})
    assert "State must be one of open, closed" in assert_error(bad, 400)["ErrorMessage"]
    device = world.device()
    assert_error(device.api.get("/sessions"), 403)  # a device is not a user
