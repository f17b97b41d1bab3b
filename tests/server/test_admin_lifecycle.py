"""The admin lifecycle over raw HTTP: users listed, disabled and enabled; API keys created,
listed and revoked; a device's secret rotated, the device renamed and deleted. Revocation
takes effect on the very next request, for every kind of credential."""
from __future__ import annotations

import uuid

import requests

from tests.server.api import (Api, World, assert_error, device_token, put_file, status,
                              submit)

COGNITO = "AWSCognitoIdentityProviderService."
PASSWORD = "a-long-passphrase"


def cognito(root: str, action: str, body: dict) -> requests.Response:
    return requests.post(root + "/", json=body, timeout=30, headers={
        "X-Amz-Target": COGNITO + action, "Content-Type": "application/x-amz-json-1.1"})


def password_login(root: str, email: str, password: str) -> requests.Response:
    return cognito(root, "InitiateAuth", {"AuthFlow": "USER_PASSWORD_AUTH", "AuthParameters": {
        "USERNAME": email, "PASSWORD": password}})


def refresh(root: str, token: str) -> requests.Response:
    return cognito(root, "InitiateAuth", {"AuthFlow": "REFRESH_TOKEN_AUTH",
                                          "AuthParameters": {"REFRESH_TOKEN": token}})


def new_user_with_password(world: World) -> tuple[dict, dict]:
    """A user who answered the first-login challenge: (POST /users answer, tokens)."""
    email = f"p{uuid.uuid4().hex[:10]}@lab.test"
    made = world.admin.post("/users", json={"Email": email, "FullName": "Pat Doe"}).json()
    challenge = password_login(world.service.root, email, made["TemporaryPassword"]).json()
    answer = cognito(world.service.root, "RespondToAuthChallenge", {
        "ChallengeName": "NEW_PASSWORD_REQUIRED", "Session": challenge["Session"],
        "ChallengeResponses": {"USERNAME": email, "NEW_PASSWORD": PASSWORD}})
    assert answer.status_code == 200, answer.text
    return made, answer.json()["AuthenticationResult"]


def user_item(world: World, user_id: str) -> dict:
    users = world.admin.get("/users")
    assert users.status_code == 200, users.text
    return next(u for u in users.json() if u["UserId"] == user_id)


# -- users -------------------------------------------------------------------------------
def test_list_users_shows_each_user_to_admins_only(world: World):
    made, _ = new_user_with_password(world)
    item = user_item(world, made["UserId"])
    assert item["Email"] == made["Email"] and item["FullName"] == "Pat Doe"
    assert item["Groups"] == ["AllDevices"] and item["Disabled"] is False
    assert item["CreatedAt"].endswith("Z") and item["LastLogin"].endswith("Z")
    assert item["DisabledAt"] is None
    assert "ApiKey" not in item and "PasswordHash" not in str(item)
    admin_item = next(u for u in world.admin.get("/users").json()
                      if u["Email"] == world.service.admin_email)
    assert admin_item["LastLogin"] is None  # never logged in with a password
    assert admin_item["LastKeyUse"].endswith("Z")  # this very request used its key
    alice, _ = world.user()
    assert_error(alice.get("/users"), 403)
    device = world.device()
    assert_error(device.api.get("/users"), 403)


def test_disabling_a_user_stops_every_credential_at_once_and_enable_undoes_it(world: World):
    root, url = world.service.root, world.service.url
    made, tokens = new_user_with_password(world)
    key = Api(url, made["ApiKey"])
    access, id_token = Api(url, tokens["AccessToken"]), Api(url, tokens["IdToken"])
    for caller in (key, access, id_token):
        assert caller.get("/devices").status_code == 200
    assert refresh(root, tokens["RefreshToken"]).status_code == 200

    off = world.admin.post(f"/users/{made['Email']}/disable")  # by e-mail, or by UserId
    assert off.status_code == 200, off.text
    assert off.json()["Disabled"] is True and off.json()["DisabledAt"].endswith("Z")
    assert user_item(world, made["UserId"])["Disabled"] is True
    assert_error(key.get("/devices"), 403, "user_disabled")
    for caller in (access, id_token):
        assert_error(caller.get("/devices"), 403)
    refused = refresh(root, tokens["RefreshToken"])
    assert refused.status_code == 400 and refused.json()["__type"] == "NotAuthorizedException"
    login = password_login(root, made["Email"], PASSWORD)
    assert login.json() == {"__type": "NotAuthorizedException", "message": "User is disabled."}
    wrong = password_login(root, made["Email"], "not-the-password")
    assert wrong.json()["message"] == "Incorrect username or password."  # nothing revealed

    again = world.admin.post(f"/users/{made['UserId']}/disable")
    assert again.status_code == 200 and again.json()["DisabledAt"] == off.json()["DisabledAt"]

    on = world.admin.post(f"/users/{made['UserId']}/enable")
    assert on.status_code == 200 and on.json()["Disabled"] is False
    assert key.get("/devices").status_code == 200  # API keys come back with the account
    assert_error(access.get("/devices"), 403, "token_revoked")  # old JWTs do not
    assert refresh(root, tokens["RefreshToken"]).json()["__type"] == "NotAuthorizedException"
    fresh = password_login(root, made["Email"], PASSWORD).json()["AuthenticationResult"]
    assert Api(url, fresh["AccessToken"]).get("/devices").status_code == 200
    assert refresh(root, fresh["RefreshToken"]).status_code == 200


def test_a_reset_password_is_temporary_and_ends_the_old_one_and_its_logins(world: World):
    made, tokens = new_user_with_password(world)
    root, email = world.service.root, made["Email"]
    for _ in range(4):  # four wrong ones: the count the reset starts over
        assert password_login(root, email, "wrong-password").status_code == 400
    resp = world.admin.post(f"/users/{email}/reset-password")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"UserId", "Email", "TemporaryPassword"}
    assert body["UserId"] == made["UserId"] and body["Email"] == email
    # the old password is wrong now, and the count started over: 4 + 4 wrong ones in a
    # row would have locked at the sixth
    for _ in range(4):
        old = password_login(root, email, PASSWORD)
        assert old.status_code == 400 and old.json()["__type"] == "NotAuthorizedException"
        assert old.json()["message"] == "Incorrect username or password."
    assert refresh(root, tokens["RefreshToken"]).status_code == 400  # logins ended
    challenge = password_login(root, email, body["TemporaryPassword"])
    assert challenge.status_code == 200, challenge.text
    assert challenge.json()["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
    assert Api(world.service.url, made["ApiKey"]).get("/devices").status_code == 200  # keys stay


def test_only_an_admin_resets_a_password_of_a_user_that_exists(world: World):
    made, _ = new_user_with_password(world)
    user = Api(world.service.url, made["ApiKey"])
    other = world.admin.post("/users", json={"Email": f"o{uuid.uuid4().hex[:8]}@lab.test"})
    assert_error(user.post(f"/users/{other.json()['UserId']}/reset-password"), 403)
    assert_error(world.admin.post("/users/nobody@lab.test/reset-password"), 404)
    assert password_login(world.service.root, made["Email"], PASSWORD).status_code == 200


def test_a_user_cannot_disable_anyone_and_an_admin_not_themselves(world: World):
    alice, alice_id = world.user()
    _, bob_id = world.user()
    assert_error(alice.post(f"/users/{bob_id}/disable"), 403)
    assert_error(alice.post(f"/users/{alice_id}/enable"), 403)
    assert_error(world.admin.post(f"/users/{world.service.admin_email}/disable"), 409,
                 "self_disable")
    boss, boss_id = world.user(admin=True)
    assert_error(boss.post(f"/users/{boss_id}/disable"), 409, "self_disable")
    assert world.admin.get("/devices").status_code == 200
    assert_error(world.admin.post(f"/users/{uuid.uuid4()}/disable"), 404)
    assert_error(world.admin.post("/users/nobody%40lab.test/enable"), 404)
    # a disabled admin is no admin any more
    assert world.admin.post(f"/users/{boss_id}/disable").status_code == 200
    assert_error(boss.get("/users"), 403, "user_disabled")


# -- API keys ----------------------------------------------------------------------------
def test_a_user_creates_lists_and_revokes_their_own_api_keys(world: World):
    alice, alice_id = world.user()
    made = alice.post("/api-keys", json={"Label": "laptop"})
    assert made.status_code == 201, made.text
    new = made.json()
    assert new["ApiKey"].startswith("qk_") and new["Label"] == "laptop"
    assert new["UserId"] == alice_id and new["RevokedAt"] is None and new["LastUsed"] is None
    laptop = Api(world.service.url, new["ApiKey"])
    assert laptop.get("/devices").status_code == 200

    listed = alice.get("/api-keys")
    assert listed.status_code == 200
    keys = listed.json()
    assert [k["Label"] for k in keys] == ["created with the user", "laptop"]
    assert all("ApiKey" not in k and new["ApiKey"] not in str(k) for k in keys)
    assert all(k["LastUsed"] and k["LastUsed"].endswith("Z") for k in keys)  # both used

    revoked = laptop.post(f"/api-keys/{new['KeyId']}/revoke")  # revoking itself is fine
    assert revoked.status_code == 200 and revoked.json()["RevokedAt"].endswith("Z")
    assert_error(laptop.get("/devices"), 403)  # the very next request
    again = alice.post(f"/api-keys/{new['KeyId']}/revoke")
    assert again.status_code == 200 and again.json() == revoked.json()
    assert [k["KeyId"] for k in alice.get("/api-keys").json()] == [keys[0]["KeyId"]]
    no_label = alice.post("/api-keys")
    assert no_label.status_code == 201 and no_label.json()["Label"] is None


def test_api_keys_of_others_only_for_admins(world: World):
    alice, alice_id = world.user()
    bob, bob_id = world.user()
    alice_key = alice.post("/api-keys", json={"Label": "a"}).json()
    assert_error(bob.get("/api-keys", params={"UserId": alice_id}), 403)
    assert_error(bob.post("/api-keys", json={"UserId": alice_id}), 403)
    assert_error(bob.post(f"/api-keys/{alice_key['KeyId']}/revoke"), 404)  # hidden
    assert Api(world.service.url, alice_key["ApiKey"]).get("/devices").status_code == 200
    device = world.device()
    assert_error(device.api.get("/api-keys"), 403)
    assert_error(device.api.post(f"/api-keys/{alice_key['KeyId']}/revoke"), 403)

    seen = world.admin.get("/api-keys", params={"UserId": alice_id})
    assert alice_key["KeyId"] in [k["KeyId"] for k in seen.json()]
    by_mail = world.admin.get("/api-keys", params={"UserId": user_item(world, alice_id)["Email"]})
    assert by_mail.json() == seen.json()
    assert world.admin.post(f"/api-keys/{alice_key['KeyId']}/revoke").status_code == 200
    assert_error(Api(world.service.url, alice_key["ApiKey"]).get("/devices"), 403)
    issued = world.admin.post("/api-keys", json={"UserId": bob_id, "Label": "from admin"})
    assert issued.status_code == 201 and issued.json()["UserId"] == bob_id
    assert Api(world.service.url, issued.json()["ApiKey"]).get("/workloads").status_code == 200
    assert_error(world.admin.get("/api-keys", params={"UserId": str(uuid.uuid4())}), 404)


def test_the_last_key_of_a_user_without_password_cannot_be_revoked_by_them(world: World):
    keys = world.admin.get("/api-keys").json()  # the first admin: an API key, no password
    assert len(keys) == 1
    refused = world.admin.post(f"/api-keys/{keys[0]['KeyId']}/revoke")
    assert_error(refused, 409, "last_credential")
    assert "create-api-key" in refused.json()["ErrorMessage"]
    assert world.admin.get("/devices").status_code == 200


def test_revocation_refuses_jwts_from_before_it(world: World):
    """A disable refuses tokens issued before it, even within the same second."""
    made, tokens = new_user_with_password(world)
    url = world.service.url
    for _ in range(3):  # several rounds: none may slip through in the same second
        assert world.admin.post(f"/users/{made['UserId']}/disable").status_code == 200
        assert world.admin.post(f"/users/{made['UserId']}/enable").status_code == 200
        for token in (tokens["AccessToken"], tokens["IdToken"]):  # enabled, yet refused
            assert_error(Api(url, token).get("/devices"), 403, "token_revoked")
        tokens = password_login(world.service.root, made["Email"],
                                PASSWORD).json()["AuthenticationResult"]
        assert Api(url, tokens["AccessToken"]).get("/devices").status_code == 200
        assert Api(url, tokens["IdToken"]).get("/devices").status_code == 200


# -- devices -----------------------------------------------------------------------------
def test_rotating_a_device_secret_ends_the_old_secret_and_tokens_at_once(world: World):
    device = world.device("rotating")
    root = world.service.root
    assert device.heartbeat().status_code == 200
    rotated = world.admin.post(f"/devices/{device.id}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["DeviceId"] == device.id and body["ClientId"] == device.client_id
    assert body["DeviceName"] == "rotating" and body["ClientSecret"] != device.secret
    assert_error(device.heartbeat(), 403, "token_revoked")
    old = requests.post(root + "/oauth2/token", data={"grant_type": "client_credentials"},
                        auth=(device.client_id, device.secret), timeout=10)
    assert old.status_code == 400 and old.json()["error"] == "invalid_client"
    fresh = Api(world.service.url, device_token(root, device.client_id, body["ClientSecret"]))
    assert fresh.put(f"/devices/{device.id}", json={
        "DeviceStatus": "ONLINE", "DeviceConfigurationFileExtension": "json"}).status_code == 200
    alice, _ = world.user()
    assert_error(alice.post(f"/devices/{device.id}/rotate-secret"), 403)
    assert_error(fresh.post(f"/devices/{device.id}/rotate-secret"), 403)
    assert_error(world.admin.post(f"/devices/{uuid.uuid4()}/rotate-secret"), 404)


def test_renaming_a_device(world: World):
    device = world.device("old-name")
    renamed = world.admin.call("PATCH", f"/devices/{device.id}", json={"DeviceName": "new"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["DeviceName"] == "new" and renamed.json()["DeviceId"] == device.id
    alice, _ = world.user()
    assert alice.get(f"/devices/{device.id}").json()["DeviceName"] == "new"
    assert device.heartbeat().status_code == 200  # its credentials are untouched
    assert_error(alice.call("PATCH", f"/devices/{device.id}", json={"DeviceName": "x"}), 403)
    assert_error(world.admin.call("PATCH", f"/devices/{device.id}", json={"DeviceName": " "}),
                 400)
    assert_error(world.admin.call("PATCH", f"/devices/{device.id}", json={"DeviceName": 7}),
                 400)
    assert_error(world.admin.call("PATCH", f"/devices/{device.id}", json={}), 400)
    assert_error(world.admin.call("PATCH", f"/devices/{uuid.uuid4()}",
                                  json={"DeviceName": "x"}), 404)


def test_deleting_a_device_with_unfinished_work_is_refused_unless_cancelled(world: World):
    device = world.device("busy")
    alice, _ = world.user()
    running = submit(alice, device.id)
    assert device.next_work().json()["WorkId"] == running  # EXECUTING
    queued = submit(alice, device.id)                        # READY
    announced = submit(alice, device.id, data=None)          # CREATED
    refused = world.admin.call("DELETE", f"/devices/{device.id}")
    body = assert_error(refused, 409, "device_busy")
    assert "3 unfinished" in body["ErrorMessage"] and "--cancel-work" in body["ErrorMessage"]
    assert device.heartbeat().status_code == 200  # nothing changed
    assert status(alice, queued)["WorkStatus"] == "READY"

    deleted = world.admin.call("DELETE", f"/devices/{device.id}",
                               params={"CancelWork": "true"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"DeviceId": device.id, "DeviceName": "busy", "Deleted": True,
                              "CancelledWork": [running, queued, announced]}
    for work_id in (running, queued, announced):
        seen = status(alice, work_id)  # history stays readable by the owner
        assert seen["WorkStatus"] == "CANCELLED" and seen["ErrorKind"] == "device_deleted"
        assert "busy" in seen["ErrorMessage"]
    assert_error(device.heartbeat(), 403)  # its token stops at once
    token = requests.post(world.service.root + "/oauth2/token",
                          data={"grant_type": "client_credentials"},
                          auth=(device.client_id, device.secret), timeout=10)
    assert token.json()["error"] == "invalid_client"
    assert device.id not in [d["DeviceId"] for d in alice.get("/devices").json()]
    assert_error(alice.get(f"/devices/{device.id}"), 404)
    assert_error(alice.post("/workloads", json={"DeviceId": device.id}), 404)
    assert_error(world.admin.call("DELETE", f"/devices/{device.id}"), 404)


def test_a_deleted_device_keeps_its_finished_work_readable(world: World):
    device = world.device("retired")
    alice, _ = world.user()
    work_id = submit(alice, device.id)
    assert device.next_work().json()["WorkId"] == work_id
    assert put_file(device.report(work_id).json()["UploadUrl"], b"results").status_code == 200
    assert status(alice, work_id)["WorkStatus"] == "DONE"
    bob, _ = world.user()
    assert_error(bob.call("DELETE", f"/devices/{device.id}"), 403)
    deleted = world.admin.call("DELETE", f"/devices/{device.id}")
    assert deleted.status_code == 200 and deleted.json()["CancelledWork"] == []
    done = status(alice, work_id)
    assert done["WorkStatus"] == "DONE" and done["DeviceId"] == device.id
    assert requests.get(done["WorkloadResultUrl"], timeout=10).content == b"results"
    listed = alice.get("/workloads", params={"DeviceId": device.id}).json()["Items"]
    assert [w["WorkId"] for w in listed] == [work_id]
    assert_error(bob.get(f"/workloads/{work_id}"), 404)  # still only its owner's


def test_a_deleted_device_uploads_no_results_with_an_url_it_had(world: World):
    """The upload URL a board got before its device was deleted is refused: the work
    cancelled by the delete takes no results, and finished work is not replaced."""
    device = world.device("gone")
    alice, _ = world.user()
    finished = submit(alice, device.id)
    assert device.next_work().json()["WorkId"] == finished
    assert put_file(device.report(finished).json()["UploadUrl"], b"first").status_code == 200
    running = submit(alice, device.id)
    assert device.next_work().json()["WorkId"] == running
    replace_url = device.report(finished).json()["UploadUrl"]
    partial_url = device.report(running, {"Outcome": "CANCELLED",
                                          "PartialResults": True}).json()["UploadUrl"]
    deleted = world.admin.call("DELETE", f"/devices/{device.id}",
                               params={"CancelWork": "true"})
    assert deleted.status_code == 200 and deleted.json()["CancelledWork"] == [running]
    assert_error(put_file(partial_url, b"late"), 409, "conflict")
    assert_error(put_file(replace_url, b"second"), 409, "conflict")
    cancelled = status(alice, running)
    assert cancelled["WorkStatus"] == "CANCELLED" and "WorkloadResultUrl" not in cancelled
    done = status(alice, finished)
    assert requests.get(done["WorkloadResultUrl"], timeout=10).content == b"first"


def test_hostile_input_gets_4xx_with_error_kind(world: World):
    admin = world.admin
    alice, _ = world.user()
    device = world.device()
    cases = [
        (alice.post("/api-keys", data=b"{not json", headers={"Content-Type": "application/json"}),
         400, "invalid_json"),
        (alice.post("/api-keys", json=["a list"]), 400, "invalid_json"),
        (alice.post("/api-keys", json={"Label": 5}), 400, "bad_request"),
        (alice.post("/api-keys", json={"Label": "x" * 201}), 400, "bad_request"),
        (alice.post("/api-keys", json={"Label": "line\nbreak"}), 400, "bad_request"),
        (alice.post("/api-keys/nope/revoke"), 404, "not_found"),
        (alice.post(f"/api-keys/{'x' * 5000}/revoke"), 404, "not_found"),
        (admin.call("PATCH", f"/devices/{device.id}", data=b"\xff\xfe"), 400, "invalid_json"),
        (admin.call("DELETE", f"/devices/{device.id}", params={"CancelWork": "maybe"}), 400,
         "bad_request"),
        (admin.call("DELETE", "/devices/%E2%98%83"), 404, "not_found"),
        (admin.post("/users/%00/disable"), 404, "not_found"),
        (admin.post("/devices/nope/rotate-secret"), 404, "not_found"),
        (requests.get(world.service.url + "/users", timeout=10), 401, "unauthorized"),
    ]
    for resp, code, kind in cases:
        assert_error(resp, code, kind)
    assert device.heartbeat().status_code == 200


def test_a_stock_protocol_service_has_none_of_these_paths(queue_service_factory):
    world = World(queue_service_factory(stock_protocol=True))
    device = world.device()
    admin = world.admin
    for resp in (admin.get("/users"), admin.post(f"/users/{world.service.admin_email}/disable"),
                 admin.post(f"/users/{world.service.admin_email}/reset-password"),
                 admin.get("/api-keys"), admin.post("/api-keys"),
                 admin.post(f"/devices/{device.id}/rotate-secret"),
                 admin.call("PATCH", f"/devices/{device.id}", json={"DeviceName": "x"}),
                 admin.call("DELETE", f"/devices/{device.id}")):
        assert resp.status_code in (403, 404), resp.text  # as any path the stock one lacks
        assert "Email" not in resp.text and "KeyId" not in resp.text
    assert device.heartbeat().status_code == 200
    assert admin.get(f"/devices/{device.id}").json()["DeviceName"] == "qick"
