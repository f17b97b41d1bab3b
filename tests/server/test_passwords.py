"""Password changes on our Cognito-compatible endpoint: the NEW_PASSWORD_REQUIRED ``Session``
is single-use, ``ChangePassword`` works as Cognito's, a change ends the refresh tokens issued
before it, and the password policy answers ``InvalidPasswordException`` (raw HTTP)."""
from __future__ import annotations

import threading
import uuid

from tests.server.api import Api, World, device_token
from tests.server.test_auth import cognito


def new_user(world: World) -> tuple[str, str]:
    email = f"p{uuid.uuid4().hex[:10]}@lab.test"
    created = world.admin.post("/users", json={"Email": email, "FullName": "P"}).json()
    return email, created["TemporaryPassword"]


def password_auth(root: str, email: str, password: str):
    return cognito(root, "InitiateAuth", {"AuthFlow": "USER_PASSWORD_AUTH", "AuthParameters": {
        "USERNAME": email, "PASSWORD": password}})


def refresh(root: str, token: str):
    return cognito(root, "InitiateAuth", {"AuthFlow": "REFRESH_TOKEN_AUTH",
                                          "AuthParameters": {"REFRESH_TOKEN": token}})


def answer(root: str, email: str, session: str, new_password: str):
    return cognito(root, "RespondToAuthChallenge", {
        "ChallengeName": "NEW_PASSWORD_REQUIRED", "Session": session,
        "ChallengeResponses": {"USERNAME": email, "NEW_PASSWORD": new_password}})


def change(root: str, access: str, previous: str, proposed: str):
    return cognito(root, "ChangePassword", {"AccessToken": access, "PreviousPassword": previous,
                                            "ProposedPassword": proposed})


def cognito_error(resp, kind: str) -> str:
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/x-amz-json-1.1")
    assert resp.json()["__type"] == kind, resp.text
    return resp.json()["message"]


def first_login(world: World) -> tuple[str, dict]:
    """A user who answered the challenge: (email, AuthenticationResult)."""
    root = world.service.root
    email, temporary = new_user(world)
    session = password_auth(root, email, temporary).json()["Session"]
    done = answer(root, email, session, "first-password-1")
    assert done.status_code == 200, done.text
    return email, done.json()["AuthenticationResult"]


def test_the_challenge_session_is_single_use(world: World):
    root = world.service.root
    email, temporary = new_user(world)
    session = password_auth(root, email, temporary).json()["Session"]
    assert answer(root, email, session, "chosen-password-1").status_code == 200
    reused = answer(root, email, session, "attacker-password-2")
    assert "can only be used once" in cognito_error(reused, "NotAuthorizedException")
    # the first answer stands
    assert "AuthenticationResult" in password_auth(root, email, "chosen-password-1").json()
    cognito_error(password_auth(root, email, "attacker-password-2"), "NotAuthorizedException")
    cognito_error(password_auth(root, email, temporary), "NotAuthorizedException")


def test_two_racing_answers_with_one_session_set_one_password(world: World):
    root = world.service.root
    email, temporary = new_user(world)
    session = password_auth(root, email, temporary).json()["Session"]
    codes: dict[str, int] = {}

    def respond(password: str) -> None:
        codes[password] = answer(root, email, session, password).status_code

    threads = [threading.Thread(target=respond, args=(f"racing-password-{i}",))
               for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [p for p, code in codes.items() if code == 200]
    assert len(codes) == 4 and len(winners) == 1, codes
    assert "AuthenticationResult" in password_auth(root, email, winners[0]).json()


def test_a_policy_failure_leaves_the_session_usable_and_says_why(world: World):
    root = world.service.root
    email, temporary = new_user(world)
    session = password_auth(root, email, temporary).json()["Session"]
    short = cognito_error(answer(root, email, session, "short"), "InvalidPasswordException")
    assert "not long enough" in short and "8 characters" in short
    long = cognito_error(answer(root, email, session, "x" * 257), "InvalidPasswordException")
    assert "too long" in long
    spaced = cognito_error(answer(root, email, session, " leading-space"),
                           "InvalidPasswordException")
    assert "space" in spaced
    missing = cognito(root, "RespondToAuthChallenge", {
        "ChallengeName": "NEW_PASSWORD_REQUIRED", "Session": session,
        "ChallengeResponses": {"USERNAME": email}})
    assert "NEW_PASSWORD" in cognito_error(missing, "InvalidParameterException")
    # still temporary, and the same session still answers the challenge
    assert password_auth(root, email, temporary).json()["ChallengeName"] == \
        "NEW_PASSWORD_REQUIRED"
    assert answer(root, email, session, "a-good-password").status_code == 200


def test_a_session_is_not_another_users_nor_a_forgery(world: World):
    root = world.service.root
    email, temporary = new_user(world)
    other, _ = new_user(world)
    session = password_auth(root, email, temporary).json()["Session"]
    cognito_error(answer(root, other, session, "some-password-1"), "NotAuthorizedException")
    expired = cognito_error(answer(root, email, session + "x", "some-password-1"),
                            "NotAuthorizedException")
    assert "session" in expired
    # an access token is not a session
    _, tokens = first_login(world)
    cognito_error(answer(root, email, tokens["AccessToken"], "some-password-1"),
                  "NotAuthorizedException")


def test_change_password_ends_earlier_refresh_tokens(world: World):
    root = world.service.root
    email, first = first_login(world)
    second = password_auth(root, email, "first-password-1").json()["AuthenticationResult"]
    assert refresh(root, first["RefreshToken"]).status_code == 200
    done = change(root, second["AccessToken"], "first-password-1", "second-password-2")
    assert done.status_code == 200 and done.json() == {}
    for old in (first["RefreshToken"], second["RefreshToken"]):
        assert cognito_error(refresh(root, old), "NotAuthorizedException") == \
            "Invalid Refresh Token"
    cognito_error(password_auth(root, email, "first-password-1"), "NotAuthorizedException")
    fresh = password_auth(root, email, "second-password-2").json()["AuthenticationResult"]
    assert refresh(root, fresh["RefreshToken"]).status_code == 200
    assert Api(world.service.url, fresh["AccessToken"]).get("/devices").status_code == 200


def test_change_password_refusals(world: World):
    root = world.service.root
    email, tokens = first_login(world)
    access = tokens["AccessToken"]
    wrong = change(root, access, "not-the-password", "second-password-2")
    assert cognito_error(wrong, "NotAuthorizedException") == "Incorrect username or password."
    weak = change(root, access, "first-password-1", "short")
    assert "not long enough" in cognito_error(weak, "InvalidPasswordException")
    cognito_error(change(root, tokens["IdToken"], "first-password-1", "second-password-2"),
                  "NotAuthorizedException")
    cognito_error(change(root, "not-a-token", "first-password-1", "second-password-2"),
                  "NotAuthorizedException")
    device = world.device()
    device_jwt = device_token(root, device.client_id, device.secret)
    cognito_error(change(root, device_jwt, "first-password-1", "second-password-2"),
                  "NotAuthorizedException")
    missing = cognito(root, "ChangePassword", {"AccessToken": access})
    cognito_error(missing, "InvalidParameterException")
    # nothing changed, and the refresh token still lives
    assert "AuthenticationResult" in password_auth(root, email, "first-password-1").json()
    assert refresh(root, tokens["RefreshToken"]).status_code == 200


def test_a_disabled_user_changes_no_password_and_answers_no_challenge(world: World):
    """Disabling is checked on the Cognito paths too: ChangePassword with a token from
    before the disable (also once enabled again: that token stays revoked), and a challenge
    Session issued before the disable."""
    root = world.service.root
    email, tokens = first_login(world)
    pending, temporary = new_user(world)
    session = password_auth(root, pending, temporary).json()["Session"]
    for who in (email, pending):
        assert world.admin.post(f"/users/{who}/disable").status_code == 200
    message = cognito_error(change(root, tokens["AccessToken"], "first-password-1",
                                   "second-password-2"), "NotAuthorizedException")
    assert message == "User is disabled."
    assert cognito_error(answer(root, pending, session, "first-password-1"),
                         "NotAuthorizedException") == "User is disabled."
    assert world.admin.post(f"/users/{email}/enable").status_code == 200
    message = cognito_error(change(root, tokens["AccessToken"], "first-password-1",
                                   "second-password-2"), "NotAuthorizedException")
    assert message == "Access Token has been revoked"
    # neither password changed: the old one still logs in, the new one does not
    assert password_auth(root, email, "first-password-1").status_code == 200
    cognito_error(password_auth(root, email, "second-password-2"), "NotAuthorizedException")
