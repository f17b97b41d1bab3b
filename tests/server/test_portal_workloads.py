"""The portal's workloads section over real HTTP (docs/portal.md, slice 3): the list (mine
and my teams', filtered, paged), one workload's facts and their JSON for the live page,
cancel (with CSRF), the downloads, the quick look at real HDF5 results, a stranger's
workload refused as missing, and user text shown escaped. Each test runs on both database
engines (``world``)."""
from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest
import requests

from qickwork.results import ResultsWriter
from queueservice import clock
from queueservice.db import Database
from tests import facility_rows
from tests.server.api import Api, Device, World, email_of, new_team, put_file, status, submit
from tests.server.portal import Browser, csrf_of, logged_in
from tests.server.test_progress import health

SCRIPT = "<script>alert(1)</script>"
WORK_LINK = re.compile(r'href="/portal/workloads/([0-9a-f-]{36})"')


def linked(page: requests.Response) -> list[str]:
    """The WorkIds a list page links to, in order."""
    assert page.status_code == 200, (page.status_code, page.text[:500])
    return WORK_LINK.findall(page.text)


def person_api(world: World, person: dict) -> Api:
    return Api(world.service.url, person["api_key"])


def results_bytes(tmp_path: Path, programs: int = 3) -> bytes:
    """A real results file: ``programs`` programs of two readouts, one IQ point each
    (program k: readout 0 at (k, 0), readout 1 at (0, 2k))."""
    path = tmp_path / "results.h5"
    with ResultsWriter(path, programs_total=programs) as writer:
        for k in range(programs):
            writer.add(k, acqtype="accumulated", seconds=0.1,
                       avg=[np.array([[float(k + 1), 0.0]]), np.array([[0.0, 2.0 * (k + 1)]])])
        writer.finish("DONE", seconds=0.3)
    return path.read_bytes()


def finished(world: World, user: Api, tmp_path: Path, **extra) -> tuple[Device, str]:
    """A workload that ran and has its results."""
    device = world.device()
    work_id = submit(user, device.id, b"the workload file", **extra)
    assert device.next_work().json()["WorkId"] == work_id
    url = device.report(work_id, {"Outcome": "DONE", "ProgramsDone": 3}).json()["UploadUrl"]
    assert put_file(url, results_bytes(tmp_path)).status_code == 200
    return device, work_id


# -- the list ----------------------------------------------------------------------------
def test_the_list_shows_my_workloads_newest_first_and_not_a_strangers(world: World):
    browser, person = logged_in(world)
    mine = person_api(world, person)
    device = world.device()
    first = submit(mine, device.id, WorkloadName="first run")
    second = submit(mine, device.id, WorkloadName="second run")
    stranger, _ = world.user()
    theirs = submit(stranger, device.id, WorkloadName="not yours")
    page = browser.get("/portal/workloads")
    assert "<h1>Workloads</h1>" in page.text
    assert linked(page) == [second, first]
    assert theirs not in page.text and "not yours" not in page.text
    assert "READY" in page.text and "first run" in page.text
    assert ">1<" in page.text and ">2<" in page.text  # queue positions on the device


def test_filters_by_device_state_and_date(world: World):
    browser, person = logged_in(world)
    mine = person_api(world, person)
    one, other = world.device("one"), world.device("other")
    on_one = submit(mine, one.id)
    on_other = submit(mine, other.id)
    created = submit(mine, other.id, data=None)  # CREATED: no file yet
    assert linked(browser.get(f"/portal/workloads?device={one.id}")) == [on_one]
    assert linked(browser.get("/portal/workloads?state=CREATED")) == [created]
    assert linked(browser.get(f"/portal/workloads?device={other.id}&state=READY")) == \
        [on_other]
    assert len(linked(browser.get("/portal/workloads?since=2000-01-01"))) == 3
    assert linked(browser.get("/portal/workloads?since=2999-01-01")) == []
    assert linked(browser.get("/portal/workloads?until=2000-01-02")) == []


@pytest.mark.parametrize("query, says", [
    ("since=yesterday", "From must be a date as YYYY-MM-DD"),
    ("until=2026-13-01", "To must be a date as YYYY-MM-DD"),
    ("since=2026-05-02&until=2026-05-01", "To is before From"),
    ("state=WAITING", "State must be one of"),
    ("scope=everyone", "Whose must be mine or team"),
    ("page=0", "page must be a number from 1 to"),
])
def test_bad_filters_are_refused_with_what_to_do(world: World, query: str, says: str):
    browser, _ = logged_in(world)
    page = browser.get(f"/portal/workloads?{query}")
    assert page.status_code == 400
    assert says in html.unescape(page.text)


def test_pages_of_fifty_with_next_and_previous_links(world: World):
    browser, person = logged_in(world)
    mine = person_api(world, person)
    device = world.device()
    made = [submit(mine, device.id, data=None) for _ in range(52)]
    first = browser.get("/portal/workloads")
    assert linked(first) == made[::-1][:50]
    assert "Next page" in first.text and "Previous page" not in first.text
    second_link = html.unescape(re.search(r'href="([^"]*)" rel="next"', first.text).group(1))
    second = browser.get(second_link)
    assert linked(second) == made[::-1][50:]
    assert "Previous page" in second.text and "Next page" not in second.text
    # the filters go along from page to page
    filtered = browser.get(f"/portal/workloads?device={device.id}&state=CREATED")
    link = html.unescape(re.search(r'href="([^"]*)" rel="next"', filtered.text).group(1))
    assert f"device={device.id}" in link and "state=CREATED" in link and "page=2" in link


def test_the_team_scope_shows_my_teams_work_and_only_theirs(world: World):
    browser, person = logged_in(world)
    team = new_team(world, scheduler=person["id"])
    mate, mate_id = world.user()
    added = person_api(world, person).post(
        f"/teams/{team['TeamId']}/members", json={"User": email_of(world, mate_id),
                                                  "Role": "user"})
    assert added.status_code == 201, added.text
    device = world.device()
    team_work = submit(mate, device.id, WorkloadName="mate's run")  # their default team
    outsider, _ = world.user()
    submit(outsider, device.id, WorkloadName="an outsider's run")
    assert team_work not in linked(browser.get("/portal/workloads"))  # not mine
    shown = browser.get("/portal/workloads?scope=team")
    assert linked(shown) == [team_work]
    assert "an outsider's run" not in shown.text
    # the teammate's work opens as the team's queue shows it: facts, no files, no cancel
    page = browser.get(f"/portal/workloads/{team_work}")
    assert page.status_code == 200 and "mate&#39;s run" in page.text
    assert "Cancel workload" not in page.text and "Download workload" not in page.text
    for kind in ("workload", "results"):
        assert browser.get(f"/portal/workloads/{team_work}/{kind}").status_code == 404
    assert browser.get(f"/portal/api/workloads/{team_work}").json()["State"] == "READY"
    refused = browser.post(f"/portal/workloads/{team_work}/cancel",
                           {"csrf": csrf_of(page)})
    assert refused.status_code == 404
    assert status(mate, team_work)["WorkStatus"] == "READY"


def row_of(page: requests.Response, work_id: str) -> str:
    """The text of a list page's row of ``work_id`` (tags dropped, spaces squeezed)."""
    match = re.search(rf'<tr>\s*<td><a href="/portal/workloads/{work_id}">.*?</tr>',
                      page.text, re.S)
    assert match, page.text[-2000:]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(0))).split())


def test_work_a_facility_rule_holds_is_waiting_with_the_apis_position_and_start(
        world: World):
    browser, person = logged_in(world)
    mine = person_api(world, person)
    device = world.device()
    assert device.heartbeat().status_code == 200  # online: an offline one has no estimate
    now = clock.now_ms()
    db = Database(world.service.database_target)
    try:
        facility_rows.book(db, device.id, now - 1000, now + 3600_000, now,
                           reason="magnet ramp")
        first = submit(mine, device.id)
        facility_rows.mark(db, first, estimated_seconds=20.0)
        second = submit(mine, device.id)
    finally:
        db.close()
    page = browser.get("/portal/workloads")
    for work_id in (first, second):
        api = status(mine, work_id)
        shown = row_of(page, work_id)
        assert f"WAITING maintenance: {api['Waiting']['Message']}" in shown
        assert "magnet ramp" in shown
        assert f" {api['QueuePosition']} {api['EstimatedStartAt']} " in f" {shown} "
    detail = browser.get(f"/portal/api/workloads/{first}").json()
    assert detail["State"] == "WAITING" and detail["QueuePosition"] == "1"
    assert detail["EstimatedStart"] == status(mine, first)["EstimatedStartAt"]


def test_the_lists_queue_facts_are_the_apis(world: World):
    browser, person = logged_in(world)
    mine = person_api(world, person)
    device = world.device()
    other, _ = world.user()
    ahead = submit(other, device.id, priority="HIGH")  # a stranger's, ahead of mine
    low, high = submit(mine, device.id, priority="LOW"), submit(mine, device.id)
    assert device.next_work().json()["WorkId"] == ahead
    page = browser.get("/portal/workloads")
    assert status(mine, high)["QueuePosition"] == 1 and status(mine, low)["QueuePosition"] == 2
    assert row_of(page, high).split()[3:5] == ["READY", "1"]
    assert row_of(page, low).split()[3:5] == ["READY", "2"]
    # a device without a heartbeat is OFFLINE: no estimate, and the reason, as the API says
    reason = status(mine, low)["EstimatedStartReason"]
    assert reason in row_of(page, low)


# -- one workload, live ------------------------------------------------------------------
def test_the_page_and_its_json_follow_the_progress(world: World):
    browser, person = logged_in(world)
    mine = person_api(world, person)
    device = world.device()
    work_id = submit(mine, device.id, WorkloadName="sweep")
    page = browser.get(f"/portal/workloads/{work_id}")
    assert page.status_code == 200
    assert '<span id="state" data-fact="State">READY</span>' in page.text
    assert f'data-poll="/portal/api/workloads/{work_id}"' in page.text
    assert 'aria-live="polite"' in page.text and "/portal/static/portal.js" in page.text
    assert device.next_work().json()["WorkId"] == work_id
    device.heartbeat("BUSY", Health=health(work_id, 3, 10))
    live = browser.get(f"/portal/api/workloads/{work_id}")
    assert live.status_code == 200 and live.headers["content-type"] == "application/json"
    body = live.json()
    assert body["State"] == "EXECUTING" and body["Progress"] == "3 / 10 programs"
    assert body["QueuePosition"] == "on the board" and body["Finished"] is False
    assert body["Attempts"] == "1"
    page = browser.get(f"/portal/workloads/{work_id}")
    assert '<dd id="progress" data-fact="Progress">3 / 10 programs</dd>' in page.text
    url = device.report(work_id, {"Outcome": "DONE", "ProgramsDone": 10,
                                  "DeviceSeconds": 12.5}).json()["UploadUrl"]
    assert put_file(url, b"not hdf5").status_code == 200
    done = browser.get(f"/portal/api/workloads/{work_id}").json()
    assert done["State"] == "DONE" and done["Finished"] is True
    assert done["Progress"] == "10 / 10 programs" and done["BoardTime"] == "12.5 s"
    # a results file that is not HDF5: the page says so, no quick look, still a download
    page = browser.get(f"/portal/workloads/{work_id}")
    assert "cannot be read as a results file" in page.text
    assert 'id="quick-look"' not in page.text and "Download results" in page.text


def test_the_portal_script_is_served_from_the_package(world: World):
    script = requests.get(world.service.root + "/portal/static/portal.js", timeout=30)
    assert script.status_code == 200 and "data-poll" in script.text


def test_pages_and_json_need_a_session(world: World):
    browser = Browser(world.service.root)
    for path in ("/portal/workloads", "/portal/workloads/x", "/portal/workloads/x/results"):
        resp = browser.get(path)
        assert resp.status_code == 303 and resp.headers["location"] == "/login"
    assert browser.get("/portal/api/workloads/x").status_code == 401
    assert browser.post("/portal/workloads/x/cancel", {}).headers["location"] == "/login"


def test_a_strangers_workload_is_not_found_everywhere(world: World, tmp_path: Path):
    browser, _ = logged_in(world)
    owner, _ = world.user()
    _, work_id = finished(world, owner, tmp_path)
    csrf = csrf_of(browser.get("/portal/workloads"))
    for path in (f"/portal/workloads/{work_id}", f"/portal/workloads/{work_id}/workload",
                 f"/portal/workloads/{work_id}/results", "/portal/workloads/no-such-id"):
        resp = browser.get(path)
        assert resp.status_code == 404 and "Workload not found" in resp.text, path
    assert browser.get(f"/portal/api/workloads/{work_id}").status_code == 404
    assert browser.post(f"/portal/workloads/{work_id}/cancel",
                        {"csrf": csrf}).status_code == 404
    ready = submit(owner, world.device().id)
    assert browser.post(f"/portal/workloads/{ready}/cancel", {"csrf": csrf}).status_code == 404
    assert status(owner, ready)["WorkStatus"] == "READY"


# -- cancel ------------------------------------------------------------------------------
def test_cancel_with_the_form_cancels_and_a_finished_one_says_why(world: World):
    browser, person = logged_in(world)
    work_id = submit(person_api(world, person), world.device().id)
    page = browser.get(f"/portal/workloads/{work_id}")
    assert "Cancel workload" in page.text
    done = browser.post(f"/portal/workloads/{work_id}/cancel", {"csrf": csrf_of(page)})
    assert done.status_code == 303 and done.headers["location"] == f"/portal/workloads/{work_id}"
    after = browser.get(f"/portal/workloads/{work_id}")
    assert "CANCELLED" in after.text and "Cancel workload" not in after.text
    again = browser.post(f"/portal/workloads/{work_id}/cancel", {"csrf": csrf_of(page)})
    assert again.status_code == 409
    assert "there is nothing to cancel" in again.text and 'role="alert"' in again.text


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_cancel_without_the_right_csrf_token_is_refused(world: World, token: str | None):
    browser, person = logged_in(world)
    mine = person_api(world, person)
    work_id = submit(mine, world.device().id)
    resp = browser.post(f"/portal/workloads/{work_id}/cancel",
                        {} if token is None else {"csrf": token})
    assert resp.status_code == 403 and "reload the page" in resp.text
    assert status(mine, work_id)["WorkStatus"] == "READY"


def test_cancel_from_another_origin_is_refused(world: World):
    browser, person = logged_in(world)
    mine = person_api(world, person)
    work_id = submit(mine, world.device().id)
    page = browser.get(f"/portal/workloads/{work_id}")
    resp = browser.post(f"/portal/workloads/{work_id}/cancel", {"csrf": csrf_of(page)},
                        headers={"Origin": "https://evil.example"})
    assert resp.status_code == 403
    assert status(mine, work_id)["WorkStatus"] == "READY"


# -- downloads and the quick look ----------------------------------------------------------
def test_the_owner_downloads_the_workload_and_its_results(files_world: World,
                                                         tmp_path: Path):
    """On each database and each file store (the data folder, S3)."""
    world = files_world
    browser, person = logged_in(world)
    _, work_id = finished(world, person_api(world, person), tmp_path)
    page = browser.get(f"/portal/workloads/{work_id}")
    assert "Download workload" in page.text and "Download results" in page.text
    assert '<figure id="quick-look">' in page.text  # the results read from the store
    work = browser.get(f"/portal/workloads/{work_id}/workload")
    assert work.status_code == 200 and work.content == b"the workload file"
    assert "attachment" in work.headers["content-disposition"]
    results = browser.get(f"/portal/workloads/{work_id}/results")
    uploaded = (tmp_path / "results.h5").read_bytes()  # not made again: HDF5 keeps times
    assert results.status_code == 200 and results.content == uploaded
    assert f"{work_id}-output" in results.headers["content-disposition"]


def test_no_results_yet_is_not_found_and_no_link(world: World):
    browser, person = logged_in(world)
    work_id = submit(person_api(world, person), world.device().id)
    page = browser.get(f"/portal/workloads/{work_id}")
    assert "Download workload" in page.text and "Download results" not in page.text
    assert browser.get(f"/portal/workloads/{work_id}/results").status_code == 404


def test_the_quick_look_plots_a_sweeps_programs_side_by_side(world: World, tmp_path: Path):
    browser, person = logged_in(world)
    _, work_id = finished(world, person_api(world, person), tmp_path)
    page = browser.get(f"/portal/workloads/{work_id}")
    figure = re.search(r'<figure id="quick-look">(.*?)</figure>', page.text, re.S)
    assert figure, page.text[-3000:]
    inside = figure.group(1)
    assert '<svg role="img"' in inside and "aria-label=" in inside
    assert inside.count("<polyline") == 4  # 2 readouts x (magnitude, phase)
    assert "<figcaption>" in inside and "against the program" in inside
    # the table: program 2's readout 1 is (0, 6): magnitude 6, phase 90 degrees
    assert "<td>2</td><td>1</td><td>0</td><td>6</td><td>6</td><td>90.00</td>" in inside
    assert "<script" not in inside


# -- user text is shown as text ------------------------------------------------------------
def test_a_workload_name_a_device_name_and_an_error_message_are_shown_escaped(
        world: World):
    browser, person = logged_in(world)
    device = world.device(name=SCRIPT)
    work_id = submit(person_api(world, person), device.id, WorkloadName=SCRIPT)
    assert device.next_work().json()["WorkId"] == work_id
    device.report(work_id, {"Outcome": "FAILED", "ErrorMessage": SCRIPT,
                            "ErrorKind": "program_error"})
    for path in ("/portal/workloads", f"/portal/workloads/{work_id}"):
        page = browser.get(path)
        assert SCRIPT not in page.text
        assert html.escape(SCRIPT) in page.text or "&lt;script&gt;" in page.text
    assert browser.get(f"/portal/api/workloads/{work_id}").json()["Error"] == \
        f"program_error: {SCRIPT}"
