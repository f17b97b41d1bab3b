"""``userclient reserve|reservations|maintenance|windows|calendar`` (a real subprocess)
against the real service: book, list, cancel; maintenance with ``--force``; weekly windows
from their short syntax; the calendar as a table, ``--json`` and an ``.ics`` file; a feed
URL that works without credentials until revoked; the documented exit codes (2 bad input,
3 not allowed, 4 no such thing, 7 conflict), each a one-line error. The syntax of times
(``userclient.moments``) and windows (``cli_calendar.parse_window_spec``) is tested
directly."""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
import requests

from cloudqueue.errors import BadRequest
from tests.client.test_admin_cli import ok, run, write_config
from tests.client.test_team_cli import refused
from tests.conftest import QueueService, start_queue_service
from userclient.cli_calendar import parse_window_spec
from userclient.moments import iso_moment, parse_moment

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("now", NOW), ("now+2h", NOW + timedelta(hours=2)), ("NOW-30m", NOW - timedelta(minutes=30)),
    ("now+1d12h", NOW + timedelta(days=1, hours=12)), ("now+1w", NOW + timedelta(weeks=1)),
    ("2026-12-01T18:00Z", datetime(2026, 12, 1, 18, tzinfo=timezone.utc)),
    ("2026-12-01T19:00:00+01:00", datetime(2026, 12, 1, 18, tzinfo=timezone.utc))])
def test_times_are_iso_with_an_offset_or_relative_to_now(text, expected):
    assert parse_moment(text, NOW) == expected


@pytest.mark.parametrize("text, words", [
    ("2026-12-01T18:00", "has no offset"), ("tomorrow", "now+2h"), ("now+2x", "now+2h"),
    ("now+999999w", "further from now")])
def test_a_time_the_cli_cannot_read_says_what_to_write(text, words):
    with pytest.raises(BadRequest, match=re.escape(words)):
        parse_moment(text, NOW)


def test_a_moment_goes_on_the_wire_in_utc():
    assert iso_moment(datetime(2026, 12, 1, 19, tzinfo=timezone(timedelta(hours=1)))) == \
        "2026-12-01T18:00:00Z"
    with pytest.raises(BadRequest, match="no timezone"):
        iso_moment(datetime(2026, 12, 1, 19))


def rules(*triples: tuple[str, str, str]) -> list[dict]:
    return [{"Day": d, "Start": s, "End": e} for d, s, e in triples]


@pytest.mark.parametrize("spec, expected", [
    ("Mon-Fri 18:00-24:00", rules(*[(d, "18:00", "24:00")
                                    for d in ("Mon", "Tue", "Wed", "Thu", "Fri")])),
    ("Sat,Sun 00:00-24:00", rules(("Sat", "00:00", "24:00"), ("Sun", "00:00", "24:00"))),
    ("Fri-Mon 9:00-17:30", rules(("Mon", "09:00", "17:30"), ("Fri", "09:00", "17:30"),
                                 ("Sat", "09:00", "17:30"), ("Sun", "09:00", "17:30"))),
    ("sunday 22:00-06:00", rules(("Sun", "22:00", "24:00"), ("Mon", "00:00", "06:00"))),
    ("daily 00:00-24:00", rules(*[(d, "00:00", "24:00")
                                  for d in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")]))])
def test_window_specs_become_weekly_rules_crossing_midnight_as_two(spec, expected):
    assert parse_window_spec(spec) == expected


@pytest.mark.parametrize("spec, words", [
    ("Mon 18-24", "not a window"), ("Someday 10:00-11:00", "not a day"),
    ("Mon 10:00-10:00", "is empty"), ("Mon 10:00-25:00", "00:00 .. 24:00"),
    ("Mon 10:61-11:00", "00:00 .. 24:00")])
def test_a_bad_window_spec_says_what_to_write(spec, words):
    with pytest.raises(BadRequest, match=words):
        parse_window_spec(spec)


# -- against the service --------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    started = start_queue_service(Path(tmp_path_factory.mktemp("calendar-cli")))
    yield started
    started.stop()


@pytest.fixture
def lab(service: QueueService, tmp_path: Path) -> dict:
    """The admin's config, a scheduler (pi) of a team, an outsider, and a device."""
    admin = write_config(tmp_path / "admin.conf", service, service.admin_key)
    people = {"admin": admin}
    for who in ("pi", "outsider"):
        email = f"{who}-{uuid.uuid4().hex[:8]}@lab.test"
        made = json.loads(ok(run(admin, "--json", "add-user", email, "--name", who)).stdout)
        people[who] = write_config(tmp_path / f"{who}.conf", service, made["ApiKey"])
        people[who + "_email"] = email
    people["team"] = f"qubits-{uuid.uuid4().hex[:6]}"
    ok(run(admin, "team", "create", people["team"], "--scheduler", people["pi_email"]))
    device = json.loads(ok(run(admin, "--json", "add-device", "fridge-1")).stdout)
    people["device"] = device["DeviceId"]
    return people


def test_a_scheduler_reserves_lists_and_cancels_a_slot(lab):
    pi, device, team = lab["pi"], lab["device"], lab["team"]
    made = ok(run(pi, "reserve", device, "--start", "now+2h", "--end", "now+3h", "--team", team,
                  "--note", "T1 sweep"))
    assert f"timeslot of team {team}" in made.stdout and device in made.stdout
    slot = json.loads(ok(run(pi, "--json", "reservations", "--device", device)).stdout)
    assert [(s["Team"], s["Note"]) for s in slot] == [(team, "T1 sweep")]
    listed = ok(run(pi, "reservations")).stdout
    assert slot[0]["Id"] in listed and "T1 sweep" in listed
    assert "no timeslots" in ok(run(lab["outsider"], "reservations")).stdout

    refused(run(pi, "reserve", device, "--start", "now+150m", "--end", "now+4h", "--team",
                team), 7, "overlaps")
    refused(run(lab["outsider"], "reserve", device, "--start", "now+5h", "--end", "now+6h",
                "--team", team), 4, "no team")
    refused(run(pi, "reserve", device, "--start", "2026-12-01T18:00", "--end", "now+6h",
                "--team", team), 2, "has no offset")
    refused(run(pi, "reserve", device, "--start", "now-2h", "--end", "now+1h", "--team",
                team), 2, "in the past")

    gone = ok(run(pi, "reservations", "--cancel", slot[0]["Id"]))
    assert f"cancelled timeslot of team {team} {slot[0]['Id']}" in gone.stdout
    refused(run(pi, "reservations", "--cancel", slot[0]["Id"]), 7, "cancelled")


def test_an_admin_books_maintenance_force_clears_the_way(lab):
    admin, pi, device, team = lab["admin"], lab["pi"], lab["device"], lab["team"]
    slot = json.loads(ok(run(pi, "--json", "reserve", device, "--start", "now+1d",
                             "--end", "now+1d1h", "--team", team)).stdout)
    args = ["maintenance", device, "--start", "now+23h", "--end", "now+1d2h", "--reason",
            "cryostat warm-up"]
    refused(run(pi, *args), 3, "only an admin")
    refused(run(admin, *args), 7, "--force")
    forced = ok(run(admin, *args, "--force")).stdout
    assert "maintenance (cryostat warm-up)" in forced and f"cancelled timeslot of team {team} " \
        f"{slot['Id']}" in forced
    listed = json.loads(ok(run(pi, "--json", "maintenance", device)).stdout)
    assert [m["Reason"] for m in listed] == ["cryostat warm-up"]
    refused(run(admin, "maintenance", device, "--start", "now+1h"), 2, "--reason")
    ended = ok(run(admin, "maintenance", "--cancel", listed[0]["Id"])).stdout
    assert "cancelled maintenance" in ended
    refused(run(admin, "maintenance", "--cancel", str(uuid.uuid4())), 4, "no maintenance")


def test_windows_are_set_shown_and_cleared(lab):
    admin, device = lab["admin"], lab["device"]
    assert "always open" in ok(run(lab["pi"], "windows", device)).stdout
    refused(run(lab["pi"], "windows", device, "--set", "Mon-Fri 18:00-24:00"), 3,
            "only an admin")
    refused(run(admin, "windows", device, "--set", "Mon 18-24"), 2, "not a window")
    shown = ok(run(admin, "windows", device, "--set", "Mon-Fri 18:00-24:00", "--set",
                   "Sat 22:00-06:00")).stdout
    assert "Mon 18:00-24:00" in shown and "Sat 22:00-24:00, Sun 00:00-06:00" in shown
    as_json = json.loads(ok(run(lab["outsider"], "--json", "windows", device)).stdout)
    assert len(as_json["Windows"]) == 7 and as_json["AlwaysOpen"] is False
    assert "always open" in ok(run(admin, "windows", device, "--clear")).stdout


def test_the_calendar_as_a_table_json_an_ics_file_and_a_feed_url(lab, tmp_path: Path):
    pi, device, team = lab["pi"], lab["device"], lab["team"]
    slot = json.loads(ok(run(pi, "--json", "reserve", device, "--start", "now+1h",
                             "--end", "now+2h", "--team", team, "--note", "ours")).stdout)
    shown = ok(run(pi, "calendar", device)).stdout
    assert "always open" in shown and slot["Id"] in shown and "ours" in shown
    theirs = ok(run(lab["outsider"], "calendar", device)).stdout
    assert "reserved (another team)" in theirs and slot["Id"] not in theirs
    as_json = json.loads(ok(run(pi, "--json", "calendar", device, "--from", "now",
                                "--to", "now+1d")).stdout)
    assert [r["Id"] for r in as_json["Reservations"]] == [slot["Id"]]
    refused(run(pi, "calendar", device, "--from", "now", "--to", "now+100d"), 2,
            "at most 92 days")
    refused(run(pi, "calendar", "no-such-device"), 4, "no device")

    out = tmp_path / "fridge.ics"
    ok(run(pi, "calendar", device, "--ics", str(out)))
    raw = out.read_bytes()
    assert raw.startswith(b"BEGIN:VCALENDAR\r\n") and raw.endswith(b"END:VCALENDAR\r\n")
    assert f"UID:{slot['Id']}@qick-queue".encode() in raw

    url = json.loads(ok(run(pi, "--json", "calendar", device, "--feed")).stdout)["FeedUrl"]
    feed = requests.get(url, timeout=30)  # no credentials: the token in the URL
    assert feed.status_code == 200 and f"UID:{slot['Id']}@qick-queue" in feed.text
    assert "revoked" in ok(run(pi, "calendar", device, "--revoke-feed")).stdout
    assert requests.get(url, timeout=30).status_code == 403


def test_a_stock_service_answers_not_supported(queue_service_factory, tmp_path: Path):
    stock = queue_service_factory(stock_protocol=True)
    admin = write_config(tmp_path / "admin.conf", stock, stock.admin_key)
    for args in (["reserve", "d", "--start", "now+1h", "--end", "now+2h", "--team", "t"],
                 ["reservations"], ["maintenance", "d"], ["windows", "d"], ["calendar", "d"],
                 ["calendar", "d", "--ics", str(tmp_path / "c.ics")]):
        refused(run(admin, *args), 6, "stock Cloud Queue")
