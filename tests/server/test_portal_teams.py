"""The portal's "Teams and credits" section over real HTTP (docs/portal.md, slice 5a), on
both database engines (``world``): my teams with my role and balance; a team's page with its
balance, its ledger (newest first, paged), usage per user and per device, booking a
timeslot (paid, exclusive, refused with the reason), cancelling one (refunded), the 7-day
calendar (another team's slot only "reserved"), credit requests; a plain member offered
nothing a member may not do and refused server-side; a stranger's team a 404; CSRF on each
form; whatever a user typed shown as text."""
from __future__ import annotations

import html
import re
import uuid
from datetime import datetime, timezone

import pytest
import requests

from cloudqueue.errors import BadRequest
from queueservice.bookings import DAY_MS, CalendarView
from queueservice.db import Database
from queueservice.portal.teams import other_month, calendar_days, form_instant, month_span
from tests.server.api import Api, World, email_of, grant, new_team
from tests.server.portal import Browser, csrf_of, logged_in

HOUR = 3600 * 1000
SCRIPT = "<script>alert(1)</script>"
#: a team name cannot hold "/", so no closing tag: an element with a handler instead
IMG = "<img src=x onerror=alert(1)>"


def hours_from_now(hours: float) -> int:
    """A whole minute ``hours`` from now (ms)."""
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    return (now + int(hours * HOUR)) // 60_000 * 60_000


def local(ms: int) -> str:
    """What a ``datetime-local`` input sends for ``ms`` (the form takes it as UTC)."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M")


def section(page: requests.Response, name: str) -> str:
    """The text of the page's ``<section>`` headed ``id=name``."""
    match = re.search(rf'<h2 id="{name}">.*?</section>', page.text, re.S)
    assert match, f"no section {name}: {page.text[:500]}"
    return match.group(0)


def ledger_ids(page: requests.Response) -> list[int]:
    return [int(n) for n in re.findall(r"<tr>\s*<td>(\d+)</td>", section(page, "ledger"))]


def older_link(page: requests.Response) -> str | None:
    match = re.search(r'<a href="([^"]+)">Older lines</a>', page.text)
    return None if match is None else html.unescape(match.group(1))


def cancel_paths(page: requests.Response) -> list[str]:
    return re.findall(r'action="(/portal/teams/[^"]+/cancel)"', page.text)


@pytest.fixture
def lab(world: World) -> dict:
    """A device; a team with a scheduler (pi) and a plain user (student); a rival team with
    its own scheduler (rival); an outsider. Each person logged in (``pi``: the browser),
    with their API client (``pi_api``)."""
    people: dict = {}
    for who in ("pi", "student", "rival", "outsider"):
        people[who], people[who + "_person"] = logged_in(world)
        people[who + "_api"] = Api(world.service.url, people[who + "_person"]["api_key"])
    team = new_team(world, scheduler=people["pi_person"]["id"])
    added = world.admin.post(f"/teams/{team['TeamId']}/members",
                             json={"User": people["student_person"]["email"], "Role": "user"})
    assert added.status_code == 201, added.text
    rival = new_team(world, scheduler=people["rival_person"]["id"])
    device = world.device(name="qick-board").id
    return {**people, "team": team["TeamId"], "name": team["Name"], "rival_team":
            rival["TeamId"], "rival_name": rival["Name"], "device": device,
            "page": f"/portal/teams/{team['TeamId']}"}


@pytest.fixture
def accounting(world: World, lab: dict, accounting_off_after: Database) -> None:
    """Accounting on (an admin sets the device's prices: 2 credits per reserved second),
    off again after the test (the switch is the service's own setting)."""
    resp = world.admin.put(f"/devices/{lab['device']}/prices",
                           json={"PerUsedSecond": 1, "PerReservedSecond": 2})
    assert resp.status_code == 200, resp.text


def book(browser: Browser, lab: dict, start: int, end: int, team_page: str | None = None,
         **extra: str) -> requests.Response:
    page = team_page or lab["page"]
    return browser.submit(page, f"{page}/reservations",
                          {"device": lab["device"], "start": local(start), "end": local(end),
                           **extra})


def balance_of(world: World, team_id: str) -> float:
    return world.admin.get(f"/teams/{team_id}/balance").json()["BalanceSeconds"]


def reservations_of(api: Api, device: str) -> list[dict]:
    resp = api.get("/reservations", params={"Device": device})
    assert resp.status_code == 200, resp.text
    return resp.json()


# -- pages -------------------------------------------------------------------------------
def test_pages_without_a_session_lead_to_the_login_page(world: World, lab: dict):
    browser = Browser(world.service.root)
    for path in ("/portal/teams", lab["page"], lab["page"] + "/usage"):
        resp = browser.get(path)
        assert resp.status_code == 303 and resp.headers["location"] == "/login"
    for path in ("/reservations", "/credit-requests"):
        resp = browser.post(lab["page"] + path, {"csrf": "x"})
        assert resp.status_code == 303 and resp.headers["location"] == "/login"


def test_my_teams_show_my_role_and_the_balance_to_schedulers_only(world: World, lab: dict):
    grant(world, lab["team"], 1500)
    page = lab["pi"].get("/portal/teams")
    assert page.status_code == 200 and "<h1>Teams and credits</h1>" in page.text
    row = re.search(rf"<tr>\s*<td><a href=\"{lab['page']}\">{lab['name']}</a></td>.*?</tr>",
                    page.text, re.S)
    assert row, page.text
    assert "<td>scheduler</td>" in row.group(0)
    assert "1500 device-seconds" in row.group(0)  # as `userclient credits balance` shows it
    assert lab["rival_name"] not in page.text  # not a team of theirs

    student = lab["student"].get("/portal/teams")
    row = re.search(rf"{lab['name']}</a></td>.*?</tr>", student.text, re.S).group(0)
    assert "<td>user</td>" in row and "only its schedulers see it" in row
    assert "1500" not in student.text

    assert "You are in no team" in lab["outsider"].get("/portal/teams").text


def test_the_team_page_shows_the_balance_and_the_ledger_newest_first_in_pages_of_50(
        world: World, lab: dict):
    for n in range(1, 56):
        grant(world, lab["team"], 10, note=f"grant-{n:02d}")
    page = lab["pi"].get(lab["page"])
    assert page.status_code == 200
    assert "550 device-seconds" in page.text and "55 ledger lines" in page.text
    first = ledger_ids(page)
    assert len(first) == 50 and first == sorted(first, reverse=True)
    ledger = section(page, "ledger")
    assert "grant-55" in ledger and "grant-05" not in ledger
    assert "+10.000" in ledger and "550.000" in ledger  # amount, balance after
    granter = lab["pi_api"].get(f"/teams/{lab['team']}/ledger").json()["Lines"][-1]["UserId"]
    assert email_of(world, granter) in ledger  # who
    link = older_link(page)
    assert link is not None and "Newest lines" not in page.text
    second = lab["pi"].get(link)
    rest = ledger_ids(second)
    assert len(rest) == 5 and max(rest) < min(first)
    assert "grant-01" in section(second, "ledger") and older_link(second) is None
    assert "Newest lines" in second.text
    bad = lab["pi"].get(lab["page"] + "?before=abc")
    assert bad.status_code == 400 and "before must be a ledger line" in bad.text


def test_an_admin_sees_any_teams_page_with_its_ledger(world: World, lab: dict):
    grant(world, lab["team"], 42, note="for the admin")
    email = f"staff-{uuid.uuid4().hex[:10]}@lab.test"
    made = world.admin.post("/users", json={"Email": email, "FullName": "Staff",
                                            "Groups": ["Admin"]})
    assert made.status_code == 200, made.text
    admin = Browser(world.service.root)
    assert admin.first_login(email, made.json()["TemporaryPassword"]).status_code == 303
    page = admin.get(lab["page"])
    assert page.status_code == 200 and "for the admin" in section(page, "ledger")
    assert "<dd>admin</dd>" in page.text
    assert "Request credits" not in page.text  # an admin grants; only schedulers ask


# -- timeslots -----------------------------------------------------------------------------
def test_booking_a_timeslot_pays_for_it_and_shows_its_cost(world: World, lab: dict,
                                                            accounting: None):
    grant(world, lab["team"], 10_000)
    start, end = hours_from_now(2), hours_from_now(3)
    resp = book(lab["pi"], lab, start, end)
    assert resp.status_code == 303, resp.text[:2000]
    assert resp.headers["location"].startswith(lab["page"] + "?booked=")
    page = lab["pi"].get(resp.headers["location"])
    assert "it cost 7200 device-seconds" in page.text  # 3600 s x 2 per reserved second
    assert "2800 device-seconds" in page.text  # the balance after
    (slot,) = reservations_of(lab["pi_api"], lab["device"])
    assert (slot["Cost"], slot["TeamId"]) == (7200, lab["team"])
    assert "reservation" in section(page, "ledger") and "-7200.000" in section(page, "ledger")
    timeslots = section(page, "timeslots")
    assert "7200 device-seconds" in timeslots and "BOOKED" in timeslots
    assert len(cancel_paths(page)) == 1
    assert f"Timeslot: team {lab['name']}" in section(page, "calendar")
    assert f'href="{lab["page"]}/usage"' in section(page, "usage")


def test_usage_per_user_and_per_device_as_credits_usage_reports_it(world: World, lab: dict,
                                                                    accounting: None):
    grant(world, lab["team"], 10_000)
    assert book(lab["pi"], lab, hours_from_now(2), hours_from_now(3)).status_code == 303
    page = lab["pi"].get(lab["page"] + "/usage")
    assert page.status_code == 200
    per_user, per_device = section(page, "usage-user"), section(page, "usage-device")
    assert lab["pi_person"]["email"] in per_user and "7200.000" in per_user
    assert "qick-board" in per_device and "7200.000" in per_device
    report = lab["pi_api"].get("/usage", params={"By": "device", "Team": lab["team"]}).json()
    assert report["Total"]["Reservations"] == 7200  # the same numbers as the API's
    # a plain member sees only their own usage: none
    student = lab["student"].get(lab["page"] + "/usage")
    assert student.status_code == 200 and "Your own usage only" in student.text
    assert lab["pi_person"]["email"] not in section(student, "usage-user")
    assert "No usage." in section(student, "usage-device")
    # another month, a bad month, a stranger
    month = re.search(r'href="[^"]+/usage\?month=(\d{4}-\d{2})">Previous month', page.text)
    earlier = lab["pi"].get(lab["page"] + f"/usage?month={month.group(1)}")
    assert earlier.status_code == 200 and "No usage." in section(earlier, "usage-user")
    bad = lab["pi"].get(lab["page"] + "/usage?month=2026-13")
    assert bad.status_code == 400 and "month must be YYYY-MM" in bad.text
    assert lab["outsider"].get(lab["page"] + "/usage").status_code == 404


def test_an_overlapping_booking_is_refused_with_the_reason_and_others_see_reserved(
        world: World, lab: dict):
    start, end = hours_from_now(4), hours_from_now(6)
    made = book(lab["pi"], lab, start, end)
    assert made.status_code == 303
    assert "free (accounting is off)" in lab["pi"].get(made.headers["location"]).text
    rival_page = f"/portal/teams/{lab['rival_team']}"
    resp = book(lab["rival"], lab, start + HOUR, end + HOUR, team_page=rival_page)
    assert resp.status_code == 409
    assert "it overlaps" in resp.text and "the device is reserved" in resp.text
    assert lab["name"] not in resp.text  # another team's slot, only as reserved
    assert f'value="{local(start + HOUR)}"' in resp.text  # the form keeps what was typed
    assert reservations_of(lab["rival_api"], lab["device"]) == []
    calendar = section(lab["rival"].get(rival_page + f"?device={lab['device']}"), "calendar")
    assert "Reserved (another team)" in calendar and lab["name"] not in calendar
    # maintenance shows to everyone, with its reason
    start_m = hours_from_now(30)
    made = world.admin.post("/maintenance", json={
        "Device": lab["device"], "Start": local(start_m) + ":00Z",
        "End": local(start_m + HOUR) + ":00Z", "Reason": "fridge warm-up"})
    assert made.status_code == 201, made.text
    calendar = section(lab["rival"].get(rival_page + f"?device={lab['device']}"), "calendar")
    assert "Maintenance: fridge warm-up" in calendar


@pytest.mark.parametrize("start,end,message", [
    ("", "2030-01-01T10:00", "Start (UTC) is empty"),
    ("tomorrow", "2030-01-01T10:00", "Start (UTC) must be a date and time"),
    ("2030-01-01T10:00", "2030-13-01T10:00", "End (UTC) must be a date and time"),
    ("2030-01-01T10:00", "2030-01-01T09:00", "must be after Start"),
    ("2020-01-01T10:00", "2020-01-01T11:00", "is in the past"),
])
def test_bad_times_are_refused_with_what_to_type(world: World, lab: dict, start: str,
                                                 end: str, message: str):
    resp = lab["pi"].submit(lab["page"], lab["page"] + "/reservations",
                            {"device": lab["device"], "start": start, "end": end})
    assert resp.status_code == 400 and message in resp.text, resp.text[:3000]
    assert "Traceback" not in resp.text
    assert reservations_of(lab["pi_api"], lab["device"]) == []


def test_cancelling_a_timeslot_refunds_it_in_full(world: World, lab: dict,
                                                  accounting: None):
    grant(world, lab["team"], 10_000)
    assert book(lab["pi"], lab, hours_from_now(8), hours_from_now(9)).status_code == 303
    assert balance_of(world, lab["team"]) == 2800
    page = lab["pi"].get(lab["page"])
    (path,) = cancel_paths(page)
    resp = lab["pi"].post(path, {"csrf": csrf_of(page)})
    assert resp.status_code == 303 and "cancelled=" in resp.headers["location"]
    after = lab["pi"].get(resp.headers["location"])
    assert "cancelled: 7200 device-seconds refunded" in after.text
    assert balance_of(world, lab["team"]) == 10_000
    assert "reservation_refund" in section(after, "ledger")
    assert reservations_of(lab["pi_api"], lab["device"]) == []
    assert cancel_paths(after) == []
    again = lab["pi"].post(path, {"csrf": csrf_of(page)})  # the API's refusal, as a page
    assert again.status_code == 409 and "cancelled at" in again.text


# -- a plain member, a stranger ------------------------------------------------------------
def test_a_plain_member_is_offered_nothing_they_may_not_do_and_refused_anyway(
        world: World, lab: dict):
    grant(world, lab["team"], 500)
    assert book(lab["pi"], lab, hours_from_now(10), hours_from_now(11)).status_code == 303
    pi_page = lab["pi"].get(lab["page"])
    (cancel,) = cancel_paths(pi_page)
    page = lab["student"].get(lab["page"])
    assert page.status_code == 200
    assert "BOOKED" in section(page, "timeslots")  # a member sees the team's timeslots
    for hidden in ("Book timeslot", "Cancel reservation", "Request credits", "500 device"):
        assert hidden not in page.text, hidden
    assert "Only the team's schedulers see its ledger" in page.text
    token = csrf_of(page)
    booked = lab["student"].post(lab["page"] + "/reservations", {
        "device": lab["device"], "start": local(hours_from_now(20)),
        "end": local(hours_from_now(21)), "csrf": token})
    assert booked.status_code == 403 and "only a scheduler" in booked.text
    cancelled = lab["student"].post(cancel, {"csrf": token})
    assert cancelled.status_code == 403 and "only a scheduler" in cancelled.text
    asked = lab["student"].post(lab["page"] + "/credit-requests", {
        "seconds": "100", "justification": "more please", "csrf": token})
    assert asked.status_code == 403 and "only a scheduler" in asked.text
    assert len(reservations_of(lab["pi_api"], lab["device"])) == 1
    assert world.admin.get("/credits/requests", params={"Team": lab["team"]}).json() == []


def test_a_stranger_gets_a_not_found_page_and_changes_nothing(world: World, lab: dict):
    assert book(lab["pi"], lab, hours_from_now(12), hours_from_now(13)).status_code == 303
    (cancel,) = cancel_paths(lab["pi"].get(lab["page"]))
    outsider = lab["outsider"]
    page = outsider.get(lab["page"])
    assert page.status_code == 404 and "Not found" in page.text
    assert lab["name"] not in page.text
    missing = outsider.get("/portal/teams/no-such-team")
    assert missing.status_code == 404 and "Not found" in missing.text
    token = csrf_of(outsider.get("/portal/teams"))
    for path, data in ((lab["page"] + "/reservations", {
            "device": lab["device"], "start": local(hours_from_now(20)),
            "end": local(hours_from_now(21))}), (cancel, {}),
            (lab["page"] + "/credit-requests", {"seconds": "5", "justification": "x"})):
        resp = outsider.post(path, {**data, "csrf": token})
        assert resp.status_code == 404 and lab["name"] not in resp.text, path
    assert len(reservations_of(lab["pi_api"], lab["device"])) == 1
    assert world.admin.get("/credits/requests", params={"Team": lab["team"]}).json() == []


# -- credit requests -------------------------------------------------------------------------
def test_a_scheduler_requests_credits_and_sees_the_request_pending(world: World, lab: dict):
    resp = lab["pi"].submit(lab["page"], lab["page"] + "/credit-requests",
                            {"seconds": "3600", "justification": "T1 sweeps for the paper"})
    assert resp.status_code == 303 and "requested=" in resp.headers["location"]
    page = lab["pi"].get(resp.headers["location"])
    assert "Credit request for 3600 device-seconds sent" in page.text
    credits = section(page, "credits")
    assert "PENDING" in credits and "T1 sweeps for the paper" in credits
    (listed,) = world.admin.get("/credits/requests", params={"Team": lab["team"]}).json()
    assert (listed["Seconds"], listed["State"], listed["Email"]) == \
        (3600, "pending", lab["pi_person"]["email"])
    approved = world.admin.post(f"/credits/requests/{listed['RequestId']}/approve", json={})
    assert approved.status_code == 200, approved.text
    credits = section(lab["pi"].get(lab["page"]), "credits")
    assert "APPROVED" in credits and "3600 device-seconds" not in credits


@pytest.mark.parametrize("seconds,justification,message", [
    ("", "why", "Device-seconds must be a number above 0"),
    ("-5", "why", "Device-seconds must be a number above 0"),
    ("lots", "why", "Device-seconds must be a number above 0"),
    ("1e12", "why", "at most"),
    ("100", "   ", "Justification is empty"),
])
def test_a_bad_credit_request_is_refused_with_why(world: World, lab: dict, seconds: str,
                                                  justification: str, message: str):
    resp = lab["pi"].submit(lab["page"], lab["page"] + "/credit-requests",
                            {"seconds": seconds, "justification": justification})
    assert resp.status_code == 400 and message in resp.text, resp.text[:3000]
    assert world.admin.get("/credits/requests", params={"Team": lab["team"]}).json() == []


# -- CSRF and escaping ---------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_each_form_needs_the_right_csrf_token(world: World, lab: dict, token: str | None):
    assert book(lab["pi"], lab, hours_from_now(14), hours_from_now(15)).status_code == 303
    (cancel,) = cancel_paths(lab["pi"].get(lab["page"]))
    csrf = {} if token is None else {"csrf": token}
    for path, data in ((lab["page"] + "/reservations", {
            "device": lab["device"], "start": local(hours_from_now(20)),
            "end": local(hours_from_now(21))}), (cancel, {}),
            (lab["page"] + "/credit-requests", {"seconds": "5", "justification": "x"})):
        resp = lab["pi"].post(path, {**data, **csrf})
        assert resp.status_code == 403 and "reload the page" in resp.text, path
    assert len(reservations_of(lab["pi_api"], lab["device"])) == 1  # none made, none cancelled
    assert world.admin.get("/credits/requests", params={"Team": lab["team"]}).json() == []


def test_another_users_csrf_token_is_refused(world: World, lab: dict):
    resp = lab["pi"].post(lab["page"] + "/credit-requests", {
        "seconds": "5", "justification": "x", "csrf": csrf_of(lab["rival"].get("/"))})
    assert resp.status_code == 403
    assert world.admin.get("/credits/requests", params={"Team": lab["team"]}).json() == []


def test_a_team_name_a_justification_and_an_error_are_shown_as_text(world: World):
    browser, person = logged_in(world)
    made = world.admin.post("/teams", json={"Name": IMG, "Scheduler": person["id"]})
    assert made.status_code == 201, made.text
    path = f"/portal/teams/{made.json()['TeamId']}"
    escaped_img = html.escape(IMG, quote=False)
    listed = browser.get("/portal/teams")
    assert IMG not in listed.text and escaped_img in listed.text
    assert browser.submit(path, path + "/credit-requests",
                          {"seconds": "60", "justification": SCRIPT}).status_code == 303
    page = browser.get(path)
    assert IMG not in page.text and SCRIPT not in page.text
    assert escaped_img in page.text and html.escape(SCRIPT, quote=False) in page.text
    refused = browser.submit(path, path + "/reservations", {
        "device": SCRIPT, "start": local(hours_from_now(2)), "end": local(hours_from_now(3))})
    assert refused.status_code == 404 and "no device" in refused.text
    assert SCRIPT not in refused.text and html.escape(SCRIPT, quote=False) in refused.text


# -- the pure parts --------------------------------------------------------------------------
def test_a_datetime_local_value_is_taken_as_utc():
    assert form_instant("2026-12-01T18:00", "Start (UTC)") == \
        int(datetime(2026, 12, 1, 18, tzinfo=timezone.utc).timestamp() * 1000)
    assert form_instant(" 2026-12-01T18:00:30 ", "End (UTC)") % 60_000 == 30_000
    for text in ("2026-12-01T18:00Z", "2026-12-01", "18:00", "2026-02-30T10:00"):
        with pytest.raises(BadRequest, match="must be a date and time"):
            form_instant(text, "Start (UTC)")


def test_months_roll_over_the_year():
    assert month_span("2026-12") == (
        int(datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp() * 1000),
        int(datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp() * 1000))
    assert other_month("2026-12", 1) == "2027-01"
    assert other_month("2027-01", -1) == "2026-12"
    with pytest.raises(BadRequest, match="YYYY-MM"):
        month_span("2026-1")


def test_the_calendar_splits_a_booking_across_midnight_into_its_days():
    day = int(datetime(2026, 12, 7, tzinfo=timezone.utc).timestamp() * 1000)  # a Monday
    late = {"kind": "reservation", "booking_id": "b1", "team_name": "qubits",
            "start_at": day + 22 * HOUR, "end_at": day + 26 * HOUR}
    other = {"kind": "reserved", "start_at": day + 30 * HOUR, "end_at": day + 31 * HOUR}
    cal = CalendarView({"device_id": "d", "name": "board"}, day, day + 3 * DAY_MS,
                       ((day + 18 * HOUR, day + 24 * HOUR),), [late, other], [])
    days = calendar_days(cal)["days"]
    assert [d["label"] for d in days] == ["Mon 2026-12-07", "Tue 2026-12-08",
                                          "Wed 2026-12-09"]
    assert [(b["begin"], b["until"], b["what"]) for b in days[0]["bookings"]] == \
        [("22:00", "24:00", "Timeslot: team qubits")]
    assert [(b["begin"], b["until"], b["what"]) for b in days[1]["bookings"]] == \
        [("00:00", "02:00", "Timeslot: team qubits"),
         ("06:00", "07:00", "Reserved (another team)")]
    assert (days[0]["windows"], days[1]["windows"]) == (["18:00-24:00"], [])
    assert days[2]["bookings"] == []
