"""Bad input: each a 4xx with {ErrorMessage, ErrorKind}, never a 500, and nothing changed."""
from __future__ import annotations

import math
import re
import time

import requests

from queueservice.db import Database
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


def test_oversized_upload_is_413_and_stays_created(queue_service_factory, files_options,
                                                    database_options):
    service = queue_service_factory(max_upload_mb=0.01, **files_options,  # about 10 kB
                                    **database_options)
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


def test_tampered_and_expired_urls_are_403(queue_service_factory, database_options):
    service = queue_service_factory(url_lifetime_seconds=1, **database_options)
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


def test_checksum_mismatch_is_400_and_nothing_changes(files_world: World):
    device = files_world.device()
    user, _ = files_world.user()
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


RAW_JSON = {"headers": {"Content-Type": "application/json"}}
SURROGATE = '"\\ud800"'  # valid JSON text, but no Unicode string: SQLite cannot store it


def test_lone_surrogates_are_400_in_every_string_field(world: World):
    """A lone UTF-16 surrogate anywhere (a value, a key, deep inside Health) is refused
    where JSON is parsed, on every JSON path, before anything reaches the database."""
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    assert device.next_work().json()["WorkId"] == work_id
    before = count_workloads(world)
    s = SURROGATE
    cases = [
        (world.admin, "POST", "/users", f'{{"Email": {s}, "FullName": "x"}}'),
        (world.admin, "POST", "/users", f'{{"Email": "a@b.c", "FullName": {s}}}'),
        (world.admin, "POST", "/devices", f'{{"DeviceName": {s}}}'),
        (world.admin, "PATCH", f"/devices/{device.id}", f'{{"DeviceName": {s}}}'),
        (user, "POST", "/workloads", f'{{"DeviceId": {s}, "Priority": "LOW"}}'),
        (user, "POST", "/workloads",
         f'{{"DeviceId": "{device.id}", "WorkloadName": {s}}}'),
        (user, "POST", "/api-keys", f'{{"Label": {s}}}'),
        (device.api, "PUT", f"/devices/{device.id}",
         '{"DeviceStatus": "ONLINE", "DeviceConfigurationFileExtension": "json", '
         f'"Health": {{"Reason": {s}, {s}: 1}}}}'),
        (device.api, "PUT", f"/devices/{device.id}/workloads/{work_id}",
         f'{{"Outcome": "FAILED", "ErrorMessage": {s}}}'),
    ]
    for api, method, path, body in cases:
        assert_error(api.call(method, path, data=body.encode(), **RAW_JSON), 400,
                     "invalid_json")
    for target, body in (
            ("InitiateAuth", f'{{"AuthFlow": "USER_PASSWORD_AUTH", "AuthParameters": '
                             f'{{"USERNAME": {s}, "PASSWORD": {s}}}}}'),
            ("InitiateAuth", f'{{"AuthFlow": "REFRESH_TOKEN_AUTH", "AuthParameters": '
                             f'{{"REFRESH_TOKEN": {s}}}}}'),
            ("ChangePassword", f'{{"AccessToken": "x", "PreviousPassword": {s}, '
                               f'"ProposedPassword": {s}}}')):
        login = requests.post(world.service.root + "/", data=body.encode(), timeout=30, headers={
            "X-Amz-Target": f"AWSCognitoIdentityProviderService.{target}"})
        assert login.status_code == 400, login.text
        assert login.json()["__type"] == "SerializationException"
    assert count_workloads(world) == before
    assert status(user, work_id)["WorkStatus"] == "EXECUTING"
    assert device.heartbeat().status_code == 200  # the same connection still serves


def test_query_numbers_and_page_keys_that_int_or_datetime_refuse(world: World):
    """``Limit=²`` passes str.isdigit() and fails int(); 5,000 digits fail int(); a page
    key with a date no datetime holds fails the timestamp: each a 400, not a 500."""
    user, _ = world.user()
    for limit in ("²", "٣", "1" * 5000, "-1", "1.5", " 5"):
        assert_error(user.get("/workloads", params={"Limit": limit}), 400, "bad_request")
    for key in ('{"WorkId": "x", "CreatedAt": 1e20}', '{"WorkId": "x", "CreatedAt": -1e20}',
                '{"WorkId": "x", "CreatedAt": "99999-01-01T00:00:00Z"}',
                '{"WorkId": "x", "CreatedAt": ' + "[" * 100 + "]" * 100 + "}",
                '{"WorkId": ' + SURROGATE + ', "CreatedAt": "2024-01-01T00:00:00.000Z"}'):
        assert_error(user.get("/workloads", params={"ExclusiveStartKeyJson": key}), 400,
                     "bad_request")
    device = world.device()
    for wait in ("²", "1" * 5000, "nan", "inf", "1e400"):
        assert_error(device.next_work(wait=wait), 400, "bad_request")
    assert user.get("/workloads", params={"Limit": "100"}).status_code == 200


def test_file_urls_with_non_ascii_or_huge_parameters_are_403(world: World):
    device = world.device()
    user, _ = world.user()
    created = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"}).json()
    base = created["UploadUrl"].split("?")[0]
    good_expires = re.search(r"Expires=(\d+)", created["UploadUrl"]).group(1)
    for query in ({"Expires": good_expires, "Signature": "é"},
                  {"Expires": good_expires, "Signature": "\u00e9" * 64},
                  {"Expires": "²", "Signature": "0" * 64},
                  {"Expires": "9" * 5000, "Signature": "0" * 64},
                  {"Expires": "99999999999999999999", "Signature": "0" * 64}):
        assert_error(requests.put(base, params=query, data=b"x", timeout=30), 403,
                     "bad_signature")
        assert_error(requests.get(base, params=query, timeout=30), 403, "bad_signature")
    assert status(user, created["WorkId"])["WorkStatus"] == "CREATED"


def test_absurd_device_seconds_are_refused_and_never_stored(world: World):
    """Finite but absurd (1e308, more than a year) is refused like the non-finite."""
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    device.next_work()
    for number in ("1e308", "1e400", "31622401", "-0.5"):
        report = device.api.put(f"/devices/{device.id}/workloads/{work_id}",
                                data=f'{{"DeviceSeconds": {number}}}', **RAW_JSON)
        assert_error(report, 400)
    assert status(user, work_id)["WorkStatus"] == "EXECUTING"
    assert device.report(work_id, {"DeviceSeconds": 86400.5}).status_code == 200


def test_bad_values_in_an_old_database_break_no_answer(world: World):
    """What an old service stored before the edge refused it (Infinity board times, a
    Health with NaN) reads back as absent, never as a 500, for everyone queued behind."""
    device = world.device()
    user, _ = world.user()
    done = submit(user, device.id)
    device.next_work()
    url = device.report(done, {"DeviceSeconds": 3}).json()["UploadUrl"]
    assert put_file(url, b"results").status_code == 200
    running = submit(user, device.id)
    assert device.next_work().json()["WorkId"] == running
    waiting = submit(user, device.id)
    assert device.heartbeat().status_code == 200
    db = Database(world.service.database_target)
    try:
        with db.transaction() as conn:
            conn.execute("UPDATE workloads SET device_seconds = ? WHERE work_id = ?",
                         (math.inf, done))
            conn.execute("UPDATE workloads SET estimated_seconds = 1e308 "
                         "WHERE work_id IN (?, ?)", (running, waiting))
            conn.execute("UPDATE devices SET health = ? WHERE device_id = ?",
                         ('{"Reason": "x", "Temp": NaN}', device.id))
    finally:
        db.close()
    assert status(user, done)["DeviceSeconds"] is None
    detail = status(user, waiting)
    assert detail["WorkStatus"] == "READY" and "EstimatedSeconds" not in detail
    assert detail["EstimatedStartAt"] is not None  # the fallback estimate, not a 500
    shown = world.admin.get(f"/devices/{device.id}")
    assert shown.status_code == 200 and shown.json()["Health"] is None
    assert world.admin.get("/devices").status_code == 200


def test_a_nul_character_is_refused_alike_on_every_engine(world: World):
    """No database text holds a NUL (PostgreSQL's cannot): an id in the path with one names
    nothing (404), a query parameter or a JSON string with one is a 400, a client id with
    one is a wrong client id; never a 500, on SQLite as on PostgreSQL, and nothing stored."""
    device = world.device()
    user, user_id = world.user()
    work_id = submit(user, device.id)
    before = count_workloads(world)
    for resp in (world.admin.get("/devices/%00"), user.get("/workloads/a%00b"),
                 user.post("/workloads/%00/cancel"), device.api.get(
                     f"/devices/{device.id}/workloads/%00"),
                 world.admin.post("/users/%00/disable"), world.admin.post(
                     "/api-keys/%00/revoke"), world.admin.call("DELETE", "/devices/%00")):
        body = assert_error(resp, 404, "not_found")
        assert "NUL" in body["ErrorMessage"]
    for resp in (world.admin.get("/workloads", params={"DeviceId": "\x00"}),
                 world.admin.get("/api-keys", params={"UserId": f"{user_id}\x00"}),
                 device.api.get(f"/devices/{device.id}/workload", params={"Holding": "\x00"})):
        assert "NUL" in assert_error(resp, 400, "bad_request")["ErrorMessage"]
    for resp in (user.post("/workloads", json={"DeviceId": device.id, "WorkloadName": "a\x00"}),
                 user.post("/workloads", json={"DeviceId": "\x00"}),
                 world.admin.post("/devices", json={"DeviceName": "qick\x00"}),
                 world.admin.post("/users", json={"Email": "n\x00@lab.test", "FullName": "N"}),
                 device.heartbeat(Health={"Reason": "\x00"})):
        assert "NUL" in assert_error(resp, 400, "invalid_json")["ErrorMessage"]
    cognito = requests.post(world.service.root + "/?Limit=%00", json={}, timeout=10)
    assert cognito.status_code == 400 and "NUL" in cognito.json()["message"]
    assert cognito.json()["__type"] == "InvalidParameterException"  # the login's own shape
    token = requests.post(world.service.root + "/oauth2/token", timeout=10,
                          data={"grant_type": "client_credentials", "client_id": "\x00",
                                "client_secret": device.secret})
    assert token.status_code == 400 and token.json()["error"] == "invalid_client"
    assert count_workloads(world) == before
    assert status(user, work_id)["WorkStatus"] == "READY"
    assert device.heartbeat().status_code == 200
