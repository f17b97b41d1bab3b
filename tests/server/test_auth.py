"""Logins (OAuth2 client credentials, Cognito-compatible password flow) and who may do what."""
from __future__ import annotations

import base64

import requests

from tests.server.api import Api, World, assert_error, device_token, put_file, status, submit

COGNITO = "AWSCognitoIdentityProviderService."


def cognito(root: str, action: str, body: dict) -> requests.Response:
    return requests.post(root + "/", json=body, timeout=30, headers={
        "X-Amz-Target": COGNITO + action, "Content-Type": "application/x-amz-json-1.1"})


def test_oauth2_token_with_basic_auth_or_form_fields(world: World):
    device = world.device()
    root = world.service.root
    assert device_token(root, device.client_id, device.secret)
    form = requests.post(root + "/oauth2/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": device.client_id,
        "client_secret": device.secret})
    assert form.status_code == 200
    body = form.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    # the token works without the "Bearer " prefix too
    bare = Api(world.service.url, body["access_token"], bearer_prefix=False)
    assert bare.get(f"/devices/{device.id}/workload").status_code == 200


def test_oauth2_token_refuses_bad_secret_and_grant(world: World):
    device = world.device()
    root = world.service.root
    bad = requests.post(root + "/oauth2/token", data={"grant_type": "client_credentials"},
                        auth=(device.client_id, "wrong"), timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
    grant = requests.post(root + "/oauth2/token", data={"grant_type": "password"},
                          auth=(device.client_id, device.secret), timeout=10)
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    garbage = requests.post(root + "/oauth2/token", data={"grant_type": "client_credentials"},
                            headers={"Authorization": "Basic !!!"}, timeout=10)
    assert garbage.status_code == 400 and garbage.json()["error"] == "invalid_client"


def test_cognito_password_login_new_password_challenge_and_refresh(world: World):
    root = world.service.root
    created = world.admin.post("/users", json={"Email": "cog@lab.test", "FullName": "C"}).json()
    wrong = cognito(root, "InitiateAuth", {"AuthFlow": "USER_PASSWORD_AUTH", "AuthParameters": {
        "USERNAME": "cog@lab.test", "PASSWORD": "nope"}})
    assert wrong.status_code == 400 and wrong.json()["__type"] == "NotAuthorizedException"
    nobody = cognito(root, "InitiateAuth", {"AuthFlow": "USER_PASSWORD_AUTH", "AuthParameters": {
        "USERNAME": "nobody@lab.test", "PASSWORD": "nope"}})
    assert nobody.json()["__type"] == "NotAuthorizedException"  # same as a wrong password

    first = cognito(root, "InitiateAuth", {"AuthFlow": "USER_PASSWORD_AUTH", "AuthParameters": {
        "USERNAME": "cog@lab.test", "PASSWORD": created["TemporaryPassword"]}})
    assert first.status_code == 200
    challenge = first.json()
    assert challenge["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
    # the challenge session is not a bearer token
    assert Api(world.service.url, challenge["Session"]).get("/devices").status_code == 403
    weak = cognito(root, "RespondToAuthChallenge", {
        "ChallengeName": "NEW_PASSWORD_REQUIRED", "Session": challenge["Session"],
        "ChallengeResponses": {"USERNAME": "cog@lab.test", "NEW_PASSWORD": "short"}})
    assert weak.status_code == 400 and weak.json()["__type"] == "InvalidPasswordException"
    answer = cognito(root, "RespondToAuthChallenge", {
        "ChallengeName": "NEW_PASSWORD_REQUIRED", "Session": challenge["Session"],
        "ChallengeResponses": {"USERNAME": "cog@lab.test", "NEW_PASSWORD": "a-long-passphrase"}})
    assert answer.status_code == 200
    result = answer.json()["AuthenticationResult"]
    assert {"AccessToken", "IdToken", "RefreshToken", "ExpiresIn", "TokenType"} <= set(result)
    for token in (result["AccessToken"], result["IdToken"]):
        assert Api(world.service.url, token).get("/devices").status_code == 200
        assert Api(world.service.url, token, bearer_prefix=False).get("/devices").status_code == 200
    claims = jwt_claims(result["AccessToken"])
    assert claims["sub"] == created["UserId"] and claims["email"] == "cog@lab.test"
    assert claims["cognito:groups"] == ["AllDevices"]

    again = cognito(root, "InitiateAuth", {"AuthFlow": "USER_PASSWORD_AUTH", "AuthParameters": {
        "USERNAME": "cog@lab.test", "PASSWORD": "a-long-passphrase"}})
    assert "AuthenticationResult" in again.json()
    refreshed = cognito(root, "InitiateAuth", {"AuthFlow": "REFRESH_TOKEN_AUTH", "AuthParameters": {
        "REFRESH_TOKEN": result["RefreshToken"]}})
    assert refreshed.status_code == 200
    new = refreshed.json()["AuthenticationResult"]
    assert "RefreshToken" not in new
    assert Api(world.service.url, new["AccessToken"]).get("/devices").status_code == 200
    bad_refresh = cognito(root, "InitiateAuth", {"AuthFlow": "REFRESH_TOKEN_AUTH",
                                                 "AuthParameters": {"REFRESH_TOKEN": "x"}})
    assert bad_refresh.json()["__type"] == "NotAuthorizedException"
    srp = cognito(root, "InitiateAuth", {"AuthFlow": "USER_SRP_AUTH", "AuthParameters": {}})
    assert srp.status_code == 400 and "USER_PASSWORD_AUTH" in srp.json()["message"]


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return requests.compat.json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_missing_credentials_401_and_bad_token_403(world: World):
    url = world.service.url
    missing = requests.get(url + "/devices", timeout=10)
    assert_error(missing, 401, "unauthorized")
    assert missing.json()["message"] == "Unauthorized"
    assert_error(Api(url, "qk_not-a-real-key").get("/devices"), 403)
    assert_error(Api(url, "eyJhbGciOiJIUzI1NiJ9.e30.abc").get("/devices"), 403)
    forged = world.admin.get("/devices")  # sanity: the admin key works
    assert forged.status_code == 200


def test_authorization_matrix(world: World):
    """Every denial is 403/404, never 500, and changes nothing."""
    mine, theirs = world.device("mine"), world.device("theirs")
    alice, _ = world.user()
    bob, _ = world.user()
    work = submit(alice, theirs.id)
    # a device token on another device's paths
    assert mine.api.get(f"/devices/{theirs.id}/workload").status_code == 403
    assert mine.api.put(f"/devices/{theirs.id}", json={
        "DeviceStatus": "ONLINE", "DeviceConfigurationFileExtension": "json"}).status_code == 403
    assert mine.api.put(f"/devices/{theirs.id}/workloads/{work}").status_code == 403
    assert mine.api.get(f"/devices/{theirs.id}/workloads/{work}").status_code == 403
    assert mine.api.get(f"/devices/{theirs.id}").status_code == 403
    # a device's own path with work that is not its own
    assert mine.report(work).status_code == 404
    assert mine.api.get(f"/devices/{mine.id}/workloads/{work}").status_code == 404
    # devices are not users
    assert mine.api.get("/devices").status_code == 403
    assert mine.api.post("/workloads", json={"DeviceId": mine.id}).status_code == 403
    assert mine.api.get(f"/workloads/{work}").status_code == 403
    # a user on another user's workload, results and cancel
    assert_error(bob.get(f"/workloads/{work}"), 404)
    assert_error(bob.post(f"/workloads/{work}/cancel"), 404)
    assert work not in {i["WorkId"] for i in bob.get("/workloads", params={"Limit": 100}).json()["Items"]}
    peek = bob.get("/workloads", params={"AccountId": "someone-else", "Limit": 100}).json()
    assert work not in {i["WorkId"] for i in peek["Items"]}
    # a user on admin paths
    assert_error(alice.post("/users", json={"Email": "x@y.z", "FullName": "X"}), 403)
    assert_error(alice.post("/devices", json={"DeviceName": "evil"}), 403)
    # a user faking a heartbeat or a device's calls
    assert_error(alice.put(f"/devices/{theirs.id}", json={
        "DeviceStatus": "ONLINE", "DeviceConfigurationFileExtension": "json"}), 403)
    assert_error(alice.get(f"/devices/{theirs.id}/workload"), 403)
    assert_error(alice.put(f"/devices/{theirs.id}/workloads/{work}"), 403)
    # unknown devices: 404/403, never 500 and never created
    assert_error(world.admin.get("/devices/00000000-0000-4000-8000-000000000000"), 404)
    assert_error(world.admin.put("/devices/00000000-0000-4000-8000-000000000000", json={
        "DeviceStatus": "ONLINE", "DeviceConfigurationFileExtension": "json"}), 403)
    # nothing changed
    assert status(alice, work)["WorkStatus"] == "READY"
    assert world.admin.get(f"/devices/{theirs.id}").json()["DeviceStatus"] == "OFFLINE"
    # the owner and an admin may read it; health only for admins and the device itself
    assert world.admin.get(f"/workloads/{work}").status_code == 200
    theirs.heartbeat(Health={"spool": 3})
    assert world.admin.get(f"/devices/{theirs.id}").json()["Health"] == {"spool": 3}
    assert theirs.api.get(f"/devices/{theirs.id}").json()["Health"] == {"spool": 3}
    assert "Health" not in alice.get(f"/devices/{theirs.id}").json()


def test_admin_created_with_admin_group_can_administer(world: World):
    other_admin, _ = world.user(admin=True)
    assert other_admin.post("/devices", json={"DeviceName": "by-admin-2"}).status_code == 201
    bad_group = world.admin.post("/users", json={"Email": "g@lab.test", "FullName": "G",
                                                 "Groups": ["Root"]})
    assert_error(bad_group, 400)


def test_result_upload_url_is_only_for_put(world: World):
    device = world.device()
    user, _ = world.user()
    work = submit(user, device.id)
    device.next_work()
    upload_url = device.report(work).json()["UploadUrl"]
    assert_error(requests.get(upload_url, timeout=10), 403, "bad_signature")
    download = status(user, work)["WorkloadUrl"]
    assert_error(put_file(download, b"overwrite"), 403, "bad_signature")
    assert requests.get(download, timeout=10).content == b"workload-bytes"
