"""Timeslots, maintenance, weekly windows and a device's calendar over raw HTTP against the
real service, on each engine: a team's scheduler books, its members see the slot in full
and everyone else only as "reserved"; no two bookings of a device overlap (also when two
race for one slot); with accounting on a slot is paid when booked and refunded in full
when cancelled before it starts; maintenance is admins' and ``Force`` cancels the slots in
its way with their refunds; every refusal says which rule and what to do."""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from queueservice.db import Database
from tests.server.api import Api, World, assert_error
from tests.server.api import email_of, new_team

HOUR = 3600 * 1000


def at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def hours_from_now(hours: float) -> int:
    """A whole minute ``hours`` from now (ms): away from the edges of "now"."""
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    return (now + int(hours * HOUR)) // 60_000 * 60_000


def delete(api: Api, path: str):
    return api.call("DELETE", path)


@pytest.fixture
def lab(world: World) -> dict:
    return make_lab(world)


def make_lab(world: World) -> dict:
    """A device; team A with a scheduler (pi) and a user (student); team B with its own
    scheduler (rival); and an outsider."""
    people = {}
    for who in ("pi", "student", "rival", "outsider"):
        people[who], people[who + "_id"] = world.user()
    a = new_team(world, scheduler=people["pi_id"])
    added = people["pi"].post(f"/teams/{a['TeamId']}/members",
                              json={"User": email_of(world, people["student_id"]),
                                    "Role": "user"})
    assert added.status_code == 201, added.text
    b = new_team(world, scheduler=people["rival_id"])
    return {**people, "a": a["TeamId"], "a_name": a["Name"], "b": b["TeamId"],
            "device": world.device().id}


def book(api: Api, device: str, team: str, start: int, end: int, **extra):
    return api.post("/reservations", json={"Device": device, "Team": team, "Start": at(start),
                                           "End": at(end), **extra})


def booked(api: Api, device: str, team: str, start: int, end: int, **extra) -> dict:
    resp = book(api, device, team, start, end, **extra)
    assert resp.status_code == 201, resp.text
    return resp.json()


def set_price(db: Database, device: str, per_reserved_second: float) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO prices (device_id, per_used_second, per_reserved_second, "
                     "since, set_by) VALUES (?, ?, ?, ?, ?)",
                     (device, 1.0, per_reserved_second, 0, "test"))


def test_a_scheduler_books_a_slot_members_see_it_others_see_only_reserved(world, lab):
    start, end = hours_from_now(2), hours_from_now(3)
    slot = booked(lab["pi"], lab["device"], lab["a_name"], start, end, Note="T1 sweep")
    assert (slot["Kind"], slot["TeamId"], slot["Team"], slot["Note"]) == \
        ("reservation", lab["a"], lab["a_name"], "T1 sweep")
    assert (slot["Start"], slot["End"], slot["Cost"]) == (at(start), at(end), None)

    for member in ("pi", "student"):
        listed = lab[member].get("/reservations", params={"Device": lab["device"]}).json()
        assert [r["Id"] for r in listed] == [slot["Id"]]
    assert lab["outsider"].get("/reservations").json() == []
    assert slot["Id"] in {r["Id"] for r in world.admin.get("/reservations").json()}

    mine = lab["student"].get(f"/devices/{lab['device']}/calendar").json()
    assert [(r["Id"], r["Note"]) for r in mine["Reservations"]] == [(slot["Id"], "T1 sweep")]
    theirs = lab["outsider"].get(f"/devices/{lab['device']}/calendar").json()
    assert theirs["Reservations"] == [{"Kind": "reserved", "Start": at(start),
                                       "End": at(end)}]
    assert theirs["AlwaysOpen"] is True and theirs["Maintenance"] == []


def test_only_a_teams_scheduler_or_an_admin_books_for_it(world, lab):
    start, end = hours_from_now(2), hours_from_now(3)
    refused = book(lab["student"], lab["device"], lab["a"], start, end)
    assert "only a scheduler" in assert_error(refused, 403, "forbidden")["ErrorMessage"]
    hidden = book(lab["outsider"], lab["device"], lab["a"], start, end)
    assert "team list" in assert_error(hidden, 404, "not_found")["ErrorMessage"]
    nowhere = book(lab["pi"], "no-such-device", lab["a"], start, end)
    assert "userclient devices" in assert_error(nowhere, 404, "not_found")["ErrorMessage"]
    assert book(world.admin, lab["device"], lab["a"], start, end).status_code == 201


def test_an_overlap_is_refused_naming_the_booking_another_teams_only_as_reserved(world, lab):
    start, end = hours_from_now(5), hours_from_now(6)
    slot = booked(lab["pi"], lab["device"], lab["a"], start, end)
    own = book(lab["pi"], lab["device"], lab["a"], start + HOUR // 2, end + HOUR)
    message = assert_error(own, 409, "booking_overlap")["ErrorMessage"]
    assert slot["Id"] in message and at(start) in message and "calendar" in message
    other = book(lab["rival"], lab["device"], lab["b"], start - HOUR // 2, start + 60_000)
    message = assert_error(other, 409, "booking_overlap")["ErrorMessage"]
    assert f"reserved from {at(start)} to {at(end)}" in message
    assert slot["Id"] not in message and lab["a_name"] not in message
    # half-open: a slot ending where another starts, or starting where it ends, is fine
    assert book(lab["rival"], lab["device"], lab["b"], start - HOUR, start).status_code == 201
    assert book(lab["rival"], lab["device"], lab["b"], end, end + HOUR).status_code == 201
    # another device is another calendar
    assert book(lab["rival"], world.device().id, lab["b"], start, end).status_code == 201


@pytest.mark.parametrize("start_h, end_h, words", [
    (-2, 1, "in the past"), (3, 3, "must be after Start"), (3, 2, "must be after Start"),
    (1, 1 + 24 * 7 + 1, "at most 168 hours"), (24 * 400, 24 * 400 + 1, "days ahead")])
def test_bad_times_are_refused_saying_what_to_do(world, lab, start_h, end_h, words):
    resp = book(lab["pi"], lab["device"], lab["a"], hours_from_now(start_h),
                hours_from_now(end_h))
    assert words in assert_error(resp, 400, "bad_request")["ErrorMessage"]


@pytest.mark.parametrize("start", ["2026-12-01T18:00:00", "tomorrow", 1796148000000, ""])
def test_a_time_without_an_offset_or_not_a_time_is_refused(world, lab, start):
    resp = lab["pi"].post("/reservations", json={"Device": lab["device"], "Team": lab["a"],
                                                 "Start": start, "End": at(hours_from_now(9))})
    message = assert_error(resp, 400)["ErrorMessage"]
    assert "Start" in message


def test_a_slot_is_paid_when_booked_and_refunded_when_cancelled(world, lab, accounting):
    set_price(accounting, lab["device"], 2.0)
    world.admin.post(f"/teams/{lab['a']}/grants", json={"Seconds": 10000, "Note": "alloc"})
    start = hours_from_now(2)
    slot = booked(lab["pi"], lab["device"], lab["a"], start, start + HOUR)
    assert slot["Cost"] == 7200.0
    balance = lambda: lab["pi"].get(f"/teams/{lab['a']}/balance").json()["BalanceSeconds"]
    assert balance() == 2800.0
    short = book(lab["pi"], lab["device"], lab["a"], start + HOUR, start + 2 * HOUR)
    message = assert_error(short, 409, "insufficient_credits")["ErrorMessage"]
    assert "has 2800 device-seconds" in message and "costs 7200" in message
    assert "credits request" in message
    assert balance() == 2800.0  # the refusal wrote nothing

    refused = delete(lab["student"], f"/reservations/{slot['Id']}")
    assert "only a scheduler" in assert_error(refused, 403)["ErrorMessage"]
    cancelled = delete(lab["pi"], f"/reservations/{slot['Id']}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["Refund"] == 7200.0 and cancelled.json()["CancelledAt"]
    assert balance() == 10000.0
    lines = lab["pi"].get(f"/teams/{lab['a']}/ledger").json()["Lines"]
    assert [(x["Kind"], x["Seconds"]) for x in lines] == \
        [("grant", 10000.0), ("reservation", -7200.0), ("reservation_refund", 7200.0)]
    assert all(x["DeviceId"] == lab["device"] for x in lines[1:])
    again = delete(lab["pi"], f"/reservations/{slot['Id']}")
    assert "cancelled at" in assert_error(again, 409, "cancelled")["ErrorMessage"]
    assert lab["pi"].get("/reservations", params={"Device": lab["device"]}).json() == []
    # the slot is free again
    assert book(lab["pi"], lab["device"], lab["a"], start, start + HOUR).status_code == 201


def test_a_slot_that_has_begun_cannot_be_cancelled(world, lab):
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    slot = booked(lab["pi"], lab["device"], lab["a"], now, now + HOUR)
    refused = delete(lab["pi"], f"/reservations/{slot['Id']}")
    assert "cannot be cancelled once it has begun" in \
        assert_error(refused, 409, "started")["ErrorMessage"]
    hidden = delete(lab["outsider"], f"/reservations/{slot['Id']}")
    assert_error(hidden, 404, "not_found")


def test_two_racing_bookings_of_one_slot_exactly_one_wins(world, lab):
    start = hours_from_now(30)
    racers = [(lab["pi"], lab["a"]), (lab["rival"], lab["b"])] * 4
    barrier = threading.Barrier(len(racers))

    def race(n: int):
        api, team = racers[n]
        barrier.wait()
        return book(api, lab["device"], team, start + n * 60_000, start + HOUR)

    with ThreadPoolExecutor(len(racers)) as pool:
        answers = list(pool.map(race, range(len(racers))))
    assert sorted(a.status_code for a in answers) == [201] + [409] * (len(racers) - 1)
    standing = world.admin.get("/reservations", params={"Device": lab["device"]}).json()
    assert len(standing) == 1


def test_maintenance_is_admins_and_force_cancels_the_slots_in_its_way(world, lab, accounting):
    set_price(accounting, lab["device"], 1.0)
    world.admin.post(f"/teams/{lab['a']}/grants", json={"Seconds": 7200, "Note": "alloc"})
    start = hours_from_now(4)
    slot = booked(lab["pi"], lab["device"], lab["a"], start, start + HOUR)
    body = {"Device": lab["device"], "Start": at(start - HOUR), "End": at(start + HOUR // 2),
            "Reason": "cryostat warm-up; fridge, valves \\ pumps"}
    refused = lab["pi"].post("/maintenance", json=body)
    assert "only an admin" in assert_error(refused, 403, "forbidden")["ErrorMessage"]
    blocked = world.admin.post("/maintenance", json=body)
    message = assert_error(blocked, 409, "booking_overlap")["ErrorMessage"]
    assert slot["Id"] in message and "Force" in message

    forced = world.admin.post("/maintenance", json={**body, "Force": True})
    assert forced.status_code == 201, forced.text
    made = forced.json()
    assert made["Kind"] == "maintenance" and made["Reason"] == body["Reason"]
    assert [(c["Id"], c["Refund"]) for c in made["Cancelled"]] == [(slot["Id"], 3600.0)]
    lines = world.admin.get(f"/teams/{lab['a']}/ledger").json()["Lines"]
    assert lines[-1]["Kind"] == "reservation_refund" and lines[-1]["Seconds"] == 3600.0
    assert made["Id"] in lines[-1]["Note"] and "cryostat" in lines[-1]["Note"]
    assert lab["pi"].get("/reservations", params={"Device": lab["device"]}).json() == []

    for api, team in ((lab["pi"], lab["a"]), (lab["rival"], lab["b"])):
        inside = book(api, lab["device"], team, start, start + HOUR)
        message = assert_error(inside, 409, "booking_overlap")["ErrorMessage"]
        assert f"maintenance {made['Id']} (cryostat" in message
    twice = world.admin.post("/maintenance", json={**body, "Force": True})
    assert made["Id"] in assert_error(twice, 409, "booking_overlap")["ErrorMessage"]
    seen = lab["outsider"].get(f"/devices/{lab['device']}/calendar").json()
    assert [(m["Id"], m["Reason"]) for m in seen["Maintenance"]] == [(made["Id"],
                                                                     body["Reason"])]
    listed = lab["student"].get("/maintenance", params={"Device": lab["device"]}).json()
    assert [m["Id"] for m in listed] == [made["Id"]]


def test_deleting_maintenance_cancels_it_or_ends_a_begun_one_now(world, lab):
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    later = world.admin.post("/maintenance", json={
        "Device": lab["device"], "Start": at(now + 5 * HOUR), "End": at(now + 6 * HOUR),
        "Reason": "firmware"}).json()
    running = world.admin.post("/maintenance", json={
        "Device": lab["device"], "Start": at(now), "End": at(now + HOUR),
        "Reason": "cables"}).json()
    assert_error(delete(lab["pi"], f"/maintenance/{later['Id']}"), 403, "forbidden")
    gone = delete(world.admin, f"/maintenance/{later['Id']}")
    assert gone.status_code == 200 and gone.json()["CancelledAt"], gone.text
    ended = delete(world.admin, f"/maintenance/{running['Id']}")
    assert ended.status_code == 200, ended.text
    assert "CancelledAt" not in ended.json() and ended.json()["Start"] == running["Start"]
    assert ended.json()["End"] < running["End"]
    again = delete(world.admin, f"/maintenance/{later['Id']}")
    assert_error(again, 409, "cancelled")
    assert_error(delete(world.admin, f"/maintenance/{uuid.uuid4()}"), 404, "not_found")
    # the hour the ended maintenance held is free for a slot now
    assert book(lab["pi"], lab["device"], lab["a"], hours_from_now(0.5),
                hours_from_now(0.9)).status_code == 201


def test_windows_are_admins_weekly_rules_the_calendar_unrolls(world, lab):
    path = f"/devices/{lab['device']}/windows"
    assert lab["pi"].get(path).json() == {"DeviceId": lab["device"], "AlwaysOpen": True,
                                          "Windows": []}
    rules = [{"Day": day, "Start": "18:00", "End": "24:00"}
             for day in ("Mon", "Tue", "Wed", "Thu", "Fri")] + \
        [{"Day": "Sat", "Start": "00:00", "End": "24:00"},
         {"Day": "Sun", "Start": "00:00", "End": "24:00"}]
    assert_error(lab["pi"].put(path, json={"Windows": rules}), 403, "forbidden")
    saved = world.admin.put(path, json={"Windows": rules})
    assert saved.status_code == 200, saved.text
    assert saved.json()["AlwaysOpen"] is False and len(saved.json()["Windows"]) == 7

    # Monday 2030-01-07 (UTC) .. the Monday after: the weekdays' evenings and one weekend
    cal = lab["student"].get(f"/devices/{lab['device']}/calendar", params={
        "From": "2030-01-07T00:00:00Z", "To": "2030-01-14T00:00:00Z"}).json()
    assert cal["AlwaysOpen"] is False
    assert [(w["Start"], w["End"]) for w in cal["Windows"]] == [
        (f"2030-01-{d:02d}T18:00:00.000Z", f"2030-01-{d + 1:02d}T00:00:00.000Z")
        for d in range(7, 11)] + [("2030-01-11T18:00:00.000Z", "2030-01-14T00:00:00.000Z")]

    for bad, words in [({"Day": "Mon", "Start": "22:00", "End": "06:00"}, "crossing midnight"),
                       ({"Day": "Monday", "Start": "1:00", "End": "2:00"}, "Day must be"),
                       ({"Day": "Mon", "Start": "24:30", "End": "24:00"}, "HH:MM"),
                       ("Mon 18-24", "each window is an object")]:
        refused = world.admin.put(path, json={"Windows": [bad]})
        assert words in assert_error(refused, 400)["ErrorMessage"]
    cleared = world.admin.put(path, json={"Windows": []})
    assert cleared.json() == {"DeviceId": lab["device"], "AlwaysOpen": True, "Windows": []}


def test_the_calendar_span_defaults_to_two_weeks_and_is_capped(world, lab):
    cal = lab["pi"].get(f"/devices/{lab['device']}/calendar").json()
    start = datetime.fromisoformat(cal["From"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(cal["To"].replace("Z", "+00:00"))
    assert (end - start).days == 14
    assert cal["Windows"] == [{"Start": cal["From"], "End": cal["To"]}]
    long = lab["pi"].get(f"/devices/{lab['device']}/calendar",
                         params={"From": "2030-01-01T00:00:00Z", "To": "2030-06-01T00:00:00Z"})
    assert "at most 92 days" in assert_error(long, 400)["ErrorMessage"]
    backwards = lab["pi"].get(f"/devices/{lab['device']}/calendar",
                              params={"From": "2030-01-02T00:00:00Z", "To": "2030-01-01T00:00Z"})
    assert "must be after From" in assert_error(backwards, 400)["ErrorMessage"]
    missing = lab["pi"].get("/devices/no-such-device/calendar")
    assert_error(missing, 404, "not_found")
