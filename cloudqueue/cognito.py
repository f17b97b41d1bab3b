"""A person's password at a Cognito endpoint, over plain HTTP (``requests``, no AWS SDK).

``PasswordLogin`` logs in with ``InitiateAuth`` ``USER_PASSWORD_AUTH`` (the flow the original
SideQICK client uses), answers ``NEW_PASSWORD_REQUIRED`` (the first login with a temporary
password) and changes a password with ``ChangePassword``. The same calls work on a stock
Cognito user pool (these actions need no AWS signature) and on our queue service's
Cognito-compatible endpoint (``POST /`` at the service root).

Passwords are asked for through callables, so the caller decides where they come from (a
terminal, stdin) and the new one is asked for only when it is needed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from cloudqueue.config import Config
from cloudqueue.errors import AuthError, BadRequest, ConfigError, QueueError, ServiceUnavailable

TARGET_PREFIX = "AWSCognitoIdentityProviderService."
#: the ClientId sent to our service, which has a single user pool and ignores it
OUR_SERVICE_CLIENT_ID = "userclient"
#: our service's ``[service] cognito_userpool``: it has one pool and ignores the id, but the
#: original user client reads the key (it needs it only for SRP, which it does not use)
OUR_SERVICE_USER_POOL = "local_qickqueue"

#: Cognito error types that mean "these credentials are not accepted"
_REFUSED = ("NotAuthorizedException", "UserNotFoundException", "ResourceNotFoundException",
            "PasswordResetRequiredException", "UserNotConfirmedException")
_BUSY = ("TooManyRequestsException", "LimitExceededException", "InternalErrorException")


@dataclass
class LoginResult:
    """The tokens of a successful login (Cognito's ``AuthenticationResult``), and whether
    the password was changed on the way (a first login, or ``change_password=True``)."""

    tokens: dict[str, Any]
    changed: bool


@dataclass
class PasswordLogin:
    """Password logins of ``username`` at the Cognito endpoint ``url``."""

    url: str
    client_id: str
    username: str
    timeout: float = 30.0
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def login(self, password: str, new_password: Callable[[], str], *,
              change_password: bool = False) -> LoginResult:
        """Log in with ``password``. ``new_password()`` is called only when a new password
        is needed: the password is temporary, or ``change_password`` asks for a change."""
        if not password:
            raise BadRequest("the password is empty", kind="password_needed")
        answer = self.call("InitiateAuth", {
            "AuthFlow": "USER_PASSWORD_AUTH", "ClientId": self.client_id,
            "AuthParameters": {"USERNAME": self.username, "PASSWORD": password}})
        challenge = answer.get("ChallengeName")
        if challenge == "NEW_PASSWORD_REQUIRED":
            proposed = self._new(new_password, password)
            params = answer.get("ChallengeParameters") or {}
            answer = self.call("RespondToAuthChallenge", {
                "ChallengeName": challenge, "ClientId": self.client_id,
                "Session": answer.get("Session"),
                "ChallengeResponses": {"USERNAME": params.get("USER_ID_FOR_SRP",
                                                              self.username),
                                       "NEW_PASSWORD": proposed}})
            return LoginResult(self._tokens(answer), changed=True)
        if challenge:
            raise AuthError(f"Cognito asks {self.username} for {challenge}, which userclient "
                            f"cannot answer: log in once through the service's web page",
                            kind="challenge_unsupported")
        tokens = self._tokens(answer)
        if not change_password:
            return LoginResult(tokens, changed=False)
        proposed = self._new(new_password, password)
        self.call("ChangePassword", {"AccessToken": tokens.get("AccessToken"),
                                     "PreviousPassword": password,
                                     "ProposedPassword": proposed})
        # a change ends the refresh tokens issued before it: log in again for live ones
        again = self.call("InitiateAuth", {
            "AuthFlow": "USER_PASSWORD_AUTH", "ClientId": self.client_id,
            "AuthParameters": {"USERNAME": self.username, "PASSWORD": proposed}})
        return LoginResult(self._tokens(again), changed=True)

    def _new(self, new_password: Callable[[], str], current: str) -> str:
        proposed = new_password()
        if not proposed:
            raise BadRequest(f"no new password was given for {self.username}: nothing was "
                             "changed", kind="new_password_needed")
        if proposed == current:
            raise BadRequest("the new password is the same as the current one: choose "
                             "another (nothing was changed)", kind="invalid_password")
        return proposed

    def _tokens(self, answer: dict) -> dict[str, Any]:
        tokens = answer.get("AuthenticationResult")
        if not isinstance(tokens, dict) or not tokens.get("AccessToken"):
            raise QueueError(f"the Cognito endpoint {self.url} answered without tokens",
                             kind="invalid_answer")
        return tokens

    def call(self, action: str, body: dict) -> dict[str, Any]:
        """One Cognito action (JSON 1.1 over ``POST``), its errors as ours."""
        try:
            answer = self.session.post(
                self.url, data=json.dumps(body), timeout=self.timeout,
                headers={"X-Amz-Target": TARGET_PREFIX + action,
                         "Content-Type": "application/x-amz-json-1.1"})
        except requests.RequestException as exc:
            raise ServiceUnavailable(f"cannot reach the Cognito endpoint {self.url} "
                                     f"({type(exc).__name__}); check the network and "
                                     f"[service] cognito_url") from None
        try:
            data = answer.json()
        except ValueError:
            data = None
        if answer.status_code == 200 and isinstance(data, dict):
            return data
        data = data if isinstance(data, dict) else {}
        kind = str(data.get("__type", "")).rpartition("#")[2]
        message = data.get("message") or data.get("Message") or f"HTTP {answer.status_code}"
        if kind in _REFUSED:
            raise AuthError(f"{self.username}: {action} refused: {message}",
                            kind="login_refused", status=answer.status_code)
        if kind in ("InvalidPasswordException", "InvalidParameterException"):
            raise BadRequest(f"the new password was refused: {message}" if kind ==
                             "InvalidPasswordException" else f"{action}: {message}",
                             kind="invalid_password" if kind == "InvalidPasswordException"
                             else "invalid_parameter", status=answer.status_code)
        if kind in _BUSY or answer.status_code >= 500:
            raise ServiceUnavailable(f"the Cognito endpoint is busy or failing ({kind or message});"
                                     " try again later", status=answer.status_code)
        if not kind:
            raise ConfigError(f"{self.url} does not answer as a Cognito endpoint (HTTP "
                              f"{answer.status_code}: {message}): check [service] cognito_url "
                              f"(on our queue service: the service's root URL)",
                              kind="not_cognito")
        raise QueueError(f"the Cognito endpoint {self.url} refused {action}: {kind}: "
                         f"{message}", kind="login_refused", status=answer.status_code)


def regional_endpoint(pool: str, region: str | None = None) -> str:
    """AWS Cognito's endpoint for a user pool (its id starts with the region)."""
    return f"https://cognito-idp.{region or pool.split('_')[0]}.amazonaws.com/"


def cognito_endpoint(config: Config) -> tuple[str, str]:
    """(URL, ClientId) of the Cognito endpoint a config logs in at.

    ``[service] cognito_url`` when set (the stock README's form, with or without a final
    ``/``); else, with ``cognito_userpool``, the pool's regional AWS endpoint; else our
    service's root (the scheme and host of ``api_endpoint``), where its Cognito-compatible
    ``POST /`` is. ClientId: ``[service] clientid`` (required with a user pool).
    """
    pool = config.get("service", "cognito_userpool")
    url = config.get("service", "cognito_url")
    if not url and pool:
        url = regional_endpoint(pool, config.get("service", "region"))
    if not url:
        parts = urlsplit(config.api_endpoint)
        if not parts.scheme or not parts.netloc:
            raise ConfigError(f"{config.path}: api_endpoint {config.api_endpoint!r} is not a "
                              f"URL; fix [service] api_endpoint", kind="config_invalid")
        url = f"{parts.scheme}://{parts.netloc}"
    client_id = config.require("service", "clientid") if pool else (
        config.get("service", "clientid") or OUR_SERVICE_CLIENT_ID)
    return url.rstrip("/") + "/", client_id
