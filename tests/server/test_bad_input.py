"""Bad input: each a 4xx with {ErrorMessage, ErrorKind}, never a 500, and nothing changed."""
from __future__ import annotations

import re
import time

import requests

from tests.server.api import World, assert_error, put_file, sha, status, submit


def count_workloads(world: World) -> int:
    total, key = 0, None
    while True:
        params = {"Limit": 100}
        if key:
            params["ExclusiveStartKeyJson"] = requests.compat.json.dumps(key)
        page = world.admin.get("/workloads", params=params).json()
        total += len(page["Items"])
        key = page.get("LastEvaluatedKey")
        if not key:
            return total


def test_bad_json_bodies_are_400_and_create_nothing(world: World):
    device = world.device()
    user, _ = world.user()
    before = count_workloads(world)
    raw = {"headers": {"Content-Type": "application/json"}}
    assert_error(user.post("/workloads", data=b"{not json", **raw), 400, "invalid_json")
    assert_error(user.post("/workloads", data=b"[1, 2]", **raw), 400, "invalid_json")
    assert_error(user.post("/workloads", data=b"\xff\xfe", **raw), 400, "invalid_json")
    assert_error(user.post("/workloads", data=b"", **raw), 400, "invalid_json")
    assert_error(user.post("/workloads", json={"DeviceId": 5, "Priority": "HIGH"}), 400)
    assert_error(user.post("/workloads", json={"Priority": "HIGH"}), 400)
    assert_error(user.post("/workloads", json={"DeviceId": device.id, "Priority": "URGENT"}), 400)
    assert_error(user.post("/workloads", json={"DeviceId": device.id, "Priority": 1}), 400)
    assert_error(user.post("/workloads", json={"DeviceId": device.id, "ContentSHA256": "abc"}), 400)
    assert_error(user.post("/workloads", json={"DeviceId": device.id, "WorkloadName": ["x"]}), 400)
    unknown = user.post("/workloads", json={"DeviceId": "no-such-device", "Priority": "HIGH"})
    assert_error(unknown, 404, "not_found")
    assert count_workloads(world) == before
    # unknown fields are ignored
    extra = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW",
                                           "Colour": "blue"})
    assert extra.status_code == 201


def test_bad_device_and_heartbeat_bodies(world: World):
    device = world.device()
    assert_error(world.admin.post("/devices", json={"DeviceName": "x", "RefreshTimeout": "60"}),
                 400)
    assert_error(world.admin.post("/devices", json={"DeviceName": "x", "RefreshTimeout": True}),
                 400)
    assert_error(world.admin.post("/devices", json={"DeviceName": ""}), 400)
    assert_error(world.admin.post("/devices", json={}), 400)
    assert_error(device.api.put(f"/devices/{device.id}", json={"DeviceStatus": "ONLINE"}), 400)
    assert_error(device.api.put(f"/devices/{device.id}", json={
        "DeviceStatus": "SLEEPY", "DeviceConfigurationFileExtension": "json"}), 400)
    assert_error(device.heartbeat(Health="fine"), 400)
    assert_error(device.next_work(wait=99), 400)
    assert_error(device.api.get(f"/devices/{device.id}/workload", params={"WaitSeconds": "x"}),
                 400)
    assert world.admin.get(f"/devices/{device.id}").json()["DeviceStatus"] == "OFFLINE"


def test_bad_outcome_bodies(world: World):
    device = world.device()
    user, _ = world.user()
    work = submit(user, device.id)
    device.next_work()
    assert_error(device.report(work, {"Outcome": "EXPLODED"}), 400)
    assert_error(device.report(work, {"Outcome": "FAILED", "PartialResults": "yes"}), 400)
    assert_error(device.report(work, {"DeviceSeconds": -1}), 400)
    assert_error(device.api.put(f"/devices/{device.id}/workloads/{work}", data=b"{",
                                headers={"Content-Type": "application/json"}), 400)
    assert status(user, work)["WorkStatus"] == "EXECUTING"


def test_bad_list_parameters(world: World):
    user, _ = world.user()
    assert_error(user.get("/workloads", params={"Limit": 0}), 400)
    assert_error(user.get("/workloads", params={"Limit": 101}), 400)
    assert_error(user.get("/workloads", params={"Limit": "ten"}), 400)
    assert_error(user.get("/workloads", params={"Status": "SLEEPING"}), 400)
    assert_error(user.get("/workloads", params={"ExclusiveStartKeyJson": "{"}), 400)
    assert_error(user.get("/workloads", params={"ExclusiveStartKeyJson": '{"WorkId": 1}'}), 400)
    assert_error(user.get("/workloads/not-a-workload"), 404)


def test_oversized_json_body_is_413(world: World):
    user, _ = world.user()
    big = b'{"DeviceId": "' + b"x" * (100 * 1024) + b'"}'
    assert_error(user.post("/workloads", data=big, headers={"Content-Type": "application/json"}),
                 413, "payload_too_large")


def test_oversized_upload_is_413_and_stays_created(queue_service_factory):
    service = queue_service_factory(max_upload_mb=0.01)  # about 10 kB
    world = World(service)
    device = world.device()
    user, _ = world.user()
    created = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"}).json()
    assert_error(put_file(created["UploadUrl"], b"x" * 20_000), 413, "payload_too_large")

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(20):
            yield b"y" * 1000
    streamed = requests.put(created["UploadUrl"], data=chunks(), timeout=30,
                            headers={"Content-Type": "application/octet-stream"})
    assert_error(streamed, 413, "payload_too_large")
    assert status(user, created["WorkId"])["WorkStatus"] == "CREATED"
    assert list((service.data_dir / "files" / "tmp").iterdir()) == []
    assert put_file(created["UploadUrl"], b"small").status_code == 200


def test_tampered_and_expired_urls_are_403(queue_service_factory):
    service = queue_service_factory(url_lifetime_seconds=1)
    world = World(service)
    device = world.device()
    user, _ = world.user()
    created = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"}).json()
    url = created["UploadUrl"]
    tampered = re.sub(r"Signature=([0-9a-f])", lambda m: "Signature=" + ("0" if m.group(1) != "0"
                                                                         else "1"), url)
    assert_error(put_file(tampered, b"data"), 403, "bad_signature")
    other_key = url.replace(created["WorkId"], "00000000-0000-4000-8000-000000000000")
    assert_error(put_file(other_key, b"data"), 403, "bad_signature")
    assert_error(put_file(url.split("?")[0], b"data"), 403, "bad_signature")
    later = re.sub(r"Expires=(\d+)", lambda m: f"Expires={int(m.group(1)) + 100}", url)
    assert_error(put_file(later, b"data"), 403, "bad_signature")
    expires = int(re.search(r"Expires=(\d+)", url).group(1))
    while time.time() <= expires + 0.05:  # the URL's own deadline, not a guess
        time.sleep(0.05)
    assert_error(put_file(url, b"data"), 403, "url_expired")
    assert status(user, created["WorkId"])["WorkStatus"] == "CREATED"
    # a stray S3 query parameter is ignored
    fresh = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"}).json()
    assert put_file(fresh["UploadUrl"] + "&x-amz-checksum-crc32=AAAA", b"ok").status_code == 200


def test_checksum_mismatch_is_400_and_nothing_changes(world: World):
    device = world.device()
    user, _ = world.user()
    data = b"the real workload"
    created = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW",
                                            "ContentSHA256": sha(data)}).json()
    assert_error(put_file(created["UploadUrl"], b"damaged"), 400, "checksum_mismatch")
    assert status(user, created["WorkId"])["WorkStatus"] == "CREATED"
    assert put_file(created["UploadUrl"], data).status_code == 200
    assert status(user, created["WorkId"])["WorkStatus"] == "READY"
    # results too
    device.next_work()
    results = b"results"
    url = device.report(created["WorkId"], {"ContentSHA256": sha(results)}).json()["UploadUrl"]
    assert_error(put_file(url, b"other"), 400, "checksum_mismatch")
    assert status(user, created["WorkId"])["WorkStatus"] == "UPLOADING"
    assert put_file(url, results).status_code == 200
    assert status(user, created["WorkId"])["WorkStatus"] == "DONE"


def test_file_paths_and_methods_that_do_not_exist(world: World):
    root = world.service.root
    assert_error(requests.put(root + "/files/etc/passwd?Expires=1&Signature=0", data=b"x",
                              timeout=10), 404)
    assert_error(requests.get(root + "/files/workloads/../../secret", timeout=10), 404)
    assert_error(requests.delete(world.service.url + "/workloads", timeout=10), 405)


def test_an_unknown_path_says_to_check_api_endpoint(world: World):
    """A wrong api_endpoint (a missing or extra prefix) is the usual cause of a 404 on a path."""
    body = assert_error(world.admin.get("/dev/workloads"), 404, "not_found")
    assert "api_endpoint" in body["ErrorMessage"] and "/dev/workloads" in body["ErrorMessage"]


def test_deeply_nested_json_is_400_not_500(world: World):
    """JSON nested past the parser's recursion limit (well within the size limit) is a
    plain bad request on every JSON path: bodies, the Cognito endpoint, the page key."""
    device = world.device()
    user, _ = world.user()
    raw = {"headers": {"Content-Type": "application/json"}}
    for deep in ("[" * 20000 + "]" * 20000, '{"a":' * 5000 + "1" + "}" * 5000,
                 '{"Health": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"):
        body = deep.encode()
        assert_error(user.post("/workloads", data=body, **raw), 400, "invalid_json")
        assert_error(user.post("/api-keys", data=body, **raw), 400, "invalid_json")
        assert_error(world.admin.call("PATCH", f"/devices/{device.id}", data=body, **raw),
                     400, "invalid_json")
        assert_error(device.api.put(f"/devices/{device.id}", data=body, **raw), 400,
                     "invalid_json")
        login = requests.post(world.service.root + "/", data=body, timeout=30, headers={
            "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth"})
        assert login.status_code == 400, login.text
        assert login.json()["__type"] == "SerializationException"
    page = user.get("/workloads", params={"ExclusiveStartKeyJson": "[" * 3000})
    assert_error(page, 400, "bad_request")
    assert device.heartbeat().status_code == 200  # the service is fine


def test_numbers_json_cannot_carry_are_400_and_break_no_later_answer(world: World):
    """NaN, Infinity and numbers out of range were stored and then failed every later
    answer that showed them (a 500 on the workload, on the device for admins)."""
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    assert device.next_work().json()["WorkId"] == work_id
    raw = {"headers": {"Content-Type": "application/json"}}
    for number in ("NaN", "Infinity", "-Infinity", "1e999", "1" + "0" * 400):
        report = device.api.put(f"/devices/{device.id}/workloads/{work_id}",
                                data=f'{{"DeviceSeconds": {number}}}', **raw)
        assert_error(report, 400, "invalid_json")
        beat = device.api.put(f"/devices/{device.id}", data=(
            '{"DeviceStatus": "ONLINE", "DeviceConfigurationFileExtension": "json", '
            f'"Health": {{"x": {number}}}}}'), **raw)
        assert_error(beat, 400, "invalid_json")
    assert status(user, work_id)["WorkStatus"] == "EXECUTING"
    assert world.admin.get(f"/devices/{device.id}").status_code == 200
    fine = device.report(work_id, {"DeviceSeconds": 1.5e3, "ProgramsDone": 2 ** 62})
    assert fine.status_code == 200, fine.text
