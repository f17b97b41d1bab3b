"""Prices and what work costs, over raw HTTP against the real service on each engine
(issue 12, docs/facility.md "Money flow"): admins set a device's prices (accounting on);
a submit names its team (or takes the default), members only; shared work its team cannot
cover is refused with the numbers, at submit and when its file (its estimate) arrives;
a finished run is charged once, at the price in force when it started, even when the
device reports twice; a board fault is refunded; timeslot work is not charged per run;
team members see the team's queue but not each other's workloads; with accounting off
nothing of it applies."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from queueservice.clock import now_ms
from queueservice.db import Database
from queueservice.facility import append_line, set_accounting
from queueservice.settings import ServiceLimits
from queueservice.workloads import WorkloadStore
from tests.conftest import QueueService, start_queue_service
from tests import facility_rows as rows
from tests.helpers import wait_for
from tests.server.api import (Device, World, assert_error, long_polls, put_file, status,
                              submit)
from tests.server.conftest import DATABASES, engine_options
from tests.server.test_store import add_device
from tests.server.api import email_of, grant, new_team


@pytest.fixture(scope="module", params=DATABASES)
def paid_service(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    """A service started with ``--accounting`` (one per engine for the module)."""
    service = start_queue_service(Path(tmp_path_factory.mktemp(f"paid-{request.param}")),
                                  accounting=True, **engine_options(request.param, request))
    yield service
    service.stop()


@pytest.fixture
def paid(paid_service: QueueService) -> World:
    return World(paid_service)


@pytest.fixture
def lab(paid: World) -> dict:
    """A device priced 2 credits per used second, a team with a scheduler (pi) and a user
    member (student), its default team for both, and an outsider in no team."""
    device = paid.device()
    price(paid, device.id, 2.0, 3.0)
    pi, pi_id = paid.user()
    student, student_id = paid.user()
    outsider, outsider_id = paid.user()
    team = new_team(paid, scheduler=pi_id)
    added = pi.post(f"/teams/{team['TeamId']}/members",
                    json={"User": email_of(paid, student_id), "Role": "user"})
    assert added.status_code == 201, added.text
    return {"device": device, "team": team, "id": team["TeamId"], "name": team["Name"],
            "pi": pi, "pi_id": pi_id, "student": student, "student_id": student_id,
            "outsider": outsider, "outsider_id": outsider_id}


def price(world: World, device_id: str, used: float, reserved: float) -> dict:
    resp = world.admin.put(f"/devices/{device_id}/prices",
                           json={"PerUsedSecond": used, "PerReservedSecond": reserved})
    assert resp.status_code == 200, resp.text
    return resp.json()


def ledger(world: World, team_id: str) -> list[tuple]:
    lines = world.admin.get(f"/teams/{team_id}/ledger").json()["Lines"]
    return [(x["Kind"], x["Seconds"], x["WorkId"]) for x in lines if x["Kind"] != "grant"]


def balance(world: World, team_id: str) -> float:
    return world.admin.get(f"/teams/{team_id}/balance").json()["BalanceSeconds"]


def run(device: Device, work_id: str, report: dict) -> str:
    """Hand the device its work and report the outcome: answers the results upload URL."""
    handed = device.next_work().json()
    assert handed and handed["WorkId"] == work_id, handed
    answer = device.report(work_id, report)
    assert answer.status_code == 200, answer.text
    return answer.json()["UploadUrl"]


def test_admins_set_prices_and_every_user_reads_them(paid: World):
    device = paid.device()
    user, _ = paid.user()
    never = user.get(f"/devices/{device.id}/prices").json()
    assert (never["PerUsedSecond"], never["PerReservedSecond"], never["History"]) == \
        (1.0, 1.0, [])  # never priced: one credit per second
    refused = user.put(f"/devices/{device.id}/prices",
                       json={"PerUsedSecond": 1, "PerReservedSecond": 1})
    assert "only an admin" in assert_error(refused, 403, "forbidden")["ErrorMessage"]
    for body, words in (({"PerUsedSecond": -1, "PerReservedSecond": 1}, "PerUsedSecond"),
                        ({"PerUsedSecond": 1}, "PerReservedSecond is required"),
                        ({"PerUsedSecond": "1", "PerReservedSecond": 1}, "a number")):
        bad = paid.admin.put(f"/devices/{device.id}/prices", json=body)
        assert words in assert_error(bad, 400, "bad_request")["ErrorMessage"]
    missing = paid.admin.put("/devices/no-such-device/prices",
                             json={"PerUsedSecond": 1, "PerReservedSecond": 1})
    assert "no device no-such-device" in assert_error(missing, 404)["ErrorMessage"]
    price(paid, device.id, 1.5, 4)
    now = price(paid, device.id, 2.5, 5)
    seen = user.get(f"/devices/{device.id}/prices").json()
    assert seen == now
    assert (seen["PerUsedSecond"], seen["PerReservedSecond"], seen["Accounting"]) == \
        (2.5, 5.0, True)
    assert [(h["PerUsedSecond"], h["PerReservedSecond"]) for h in seen["History"]] == \
        [(2.5, 5.0), (1.5, 4.0)]
    assert all(h["Since"].endswith("Z") and h["SetBy"] for h in seen["History"])


def test_a_submit_is_charged_to_a_team_of_the_submitter(paid: World, lab: dict):
    device = lab["device"]
    grant(paid, lab["id"], 1000)
    nobody = lab["outsider"].post("/workloads", json={"DeviceId": device.id,
                                                      "Priority": "LOW"})
    message = assert_error(nobody, 403, "no_team")["ErrorMessage"]
    assert "you are in no team" in message and "ask an admin" in message
    not_theirs = lab["outsider"].post("/workloads", json={
        "DeviceId": device.id, "Priority": "LOW", "Team": lab["name"]})
    assert f"no team {lab['name']} of yours" in assert_error(not_theirs, 404)["ErrorMessage"]
    by_default = submit(lab["student"], device.id, b"default team")
    by_name = submit(lab["pi"], device.id, b"by name", Team=lab["name"], MaxSeconds=30)
    assert status(lab["student"], by_default)["TeamId"] == lab["id"]
    named = status(lab["pi"], by_name)
    assert (named["TeamId"], named["MaxSeconds"]) == (lab["id"], 30)
    assert named["EstimatedCost"] == 60.0  # no estimate of its own: its cap x 2 per second


@pytest.mark.parametrize("extra, words", [
    ({"MaxSeconds": 0}, "MaxSeconds"), ({"MaxSeconds": -3}, "MaxSeconds"),
    ({"MaxSeconds": "10"}, "a number, not"), ({"Timeslot": "yes"}, "true/false"),
    ({"OnSlotEnd": "wait"}, "timeslot work only"),
    ({"Timeslot": True, "OnSlotEnd": "later"}, "wait, fail"), ({"Team": 5}, "a string")])
def test_bad_charging_fields_are_refused_saying_what_to_send(lab: dict, extra: dict,
                                                              words: str):
    refused = lab["pi"].post("/workloads", json={"DeviceId": lab["device"].id,
                                                 "Priority": "LOW", **extra})
    assert words in assert_error(refused, 400, "bad_request")["ErrorMessage"]


def test_timeslot_work_needs_a_booked_slot_and_is_not_charged_per_run(paid: World,
                                                                      paid_service, lab: dict):
    device = lab["device"]
    refused = lab["pi"].post("/workloads", json={"DeviceId": device.id, "Priority": "LOW",
                                                 "Timeslot": True})
    message = assert_error(refused, 409, "no_timeslot")["ErrorMessage"]
    assert "no timeslot booked" in message and f"userclient reserve {device.id}" in message
    store = Database(paid_service.database_target)  # a booking as the calendar's API makes
    try:
        now = now_ms()
        with store.transaction() as conn:
            conn.execute("INSERT INTO bookings (booking_id, device_id, kind, team_id, start_at, "
                         "end_at, created_by, created_at) VALUES (?, ?, 'reservation', ?, ?, "
                         "?, ?, ?)", (str(uuid.uuid4()), device.id, lab["id"], now - 60_000,
                                      now + 3_600_000, lab["pi_id"], now))
    finally:
        store.close()
    # the balance is 0: a timeslot's work was paid at booking, so it is not checked
    slot_work = submit(lab["student"], device.id, b"slot work", Timeslot=True,
                       OnSlotEnd="fail")
    body = status(lab["student"], slot_work)
    assert "EstimatedCost" not in body and body["TeamId"] == lab["id"]
    url = run(device, slot_work, {"Outcome": "DONE", "DeviceSeconds": 4})
    assert put_file(url, b"r").status_code == 200
    done = status(lab["student"], slot_work)
    assert done["WorkStatus"] == "DONE" and "Cost" not in done
    assert all(work != slot_work for _, _, work in ledger(paid, lab["id"]))


def test_work_the_team_cannot_cover_is_refused_with_the_numbers(paid: World, lab: dict):
    device = lab["device"]  # 2 credits per used second
    empty = lab["student"].post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"})
    message = assert_error(empty, 409, "insufficient_credits")["ErrorMessage"]
    assert f"team {lab['name']}" in message and "balance is 0" in message
    assert "userclient credits request" in message
    grant(paid, lab["id"], 20)
    first = submit(lab["student"], device.id, b"first", MaxSeconds=8)  # holds 16
    announced = lab["student"].post("/workloads", json={"DeviceId": device.id,
                                                        "Priority": "LOW", "MaxSeconds": 3})
    assert announced.status_code == 201, announced.text  # 4 are left: more than 0
    work = announced.json()["WorkId"]
    upload = put_file(announced.json()["UploadUrl"], b"second")
    message = assert_error(upload, 409, "insufficient_credits")["ErrorMessage"]
    for words in ("balance is 20", "16 are held by its 1 other", "4 are left",
                  "estimated at 6 (3 s x 2 per used second", "nothing was queued"):
        assert words in message, message
    kept = status(lab["student"], work)
    assert kept["WorkStatus"] == "CREATED" and "WorkloadUrl" not in kept
    assert status(lab["student"], first)["WorkStatus"] == "READY"
    grant(paid, lab["id"], 2)  # 6 left now: the same upload goes through
    assert put_file(announced.json()["UploadUrl"], b"second").status_code == 200
    assert status(lab["student"], work)["WorkStatus"] == "READY"
    assert balance(paid, lab["id"]) == 22.0  # nothing charged before a run


def test_the_last_credits_go_to_one_upload_of_two_racing(paid: World, lab: dict):
    device = lab["device"]
    grant(paid, lab["id"], 10)  # covers one run of 4 s x 2, not two
    answers = [lab["student"].post("/workloads", json={
        "DeviceId": device.id, "Priority": "LOW", "MaxSeconds": 4}) for _ in range(4)]
    assert [a.status_code for a in answers] == [201] * 4, answers[-1].text
    announced = [a.json() for a in answers]
    with ThreadPoolExecutor(4) as pool:
        uploads = list(pool.map(lambda a: put_file(a["UploadUrl"], a["WorkId"].encode()),
                                announced))
    assert sorted(u.status_code for u in uploads) == [200, 409, 409, 409]


def test_a_finished_run_is_charged_once_at_its_starting_price(paid: World, lab: dict):
    device = lab["device"]
    grant(paid, lab["id"], 100)
    work = submit(lab["student"], device.id, b"charged", MaxSeconds=10)
    assert status(lab["student"], work)["EstimatedCost"] == 20.0
    url = run(device, work, {"Outcome": "DONE", "DeviceSeconds": 3.5})
    price(paid, device.id, 7.0, 7.0)  # a change after it started does not apply to it
    assert put_file(url, b"results").status_code == 200
    # the device reports again and uploads again (an uploader retrying): no second charge
    again = device.report(work, {"Outcome": "DONE", "DeviceSeconds": 3.5})
    assert again.status_code == 200
    assert put_file(again.json()["UploadUrl"], b"results").status_code == 200
    done = status(lab["student"], work)
    assert done["WorkStatus"] == "DONE" and done["Cost"] == 7.0
    assert "EstimatedCost" not in done and "CostRefunded" not in done
    assert ledger(paid, lab["id"]) == [("charge", -7.0, work)]
    assert balance(paid, lab["id"]) == 93.0
    line = paid.admin.get(f"/teams/{lab['id']}/ledger").json()["Lines"][-1]
    assert line["UserId"] == lab["student_id"] and line["DeviceId"] == device.id


def test_a_board_fault_is_refunded_and_a_workload_fault_is_not(paid: World, lab: dict):
    device = lab["device"]
    grant(paid, lab["id"], 100)
    crashed = submit(lab["student"], device.id, b"crashed")
    run(device, crashed, {"Outcome": "FAILED", "ErrorKind": "crashed",
                          "ErrorMessage": "the executor crashed", "DeviceSeconds": 2})
    bad = submit(lab["student"], device.id, b"bad")
    run(device, bad, {"Outcome": "FAILED", "ErrorKind": "invalid_workload",
                      "ErrorMessage": "bad program", "DeviceSeconds": 1})
    assert ledger(paid, lab["id"]) == [("charge", -4.0, crashed), ("refund", 4.0, crashed),
                                       ("charge", -2.0, bad)]
    first, second = status(lab["student"], crashed), status(lab["student"], bad)
    assert (first["Cost"], first["CostRefunded"]) == (4.0, True)
    assert second["Cost"] == 2.0 and "CostRefunded" not in second
    assert balance(paid, lab["id"]) == 98.0


def test_a_run_past_its_cap_is_charged_what_it_used(paid: World, lab: dict):
    device = lab["device"]
    grant(paid, lab["id"], 5)
    work = submit(lab["student"], device.id, b"long", MaxSeconds=2)  # 4 of the 5
    url = run(device, work, {"Outcome": "DONE", "DeviceSeconds": 3})  # one program over
    assert put_file(url, b"r").status_code == 200
    assert ledger(paid, lab["id"]) == [("charge", -6.0, work)]
    assert balance(paid, lab["id"]) == -1.0  # below zero by the run's own overshoot
    refused = lab["student"].post("/workloads", json={"DeviceId": device.id,
                                                      "Priority": "LOW"})
    assert "balance is -1" in assert_error(refused, 409, "insufficient_credits")[
        "ErrorMessage"]


#: a poll held this long (the service's longest) and answered within WOKEN_WITHIN did not
#: wait out its time
LONGEST, WOKEN_WITHIN = 20, 12


def test_an_approved_credit_request_lets_held_work_run_within_the_devices_poll(paid: World,
                                                                              lab: dict):
    """Admitted (its cap's cost covered), then a price rise leaves the team short: the
    device's long poll is handed nothing and parks; once a credit request is approved,
    the poll (which looks again within ``workloads.RECHECK_MS`` while work is held) is
    handed the work without waiting out its time."""
    device = lab["device"]
    grant(paid, lab["id"], 60)
    work = submit(lab["student"], device.id, b"held", MaxSeconds=30)  # 30 s x 2 = 60
    price(paid, device.id, 4.0, 3.0)  # now 120: more than the team has
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(lambda: device.next_work(wait=LONGEST).json())
        wait_for(lambda: long_polls(paid.service, "device") == 1 or answer.done(), 10,
                 what="the device's poll to park")
        assert not answer.done(), f"handed out while the team was short: {answer.result()}"
        made = lab["pi"].post("/credits/requests", json={
            "Team": lab["id"], "Seconds": 60, "Justification": "the held sweep"})
        assert made.status_code == 201, made.text
        approved = paid.admin.post(f"/credits/requests/{made.json()['RequestId']}/approve",
                                   json={})
        assert approved.status_code == 200, approved.text
        handed = answer.result(WOKEN_WITHIN)
    assert handed["WorkId"] == work, handed


def test_team_members_see_the_team_queue_but_not_each_others_work(paid: World,
                                                                  lab: dict):
    device = lab["device"]
    grant(paid, lab["id"], 100)
    mine = submit(lab["pi"], device.id, b"pi's", WorkloadName="pi-sweep")
    theirs = submit(lab["student"], device.id, b"student's", WorkloadName="student-sweep")
    listed = lab["student"].get("/workloads", params={"Team": lab["name"], "Limit": 10})
    assert listed.status_code == 200, listed.text
    items = {i["WorkId"]: i for i in listed.json()["Items"]}
    assert set(items) == {mine, theirs}
    assert (items[mine]["WorkloadName"], items[mine]["QueuePosition"],
            items[mine]["AccountId"]) == ("pi-sweep", 1, lab["pi_id"])
    assert (items[theirs]["WorkStatus"], items[theirs]["QueuePosition"]) == ("READY", 2)
    assert all("WorkloadResultUrl" not in i and "WorkloadUrl" not in i
               for i in items.values())
    # a teammate's workload itself (and so its results) stays its owner's
    hidden = lab["student"].get(f"/workloads/{mine}")
    assert "no workload" in assert_error(hidden, 404)["ErrorMessage"]
    assert [i["WorkId"] for i in lab["student"].get("/workloads").json()["Items"]] == [theirs]
    outsider = lab["outsider"].get("/workloads", params={"Team": lab["id"]})
    assert f"no team {lab['id']} of yours" in assert_error(outsider, 404)["ErrorMessage"]
    by_admin = paid.admin.get("/workloads", params={"Team": lab["id"], "Limit": 10})
    assert {i["WorkId"] for i in by_admin.json()["Items"]} == {mine, theirs}


def test_with_accounting_off_no_team_is_needed_and_nothing_is_charged(world: World):
    """The module's other service has accounting off (never priced, no --accounting)."""
    device = world.device()
    loner, _ = world.user()
    pi, pi_id = world.user()
    team = new_team(world, scheduler=pi_id)  # a team with no credit at all
    assert world.admin.get(f"/devices/{device.id}/prices").json()["Accounting"] is False
    alone = submit(loner, device.id, b"no team")
    in_team = submit(pi, device.id, b"in a team", MaxSeconds=5)
    for user, work in ((loner, alone), (pi, in_team)):
        url = run(device, work, {"Outcome": "DONE", "DeviceSeconds": 2})
        assert put_file(url, b"r").status_code == 200
        body = status(user, work)
        assert body["WorkStatus"] == "DONE"
        assert not {"Cost", "EstimatedCost", "CostRefunded"} & set(body)
    assert "TeamId" not in status(loner, alone)
    assert status(pi, in_team)["TeamId"] == team["TeamId"]  # the team queue works anyway
    assert world.admin.get(f"/teams/{team['TeamId']}/ledger").json()["Lines"] == []


def test_reports_racing_to_finish_a_run_charge_it_once(paid: World, lab: dict):
    device = lab["device"]
    grant(paid, lab["id"], 100)
    work = submit(lab["student"], device.id, b"raced")
    assert device.next_work().json()["WorkId"] == work
    report = {"Outcome": "FAILED", "ErrorKind": "device_error", "ErrorMessage": "ADC lost",
              "DeviceSeconds": 1.25}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: device.report(work, report), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert ledger(paid, lab["id"]) == [("charge", -2.5, work), ("refund", 2.5, work)]
    assert balance(paid, lab["id"]) == 100.0


def test_work_ended_after_its_attempts_is_refunded(queue_service_factory, database_options):
    """A board that keeps losing the work (``attempts_exhausted``) charges nothing."""
    world = World(queue_service_factory(accounting=True, max_attempts=1, **database_options))
    device = world.device()
    user, user_id = world.user()
    team = new_team(world, scheduler=user_id)
    grant(world, team["TeamId"], 50)
    work = submit(user, device.id, b"lost")
    assert device.next_work().json()["WorkId"] == work
    assert device.next_work().json() == []  # asked again without it: its one attempt is over
    ended = status(user, work)
    assert (ended["WorkStatus"], ended["ErrorKind"]) == ("FAILED", "attempts_exhausted")
    [charge, refund] = ledger(world, team["TeamId"])
    assert charge[0] == "charge" and refund == ("refund", -charge[1], work)
    assert ended["CostRefunded"] is True and balance(world, team["TeamId"]) == 50.0


def test_accounting_needs_our_own_api(tmp_path: Path):
    with pytest.raises(RuntimeError, match="--accounting needs this service's own API"):
        start_queue_service(tmp_path / "stock", accounting=True, stock_protocol=True)


def test_only_shared_work_is_charged_per_run(db: Database):
    """The store itself: session work and timeslot work finish with no charge (a session
    is charged for the time it held the device, a slot at booking); shared work is charged
    once, even when the device reports twice and uploads twice."""
    store = WorkloadStore(db, ServiceLimits())
    device = add_device(db)
    team_id = str(uuid.uuid4())
    with db.transaction() as conn:
        set_accounting(conn, True)
        conn.execute("INSERT INTO teams (team_id, name, created_by, created_at) VALUES "
                     "(?, ?, 'admin', 0)", (team_id, f"team-{team_id[:8]}"))
        append_line(conn, team_id, "grant", 100.0, "admin", "allocation", now_ms())
    works = {}
    for kind in ("shared", "session", "timeslot"):  # each runs on its own, as the policy lets it
        row, _ = store.create(account_id="a", device_id=device, priority="MEDIUM",
                              user_given_name=None, sha256=None, now=now_ms())
        columns = {"team_id": team_id}
        if kind == "session":
            columns["session_id"] = rows.session(db, device, "a", now_ms(), team_id=team_id)
        if kind == "timeslot":
            rows.book(db, device, now_ms() - 1000, now_ms() + 60_000, now_ms(),
                      team_id=team_id)
            columns["timeslot"] = 1
        rows.mark(db, row["work_id"], **columns)
        store.workload_uploaded(row["work_id"], now_ms())
        works[kind] = row["work_id"]
        handed, _ = store.claim(device, store.sequence_mark())
        assert handed["work_id"] == row["work_id"], kind
        for _ in range(2):
            store.report(device, handed["work_id"], outcome="DONE", device_seconds=2.0,
                         now=now_ms())
            store.results_uploaded(handed["work_id"], now_ms())
    costs = {kind: store.get(work)["cost"] for kind, work in works.items()}
    assert costs == {"shared": 2.0, "session": None, "timeslot": None}
    with db.reading() as conn:
        lines = [(r["kind"], r["seconds"], r["work_id"]) for r in conn.execute(
            "SELECT * FROM ledger WHERE team_id = ?", (team_id,)).fetchall()]
    assert lines == [("grant", 100.0, None), ("charge", -2.0, works["shared"])]
