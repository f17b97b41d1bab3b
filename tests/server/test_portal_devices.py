"""The portal's devices over real HTTP (docs/portal.md, slice 2): the list (status in
words, simulated boards marked, queue length), a device's page (its uploaded soccfg
summarised and offered as a download, the next 7 days of its calendar as each user may see
it, the health summary for admins only), a device that does not exist, and escaping. Each
test runs on both database engines (the module's service per engine: ``world``)."""
from __future__ import annotations

import html
import json
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from qickwork.firmware import board_summary
from queueservice import views
from queueservice.portal.devices import board_kind, health_view
from tests.helpers import reference_soccfg
from tests.server.api import Device, World, new_team, put_file, submit
from tests.server.portal import Browser, logged_in

SCRIPT = "<script>alert(1)</script>"
EMULATOR = "soccfg_emulator_zcu216_tprocv2_16gen.json"
HOUCKLAB = "soccfg_houcklab_zcu216_tprocv1.json"
HEALTH = {"State": "ONLINE", "Reason": "", "Simulated": False,
          "Processes": {"executor": {"State": "RUNNING", "Restarts": 0},
                        "downloader": {"State": "RUNNING", "Restarts": 3}},
          "Spool": {"ready": 1, "outgoing": 0}, "CurrentWork": None,
          "Firmware": {"board": "ZCU216", "fingerprint": "sha256:0123456789abcdef"}}


def row_of(page: requests.Response, device_id: str) -> str:
    """The list's table row of one device (its HTML)."""
    rows = [r for r in re.findall(r"<tr>.*?</tr>", page.text, re.S)
            if f'href="/portal/devices/{device_id}"' in r]
    assert len(rows) == 1, page.text
    return rows[0]


def cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]


def upload_soccfg(device: Device, name: str) -> bytes:
    data = reference_soccfg(name).read_bytes()
    resp = device.heartbeat()
    assert resp.status_code == 200, resp.text
    assert put_file(resp.json()["UploadUrl"], data).status_code == 200
    return data


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- no session ----------------------------------------------------------------------------
def test_device_pages_without_a_session_lead_to_the_login_page(world: World):
    device = world.device()
    browser = Browser(world.service.root)
    for path in ("/portal/devices", f"/portal/devices/{device.id}",
                 f"/portal/devices/{device.id}/soccfg.json"):
        resp = browser.get(path)
        assert resp.status_code == 303 and resp.headers["location"] == "/login", path


# -- the list ------------------------------------------------------------------------------
def test_the_list_names_each_status_in_words_marks_simulated_boards_and_counts_the_queue(
        world: World):
    online, simulated, silent, broken = (world.device(f"dev-{uuid.uuid4().hex[:6]}")
                                         for _ in range(4))
    assert online.heartbeat("ONLINE").status_code == 200
    assert simulated.heartbeat("BUSY", Health={"Simulated": True}).status_code == 200
    crashed = {"State": "ERROR", "Reason": "executor: crashed 5 times"}
    assert broken.heartbeat("ERROR", Health=crashed).status_code == 200
    user, _ = world.user()
    for _ in range(3):
        submit(user, online.id)  # uploaded: READY, waiting in the device's queue
    submit(user, online.id, data=None)  # CREATED: not in the queue yet
    browser, _ = logged_in(world)
    page = browser.get("/portal/devices")
    assert page.status_code == 200
    assert "<h1>Devices</h1>" in page.text
    assert cells(row_of(page, online.id))[1:] == ["ONLINE", "real", "3"]
    assert cells(row_of(page, simulated.id))[1:] == ["BUSY", "simulated", "0"]
    assert cells(row_of(page, silent.id))[1:] == ["OFFLINE", "real", "0"]
    assert cells(row_of(page, broken.id))[1:] == [
        "ERROR (executor: crashed 5 times)", "real", "0"]
    # the same list and statuses GET /devices answers users
    answered = {d["DeviceId"]: d["DeviceStatus"] for d in user.get("/devices").json()}
    shown = dict(re.findall(r'href="/portal/devices/([^"]+)">.*?</a></td>\s*<td><span '
                            r'class="device-status[^"]*">(\w+)<', page.text, re.S))
    assert shown == answered


def test_a_mock_device_is_marked_mock_and_a_simulated_board_simulated():
    """``board_kind`` reads a ``GET /devices`` item (a mock device's daemon is a whole
    board process, left to tests/mock)."""
    row = {"device_id": "d", "name": "n", "reported_status": "ONLINE", "last_refreshed": 0,
           "refresh_timeout": 60, "health": None, "mock": json.dumps({"Board": "zcu216-v2"})}
    assert board_kind(views.device_summary(row, 1000)) == "mock"
    simulated = {**row, "mock": None, "health": json.dumps({"Simulated": True})}
    assert board_kind(views.device_summary(simulated, 1000)) == "simulated"
    assert board_kind(views.device_summary({**row, "mock": None}, 1000)) == "real"


# -- one device: facts and configuration ---------------------------------------------------
def test_a_device_page_summarises_the_soccfg_the_board_uploaded(world: World):
    device = world.device("emulated")
    data = upload_soccfg(device, EMULATOR)
    browser, _ = logged_in(world)
    page = browser.get(f"/portal/devices/{device.id}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "Device emulated" in text and "ONLINE" in text
    assert f'href="/portal/devices/{device.id}/soccfg.json"' in page.text
    assert ">Download configuration</a>" in page.text
    assert "No configuration uploaded yet" not in text
    assert "tProc version</dt><dd>v2 (qick_processor, revision 21)" in text
    assert "Firmware built</dt><dd>Sat Sep 28 22:15:40 2024" in text
    assert "ZCU216 tProc v2 (built Sat Sep 28 22:15:40 2024, sha256:" in text
    assert "Generators (16)" in text and "Readouts (10)" in text
    rows = [cells(r) for r in re.findall(r"<tr><td>.*?</tr>", page.text, re.S)]
    assert ["4", "axis_sg_mixmux8_v1", "6881.280", "1720.320", "tile 1, block 0"] in rows
    assert ["2", "axis_pfb_readout_v4", "2457.600", "38.400", "38.400",
            "tile 2, block 1"] in rows
    download = browser.get(f"/portal/devices/{device.id}/soccfg.json")
    assert download.status_code == 200 and download.content == data
    assert download.headers["content-disposition"].startswith("attachment")
    assert f"{device.id}-soccfg.json" in download.headers["content-disposition"]


def test_a_tproc_v1_board_is_summarised_as_such(world: World):
    device = world.device("houcklab")
    upload_soccfg(device, HOUCKLAB)
    browser, _ = logged_in(world)
    text = html.unescape(browser.get(f"/portal/devices/{device.id}").text)
    assert "tProc version</dt><dd>v1 (axis_tproc64x32_x8, revision 4)" in text
    assert "Generators (7)" in text and "Readouts (2)" in text
    assert "axis_readout_v2" in text


def test_board_summary_reads_a_hostile_soccfg_without_failing():
    summary = board_summary({"board": ["x"], "gens": "many", "tprocs": [7],
                             "readouts": [5, {"ro_type": "r" * 500, "fs": True, "adc": "2x",
                                              "f_dds": float("nan"), "f_output": -1}]})
    assert summary.board == "" and summary.generators == () and summary.tproc_version == 0
    (readout,) = summary.readouts
    assert readout.channel == 1 and len(readout.kind) == 120 and readout.converter == "2x"
    assert readout.sample_rate is None and readout.dds_range is None
    assert readout.output_rate is None
    assert summary.firmware.fingerprint.startswith("sha256:")


def test_a_device_without_a_configuration_says_so(world: World):
    device = world.device()
    assert device.heartbeat().status_code == 200  # online, nothing uploaded
    browser, _ = logged_in(world)
    page = browser.get(f"/portal/devices/{device.id}")
    assert page.status_code == 200
    assert "No configuration uploaded yet" in page.text
    assert "Download configuration" not in page.text
    download = browser.get(f"/portal/devices/{device.id}/soccfg.json")
    assert download.status_code == 404
    assert "No configuration uploaded yet" in download.text


UNREADABLE = "not a QICK soccfg (JSON) this page can read"


@pytest.mark.parametrize("data, why", [
    (b"[1, 2]", "not a JSON object (a QICK soccfg)"),
    (b"\xff\xfe not text", UNREADABLE),
    (b"{" + b'"a":[' * 50_000 + b"]" * 50_000 + b"}", UNREADABLE),
], ids=["a list", "not UTF-8", "nested too deep"])
def test_a_configuration_that_is_not_a_soccfg_is_offered_but_not_summarised(
        world: World, data: bytes, why: str):
    device = world.device()
    assert put_file(device.heartbeat().json()["UploadUrl"], data).status_code == 200
    browser, _ = logged_in(world)
    page = browser.get(f"/portal/devices/{device.id}")
    assert page.status_code == 200
    assert why in page.text
    assert "Download configuration" in page.text and "Generators" not in page.text
    assert browser.get(f"/portal/devices/{device.id}/soccfg.json").content == data


def test_a_device_that_does_not_exist_is_a_not_found_page(world: World):
    browser, _ = logged_in(world)
    for path in ("/portal/devices/no-such-device", "/portal/devices/no-such-device/soccfg.json"):
        resp = browser.get(path)
        assert resp.status_code == 404, path
        assert "Device not found" in resp.text and "no-such-device" in resp.text
    tag = "<img src=x onerror=alert(1)>"  # no slash: a path segment
    hostile = browser.get("/portal/devices/" + requests.utils.quote(tag, safe=""))
    assert hostile.status_code == 404 and "Device not found" in hostile.text
    assert tag not in hostile.text and html.escape(tag) in hostile.text


def test_a_device_name_is_shown_as_text(world: World):
    device = world.device(SCRIPT)
    browser, _ = logged_in(world)
    for path in ("/portal/devices", f"/portal/devices/{device.id}"):
        page = browser.get(path)
        assert page.status_code == 200
        assert SCRIPT not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path


# -- health: admins only -------------------------------------------------------------------
def test_the_health_summary_is_shown_to_admins_and_not_to_users(world: World):
    device = world.device()
    assert device.heartbeat("ONLINE", Health={**HEALTH, "Note": SCRIPT}).status_code == 200
    admin, _ = logged_in(world, "Admin", admin=True)
    page = admin.get(f"/portal/devices/{device.id}")
    assert page.status_code == 200
    assert "Health (admins only)" in page.text
    rows = [cells(r) for r in re.findall(r"<tr><td>.*?</tr>", page.text, re.S)]
    assert ["downloader", "RUNNING", "3"] in rows and ["executor", "RUNNING", "0"] in rows
    assert "<dt>Spool</dt><dd>ready: 1, outgoing: 0</dd>" in page.text
    assert "<dt>Simulated board</dt><dd>no</dd>" in page.text
    assert "fingerprint: sha256:0123456789abcdef" in page.text
    assert SCRIPT not in page.text and html.escape(SCRIPT) in page.text
    browser, _ = logged_in(world)
    page = browser.get(f"/portal/devices/{device.id}")
    assert page.status_code == 200
    assert "Health" not in page.text and "downloader" not in page.text
    assert "sha256:0123456789abcdef" not in page.text


def test_health_view_reads_hostile_health_without_failing():
    assert health_view(None) is None and health_view([1]) is None
    view = health_view({"State": "ERROR", "Processes": {"x": 5, "y": {"State": [1] * 500}},
                        "Other": {"deep": "x" * 1000}})
    assert ("State", "ERROR") in view["facts"]
    assert view["processes"][0] == ("x", "", "")
    assert all(len(text) <= 300 for _, text in view["facts"])
    assert len(view["processes"][1][1]) <= 300


# -- the calendar --------------------------------------------------------------------------
def test_the_calendar_shows_windows_timeslots_and_maintenance_other_teams_only_reserved(
        world: World):
    device = world.device()
    week = [{"Day": day, "Start": "10:00", "End": "11:00"}
            for day in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")]
    assert world.admin.put(f"/devices/{device.id}/windows",
                           json={"Windows": week}).status_code == 200
    member_browser, member = logged_in(world)
    stranger_browser, _ = logged_in(world)
    team = new_team(world, scheduler=member["email"])
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) \
        + timedelta(days=1)
    booked = world.admin.post("/reservations", json={
        "Device": device.id, "Team": team["TeamId"], "Start": iso(start),
        "End": iso(start + timedelta(hours=2)), "Note": "Rabi " + SCRIPT})
    assert booked.status_code == 201, booked.text
    fixed = world.admin.post("/maintenance", json={
        "Device": device.id, "Start": iso(start + timedelta(days=2)),
        "End": iso(start + timedelta(days=2, hours=3)), "Reason": "cryostat warm-up"})
    assert fixed.status_code == 201, fixed.text
    slot = start.strftime("%a %Y-%m-%d %H:%M")

    def calendar(page: requests.Response) -> list[list[str]]:
        section = page.text.split("<h2>Calendar</h2>")[1]
        return [cells(r) for r in re.findall(r"<tr><td>.*?</tr>", section, re.S)]

    mine = calendar(member_browser.get(f"/portal/devices/{device.id}"))
    theirs = calendar(stranger_browser.get(f"/portal/devices/{device.id}"))
    assert [slot, (start + timedelta(hours=2)).strftime("%a %Y-%m-%d %H:%M"), "Timeslot",
            html.escape(f"team {team['Name']}: Rabi {SCRIPT}")] in mine
    assert [slot, (start + timedelta(hours=2)).strftime("%a %Y-%m-%d %H:%M"), "Reserved",
            "another team&#39;s timeslot"] in theirs
    for rows in (mine, theirs):
        assert sum(r[2] == "Pay-as-you-go window" for r in rows) >= 7
        assert ["Maintenance", "cryostat warm-up"] in [r[2:] for r in rows]
        assert all(r[2] != "Timeslot" for r in rows) == (rows is theirs)
    stranger_page = stranger_browser.get(f"/portal/devices/{device.id}").text
    assert team["Name"] not in stranger_page and "Rabi" not in stranger_page
    assert "always open" not in stranger_page


def test_a_device_without_windows_says_the_queue_is_always_open(world: World):
    device = world.device()
    browser, _ = logged_in(world)
    page = browser.get(f"/portal/devices/{device.id}")
    assert "The shared queue is always open" in page.text
    assert "Nothing booked in the next 7 days." in page.text

