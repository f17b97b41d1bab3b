"""Part 1 contract: each stock endpoint's fields, status codes, transitions and queue order."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.helpers import wait_for
from tests.server.api import ISO, Api, World, assert_error, put_file, status, submit

RACERS = 6  # uploads of one workload file at once


def test_capabilities_lists_the_extras_without_auth(world: World):
    resp = requests.get(world.service.url + "/capabilities", timeout=10)
    assert resp.status_code == 200
    body = resp.json()
    assert body["Service"] == "qick-queue"
    assert {"cancel", "long-poll", "leases", "idempotency", "sha256"} <= set(body["Features"])


def test_post_users_answers_200_with_key_and_temporary_password(world: World):
    resp = world.admin.post("/users", json={"Email": "new.person@lab.test", "FullName": "N P"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["Email"] == "new.person@lab.test"
    assert body["ApiKey"].startswith("qk_") and len(body["ApiKey"]) == 46
    assert len(body["TemporaryPassword"]) >= 8
    again = world.admin.post("/users", json={"Email": "new.person@lab.test", "FullName": "N P"})
    assert again.status_code == 409


def test_post_devices_answers_201_with_client_credentials(world: World):
    resp = world.admin.post("/devices", json={"DeviceName": "qick-a", "RefreshTimeout": 30})
    assert resp.status_code == 201
    body = resp.json()
    assert set(body) == {"DeviceId", "DeviceName", "ClientId", "ClientSecret"}
    assert body["DeviceName"] == "qick-a"


def test_new_device_is_offline_with_zero_last_refreshed_and_no_config_url(world: World):
    device = world.device()
    user, _ = world.user()
    listed = user.get("/devices")
    assert listed.status_code == 200
    item = next(d for d in listed.json() if d["DeviceId"] == device.id)
    assert set(item) == {"DeviceId", "DeviceName", "DeviceStatus", "LastRefreshed",
                         "RefreshTimeout"}
    assert item["DeviceStatus"] == "OFFLINE" and item["LastRefreshed"] == 0
    one = user.get(f"/devices/{device.id}").json()
    assert one["DeviceStatus"] == "OFFLINE"
    assert "DeviceConfigurationUrl" not in one
    assert "Health" not in one  # not an admin
    assert one["QueueLength"] == 0


def test_heartbeat_sets_status_and_config_upload_sets_configuration(files_world: World):
    device = files_world.device()
    user, _ = files_world.user()
    beat = device.heartbeat("BUSY")
    assert beat.status_code == 200
    body = beat.json()
    assert body["DeviceId"] == device.id and body["CancelRequested"] == []
    seen = user.get(f"/devices/{device.id}").json()
    assert seen["DeviceStatus"] == "BUSY" and ISO.match(seen["LastRefreshed"])
    assert put_file(body["UploadUrl"], b'{"soccfg": 1}').status_code == 200
    seen = user.get(f"/devices/{device.id}").json()
    assert ISO.match(seen["ConfigurationLastRefreshed"])
    config = requests.get(seen["DeviceConfigurationUrl"], timeout=10)
    assert config.status_code == 200 and config.content == b'{"soccfg": 1}'


def test_device_goes_offline_after_refresh_timeout(world: World):
    device = world.device(refresh_timeout=1)
    device.heartbeat()
    assert world.admin.get(f"/devices/{device.id}").json()["DeviceStatus"] == "ONLINE"
    wait_for(lambda: world.admin.get(f"/devices/{device.id}").json()["DeviceStatus"]
             == "OFFLINE", 5, interval=0.1, what="OFFLINE")


def test_workload_walks_created_ready_executing_uploading_done(files_world: World):
    device = files_world.device()
    user, _ = files_world.user()
    assert device.next_work().json() == []
    resp = user.post("/workloads", json={"DeviceId": device.id, "Priority": "HIGH"})
    assert resp.status_code == 201
    created = resp.json()
    assert set(created) == {"WorkId", "UploadUrl"}
    work_id = created["WorkId"]
    first = status(user, work_id)
    assert first["WorkStatus"] == "CREATED" and ISO.match(first["CreatedAt"])
    assert first["ReadyAt"] is None
    assert device.next_work().json() == []  # CREATED is not handed out

    assert put_file(created["UploadUrl"], b"program-dump").status_code == 200
    ready = status(user, work_id)
    assert ready["WorkStatus"] == "READY" and ISO.match(ready["ReadyAt"])
    assert requests.get(ready["WorkloadUrl"], timeout=10).content == b"program-dump"

    handed = device.next_work().json()
    assert set(handed) == {"WorkId", "WorkloadUrl"} and handed["WorkId"] == work_id
    assert requests.get(handed["WorkloadUrl"], timeout=10).content == b"program-dump"
    running = status(user, work_id)
    assert running["WorkStatus"] == "EXECUTING" and ISO.match(running["StartedAt"])
    assert running["Attempts"] == 1
    assert device.next_work().json()["WorkId"] == work_id  # stock: handed back while running

    report = device.report(work_id)
    assert report.status_code == 200
    assert set(report.json()) == {"WorkId", "UploadUrl"}
    assert status(user, work_id)["WorkStatus"] == "UPLOADING"
    assert device.next_work().json()["WorkId"] == work_id  # and while uploading

    assert put_file(report.json()["UploadUrl"], b"hdf5-results").status_code == 200
    done = status(user, work_id)
    assert done["WorkStatus"] == "DONE" and ISO.match(done["FinishedAt"])
    assert done["DeviceSeconds"] is not None and done["DeviceSeconds"] >= 0
    assert requests.get(done["WorkloadResultUrl"], timeout=10).content == b"hdf5-results"
    assert device.next_work().json() == []


def _state(user: Api, work_id: str) -> dict:
    """What a repeated upload must not change (URLs and estimates are made per answer)."""
    body = status(user, work_id)
    return {k: body.get(k) for k in ("WorkStatus", "ReadyAt", "StartedAt", "FinishedAt",
                                      "Attempts", "DeviceSeconds", "ErrorKind")}


def test_workload_file_sent_again_with_the_same_bytes_is_200_and_changes_nothing(
        files_world: World):
    """Not the stock behaviour (a second upload set running work back to READY, so one
    lost answer ran it twice): a workload file is immutable once uploaded."""
    device = files_world.device()
    user, _ = files_world.user()
    resp = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"}).json()
    assert put_file(resp["UploadUrl"], b"v1").status_code == 200
    ready = _state(user, resp["WorkId"])
    assert ready["WorkStatus"] == "READY"
    again = put_file(resp["UploadUrl"], b"v1")
    assert again.status_code == 200
    assert _state(user, resp["WorkId"]) == ready  # ReadyAt and all: unchanged
    assert device.next_work().json()["WorkId"] == resp["WorkId"]
    running = _state(user, resp["WorkId"])
    assert put_file(resp["UploadUrl"], b"v1").status_code == 200
    after = _state(user, resp["WorkId"])
    assert after["WorkStatus"] == "EXECUTING" and after["Attempts"] == 1
    assert after["StartedAt"] == running["StartedAt"] and after["ReadyAt"] == ready["ReadyAt"]


def test_workload_file_with_other_bytes_is_409_in_every_state(files_world: World):
    device = files_world.device()
    user, _ = files_world.user()
    resp = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"}).json()
    work = resp["WorkId"]
    put_file(resp["UploadUrl"], b"v1")
    ready = _state(user, work)
    body = assert_error(put_file(resp["UploadUrl"], b"v2"), 409, "immutable_workload_file")
    assert "cannot be replaced" in body["ErrorMessage"] and "submit a new" in body["ErrorMessage"]
    assert _state(user, work) == ready
    assert device.next_work().json()["WorkId"] == work
    running = _state(user, work)
    assert_error(put_file(resp["UploadUrl"], b"v2"), 409, "immutable_workload_file")
    assert _state(user, work) == running and running["WorkStatus"] == "EXECUTING"
    url = device.report(work).json()["UploadUrl"]
    assert_error(put_file(resp["UploadUrl"], b"v2"), 409, "immutable_workload_file")
    assert status(user, work)["WorkStatus"] == "UPLOADING"
    assert put_file(url, b"results").status_code == 200
    done = _state(user, work)
    assert_error(put_file(resp["UploadUrl"], b"v2"), 409, "immutable_workload_file")
    assert put_file(resp["UploadUrl"], b"v1").status_code == 200  # a late retry: harmless
    assert _state(user, work) == done and done["WorkStatus"] == "DONE"
    assert requests.get(status(user, work)["WorkloadUrl"], timeout=10).content == b"v1"
    assert device.next_work().json() == []


def test_racing_first_uploads_of_other_bytes_keep_exactly_one(files_world: World):
    """Uploads of one workload file with other bytes, all at once (no announced SHA-256, as
    the original client): one is kept (200, READY), every other is 409, and the stored file
    is the kept one's bytes."""
    device = files_world.device()
    user, _ = files_world.user()
    created = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"}).json()
    start = threading.Barrier(RACERS)

    def upload(n: int) -> tuple[int, bytes]:
        data = f"version {n} ".encode() * 50_000
        start.wait(10)
        return put_file(created["UploadUrl"], data).status_code, data

    with ThreadPoolExecutor(RACERS) as pool:
        answers = list(pool.map(upload, range(RACERS)))
    kept = [data for code, data in answers if code == 200]
    assert len(kept) == 1 and sorted(code for code, _ in answers) == [200] + [409] * (RACERS - 1)
    ready = status(user, created["WorkId"])
    assert ready["WorkStatus"] == "READY"
    assert requests.get(ready["WorkloadUrl"], timeout=30).content == kept[0]


def test_a_file_download_streams_a_byte_range(files_world: World):
    device = files_world.device()
    user, _ = files_world.user()
    data = bytes(range(256)) * 40
    url = status(user, submit(user, device.id, data))["WorkloadUrl"]
    whole = requests.get(url, timeout=30)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = requests.get(url, headers={"Range": "bytes=100-299"}, timeout=30)
    assert part.status_code == 206 and part.content == data[100:300]
    assert part.headers["Content-Range"] == f"bytes 100-299/{len(data)}"
    tail = requests.get(url, headers={"Range": "bytes=-10"}, timeout=30)
    assert tail.status_code == 206 and tail.content == data[-10:]
    beyond = requests.get(url, headers={"Range": f"bytes={len(data) + 5}-"}, timeout=30)
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(data)}"


def test_results_sent_again_after_done_change_nothing(files_world: World):
    device = files_world.device()
    user, _ = files_world.user()
    work = submit(user, device.id)
    device.next_work()
    url = device.report(work).json()["UploadUrl"]
    assert put_file(url, b"results").status_code == 200
    done = _state(user, work)
    assert put_file(url, b"results").status_code == 200  # the uploader's retry
    assert _state(user, work) == done and done["WorkStatus"] == "DONE"
    assert requests.get(status(user, work)["WorkloadResultUrl"], timeout=10).content == b"results"


def test_report_on_ready_work_answers_url_and_leaves_it_ready(world: World):
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    resp = device.report(work_id)
    assert resp.status_code == 200 and "UploadUrl" in resp.json()
    assert status(user, work_id)["WorkStatus"] == "READY"


def test_queue_order_is_status_then_priority_then_ready_time(world: World):
    device = world.device()
    user, _ = world.user()
    low = submit(user, device.id, priority="LOW")
    medium1 = submit(user, device.id, priority="MEDIUM")
    high = submit(user, device.id, priority="HIGH")
    medium2 = submit(user, device.id, priority="MEDIUM")
    order = []
    for _ in range(4):
        work_id = device.next_work().json()["WorkId"]
        order.append(work_id)
        device.report(work_id)
        assert device.next_work().json()["WorkId"] == work_id  # UPLOADING comes first
        put_file(device.report(work_id).json()["UploadUrl"], b"r")
    assert order == [high, medium1, medium2, low]


def test_list_workloads_newest_first_paged_by_five(world: World):
    device = world.device()
    user, user_id = world.user()
    ids = [submit(user, device.id, data=None, WorkloadName=f"w{i}") for i in range(7)]
    page1 = user.get("/workloads", params={"DeviceId": device.id})
    assert page1.status_code == 200
    body = page1.json()
    assert len(body["Items"]) == 5
    # the stock item's fields, and ours: the workload's own name
    assert set(body["Items"][0]) == {"WorkId", "UserGivenName", "Priority", "DeviceId",
                                     "ReadyAt", "WorkStatus", "CreatedAt", "WorkloadName"}
    assert [i["WorkloadName"] for i in body["Items"]] == ["w6", "w5", "w4", "w3", "w2"]
    assert set(body["LastEvaluatedKey"]) == {"WorkId", "DeviceId", "CreatedAt"}
    page2 = user.get("/workloads", params={
        "DeviceId": device.id,
        "ExclusiveStartKeyJson": requests.compat.json.dumps(body["LastEvaluatedKey"])}).json()
    assert "LastEvaluatedKey" not in page2
    seen = [i["WorkId"] for i in body["Items"] + page2["Items"]]
    assert seen == list(reversed(ids))
    # the AccountId filter (admin) narrows to one user's work
    mine = world.admin.get("/workloads", params={"AccountId": user_id, "Limit": 100}).json()
    assert {i["WorkId"] for i in mine["Items"]} == set(ids)
    limited = user.get("/workloads", params={"Limit": 2, "Status": "CREATED"}).json()
    assert len(limited["Items"]) == 2


def test_prefix_puts_the_api_under_a_stage_path(queue_service_factory):
    service = queue_service_factory(prefix="/dev")
    world = World(service)
    assert service.url.endswith("/dev")
    assert requests.get(service.url + "/capabilities", timeout=10).status_code == 200
    assert requests.get(service.root + "/capabilities", timeout=10).status_code == 404
    device = world.device()  # token from the root's /oauth2/token
    user, _ = world.user()
    work_id = submit(user, device.id)  # presigned /files/ at the root
    assert device.next_work().json()["WorkId"] == work_id
    assert Api(service.url, service.admin_key).get("/devices").status_code == 200
