"""Identity endpoints: ``POST /users`` (admin), ``POST /oauth2/token`` (devices) and the
Cognito-compatible ``POST /`` (users' password logins), as docs/protocol.md pins them."""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cloudqueue.errors import AuthError, BadRequest
from queueservice.errors import CognitoError
from queueservice.identities import password_fingerprint
from queueservice.tokens import revoked
from queueservice.httpedge import (admin, call, field, json_ok, now_ms, read_body, read_json,
                                   service)

TARGET_PREFIX = "AWSCognitoIdentityProviderService."
MIN_PASSWORD = 8
MAX_PASSWORD = 256  # Cognito's limit
SESSION_USED = "Invalid session for the user, session can only be used once."
SESSION_EXPIRED = "Invalid session for the user, session is expired."
DISABLED = "User is disabled."  # Cognito's words


async def add_user(request: Request) -> Response:
    """``POST /users`` (admin): 200 ``{UserId, Email, ApiKey, TemporaryPassword}``, shown once."""
    await admin(request)
    body = await read_json(request, model="AddUser")
    email = check_email(field(body, "Email", str, required=True, max_len=254))
    full_name = field(body, "FullName", str, default="", max_len=200)
    groups = field(body, "Groups", list, default=[])
    if not all(isinstance(g, str) for g in groups):
        raise BadRequest("Groups must be a list of group names, like [\"Admin\"]")
    row, api_key, password = await call(service(request).identities.add_user, email,
                                        full_name, groups, now_ms())
    return json_ok({"UserId": row["user_id"], "Email": row["email"], "ApiKey": api_key,
                    "TemporaryPassword": password})


def check_email(value: str, what: str = "Email") -> str:
    """A new user's e-mail address, stripped (BadRequest when it is not one)."""
    email = value.strip()
    if len(email) > 254:
        raise BadRequest(f"{what} must be at most 254 characters")
    if "@" not in email or " " in email:
        raise BadRequest(f"{what} {email!r} is not an e-mail address")
    return email


# -- OAuth2 client credentials (devices) -------------------------------------------------
def _oauth_error(code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=400)


async def oauth2_token(request: Request) -> Response:
    """``POST /oauth2/token``: a device trades its client id and secret for a JWT."""
    svc = service(request)
    raw = await read_body(request, 16 * 1024)
    form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    if form.get("grant_type") != "client_credentials":
        return _oauth_error("unsupported_grant_type",
                            "only grant_type=client_credentials is supported")
    client_id, secret = form.get("client_id"), form.get("client_secret")
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            client_id, _, secret = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return _oauth_error("invalid_client", "the Basic authorization header is malformed")
    if not client_id or not secret:
        return _oauth_error("invalid_client", "send the client id and secret (Basic auth or "
                                              "client_id/client_secret form fields)")
    try:
        device = await call(svc.identities.device_by_client, client_id, secret)
    except AuthError:
        return _oauth_error("invalid_client", "the client id or secret is wrong")
    lifetime = svc.limits.token_seconds
    return json_ok({"access_token": svc.signer.device_token(device, lifetime),
                    "token_type": "Bearer", "expires_in": lifetime})


# -- Cognito-compatible logins (users) ---------------------------------------------------
def cognito_response(exc: CognitoError) -> JSONResponse:
    return JSONResponse({"__type": exc.kind, "message": exc.message}, status_code=400,
                        media_type="application/x-amz-json-1.1")


def _params(body: dict, name: str) -> dict[str, Any]:
    value = body.get(name)
    if not isinstance(value, dict):
        raise CognitoError("InvalidParameterException", f"{name} is required")
    return value


def _auth_result(request: Request, user: dict, *, with_refresh: bool) -> dict[str, Any]:
    svc = service(request)
    lifetime = svc.limits.token_seconds
    groups = json.loads(user["groups"])
    access, id_token = svc.signer.user_tokens(user, groups, lifetime)
    result: dict[str, Any] = {"AccessToken": access, "IdToken": id_token,
                              "ExpiresIn": lifetime, "TokenType": "Bearer"}
    if with_refresh:
        result["RefreshToken"] = svc.identities.new_refresh_token(
            user["user_id"], now_ms(), svc.limits.refresh_token_seconds)
    return {"AuthenticationResult": result, "ChallengeParameters": {}}


def _initiate_auth(request: Request, body: dict) -> dict[str, Any]:
    svc = service(request)
    flow = body.get("AuthFlow")
    params = _params(body, "AuthParameters")
    if flow == "USER_PASSWORD_AUTH":
        username, password = params.get("USERNAME"), params.get("PASSWORD")
        if not isinstance(username, str) or not isinstance(password, str):
            raise CognitoError("InvalidParameterException", "USERNAME and PASSWORD are required")
        try:
            user = svc.identities.login(username, password)
        except AuthError as exc:  # a wrong password, or (after a right one) a disabled user
            raise CognitoError("NotAuthorizedException", exc.message) from None
        if user["password_temporary"]:
            return {"ChallengeName": "NEW_PASSWORD_REQUIRED",
                    "Session": challenge_session(svc, user),
                    "ChallengeParameters": {
                        "USER_ID_FOR_SRP": user["email"], "requiredAttributes": "[]",
                        "userAttributes": json.dumps({"email": user["email"]})}}
        return _auth_result(request, user, with_refresh=True)
    if flow in ("REFRESH_TOKEN_AUTH", "REFRESH_TOKEN"):
        token = params.get("REFRESH_TOKEN")
        if not isinstance(token, str):
            raise CognitoError("InvalidParameterException", "REFRESH_TOKEN is required")
        try:
            user = svc.identities.by_refresh_token(token, now_ms())
        except AuthError as exc:  # unknown, expired, or its user disabled
            raise CognitoError("NotAuthorizedException", exc.message) from None
        return _auth_result(request, user, with_refresh=False)
    raise CognitoError("InvalidParameterException",
                       f"AuthFlow {flow!r} is not supported by qick-queue: use "
                       "USER_PASSWORD_AUTH or REFRESH_TOKEN_AUTH")


def password_policy_error(password: str) -> str | None:
    """What is wrong with a proposed password under our policy (None: acceptable)."""
    if len(password) < MIN_PASSWORD:
        return (f"Password did not conform with policy: Password not long enough (at least "
                f"{MIN_PASSWORD} characters)")
    if len(password) > MAX_PASSWORD:
        return (f"Password did not conform with policy: Password too long (at most "
                f"{MAX_PASSWORD} characters)")
    if password != password.strip():
        return "Password did not conform with policy: it must not begin or end with a space"
    return None


def _proposed_password(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise CognitoError("InvalidParameterException", f"{name} is required")
    problem = password_policy_error(value)
    if problem:
        raise CognitoError("InvalidPasswordException", problem)
    return value


def _require_enabled(user: dict) -> None:
    if user["disabled_at"] is not None:
        raise CognitoError("NotAuthorizedException", DISABLED)


def challenge_session(svc: Any, user: dict) -> str:
    """A NEW_PASSWORD_REQUIRED ``Session`` for a user who logged in with a temporary
    password: 5 minutes, bound to that password (``password_fingerprint``)."""
    return svc.signer.issue({"sub": user["user_id"], "token_use": "session",
                             "pwh": password_fingerprint(user["password_hash"])}, 300)


def challenge_user(svc: Any, session: Any, username: Any) -> dict:
    """The user a NEW_PASSWORD_REQUIRED ``Session`` was issued to, if it is still unused
    and ``username`` (e-mail or UserId) is that user's."""
    try:
        claims = svc.signer.verify(session) if isinstance(session, str) else {}
    except AuthError:
        claims = {}
    if claims.get("token_use") != "session":
        raise CognitoError("NotAuthorizedException", SESSION_EXPIRED)
    user = svc.identities.user(claims["sub"])
    if user is None or username not in (user["email"], user["user_id"]):
        raise CognitoError("NotAuthorizedException", "the session is not this user's")
    _require_enabled(user)  # disabled since the session was issued
    # bound to the password it was issued for: once that changed, the session is spent
    if not user["password_temporary"] or claims.get("pwh") != password_fingerprint(
            user["password_hash"]):
        raise CognitoError("NotAuthorizedException", SESSION_USED)
    return user


def _respond_to_challenge(request: Request, body: dict) -> dict[str, Any]:
    svc = service(request)
    if body.get("ChallengeName") != "NEW_PASSWORD_REQUIRED":
        raise CognitoError("InvalidParameterException",
                           "only the NEW_PASSWORD_REQUIRED challenge is supported")
    answers = _params(body, "ChallengeResponses")
    user = challenge_user(svc, body.get("Session"), answers.get("USERNAME"))
    password = _proposed_password(answers.get("NEW_PASSWORD"), "NEW_PASSWORD")
    if not svc.identities.change_password(user["user_id"], password, user["password_hash"]):
        raise CognitoError("NotAuthorizedException", SESSION_USED)  # a racing answer won
    user = svc.identities.user(user["user_id"])
    return _auth_result(request, user, with_refresh=True)


def _access_token_user(svc: Any, token: str) -> dict:
    """The user whose (unexpired) access token this is."""
    try:
        claims = svc.signer.verify(token)
    except AuthError:
        claims = {}
    user = (svc.identities.user(claims["sub"])
            if claims.get("token_use") == "access" and "scope" not in claims else None)
    if user is None:
        raise CognitoError("NotAuthorizedException",
                           "Invalid or expired Access Token: log in again")
    _require_enabled(user)
    if revoked(claims, user):  # issued before the user was disabled: log in again
        raise CognitoError("NotAuthorizedException", "Access Token has been revoked")
    return user


def _change_password(request: Request, body: dict) -> dict[str, Any]:
    """``ChangePassword`` (AccessToken, PreviousPassword, ProposedPassword) → ``{}``; ends the
    user's refresh tokens, as a challenge answer does."""
    svc = service(request)
    token, previous = body.get("AccessToken"), body.get("PreviousPassword")
    if not isinstance(token, str) or not isinstance(previous, str):
        raise CognitoError("InvalidParameterException",
                           "AccessToken, PreviousPassword and ProposedPassword are required")
    user = _access_token_user(svc, token)
    proposed = _proposed_password(body.get("ProposedPassword"), "ProposedPassword")
    try:
        svc.identities.password_user(user["email"], previous)
    except AuthError as exc:  # a wrong one, or too many wrong ones in a row
        raise CognitoError("NotAuthorizedException", exc.message) from None
    if not svc.identities.change_password(user["user_id"], proposed, user["password_hash"]):
        raise CognitoError("NotAuthorizedException", "Incorrect username or password.")
    return {}


ACTIONS = {"InitiateAuth": _initiate_auth, "RespondToAuthChallenge": _respond_to_challenge,
           "ChangePassword": _change_password}


async def cognito(request: Request) -> Response:
    """``POST /`` with ``X-Amz-Target: AWSCognitoIdentityProviderService.<Action>``."""
    target = request.headers.get("x-amz-target", "")
    action = ACTIONS.get(target[len(TARGET_PREFIX):]) if target.startswith(TARGET_PREFIX) else None
    try:
        if action is None:
            raise CognitoError("UnknownOperationException",
                               f"unknown X-Amz-Target {target!r}: qick-queue answers "
                               "InitiateAuth, RespondToAuthChallenge and ChangePassword")
        try:
            body = await read_json(request)
        except BadRequest as exc:
            raise CognitoError("SerializationException", exc.message) from None
        answer = await call(action, request, body)
    except CognitoError as exc:
        return cognito_response(exc)
    return JSONResponse(answer, media_type="application/x-amz-json-1.1")
