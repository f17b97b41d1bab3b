"""The iCalendar feed (RFC 5545): ``queueservice.ics`` read back by a parser of the test's
own (CRLF lines of at most 75 octets, unfolded, unescaped), hostile text that cannot make a
property of its own, and the served ``.ics`` (the path, ``Accept: text/calendar``, the feed
token a calendar application puts in the URL, revoked or replaced; never in the access
log)."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import requests
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queueservice import ics
from tests.conftest import QueueService
from tests.helpers import wait_for
from tests.server.api import Api, World, assert_error
from tests.server.test_bookings import at, booked, delete, hours_from_now, make_lab


def parse(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """(the unfolded content lines, each VEVENT's properties by name): fails on a line
    that is not CRLF-ended, longer than 75 octets, or a property given twice."""
    assert text.endswith("\r\n")
    physical = text.split("\r\n")[:-1]
    for line in physical:
        assert "\r" not in line and "\n" not in line, line
        assert len(line.encode("utf-8")) <= 75, line
    lines: list[str] = []
    for line in physical:
        if line.startswith(" "):
            lines[-1] += line[1:]
        else:
            lines.append(line)
    events, current = [], None
    for line in lines:
        name, _, value = line.partition(":")
        if line == "BEGIN:VEVENT":
            current = {}
        elif line == "END:VEVENT":
            events.append(current)
            current = None
        elif current is not None:
            assert name not in current, f"{name} twice in one event"
            current[name] = value
    return lines, events


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] in "nN" else m[1], value)


def normalized(text: str) -> str:
    """What an escaped text reads back as: newlines as LF, other control characters as
    spaces (tab kept)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(" " if (ord(c) < 32 and c not in "\t\n") or ord(c) == 127 else c
                   for c in text)


def test_a_calendar_reads_back_with_its_events_in_utc():
    events = [ics.Event("m1@qick-queue", 1_796_148_000_000, 1_796_151_600_500, "Maintenance",
                        "fridge"), ics.Event("r2@qick-queue", 0, 1, "Reserved")]
    text = ics.calendar_text("qick (d1)", events, 1_796_000_000_000)
    lines, parsed = parse(text)
    assert lines[:2] == ["BEGIN:VCALENDAR", "VERSION:2.0"] and lines[-1] == "END:VCALENDAR"
    assert parsed[0] == {"UID": "m1@qick-queue", "DTSTAMP": "20261130T005320Z",
                         "DTSTART": "20261201T180000Z", "DTEND": "20261201T190001Z",
                         "SUMMARY": "Maintenance", "DESCRIPTION": "fridge"}
    assert (parsed[1]["DTSTART"], parsed[1]["DTEND"]) == ("19700101T000000Z",
                                                          "19700101T000001Z")
    assert "DESCRIPTION" not in parsed[1]


def test_long_lines_fold_at_75_octets_without_splitting_a_character():
    summary = "Maintenance: " + "é中🙂x" * 40
    text = ics.calendar_text("q", [ics.Event("u@q", 0, 1000, summary)], 0)
    physical = text.split("\r\n")
    assert max(len(line.encode()) for line in physical) <= 75
    assert any(line.startswith(" ") for line in physical)
    _, events = parse(text)
    assert unescape(events[0]["SUMMARY"]) == summary
    exactly = "X" * (75 - len("SUMMARY:"))
    assert ics.fold("SUMMARY:" + exactly) == "SUMMARY:" + exactly  # 75 octets: one line


def test_commas_semicolons_backslashes_and_newlines_are_escaped():
    assert ics.escape("a,b;c\\d\ne\r\nf\rg") == "a\\,b\\;c\\\\d\\ne\\nf\\ng"


def test_hostile_text_cannot_make_a_property_of_its_own():
    hostile = ("fridge\r\nDTSTART:19700101T000000Z\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\n"
               "UID:evil\nSUMMARY:pwned\rATTACH:http://x\x00\x0b\x7f")
    text = ics.calendar_text(hostile, [ics.Event("u@q", 0, 1000, hostile, hostile)], 0)
    lines, events = parse(text)
    assert len(events) == 1 and set(events[0]) == {"UID", "DTSTAMP", "DTSTART", "DTEND",
                                                    "SUMMARY", "DESCRIPTION"}
    assert events[0]["UID"] == "u@q" and events[0]["DTSTART"] == "19700101T000000Z"
    assert unescape(events[0]["SUMMARY"]) == normalized(hostile)
    assert sum(line.startswith("BEGIN:") for line in lines) == 2


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_property_any_text_reads_back_as_itself_in_one_property(text):
    out = ics.calendar_text("q", [ics.Event("u@q", 0, 1000, text, text)], 0)
    _, events = parse(out)
    assert len(events) == 1 and len(events[0]) == 6
    assert unescape(events[0]["SUMMARY"]) == normalized(text)
    assert unescape(events[0]["DESCRIPTION"]) == normalized(text)


# -- served -------------------------------------------------------------------------------
@pytest.fixture
def lab(world: World) -> dict:
    return make_lab(world)


def test_the_ics_feed_shows_the_callers_view_by_path_or_accept_header(world: World, lab):
    start = hours_from_now(3)
    mine = booked(lab["pi"], lab["device"], lab["a"], start, start + 3_600_000,
                  Note="qubits, couplers; and \\ more")
    maintenance = world.admin.post("/maintenance", json={
        "Device": lab["device"], "Start": at(hours_from_now(5)), "End": at(hours_from_now(6)),
        "Reason": "valves; pumps, and more"}).json()
    by_path = lab["student"].get(f"/devices/{lab['device']}/calendar.ics")
    assert by_path.status_code == 200, by_path.text
    assert by_path.headers["content-type"] == "text/calendar; charset=utf-8"
    by_accept = lab["student"].get(f"/devices/{lab['device']}/calendar",
                                   headers={"Accept": "text/calendar"})
    assert by_accept.status_code == 200 and by_accept.headers["content-type"].startswith(
        "text/calendar")
    _, events = parse(by_path.content.decode())
    assert [e["UID"] for e in events] == [f"{mine['Id']}@qick-queue",
                                          f"{maintenance['Id']}@qick-queue"]
    assert unescape(events[0]["SUMMARY"]) == f"Timeslot: team {lab['a_name']}"
    assert unescape(events[0]["DESCRIPTION"]) == "qubits, couplers; and \\ more"
    assert unescape(events[1]["SUMMARY"]) == "Maintenance: valves; pumps, and more"
    assert events[0]["DTSTART"] == datetime.fromtimestamp(start / 1000, tz=timezone.utc) \
        .strftime("%Y%m%dT%H%M%SZ")

    _, theirs = parse(lab["outsider"].get(f"/devices/{lab['device']}/calendar.ics").text)
    assert [unescape(e["SUMMARY"]) for e in theirs] == ["Reserved",
                                                        "Maintenance: valves; pumps, and more"]
    # The note's words appear nowhere in another team's view (they cannot occur in a timestamp).
    assert mine["Id"] not in theirs[0]["UID"] and "qubits" not in str(theirs)
    assert lab["a_name"] not in str(theirs)


def test_a_reason_with_a_line_break_is_refused_at_the_door(world: World, lab):
    resp = world.admin.post("/maintenance", json={
        "Device": lab["device"], "Start": at(hours_from_now(7)), "End": at(hours_from_now(8)),
        "Reason": "fridge\r\nDTSTART:19700101T000000Z"})
    assert "printable" in assert_error(resp, 400)["ErrorMessage"]


def test_windows_appear_in_the_feed(world: World, lab):
    world.admin.put(f"/devices/{lab['device']}/windows",
                    json={"Windows": [{"Day": "Sat", "Start": "00:00", "End": "24:00"}]})
    text = lab["pi"].get(f"/devices/{lab['device']}/calendar.ics", params={
        "From": "2030-01-07T00:00:00Z", "To": "2030-01-21T00:00:00Z"}).text
    _, events = parse(text)
    assert [(e["DTSTART"], e["DTEND"], e["SUMMARY"]) for e in events] == [
        ("20300112T000000Z", "20300113T000000Z", "Pay-as-you-go window"),
        ("20300119T000000Z", "20300120T000000Z", "Pay-as-you-go window")]


def test_a_feed_token_reads_as_its_user_until_revoked_or_replaced(world: World, lab):
    start = hours_from_now(2)
    booked(lab["pi"], lab["device"], lab["a"], start, start + 3_600_000, Note="ours")
    anonymous = Api(world.service.url)
    path = f"/devices/{lab['device']}/calendar.ics"
    assert_error(anonymous.get(path), 401)
    made = lab["student"].post("/calendar-feed")
    assert made.status_code == 201, made.text
    token = made.json()["Token"]
    assert made.json()["Path"].endswith(f"calendar.ics?Feed={token}")
    feed = anonymous.get(path, params={"Feed": token})
    assert feed.status_code == 200, feed.text
    assert "DESCRIPTION:ours" in feed.text  # read as the student: their team's slot in full
    assert_error(anonymous.get(f"/devices/{lab['device']}/calendar", params={"Feed": token}),
                 401)  # the token reads the .ics feed only

    newer = lab["student"].post("/calendar-feed").json()["Token"]
    stale = anonymous.get(path, params={"Feed": token})
    assert "userclient calendar DEVICE --feed" in assert_error(stale, 403)["ErrorMessage"]
    assert anonymous.get(path, params={"Feed": newer}).status_code == 200
    revoked = delete(lab["student"], "/calendar-feed")
    assert revoked.json() == {"Revoked": True}
    assert_error(anonymous.get(path, params={"Feed": newer}), 403)
    assert delete(lab["student"], "/calendar-feed").json() == {"Revoked": False}
    assert_error(anonymous.get(path, params={"Feed": "qcf_guess"}), 403)

    world.admin.post(f"/users/{lab['outsider_id']}/disable")
    theirs = lab["outsider"].post("/calendar-feed")
    assert theirs.status_code in (401, 403)  # a disabled user makes no feed either


def test_the_access_log_never_shows_a_feed_token(queue_service_factory):
    service: QueueService = queue_service_factory(access_log=True, log_level="info")
    world = World(service)
    device = world.device()
    user, _ = world.user()
    token = user.post("/calendar-feed").json()["Token"]
    answer = requests.get(f"{service.url}/devices/{device.id}/calendar.ics",
                          params={"From": "2030-01-07T00:00:00Z", "Feed": token}, timeout=30)
    assert answer.status_code == 200, answer.text

    def logged() -> str:
        text = service.log_path.read_text()
        return text if "calendar.ics" in text else ""

    text = wait_for(logged, 10, what="the access log line")
    assert f"GET /devices/{device.id}/calendar.ics?From=" in text and "Feed=***" in text
    assert token not in text and token[len("qcf_"):] not in text
