"""Credentials for the queue's API, as pluggable ``requests`` auth objects.

- ``ApiKeyAuth``: our service's bearer API keys (``qk_…``), for users and admins.
- ``DeviceTokenAuth``: a board's OAuth2 client-credentials token, fetched from
  ``<oauth_endpoint>/oauth2/token`` with HTTP Basic auth, fetched again shortly before it
  expires and once more when the API answers 401.
- ``CognitoUserAuth``: a person's Cognito login (SRP, through pycognito, imported lazily so
  the board never needs it), with tokens cached in a 0600 file and refreshed before expiry;
  a dead refresh token leads to a new login. Where the endpoint offers no SRP (our queue
  service's Cognito-compatible ``POST /``), it logs in as the original client does:
  ``USER_PASSWORD_AUTH``, refreshed with ``REFRESH_TOKEN_AUTH`` (``cloudqueue.cognito``).

Every auth object has ``token()`` (a valid bearer token, fetching one when needed) and
``invalidate()`` (forget the cached token after a 401; returns True when fetching a new one
might help, so the client retries the request once).
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

import requests

from cloudqueue.cognito import PasswordLogin, regional_endpoint
from cloudqueue.config import Config, write_atomically
from cloudqueue.errors import AuthError, ConfigError, NotSupported, ServiceUnavailable

# Not the original client's ~/.cache/qick.tokens: that file holds one AuthenticationResult
# in its own format, and a person running both clients on one machine keeps both logins.
DEFAULT_TOKEN_CACHE = Path("~/.cache/qick-queue.tokens")
# Refresh a token this long before it expires (capped at a tenth of its lifetime).
EXPIRY_MARGIN_SECONDS = 60.0


class Auth(requests.auth.AuthBase):
    """Base of the auth objects: sets ``Authorization: Bearer <token()>``."""

    def token(self) -> str:
        raise NotImplementedError

    def invalidate(self) -> bool:
        """Forget cached credentials after a 401. True when a retry may succeed."""
        return False

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request


class NoAuth(Auth):
    """For calls that need no credentials (``/capabilities``, presigned URLs)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class ApiKeyAuth(Auth):
    """A static bearer API key."""

    def __init__(self, api_key: str):
        if not api_key or not api_key.strip():
            raise ConfigError("the API key is empty: set QICK_API_KEY or [user] api_key",
                              kind="config_key_missing")
        self._key = api_key.strip()

    def token(self) -> str:
        return self._key

    def __repr__(self) -> str:  # never show the key
        return f"ApiKeyAuth({self._key[:5]}…)"


def _margin(lifetime: float) -> float:
    return min(EXPIRY_MARGIN_SECONDS, max(lifetime, 0.0) / 10.0)


class DeviceTokenAuth(Auth):
    """OAuth2 client credentials (RFC 6749 §4.4), as the stock service's Cognito app clients."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, *,
                 timeout: float = 15.0, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.timeout = timeout
        self._session = session or requests.Session()
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.fetches = 0  # how many tokens were fetched (for health reports and tests)

    @classmethod
    def for_endpoint(cls, oauth_endpoint: str, client_id: str, client_secret: str,
                     **kwargs) -> "DeviceTokenAuth":
        return cls(oauth_endpoint.rstrip("/") + "/oauth2/token", client_id, client_secret,
                   **kwargs)

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> bool:
        with self._lock:
            self._token = None
        return True

    def _fetch(self) -> None:
        started = self._clock()
        try:
            answer = self._session.post(
                self.token_url, data={"grant_type": "client_credentials"},
                auth=(self.client_id, self._secret), timeout=self.timeout,
                headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise ServiceUnavailable(f"cannot reach the token endpoint {self.token_url} "
                                     f"({type(exc).__name__}); will retry") from None
        if answer.status_code in (400, 401):
            error = _json_field(answer, "error") or f"HTTP {answer.status_code}"
            raise AuthError(f"the token endpoint {self.token_url} refused this device's "
                            f"credentials ({error}); check [credentials] id and secret "
                            f"in the credentials file", kind="invalid_client",
                            status=answer.status_code)
        if answer.status_code != 200:
            raise ServiceUnavailable(f"the token endpoint {self.token_url} answered HTTP "
                                     f"{answer.status_code}; will retry",
                                     status=answer.status_code)
        try:
            body = answer.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise ServiceUnavailable(f"the token endpoint {self.token_url} sent an answer "
                                     f"without an access_token") from None
        self._token = token
        self._refresh_at = started + lifetime - _margin(lifetime)
        self.fetches += 1

    def __repr__(self) -> str:
        return f"DeviceTokenAuth({self.token_url!r}, client_id={self.client_id!r})"


def _json_field(answer: requests.Response, name: str) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body.get(name) if isinstance(body, dict) else None


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without checking the signature (for scheduling only)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return float(json.loads(base64.urlsafe_b64decode(payload))["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


#: cached Cognito tokens of a password login (refreshed over plain HTTP, not pycognito)
PASSWORD_FLOW = "password"


class _SrpUnsupported(NotSupported):
    """The Cognito endpoint refused ``USER_SRP_AUTH`` (our queue service offers none): a
    signal to log in with a password instead, caught inside this module."""


class CognitoUserAuth(Auth):
    """A Cognito user pool login with SRP (pycognito), tokens cached on disk.

    ``password_prompt`` is called (with the username) when a login is needed and the
    ``QICK_PASSWORD`` environment variable is not set; passwords never come from argv.
    ``new_password_prompt`` answers Cognito's NEW_PASSWORD_REQUIRED challenge (first login
    with a temporary password); without it that challenge is an AuthError saying what to do.
    """

    def __init__(self, user_pool_id: str, client_id: str, username: str, *,
                 region: str | None = None, endpoint_url: str | None = None,
                 cache_path: str | os.PathLike | None = None,
                 password_prompt: Callable[[str], str] | None = None,
                 new_password_prompt: Callable[[str], str] | None = None,
                 clock: Callable[[], float] = time.time):
        self.user_pool_id = user_pool_id
        self.client_id = client_id
        self.username = username
        self.region = region
        self.endpoint_url = endpoint_url
        self.cache_path = Path(cache_path or DEFAULT_TOKEN_CACHE).expanduser()
        self._password_prompt = password_prompt
        self._new_password_prompt = new_password_prompt
        self._clock = clock  # wall clock: JWT ``exp`` is a Unix time
        self._lock = threading.Lock()
        self._tokens: dict | None = None
        self.logins = 0
        self.refreshes = 0

    # --- public -------------------------------------------------------------------------
    def token(self) -> str:
        with self._lock:
            if self._tokens is None:
                self._tokens = self._load_cache()
            if self._tokens and self._fresh(self._tokens.get("access_token")):
                return self._tokens["access_token"]
            if self._tokens and self._tokens.get("refresh_token"):
                try:
                    self._refresh()
                    return self._tokens["access_token"]
                except AuthError:
                    pass  # the refresh token is dead: log in again
            self._login()
            return self._tokens["access_token"]

    def invalidate(self) -> bool:
        with self._lock:
            if self._tokens:
                self._tokens["access_token"] = None
        return True

    def remember_login(self, tokens: dict) -> None:
        """Cache the tokens of a password login made elsewhere (``userclient login``'s
        Cognito ``AuthenticationResult``), so the next command needs no password."""
        with self._lock:
            self._keep_password_login(tokens)

    def _keep_password_login(self, tokens: dict) -> None:
        """Keep an ``AuthenticationResult`` of ``USER_PASSWORD_AUTH``; such tokens are
        refreshed with a plain ``REFRESH_TOKEN_AUTH``, which every Cognito endpoint answers."""
        self._tokens = {"access_token": tokens.get("AccessToken"),
                        "id_token": tokens.get("IdToken"),
                        "refresh_token": tokens.get("RefreshToken"), "flow": PASSWORD_FLOW}
        self._store(self._tokens)

    def logout(self) -> None:
        """Forget this user's cached tokens (in memory and on disk)."""
        with self._lock:
            self._tokens = None
            self._store(None)

    # --- internals ----------------------------------------------------------------------
    @property
    def _cache_key(self) -> str:
        return f"{self.user_pool_id}/{self.client_id}/{self.username}"

    def _fresh(self, token: str | None) -> bool:
        if not token:
            return False
        expiry = jwt_expiry(token)
        if expiry is None:
            return False
        return self._clock() < expiry - EXPIRY_MARGIN_SECONDS

    def _read_cache_file(self) -> dict:
        try:
            with open(self.cache_path, encoding="utf-8") as handle:
                data = json.load(handle)
            return data if isinstance(data, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}
        except OSError as exc:
            raise ConfigError(f"{self.cache_path}: cannot read the token cache "
                              f"({exc.strerror})", kind="config_unreadable") from None

    def _load_cache(self) -> dict | None:
        entry = self._read_cache_file().get(self._cache_key)
        return dict(entry) if isinstance(entry, dict) else None

    def _store(self, tokens: dict | None) -> None:
        data = self._read_cache_file()
        if tokens is None:
            data.pop(self._cache_key, None)
        else:
            data[self._cache_key] = tokens
        write_atomically(self.cache_path, json.dumps(data, indent=1))

    def _cognito(self, **tokens):
        try:
            import pycognito  # lazy: only a person's laptop needs it
        except ImportError:
            raise ConfigError("Cognito login needs pycognito: pip install 'qick-queue[user]'",
                              kind="missing_dependency") from None
        # pycognito builds the token issuer as endpoint_url + "/" + pool: the stock README's
        # "https://cognito-idp.<region>.amazonaws.com/" would double the "/" (Invalid issuer)
        endpoint = self.endpoint_url.rstrip("/") if self.endpoint_url else None
        kwargs = {"endpoint_url": endpoint} if endpoint else None
        return pycognito.Cognito(self.user_pool_id, self.client_id,
                                 user_pool_region=self.region, username=self.username,
                                 boto3_client_kwargs=kwargs, **tokens)

    def _remember(self, cognito) -> None:
        self._tokens = {"access_token": cognito.access_token, "id_token": cognito.id_token,
                        "refresh_token": cognito.refresh_token}
        self._store(self._tokens)

    def _password(self) -> str:
        password = os.environ.get("QICK_PASSWORD")
        if not password and self._password_prompt is not None:
            password = self._password_prompt(self.username)
        if not password:
            raise AuthError(f"a password is needed to log in as {self.username}: set "
                            f"QICK_PASSWORD or run the command in a terminal",
                            kind="password_needed")
        return password

    def _refresh(self) -> None:
        assert self._tokens is not None
        if self._tokens.get("flow") == PASSWORD_FLOW:
            self._refresh_password()
            self.refreshes += 1
            return
        cognito = self._cognito(refresh_token=self._tokens["refresh_token"],
                                access_token=self._tokens.get("access_token"),
                                id_token=self._tokens.get("id_token"))
        self._call(cognito.renew_access_token)
        self.refreshes += 1
        self._remember(cognito)

    def _login(self) -> None:
        password = self._password()
        try:
            self._login_srp(password)
        except _SrpUnsupported:
            self._login_password(password)
        self.logins += 1

    def _new_password(self) -> str:
        new_password = (self._new_password_prompt(self.username)
                        if self._new_password_prompt is not None else "")
        if not new_password:
            raise AuthError(temporary_password_message(self.username),
                            kind="new_password_required")
        return new_password

    def _login_srp(self, password: str) -> None:
        cognito = self._cognito()
        from pycognito.exceptions import ForceChangePasswordException
        try:
            self._call(cognito.authenticate, password)
        except ForceChangePasswordException:
            self._call(cognito.new_password_challenge, password, self._new_password())
        self._remember(cognito)

    def _password_login(self) -> PasswordLogin:
        url = self.endpoint_url or regional_endpoint(self.user_pool_id, self.region)
        return PasswordLogin(url.rstrip("/") + "/", self.client_id, self.username)

    def _login_password(self, password: str) -> None:
        """``USER_PASSWORD_AUTH`` (the original client's flow), for an endpoint without SRP."""
        self._keep_password_login(
            self._password_login().login(password, self._new_password).tokens)

    def _refresh_password(self) -> None:
        assert self._tokens is not None
        answer = self._password_login().call("InitiateAuth", {
            "AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": self.client_id,
            "AuthParameters": {"REFRESH_TOKEN": self._tokens["refresh_token"]}})
        fresh = answer.get("AuthenticationResult") or {}
        if not fresh.get("AccessToken"):
            raise AuthError(f"the refresh of {self.username}'s login gave no token",
                            kind="login_refused")
        self._tokens.update(access_token=fresh["AccessToken"],
                            id_token=fresh.get("IdToken", self._tokens.get("id_token")))
        self._store(self._tokens)

    def _call(self, method, *args):
        """Run a pycognito call, turning boto/pycognito errors into ours."""
        from botocore.exceptions import BotoCoreError, ClientError
        from pycognito.exceptions import ForceChangePasswordException, TokenVerificationException
        try:
            return method(*args)
        except ForceChangePasswordException:
            raise
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "")
            if code == "InvalidParameterException" and "USER_SRP_AUTH" in message:
                raise _SrpUnsupported("this Cognito endpoint offers no USER_SRP_AUTH") from None  # our service: no SRP, log in as the original
            if code in ("NotAuthorizedException", "UserNotFoundException",
                        "PasswordResetRequiredException", "UserNotConfirmedException"):
                raise AuthError(f"login as {self.username} refused: {message or code}",
                                kind="login_refused", status=400) from None
            if code in ("TooManyRequestsException", "InternalErrorException",
                        "ServiceUnavailable", "ThrottlingException"):
                raise ServiceUnavailable(f"Cognito is busy ({code}); try again later") from None
            raise AuthError(f"Cognito refused the login of {self.username}: "
                            f"{code}: {message}", kind="login_refused") from None
        except TokenVerificationException as exc:
            raise AuthError(f"the tokens Cognito sent could not be verified ({exc})",
                            kind="token_invalid") from None
        except BotoCoreError as exc:
            raise ServiceUnavailable(f"cannot reach Cognito ({exc}); check the network "
                                     f"and [service] cognito_url") from None

    def __repr__(self) -> str:
        return f"CognitoUserAuth({self.user_pool_id!r}, user={self.username!r})"


def temporary_password_message(username: str) -> str:
    """What to tell a user who still has a temporary password."""
    return (f"{username} still has a temporary password: run `userclient login` to choose "
            f"a new one (in a terminal, or with the temporary and the new password as two "
            f"lines on stdin)")


def cache_login(config: Config, username: str, tokens: dict) -> Path | None:
    """Keep the tokens of ``userclient login`` where this config's Cognito login looks for
    them; None when the config logs in otherwise (an API key) or as another user."""
    if (os.environ.get("QICK_API_KEY") or config.get("user", "api_key")
            or not config.get("service", "cognito_userpool")
            or config.get("user", "username") != username):
        return None
    auth = user_auth_from_config(config)
    assert isinstance(auth, CognitoUserAuth)
    auth.remember_login(tokens)
    return auth.cache_path


def token_cache_path(config: Config) -> Path:
    return Path(os.environ.get("QICK_TOKEN_CACHE") or config.get("user", "token_cache")
                or DEFAULT_TOKEN_CACHE).expanduser()


def user_auth_from_config(config: Config, *,
                          password_prompt: Callable[[str], str] | None = None,
                          new_password_prompt: Callable[[str], str] | None = None) -> Auth:
    """The auth of a person: an API key if there is one, else a Cognito login."""
    key = os.environ.get("QICK_API_KEY") or config.get("user", "api_key")
    if key:
        return ApiKeyAuth(key)
    pool = config.get("service", "cognito_userpool")
    if pool:
        return CognitoUserAuth(pool, config.require("service", "clientid"),
                               config.require("user", "username"),
                               region=config.get("service", "region"),
                               endpoint_url=config.get("service", "cognito_url"),
                               cache_path=token_cache_path(config),
                               password_prompt=password_prompt,
                               new_password_prompt=new_password_prompt)
    if config.path is None:
        raise config.no_file_error()
    where = config.path
    raise ConfigError(f"{where}: no way to log in: add `api_key` to [user] (our queue "
                      f"service) or `cognito_userpool` and `clientid` to [service] and "
                      f"`username` to [user] (stock AWS service), or set QICK_API_KEY",
                      kind="config_key_missing")


def device_auth_from_config(config: Config, **kwargs) -> DeviceTokenAuth:
    """The auth of a board: client credentials from the credentials file."""
    return DeviceTokenAuth.for_endpoint(config.require("service", "oauth_endpoint"),
                                        config.require("credentials", "id"),
                                        config.require("credentials", "secret"), **kwargs)
