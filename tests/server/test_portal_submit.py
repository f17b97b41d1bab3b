"""The portal's submit section over real HTTP (docs/portal.md, slice 4): a real workload
file (QICK programs compiled against a real board's soccfg) uploaded as a browser does
(multipart), checked as ``userclient submit`` checks it and as ``POST /workloads`` does,
previewed with nothing created, then confirmed into one workload. Each test runs on both
database engines (the module's own service per engine, with a small upload limit)."""
from __future__ import annotations

import asyncio
import json
import re
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
import requests

from cloudqueue.errors import NotFound
from queueservice.db import Database
from queueservice.files import FileStore, LocalFiles, S3Files, Staged, parse_key
from queueservice.portal.submit import FORM_ALLOWANCE, duration_text
from queueservice.portal.uploads import STAGED_MS, UploadStore, staging_key
from tests.conftest import QueueService, start_queue_service
from tests.helpers import reference_soccfg
from tests.server.api import Api, World, grant, new_team, put_file, sha
from tests.server.conftest import DATABASES, MotoS3, engine_options
from tests.server.portal import Browser, csrf_of, logged_in
from tests.server.test_bookings import at, hours_from_now

SCRIPT = "<script>alert(1)</script>"
#: the module's services take workload files up to this size (``--max-upload-mb``)
LIMIT_MB = 0.03
LIMIT = int(LIMIT_MB * 1024 * 1024)
V2 = "soccfg_testbench_zcu216_tprocv2.json"
V1 = "soccfg_houcklab_zcu216_tprocv1.json"


@pytest.fixture(scope="module", params=DATABASES)
def shared_service(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    """This module's service per engine (``world`` uses it), with a small upload limit."""
    service = start_queue_service(Path(tmp_path_factory.mktemp(f"submit-{request.param}")),
                                  max_upload_mb=LIMIT_MB,
                                  **engine_options(request.param, request))
    yield service
    service.stop()


@pytest.fixture(scope="module")
def workload() -> bytes:
    """A real workload: two tProc v2 programs compiled against the testbench board's
    soccfg (the reference data), as ``WorkloadManager.write()`` makes it."""
    from qick import QickConfig

    from tests.qick.programs import SweepV2
    from userclient.workload import WorkloadManager

    soccfg = QickConfig(json.loads(reference_soccfg(V2).read_text()))
    manager = WorkloadManager(soccfg)
    for freq in (140.0, 150.0):
        manager.add(SweepV2(soccfg, reps=10, final_delay=1.0, cfg={"freq": freq}))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sweep.json.gz"
        manager.write(path)
        return path.read_bytes()


def board(world: World, soccfg_name: str | None = V2) -> str:
    """A device whose board uploaded this reference soccfg (None: none yet)."""
    device = world.device(f"board-{uuid.uuid4().hex[:6]}")
    url = device.heartbeat().json()["UploadUrl"]
    if soccfg_name is not None:
        assert put_file(url, reference_soccfg(soccfg_name).read_bytes()).status_code == 200
    return device.id


def upload(browser: Browser, data: bytes, *, filename: str = "sweep.json.gz",
           csrf: str | None = None, **fields: str) -> requests.Response:
    """Open the submit page, then post its form with this file (multipart, as a browser
    does: the CSRF field first)."""
    page = browser.get("/portal/submit")
    assert page.status_code == 200, page.text[:500]
    form = {"csrf": csrf_of(page) if csrf is None else csrf, "priority": "MEDIUM",
            "team": "", "timeslot": "", "name": "", **fields}
    return browser.session.post(browser.root + "/portal/submit", data=form,
                                files={"file": (filename, data, "application/gzip")},
                                allow_redirects=False, timeout=30)


def upload_id(preview: requests.Response) -> str:
    match = re.search(r'name="upload" value="([^"]+)"', preview.text)
    assert match, preview.text[:1000]
    return match.group(1)


def confirm(browser: Browser, token: str, csrf: str | None = None) -> requests.Response:
    if csrf is None:
        csrf = csrf_of(browser.get("/portal/submit"))
    return browser.post("/portal/submit/confirm", {"csrf": csrf, "upload": token})


def workloads_of(api_key: str, world: World) -> list[dict]:
    return Api(world.service.url, api_key).get("/workloads", params={"Limit": 100}) \
        .json()["Items"]


def staged_files(world: World) -> list[str]:
    return sorted(p.name for p in (world.service.data_dir / "files" / "staging").iterdir())


# -- the form ----------------------------------------------------------------------------
def test_the_form_offers_devices_priorities_my_teams_and_my_timeslots(world: World):
    browser, person = logged_in(world)
    device = board(world)
    mine = new_team(world, scheduler=person["id"])
    theirs = new_team(world)
    page = browser.get("/portal/submit")
    assert page.status_code == 200 and "Submit a workload" in page.text
    assert 'enctype="multipart/form-data"' in page.text and csrf_of(page)
    for label, name in (("Workload file", "file"), ("Device", "device"),
                        ("Priority", "priority"), ("Team", "team"),
                        ("Timeslot", "timeslot"), ("Name", "name")):
        assert f'<label for="{name}">{label}</label>' in page.text
        assert f'id="{name}" name="{name}"' in page.text
    assert f'value="{device}"' in page.text
    assert '<option value="MEDIUM" selected>' in page.text  # the API's default
    assert all(f'<option value="{p}"' in page.text for p in ("HIGH", "LOW"))
    assert f'<option value="{mine["TeamId"]}" selected>' in page.text  # my default team
    assert theirs["TeamId"] not in page.text
    assert ">Check estimate</button>" in page.text
    assert Browser(world.service.root).get("/portal/submit").headers["location"] == "/login"


# -- success -----------------------------------------------------------------------------
def test_a_workload_is_previewed_then_confirmed_into_one_queued_workload(
        world: World, workload: bytes):
    browser, person = logged_in(world)
    device = board(world)
    preview = upload(browser, workload, device=device, priority="HIGH", name="qubit sweep")
    assert preview.status_code == 200, preview.text[:1000]
    assert "Check and confirm" in preview.text and ">Submit workload</button>" in preview.text
    assert "2 programs" in preview.text and "qubit sweep" in preview.text
    assert "Estimated board time" in preview.text and "none: this facility does not charge" \
        in preview.text
    assert workloads_of(person["api_key"], world) == []  # nothing created yet
    token = upload_id(preview)
    assert token not in json.dumps(workload.decode("latin-1"))  # the bytes stay server-side
    assert staged_files(world) != []

    done = confirm(browser, token)
    assert done.status_code == 303, done.text[:1000]
    work_id = done.headers["location"].rsplit("/", 1)[1]
    assert done.headers["location"] == f"/portal/workloads/{work_id}"
    [item] = workloads_of(person["api_key"], world)
    assert item["WorkId"] == work_id and item["WorkStatus"] == "READY"
    detail = Api(world.service.url, person["api_key"]).get(f"/workloads/{work_id}").json()
    assert detail["Priority"] == "HIGH" and detail["WorkloadName"] == "qubit sweep"
    assert detail["DeviceId"] == device
    # the estimate shown is the one the queue uses
    assert duration_text(detail["EstimatedSeconds"]) in preview.text
    assert requests.get(detail["WorkloadUrl"], timeout=30).content == workload
    assert token not in staged_files(world)  # removed once confirmed


def test_a_double_confirm_makes_one_workload(world: World, workload: bytes):
    browser, person = logged_in(world)
    device = board(world)
    token = upload_id(upload(browser, workload, device=device))
    first, second = confirm(browser, token), confirm(browser, token)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert len(workloads_of(person["api_key"], world)) == 1


def test_two_confirms_at_once_make_one_workload(world: World, workload: bytes):
    """A double click: two POSTs of one upload in flight together (two connections with
    the one session cookie)."""
    browser, person = logged_in(world)
    device = board(world)
    token = upload_id(upload(browser, workload, device=device))
    csrf = csrf_of(browser.get("/portal/submit"))
    clicks = []
    for _ in range(2):
        click = Browser(world.service.root)
        click.session.cookies.set("qq_portal", browser.cookie)
        clicks.append(click)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda b: confirm(b, token, csrf), clicks))
    assert [a.status_code for a in answers] == [303, 303], [a.text[:500] for a in answers]
    assert answers[0].headers["location"] == answers[1].headers["location"]
    [item] = workloads_of(person["api_key"], world)
    assert item["WorkStatus"] == "READY"


def test_a_device_without_its_soccfg_is_a_warning_not_a_refusal(world: World,
                                                               workload: bytes):
    browser, _ = logged_in(world)
    device = board(world, soccfg_name=None)
    preview = upload(browser, workload, device=device)
    assert preview.status_code == 200
    assert "has not uploaded its configuration (soccfg) yet" in preview.text


# -- refusals: nothing created -----------------------------------------------------------
def refused_with(resp: requests.Response, status: int, *words: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text[:1000])
    assert "Submit a workload" in resp.text and 'role="alert"' in resp.text  # the form again
    for word in words:
        assert word in resp.text, (word, resp.text[:2000])
    assert "Traceback" not in resp.text


def test_a_workload_for_another_firmware_is_refused_as_userclient_refuses_it(
        world: World, workload: bytes):
    browser, person = logged_in(world)
    v1 = board(world, V1)
    resp = upload(browser, workload, device=v1)
    refused_with(resp, 400, f"sweep.json.gz does not fit device {v1}", "tProc v2 program",
                 "tProc v1")
    assert workloads_of(person["api_key"], world) == []


def test_a_file_that_is_not_a_workload_is_refused(world: World):
    browser, _ = logged_in(world)
    device = board(world)
    refused_with(upload(browser, b"freq = 150 MHz\n", device=device), 400, "not a gzip file")
    refused_with(upload(browser, b"\x89HDF\r\n\x1a\n" + bytes(100), device=device), 400,
                 "HDF5 file (a results file?)")


def test_an_upload_over_the_workload_size_limit_is_refused(world: World):
    browser, person = logged_in(world)
    device = board(world)
    held = staged_files(world)
    resp = upload(browser, bytes(LIMIT + 1), device=device)  # the form's body within bounds
    refused_with(resp, 413, f"limit of {LIMIT} bytes")
    resp = upload(browser, bytes(LIMIT + FORM_ALLOWANCE), device=device)  # the body, too
    refused_with(resp, 413, f"limit of {LIMIT} bytes")
    assert workloads_of(person["api_key"], world) == [] and staged_files(world) == held


def test_a_priority_outside_the_apis_range_is_refused(world: World, workload: bytes):
    browser, _ = logged_in(world)
    device = board(world)
    resp = upload(browser, workload, device=device, priority="URGENT")
    refused_with(resp, 400, "Priority must be one of HIGH, MEDIUM, LOW")


def test_a_team_i_am_not_a_member_of_is_refused(world: World, workload: bytes):
    browser, person = logged_in(world)
    device = board(world)
    theirs = new_team(world)
    resp = upload(browser, workload, device=device, team=theirs["TeamId"])
    refused_with(resp, 404, f"no team {theirs['TeamId']} of yours")
    assert workloads_of(person["api_key"], world) == []


def test_an_unknown_device_is_refused(world: World, workload: bytes):
    browser, _ = logged_in(world)
    refused_with(upload(browser, workload, device="no-such-device"), 404,
                 "no device no-such-device")


def test_a_timeslot_runs_the_work_as_timeslot_work_of_its_team(world: World,
                                                              workload: bytes):
    browser, person = logged_in(world)
    device = board(world)
    team = new_team(world, scheduler=person["id"])
    scheduler = Api(world.service.url, person["api_key"])
    slot = scheduler.post("/reservations", json={"Device": device, "Team": team["TeamId"],
                                                 "Start": at(hours_from_now(1)),
                                                 "End": at(hours_from_now(2))})
    assert slot.status_code == 201, slot.text
    slot_id = slot.json()["Id"]
    assert f'value="{slot_id}"' in browser.get("/portal/submit").text
    other = board(world)
    refused_with(upload(browser, workload, device=other, timeslot=slot_id), 400,
                 f"on device {device}, not on {other}")
    preview = upload(browser, workload, device=device, timeslot=slot_id)
    assert preview.status_code == 200, preview.text[:1000]
    assert "paid with the timeslot" in preview.text
    work_id = confirm(browser, upload_id(preview)).headers["location"].rsplit("/", 1)[1]
    assert scheduler.get(f"/workloads/{work_id}").json()["TeamId"] == team["TeamId"]
    db = Database(world.service.database_target)
    try:
        with db.reading() as conn:
            row = conn.execute("SELECT timeslot, on_slot_end FROM workloads WHERE work_id = ?",
                               (work_id,)).fetchone()
    finally:
        db.close()
    assert (row["timeslot"], row["on_slot_end"]) == (1, "wait")  # as the API's Timeslot


def test_credits_the_team_lacks_are_refused_with_the_numbers(world: World, workload: bytes,
                                                             accounting: Database):
    browser, person = logged_in(world)
    device = board(world)
    team = new_team(world, scheduler=person["id"])
    grant(world, team["TeamId"], 1e-9)
    with accounting.transaction() as conn:
        conn.execute("INSERT INTO prices (device_id, per_used_second, per_reserved_second, "
                     "since, set_by) VALUES (?, ?, ?, ?, ?)", (device, 1e6, 1.0, 0, "test"))
    resp = upload(browser, workload, device=device)
    refused_with(resp, 409, f"team {team['Name']} cannot cover this workload",
                 "its balance is 1e-09 device-seconds", "per used second")
    assert workloads_of(person["api_key"], world) == []

    grant(world, team["TeamId"], 1e9)
    preview = upload(browser, workload, device=device)
    assert preview.status_code == 200, preview.text[:1000]
    assert f"device-seconds of team {team['Name']}" in preview.text  # its cost


# -- CSRF, sessions, escaping ------------------------------------------------------------
def test_the_upload_and_the_confirm_refuse_a_missing_or_wrong_csrf_token(world: World,
                                                                        workload: bytes):
    browser, person = logged_in(world)
    device = board(world)
    for bad in ("", "not-the-token"):
        resp = upload(browser, workload, device=device, csrf=bad)
        assert resp.status_code == 403 and "reload the page" in resp.text
    resp = browser.session.post(browser.root + "/portal/submit",
                                data={"csrf": csrf_of(browser.get("/portal/submit")),
                                      "device": device},
                                files={"file": ("w.json.gz", workload)},
                                headers={"Origin": "https://evil.example"},
                                allow_redirects=False, timeout=30)
    assert resp.status_code == 403
    token = upload_id(upload(browser, workload, device=device))
    for bad in ("", "not-the-token"):
        assert confirm(browser, token, csrf=bad).status_code == 403
    assert workloads_of(person["api_key"], world) == []
    assert confirm(browser, token).status_code == 303  # the right token still works


def test_a_token_from_another_users_session_is_refused_and_creates_nothing(
        world: World, workload: bytes):
    owner, owner_person = logged_in(world)
    stranger, stranger_person = logged_in(world)
    device = board(world)
    token = upload_id(upload(owner, workload, device=device))
    resp = confirm(stranger, token)
    assert resp.status_code == 404 and "upload the file again" in resp.text
    assert workloads_of(stranger_person["api_key"], world) == []
    assert workloads_of(owner_person["api_key"], world) == []
    # nor from another session of the same user, nor a made-up one
    again = Browser(world.service.root)
    assert again.login(owner_person["email"], owner_person["password"]).status_code == 303
    assert confirm(again, token).status_code == 404
    assert confirm(owner, str(uuid.uuid4())).status_code == 404
    assert workloads_of(owner_person["api_key"], world) == []


def test_a_name_and_a_file_name_are_shown_as_text(world: World, workload: bytes):
    browser, _ = logged_in(world)
    device = board(world)
    preview = upload(browser, workload, device=device, name=SCRIPT)
    assert preview.status_code == 200
    assert SCRIPT not in preview.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in preview.text
    refused = upload(browser, b"not a workload", device=device, filename=SCRIPT)
    assert refused.status_code == 400
    assert SCRIPT not in refused.text and "&lt;script&gt;" in refused.text


# -- the staged uploads' store -----------------------------------------------------------
def test_an_expired_upload_cannot_be_confirmed_and_the_sweep_removes_it(db: Database,
                                                                       tmp_path: Path):
    files = LocalFiles(tmp_path / "files")
    files.create()
    store = UploadStore(db, files)

    def held(now: int) -> dict:
        return store.stage(_staged(files, b"workload"), session_hash="s1", user_id="u1",
                           device_id="d1", priority="MEDIUM", team_id=None, timeslot=False,
                           workload_name=None, file_name="w.json.gz", now=now)

    old, fresh = held(0), held(STAGED_MS)
    assert store.pending(fresh["upload_id"], "s1", STAGED_MS)["sha256"] == sha(b"workload")
    with pytest.raises(Exception, match="upload the file again"):
        store.pending(old["upload_id"], "s1", STAGED_MS)  # expired
    with pytest.raises(Exception, match="upload the file again"):
        store.pending(fresh["upload_id"], "another-session", STAGED_MS)
    assert store.sweep(STAGED_MS) == 1
    assert sorted(p.name for p in (tmp_path / "files" / "staging").iterdir()) == \
        [fresh["upload_id"]]
    assert store.sweep(2 * STAGED_MS) == 1
    assert list((tmp_path / "files" / "staging").iterdir()) == []


def _staged(files: FileStore, data: bytes) -> Staged:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    return asyncio.run(files.stage(chunks(), 1024))


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_staged_file_round_trips_through_each_store_and_no_url_reaches_it(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest):
    if kind == "local":
        files: FileStore = LocalFiles(tmp_path / "files")
    else:
        s3: MotoS3 = request.getfixturevalue("s3")
        files = S3Files(f"s3://{s3.new_bucket()}/queue", tmp_path / "tmp", client=s3.client)
    files.create()
    key = staging_key(str(uuid.uuid4()))
    files.commit(_staged(files, b"the workload's bytes"), key)
    fetched = files.fetch(key)
    try:
        assert fetched.path.read_bytes() == b"the workload's bytes"
        assert (fetched.size, fetched.sha256) == (20, sha(b"the workload's bytes"))
    finally:
        files.discard(fetched)
    with pytest.raises(NotFound):
        parse_key(key)  # the presigned file URLs' keys: never a staged file
    files.delete(key)
    with pytest.raises(NotFound):
        files.fetch(key)
    assert list(files.tmp.iterdir()) == []  # a failed fetch leaves nothing behind
