"""The portal's admin pages over real HTTP (docs/portal.md, slice 5b): users, devices and
their one-time files, teams and credits, prices, maintenance. Admins only: anyone else is
told the page was not found. Each test runs on both database engines (``world``)."""
from __future__ import annotations

import configparser
import html
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from queueservice.db import Database
from queueservice.portal.admin_downloads import (CREDENTIALS, LIFETIME_MS, SETTINGS,
                                                 DownloadStore)
from tests.server.api import Api, World, device_token, email_of, new_team
from tests.server.portal import NEW_PASSWORD, Browser, csrf_of, logged_in, new_person

SCRIPT = "<script>alert(1)</script>"
ESCAPED = html.escape(SCRIPT)
PAGES = ("/portal/admin", "/portal/admin/users", "/portal/admin/devices",
         "/portal/admin/teams", "/portal/admin/prices", "/portal/admin/maintenance")
DOWNLOAD = re.compile(r'href="(/portal/admin/downloads/[^"]+)">Download (credentials|settings)<')
SECRET = re.compile(r'<code class="secret" id="([\w-]+)">([^<]+)</code>')


@pytest.fixture
def admin(world: World) -> Browser:
    return logged_in(world, "Admin", admin=True)[0]


def users(world: World) -> dict[str, dict]:
    return {u["Email"]: u for u in world.admin.get("/users").json()}


def downloads(page: requests.Response) -> dict[str, str]:
    """{"credentials"|"settings": the link} of a page offering a device's files."""
    return {what: path for path, what in DOWNLOAD.findall(page.text)}


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def add_device(admin: Browser, name: str, **extra: str) -> requests.Response:
    resp = admin.submit("/portal/admin/devices", "/portal/admin/devices",
                        {"name": name, "refresh_timeout": "60", **extra})
    assert resp.status_code == 200, resp.text[:800]
    return resp


def device_id_of(page: requests.Response) -> str:
    match = re.search(r'<code id="new-device-id">([^<]+)</code>', page.text)
    assert match, page.text[:800]
    return match.group(1)


def shown(page: requests.Response) -> str:
    """The page's text as a reader sees it (entities such as &#39; decoded)."""
    return html.unescape(page.text)


def utc_field(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


# -- admins only -----------------------------------------------------------------------
def test_each_admin_page_opens_for_an_admin_with_its_forms(world: World, admin: Browser):
    add_device(admin, "page-board")  # the prices and maintenance forms need a device
    team = new_team(world)
    expected = {"/portal/admin": ["<h1>Admin</h1>", 'href="/portal/admin/users"'],
                "/portal/admin/users": ['<label for="email">E-mail</label>',
                                        '<label for="full_name">Full name</label>',
                                        '<label for="admin">Admin</label>', ">Add user<"],
                "/portal/admin/devices": ["<label for=\"name\">Device name</label>",
                                          '<label for="simulated">Simulated</label>',
                                          ">Add device<", ">Rotate secret<"],
                "/portal/admin/teams": [">Team name</label>", ">E-mail</label>",
                                        ">Role</label>", ">Team</label>",
                                        ">Device-seconds</label>", ">Reason</label>",
                                        ">Grant credits<", html.escape(team["Name"])],
                "/portal/admin/prices": [">Per used second</label>",
                                         ">Per reserved second</label>", ">Set prices<"],
                "/portal/admin/maintenance": [">Device</label>", ">Start (UTC)</label>",
                                              ">End (UTC)</label>", ">Reason</label>",
                                              ">Cancel reservations in the way</label>",
                                              ">Book maintenance<"]}
    for path, parts in expected.items():
        resp = admin.get(path)
        assert resp.status_code == 200, (path, resp.text[:500])
        assert resp.headers["cache-control"] == "no-store"
        for part in parts:
            assert part in resp.text, (path, part)
    assert 'href="/portal/admin"' in admin.get("/").text  # the navigation links it


def test_a_user_is_told_every_admin_page_and_post_is_not_found(world: World, admin: Browser):
    browser, person = logged_in(world)
    home = browser.get("/")
    assert 'href="/portal/admin"' not in home.text
    for path in PAGES:
        resp = browser.get(path)
        assert resp.status_code == 404 and "Not found" in resp.text, path
    token = csrf_of(home)
    target = users(world)[person["email"]]["UserId"]
    posts = {"/portal/admin/users": {"email": "x@lab.test"},
             f"/portal/admin/users/{target}/disable": {},
             "/portal/admin/devices": {"name": "sneaky", "refresh_timeout": "60"},
             "/portal/admin/teams": {"name": "sneaky-team"},
             "/portal/admin/prices": {"device": "x", "per_used": "1", "per_reserved": "1"},
             "/portal/admin/maintenance": {"device": "x", "start": "2030-01-01T00:00",
                                           "end": "2030-01-01T01:00", "reason": "x"}}
    for path, data in posts.items():
        resp = browser.post(path, {**data, "csrf": token})
        assert resp.status_code == 404 and "Not found" in resp.text, path
    assert "x@lab.test" not in users(world)
    assert not users(world)[person["email"]]["Disabled"]
    assert "sneaky" not in {d["DeviceName"] for d in world.admin.get("/devices").json()}
    # an admin's download link is not found for a user either (and still works after)
    links = downloads(add_device(admin, "not-for-users"))
    assert browser.get(links[SETTINGS]).status_code == 404
    assert admin.get(links[SETTINGS]).status_code == 200


def test_without_a_session_the_admin_pages_lead_to_the_login_page(world: World):
    browser = Browser(world.service.root)
    for path in (*PAGES, "/portal/admin/downloads/whatever"):
        resp = browser.get(path)
        assert resp.status_code == 303 and resp.headers["location"] == "/login", path
    resp = browser.post("/portal/admin/users", {"email": "x@lab.test"})
    assert resp.headers["location"] == "/login"


# -- users -----------------------------------------------------------------------------
def test_add_user_shows_the_temporary_password_once_and_it_works(world: World,
                                                                 admin: Browser):
    email = f"n{uuid.uuid4().hex[:8]}@lab.test"
    resp = admin.submit("/portal/admin/users", "/portal/admin/users",
                        {"email": email, "full_name": "Nora New", "admin": "1"})
    assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"
    secrets = dict(SECRET.findall(resp.text))
    password, api_key = secrets["temporary-password"], secrets["new-api-key"]
    listed = users(world)[email]
    assert listed["FullName"] == "Nora New" and "Admin" in listed["Groups"]
    again = admin.get("/portal/admin/users")
    assert email in again.text and password not in again.text and api_key not in again.text
    assert 'class="secret"' not in again.text
    assert Api(world.service.url, api_key).get("/api-keys").status_code == 200
    newcomer = Browser(world.service.root)
    assert newcomer.first_login(email, password).headers["location"] == "/"
    assert newcomer.get("/portal/admin").status_code == 200  # the Admin box was ticked


@pytest.mark.parametrize("email, full_name, words", [
    ("not-an-address", "", "is not an e-mail address"),
    ("x@lab.test", "n" * 201, "Full name must be at most 200 characters"),
])
def test_add_user_refuses_bad_input_with_why(world: World, admin: Browser, email: str,
                                             full_name: str, words: str):
    resp = admin.submit("/portal/admin/users", "/portal/admin/users",
                        {"email": email, "full_name": full_name})
    assert resp.status_code == 400 and words in shown(resp)
    assert 'class="secret"' not in resp.text and email not in users(world)


def test_add_user_refuses_an_email_taken_already(world: World, admin: Browser):
    person = new_person(world)
    resp = admin.submit("/portal/admin/users", "/portal/admin/users",
                        {"email": person["email"], "full_name": "Twice"})
    assert resp.status_code == 409 and "already exists" in resp.text
    assert 'class="secret"' not in resp.text


def test_disable_and_enable_a_user_as_the_api_does(world: World, admin: Browser):
    browser, person = logged_in(world)
    user_id = users(world)[person["email"]]["UserId"]
    resp = admin.submit("/portal/admin/users", f"/portal/admin/users/{user_id}/disable", {})
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/admin/users"
    assert users(world)[person["email"]]["Disabled"]
    assert browser.get("/").headers["location"] == "/login"  # their session ends
    assert Api(world.service.url, person["api_key"]).get("/api-keys").status_code == 403
    row = re.search(rf"<td>{re.escape(person['email'])}</td>.*?</tr>",
                    admin.get("/portal/admin/users").text, re.S).group(0)
    assert "DISABLED" in row and ">Enable<" in row
    resp = admin.submit("/portal/admin/users", f"/portal/admin/users/{user_id}/enable", {})
    assert resp.status_code == 303 and not users(world)[person["email"]]["Disabled"]
    assert Api(world.service.url, person["api_key"]).get("/api-keys").status_code == 200


def test_a_reset_password_is_shown_once_and_ends_the_users_sessions(world: World,
                                                                   admin: Browser):
    browser, person = logged_in(world, full_name="<b>Pat</b>")
    user_id = users(world)[person["email"]]["UserId"]
    resp = admin.submit("/portal/admin/users", f"/portal/admin/users/{user_id}/reset-password",
                        {})
    assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"
    secrets = dict(SECRET.findall(resp.text))
    temporary = secrets["temporary-password"]
    assert "new-api-key" not in secrets  # a reset makes no key
    assert "&lt;b&gt;Pat&lt;/b&gt;" in resp.text and "<b>Pat</b>" not in resp.text
    assert temporary not in admin.get("/portal/admin/users").text  # shown once
    assert browser.get("/").headers["location"] == "/login"  # their session ended
    assert Browser(world.service.root).login(person["email"], NEW_PASSWORD).status_code == 400
    done = Browser(world.service.root).first_login(person["email"], temporary, "chosen-again-1")
    assert done.status_code == 303 and done.headers["location"] == "/"
    missing = admin.submit("/portal/admin/users", "/portal/admin/users/no-such-user/"
                           "reset-password", {})
    assert missing.status_code == 404 and "no-such-user" in missing.text


def test_an_admin_cannot_disable_themself_nor_an_unknown_user(world: World):
    admin, me = logged_in(world, "Admin", admin=True)
    resp = admin.submit("/portal/admin/users", f"/portal/admin/users/{me['id']}/disable", {})
    assert resp.status_code == 409 and "cannot disable your own account" in resp.text
    assert not users(world)[me["email"]]["Disabled"]
    resp = admin.submit("/portal/admin/users", "/portal/admin/users/no-such-user/disable", {})
    assert resp.status_code == 404 and "no user no-such-user" in resp.text


# -- devices and their one-time files -----------------------------------------------------
def test_a_new_devices_two_files_download_once_and_the_credentials_work(world: World,
                                                                        admin: Browser):
    page = add_device(admin, "lab-board-1")
    assert page.headers["cache-control"] == "no-store"
    device_id, links = device_id_of(page), downloads(page)
    assert set(links) == {CREDENTIALS, SETTINGS}
    assert "loopback address" in page.text  # the test's service listens on 127.0.0.1

    settings = admin.get(links[SETTINGS])
    assert settings.status_code == 200 and settings.headers["cache-control"] == "no-store"
    assert settings.headers["content-disposition"] == 'attachment; filename="config"'
    config = ini(settings.text)
    assert (config["device"]["id"], config["device"]["name"]) == (device_id, "lab-board-1")
    assert config["service"]["api_endpoint"] == world.service.url
    assert config["service"]["oauth_endpoint"] == world.service.root

    got = admin.get(links[CREDENTIALS])
    assert got.status_code == 200
    assert got.headers["content-disposition"] == 'attachment; filename="credentials"'
    credentials = ini(got.text)["credentials"]
    token = device_token(config["service"]["oauth_endpoint"], credentials["id"],
                         credentials["secret"])
    beat = Api(world.service.url, token).put(f"/devices/{device_id}", json={
        "DeviceStatus": "ONLINE", "DeviceConfigurationFileExtension": "json"})
    assert beat.status_code == 200, beat.text

    for link in links.values():  # a second time: a clear page, nothing else
        again = admin.get(link)
        assert again.status_code == 410 and "used already" in again.text
        assert "attachment" not in again.headers.get("content-disposition", "")
        assert credentials["secret"] not in again.text
    # the secret stays the one downloaded: a second try changed nothing
    assert device_token(world.service.root, credentials["id"], credentials["secret"])


def test_a_download_link_is_refused_to_another_admins_session(world: World, admin: Browser):
    links = downloads(add_device(admin, "lab-board-2"))
    other, _ = logged_in(world, "Admin", admin=True)
    resp = other.get(links[CREDENTIALS])
    assert resp.status_code == 410 and "another login" in resp.text
    assert admin.get(links[CREDENTIALS]).status_code == 200  # still the owner's, once


def test_rotate_secret_stops_the_old_one_at_once_and_offers_the_new_file_once(
        world: World, admin: Browser):
    device = world.device("rotating")
    page = admin.submit("/portal/admin/devices",
                        f"/portal/admin/devices/{device.id}/rotate-secret", {})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    refused = requests.post(world.service.root + "/oauth2/token", timeout=30,
                            data={"grant_type": "client_credentials"},
                            auth=(device.client_id, device.secret))
    assert refused.status_code == 400  # the old secret, at once
    links = downloads(page)
    assert set(links) == {CREDENTIALS, SETTINGS}  # the settings again: they hold no secret
    assert ini(admin.get(links[SETTINGS]).text)["device"]["id"] == device.id
    credentials = ini(admin.get(links[CREDENTIALS]).text)["credentials"]
    assert credentials["id"] == device.client_id
    assert device_token(world.service.root, credentials["id"], credentials["secret"])
    assert admin.get(links[CREDENTIALS]).status_code == 410


def test_an_older_rotate_link_is_refused_once_a_newer_secret_was_made(world: World,
                                                                      admin: Browser):
    device = world.device("rotating-twice")
    path = f"/portal/admin/devices/{device.id}/rotate-secret"
    first = downloads(admin.submit("/portal/admin/devices", path, {}))
    second = downloads(admin.submit("/portal/admin/devices", path, {}))
    stale = admin.get(first[CREDENTIALS])
    assert stale.status_code == 409 and "new secret since" in stale.text
    credentials = ini(admin.get(second[CREDENTIALS]).text)["credentials"]
    assert device_token(world.service.root, credentials["id"], credentials["secret"])


def test_a_simulated_device_has_no_files_and_no_secret_to_rotate(world: World,
                                                                 admin: Browser):
    page = add_device(admin, "sim-board", simulated="1", board="zcu216-v1")
    assert downloads(page) == {} and "the queue service runs it" in page.text
    device_id = device_id_of(page)
    listed = {d["DeviceId"]: d for d in world.admin.get("/devices").json()}[device_id]
    assert listed.get("Mock") and listed.get("MockBoard") == "zcu216-v1"
    resp = admin.submit("/portal/admin/devices",
                        f"/portal/admin/devices/{device_id}/rotate-secret", {})
    assert resp.status_code == 409 and "mock device" in resp.text


@pytest.mark.parametrize("data, words", [
    ({"name": "  ", "refresh_timeout": "60"}, "Device name must be a non-empty string"),
    ({"name": "b", "refresh_timeout": "0"}, "Refresh timeout must be a number from 1"),
    ({"name": "b", "refresh_timeout": "ten"}, "Refresh timeout must be a number"),
    ({"name": "b", "refresh_timeout": "60", "simulated": "1", "board": "zcu999"},
     "Mock.Board must be one of"),
])
def test_add_device_refuses_bad_input_with_why(world: World, admin: Browser, data: dict,
                                               words: str):
    before = len(world.admin.get("/devices").json())
    resp = admin.submit("/portal/admin/devices", "/portal/admin/devices", data)
    assert resp.status_code == 400 and words in shown(resp)
    assert len(world.admin.get("/devices").json()) == before


def test_download_tickets_end_after_their_life_and_belong_to_one_session(db: Database):
    store = DownloadStore(db)
    tokens = store.issue("session-a", "device-1", 3, (CREDENTIALS, SETTINGS), 1_000)
    assert store.take(tokens[SETTINGS], "session-b", 1_000) is None  # another session's
    ticket = store.take(tokens[SETTINGS], "session-a", 1_000 + LIFETIME_MS - 1)
    assert (ticket.device_id, ticket.file, ticket.generation) == ("device-1", SETTINGS, 3)
    assert store.take(tokens[SETTINGS], "session-a", 1_001) is None  # once
    assert store.take(tokens[CREDENTIALS], "session-a", 1_000 + LIFETIME_MS) is None
    # tickets past their life are deleted when the next ones are issued
    late = store.issue("session-a", "device-2", 0, (SETTINGS,), 1_000)
    store.issue("session-c", "device-3", 0, (SETTINGS,), 1_000 + LIFETIME_MS)
    assert store.take(late[SETTINGS], "session-a", 1_000) is None


# -- teams, grants and credit requests ----------------------------------------------------
def test_create_a_team_add_a_member_and_grant_credits(world: World, admin: Browser):
    name = f"team-{uuid.uuid4().hex[:8]}"
    resp = admin.submit("/portal/admin/teams", "/portal/admin/teams", {"name": name})
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/admin/teams"
    team = next(t for t in world.admin.get("/teams").json() if t["Name"] == name)
    person = new_person(world)
    resp = admin.submit("/portal/admin/teams", "/portal/admin/teams/members",
                        {"team": team["TeamId"], "email": person["email"],
                         "role": "scheduler"})
    assert resp.status_code == 303
    resp = admin.submit("/portal/admin/teams", "/portal/admin/teams/grants",
                        {"team": team["TeamId"], "seconds": "3600", "reason": "allocation"})
    assert resp.status_code == 303
    balance = world.admin.get(f"/teams/{team['TeamId']}/balance").json()
    assert balance["BalanceSeconds"] == 3600
    row = re.search(rf"<td>{name}</td>.*?</tr>", admin.get("/portal/admin/teams").text,
                    re.S).group(0)
    assert "3600.0" in row and f"{person['email']} (scheduler)" in row


def test_remove_a_member_but_never_the_teams_last_scheduler(world: World, admin: Browser):
    pi, student = new_person(world), new_person(world)
    team = new_team(world, scheduler=pi["id"])

    def members() -> list[str]:
        listed = next(t for t in world.admin.get("/teams").json()
                      if t["TeamId"] == team["TeamId"])
        return [m["Email"] for m in listed["Members"]]

    added = world.admin.post(f"/teams/{team['TeamId']}/members",
                             json={"User": student["email"], "Role": "user"})
    assert added.status_code == 201, added.text
    page = admin.get("/portal/admin/teams").text
    assert f'aria-label="Remove {student["email"]} from {team["Name"]}"' in page
    resp = admin.submit("/portal/admin/teams", "/portal/admin/teams/members/remove",
                        {"team": team["TeamId"], "user": student["id"]})
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/admin/teams"
    assert members() == [pi["email"]]
    last = admin.submit("/portal/admin/teams", "/portal/admin/teams/members/remove",
                        {"team": team["TeamId"], "user": pi["id"]})
    assert last.status_code == 409 and "last scheduler" in shown(last), last.text[:800]
    assert members() == [pi["email"]]
    gone = admin.submit("/portal/admin/teams", "/portal/admin/teams/members/remove",
                        {"team": team["TeamId"], "user": student["id"]})
    assert gone.status_code == 404 and "is not in team" in shown(gone), gone.text[:800]


@pytest.mark.parametrize("path, data, status, words", [
    ("/portal/admin/teams", {"name": "a/b"}, 400, "cannot contain '/'"),
    ("/portal/admin/teams/grants", {"team": "no-such-team", "seconds": "10", "reason": "x"},
     404, "no team no-such-team"),
    ("/portal/admin/teams/grants", {"team": "TEAM", "seconds": "-5", "reason": "x"},
     400, "Device-seconds must be a number from 0"),
    ("/portal/admin/teams/grants", {"team": "TEAM", "seconds": "10", "reason": " "},
     400, "Reason must be a non-empty string"),
    ("/portal/admin/teams/members", {"team": "TEAM", "email": "nobody@lab.test",
                                     "role": "user"}, 404, "no user nobody@lab.test"),
    ("/portal/admin/teams/members", {"team": "TEAM", "email": "nobody@lab.test",
                                     "role": "boss"}, 400, "Role must be scheduler or user"),
])
def test_team_forms_refuse_with_the_stores_words(world: World, admin: Browser, path: str,
                                                 data: dict, status: int, words: str):
    team = new_team(world)
    data = {k: team["TeamId"] if v == "TEAM" else v for k, v in data.items()}
    resp = admin.submit("/portal/admin/teams", path, data)
    assert resp.status_code == status and words in shown(resp), resp.text[:800]
    assert world.admin.get(f"/teams/{team['TeamId']}/balance").json()["BalanceSeconds"] == 0


def test_a_team_name_taken_already_is_refused(world: World, admin: Browser):
    team = new_team(world)
    resp = admin.submit("/portal/admin/teams", "/portal/admin/teams", {"name": team["Name"]})
    assert resp.status_code == 409 and "there is a team named" in resp.text


def credit_request(world: World, seconds: float, why: str) -> tuple[dict, str]:
    pi, pi_id = world.user()
    team = new_team(world, scheduler=pi_id)
    made = pi.post("/credits/requests", json={"Team": team["TeamId"], "Seconds": seconds,
                                              "Justification": why})
    assert made.status_code == 201, made.text
    return team, made.json()["RequestId"]


def test_approve_and_deny_credit_requests(world: World, admin: Browser):
    team, approve_id = credit_request(world, 500, "T1 sweep")
    _, deny_id = credit_request(world, 900, SCRIPT)
    page = admin.get("/portal/admin/teams")
    assert "T1 sweep" in page.text and ESCAPED in page.text and SCRIPT not in page.text
    resp = admin.submit("/portal/admin/teams",
                        f"/portal/admin/credit-requests/{approve_id}/approve", {})
    assert resp.status_code == 303
    assert world.admin.get(f"/teams/{team['TeamId']}/balance").json()["BalanceSeconds"] == 500
    refused = admin.submit("/portal/admin/teams",
                           f"/portal/admin/credit-requests/{deny_id}/deny", {"note": ""})
    assert refused.status_code == 400 and "a denial needs a Note" in refused.text
    resp = admin.submit("/portal/admin/teams", f"/portal/admin/credit-requests/{deny_id}/deny",
                        {"note": "not this term"})
    assert resp.status_code == 303
    states = {r["RequestId"]: r for r in world.admin.get("/credits/requests").json()}
    assert states[approve_id]["State"] == "approved"
    assert (states[deny_id]["State"], states[deny_id]["DecisionNote"]) == \
        ("denied", "not this term")
    twice = admin.submit("/portal/admin/teams",
                         f"/portal/admin/credit-requests/{approve_id}/approve", {})
    assert twice.status_code == 409 and "a decision is final" in twice.text
    assert world.admin.get(f"/teams/{team['TeamId']}/balance").json()["BalanceSeconds"] == 500
    page = admin.get("/portal/admin/teams").text
    assert approve_id not in page and deny_id not in page  # decided: off the waiting list


# -- prices ----------------------------------------------------------------------------
def test_set_a_devices_prices(world: World, admin: Browser, accounting_off_after: Database):
    device = world.device("priced")
    resp = admin.submit("/portal/admin/prices", "/portal/admin/prices",
                        {"device": device.id, "per_used": "2.5", "per_reserved": "1.5"})
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/admin/prices"
    prices = world.admin.get(f"/devices/{device.id}/prices").json()
    assert (prices["PerUsedSecond"], prices["PerReservedSecond"], prices["Accounting"]) == \
        (2.5, 1.5, True)
    page = admin.get("/portal/admin/prices").text
    assert "Accounting is <strong>ON</strong>" in page
    row = re.search(r"<td>priced</td>.*?</tr>", page, re.S).group(0)
    assert "<td>2.5</td>" in row and "<td>1.5</td>" in row


@pytest.mark.parametrize("data, status, words", [
    ({"per_used": "-1", "per_reserved": "1"}, 400, "Per used second must be a number from 0"),
    ({"per_used": "1", "per_reserved": "nan"}, 400, "Per reserved second must be a number"),
    ({"device": "no-such-device", "per_used": "1", "per_reserved": "1"}, 404,
     "no device no-such-device"),
])
def test_prices_refuse_bad_input_with_why(world: World, admin: Browser, data: dict,
                                          status: int, words: str):
    device = world.device("unpriced")
    resp = admin.submit("/portal/admin/prices", "/portal/admin/prices",
                        {"device": device.id, **data})
    assert resp.status_code == status and words in shown(resp)
    assert world.admin.get(f"/devices/{device.id}/prices").json()["History"] == []


# -- maintenance -----------------------------------------------------------------------
def test_book_list_and_cancel_maintenance(world: World, admin: Browser):
    device = world.device("serviced")
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(days=2)
    resp = admin.submit("/portal/admin/maintenance", "/portal/admin/maintenance", {
        "device": device.id, "start": utc_field(start),
        "end": utc_field(start + timedelta(hours=2)), "reason": "new fridge"})
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/admin/maintenance"
    (booked,) = world.admin.get("/maintenance", params={"Device": device.id}).json()
    assert booked["Start"] == start.strftime("%Y-%m-%dT%H:%M:00.000Z")
    assert booked["Reason"] == "new fridge"
    page = admin.get("/portal/admin/maintenance").text
    assert "new fridge" in page and f'/portal/admin/maintenance/{booked["Id"]}/cancel' in page
    resp = admin.submit("/portal/admin/maintenance",
                        f"/portal/admin/maintenance/{booked['Id']}/cancel", {})
    assert resp.status_code == 303
    assert world.admin.get("/maintenance", params={"Device": device.id}).json() == []
    again = admin.submit("/portal/admin/maintenance",
                         f"/portal/admin/maintenance/{booked['Id']}/cancel", {})
    assert again.status_code == 409 and "cancelled already" in again.text


def test_maintenance_over_a_reservation_needs_the_box_ticked(world: World, admin: Browser):
    device = world.device("busy")
    team = new_team(world)
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(days=3)
    slot = world.admin.post("/reservations", json={
        "Device": device.id, "Team": team["TeamId"],
        "Start": start.isoformat(), "End": (start + timedelta(hours=1)).isoformat()})
    assert slot.status_code == 201, slot.text
    form = {"device": device.id, "start": utc_field(start - timedelta(hours=1)),
            "end": utc_field(start + timedelta(hours=2)), "reason": "cooldown"}
    refused = admin.submit("/portal/admin/maintenance", "/portal/admin/maintenance", form)
    assert refused.status_code == 409
    assert world.admin.get("/maintenance", params={"Device": device.id}).json() == []
    done = admin.submit("/portal/admin/maintenance", "/portal/admin/maintenance",
                        {**form, "force": "1"})
    assert done.status_code == 303
    assert world.admin.get("/reservations", params={"Device": device.id}).json() == []


@pytest.mark.parametrize("start, end, reason, words", [
    ("tomorrow", "2030-01-01T01:00", "x", "Start (UTC) must be a time like"),
    ("2030-01-01T02:00", "2030-01-01T01:00", "x", "after"),
    ("2030-01-01T00:00", "2030-01-01T01:00", "", "Reason must be a non-empty string"),
])
def test_maintenance_refuses_bad_input_with_why(world: World, admin: Browser, start: str,
                                                end: str, reason: str, words: str):
    device = world.device("fussy")
    resp = admin.submit("/portal/admin/maintenance", "/portal/admin/maintenance", {
        "device": device.id, "start": start, "end": end, "reason": reason})
    assert resp.status_code == 400 and words in shown(resp), resp.text[:800]
    assert world.admin.get("/maintenance", params={"Device": device.id}).json() == []


# -- CSRF ------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_every_admin_post_without_the_right_csrf_token_is_refused(world: World,
                                                                  admin: Browser,
                                                                  token: str | None):
    person = new_person(world)
    device = world.device("csrf-board")
    team = new_team(world)
    _, request_id = credit_request(world, 10, "csrf")
    member_of = new_team(world, scheduler=person["id"])
    user_id = person["id"]
    posts = {"/portal/admin/users": {"email": f"c{uuid.uuid4().hex[:8]}@lab.test"},
             f"/portal/admin/users/{user_id}/disable": {},
             f"/portal/admin/users/{user_id}/enable": {},
             f"/portal/admin/users/{user_id}/reset-password": {},
             "/portal/admin/devices": {"name": "csrf-new", "refresh_timeout": "60"},
             f"/portal/admin/devices/{device.id}/rotate-secret": {},
             "/portal/admin/teams": {"name": f"csrf-{uuid.uuid4().hex[:8]}"},
             "/portal/admin/teams/members": {"team": team["TeamId"],
                                             "email": person["email"], "role": "user"},
             "/portal/admin/teams/grants": {"team": team["TeamId"], "seconds": "5",
                                            "reason": "x"},
             "/portal/admin/teams/members/remove": {"team": member_of["TeamId"],
                                                    "user": person["id"]},
             f"/portal/admin/credit-requests/{request_id}/approve": {},
             f"/portal/admin/credit-requests/{request_id}/deny": {"note": "no"},
             "/portal/admin/prices": {"device": device.id, "per_used": "1",
                                      "per_reserved": "1"},
             "/portal/admin/maintenance": {"device": device.id, "start": "2030-01-01T00:00",
                                           "end": "2030-01-01T01:00", "reason": "x"},
             "/portal/admin/maintenance/any-id/cancel": {}}
    for path, data in posts.items():
        sent = data if token is None else {**data, "csrf": token}
        resp = admin.post(path, sent)
        assert resp.status_code == 403 and "reload the page" in resp.text, path
    # nothing changed
    assert not users(world)[person["email"]]["Disabled"]
    assert "csrf-new" not in {d["DeviceName"] for d in world.admin.get("/devices").json()}
    assert device_token(world.service.root, device.client_id, device.secret)
    assert world.admin.get(f"/teams/{team['TeamId']}/balance").json()["BalanceSeconds"] == 0
    assert [m["Email"] for m in next(t for t in world.admin.get("/teams").json()
                                     if t["TeamId"] == team["TeamId"])["Members"]] == []
    assert [m["Email"] for m in next(t for t in world.admin.get("/teams").json()
                                     if t["TeamId"] == member_of["TeamId"])["Members"]] == \
        [person["email"]]
    assert world.admin.get("/credits/requests", params={"State": "pending"}).json()
    assert world.admin.get(f"/devices/{device.id}/prices").json()["History"] == []
    assert world.admin.get("/maintenance", params={"Device": device.id}).json() == []


# -- XSS -------------------------------------------------------------------------------
def test_a_users_full_name_and_a_device_name_are_shown_as_text(world: World, admin: Browser):
    person = new_person(world, full_name=SCRIPT)
    world.device(SCRIPT)
    page = add_device(admin, f"{SCRIPT}-board")
    assert SCRIPT not in page.text and f"{ESCAPED}-board" in page.text
    for path in ("/portal/admin/users", "/portal/admin/devices", "/portal/admin/prices",
                 "/portal/admin/maintenance"):
        resp = admin.get(path)
        assert SCRIPT not in resp.text and ESCAPED in resp.text, path
    added = admin.submit("/portal/admin/users", "/portal/admin/users",
                         {"email": f"x{uuid.uuid4().hex[:8]}@lab.test", "full_name": SCRIPT})
    assert added.status_code == 200 and SCRIPT not in added.text and ESCAPED in added.text
    assert email_of(world, person["id"]) == person["email"]
