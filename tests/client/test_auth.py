"""Auth flows: API keys, a device's OAuth2 token (refetched before expiry and after a 401),
and a person's Cognito SRP login with a 0600 token cache (pycognito against moto)."""
from __future__ import annotations

import base64
import gzip
import json
import os
import pathlib
import stat
import time

import pytest

from cloudqueue.auth import (ApiKeyAuth, CognitoUserAuth, DeviceTokenAuth,
                             device_auth_from_config, user_auth_from_config)
from cloudqueue.client import QueueClient
from cloudqueue.config import load_config, write_atomically
from cloudqueue.errors import AuthError, ConfigError, ServiceUnavailable

from .fakes import FakeServer, Reply


# --- API keys -------------------------------------------------------------------------------
def test_api_key_from_config_and_env_override(tmp_path, monkeypatch):
    conf = tmp_path / "c.conf"
    conf.write_text("[service]\napi_endpoint = http://h\n[user]\napi_key = qk_fromfile\n")
    monkeypatch.delenv("QICK_API_KEY", raising=False)
    assert user_auth_from_config(load_config(conf)).token() == "qk_fromfile"
    monkeypatch.setenv("QICK_API_KEY", "qk_fromenv")
    auth = user_auth_from_config(load_config(conf))
    assert isinstance(auth, ApiKeyAuth) and auth.token() == "qk_fromenv"
    assert "fromenv" not in repr(auth)


def test_api_key_is_sent_as_bearer():
    with FakeServer(lambda seen: Reply(200, [])) as srv:
        QueueClient(srv.url + "/dev", ApiKeyAuth("qk_abc")).list_devices()
        assert srv.seen[0].headers["authorization"] == "Bearer qk_abc"
        assert srv.seen[0].path == "/dev/devices"


def test_no_way_to_log_in_is_a_config_error_naming_the_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("QICK_API_KEY", raising=False)
    conf = tmp_path / "c.conf"
    conf.write_text("[service]\napi_endpoint = http://h\n")
    with pytest.raises(ConfigError) as err:
        user_auth_from_config(load_config(conf))
    assert "api_key" in str(err.value) and "cognito_userpool" in str(err.value)


# --- device OAuth2 client credentials -------------------------------------------------------
class TokenIssuer:
    """A token endpoint issuing numbered tokens with a short lifetime."""

    def __init__(self, expires_in=30, secret="s3cret"):
        self.count = 0
        self.expires_in = expires_in
        self.secret = secret

    def __call__(self, seen):
        if seen.path != "/oauth2/token":
            return Reply(404)
        basic = base64.b64decode(seen.headers["authorization"].split()[1]).decode()
        if basic != f"dev-client:{self.secret}" or b"grant_type=client_credentials" not in seen.body:
            return Reply(400, {"error": "invalid_client"})
        self.count += 1
        return Reply(200, {"access_token": f"tok{self.count}", "token_type": "Bearer",
                           "expires_in": self.expires_in})


@pytest.mark.device310
def test_device_token_is_cached_then_refetched_before_expiry():
    now = [1000.0]
    issuer = TokenIssuer(expires_in=30)
    with FakeServer(issuer) as srv:
        auth = DeviceTokenAuth.for_endpoint(srv.url + "/", "dev-client", "s3cret",
                                            clock=lambda: now[0])
        assert auth.token() == "tok1"
        now[0] += 20
        assert auth.token() == "tok1"          # still valid: no new fetch
        now[0] += 8                            # within the margin (3 s) before expiry
        assert auth.token() == "tok2"
        assert issuer.count == 2
        assert srv.seen[0].headers["content-type"] == "application/x-www-form-urlencoded"


@pytest.mark.device310
def test_device_token_is_refetched_once_when_the_api_answers_401():
    issuer = TokenIssuer(expires_in=3600)

    def api(seen):
        if seen.path == "/oauth2/token":
            return issuer(seen)
        if seen.headers.get("authorization") == "Bearer tok1":  # the service forgot tok1
            return Reply(401, {"message": "Unauthorized"})
        return Reply(200, {"DeviceId": "d1", "UploadUrl": "http://x"})

    with FakeServer(api) as srv:
        auth = DeviceTokenAuth.for_endpoint(srv.url, "dev-client", "s3cret")
        client = QueueClient(srv.url, auth)
        client._capabilities = client.capabilities()  # 404 → stock, cached
        answer = client.heartbeat("d1")
        assert answer["DeviceId"] == "d1" and auth.fetches == 2


@pytest.mark.device310
def test_device_with_a_wrong_secret_gets_an_actionable_auth_error(tmp_path):
    with FakeServer(TokenIssuer()) as srv:
        conf = tmp_path / "config"
        conf.write_text(f"[service]\noauth_endpoint = {srv.url}\napi_endpoint = {srv.url}\n")
        creds = tmp_path / "credentials"
        write_atomically(creds, "[credentials]\nid = dev-client\nsecret = wrong\n")
        auth = device_auth_from_config(load_config(conf, credentials_path=creds))
        with pytest.raises(AuthError) as err:
            auth.token()
    assert "invalid_client" in str(err.value) and "credentials" in str(err.value)


@pytest.mark.device310
def test_unreachable_token_endpoint_is_service_unavailable():
    auth = DeviceTokenAuth("http://127.0.0.1:9/oauth2/token", "a", "b", timeout=2)
    with pytest.raises(ServiceUnavailable, match="cannot reach the token endpoint"):
        auth.token()


# --- Cognito SRP login (pycognito against moto) ---------------------------------------------
@pytest.fixture
def cognito(monkeypatch):
    moto = pytest.importorskip("moto")
    import moto.cognitoidp
    resources = pathlib.Path(moto.cognitoidp.__file__).parent / "resources"
    jwks = json.loads(gzip.decompress((resources / "jwks-public.json.gz").read_bytes()))
    monkeypatch.setenv("COGNITO_JWKS", json.dumps(jwks))
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("QICK_PASSWORD", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        import boto3
        idp = boto3.client("cognito-idp", region_name="us-east-1")
        pool = idp.create_user_pool(PoolName="qick")["UserPool"]["Id"]
        client_id = idp.create_user_pool_client(
            UserPoolId=pool, ClientName="userclient",
            ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]
        idp.admin_create_user(UserPoolId=pool, Username="ada@example.org",
                              TemporaryPassword="Temp-pass1!", MessageAction="SUPPRESS")
        idp.admin_set_user_password(UserPoolId=pool, Username="ada@example.org",
                                    Password="Real-pass1!", Permanent=True)
        yield {"pool": pool, "client_id": client_id, "idp": idp}


def make_auth(cognito, cache, **kwargs):
    return CognitoUserAuth(cognito["pool"], cognito["client_id"], "ada@example.org",
                           cache_path=cache, **kwargs)


def test_cognito_srp_login_caches_tokens_in_a_0600_file(cognito, tmp_path):
    cache = tmp_path / "cache" / "qick.tokens"
    prompts = []
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        auth = make_auth(cognito, cache, password_prompt=lambda user: prompts.append(user)
                         or "Real-pass1!")
        token = auth.token()
    finally:
        os.umask(old_umask)
    assert prompts == ["ada@example.org"] and auth.logins == 1
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["token_use"] == "access"
    stored = json.loads(cache.read_text())
    entry = stored[f"{cognito['pool']}/{cognito['client_id']}/ada@example.org"]
    assert entry["access_token"] == token and entry["refresh_token"]
    assert "Real-pass1!" not in cache.read_text()

    # A second process reuses the cached token: no prompt, no login.
    again = make_auth(cognito, cache, password_prompt=lambda user: pytest.fail("prompted"))
    assert again.token() == token and again.logins == 0


def test_cognito_token_is_refreshed_before_expiry(cognito, tmp_path, monkeypatch):
    cache = tmp_path / "qick.tokens"
    monkeypatch.setenv("QICK_PASSWORD", "Real-pass1!")
    first = make_auth(cognito, cache).token()
    later = make_auth(cognito, cache, clock=lambda: time.time() + 3590,
                      password_prompt=lambda user: pytest.fail("prompted"))
    monkeypatch.delenv("QICK_PASSWORD")
    token = later.token()
    assert later.refreshes == 1 and later.logins == 0 and token != first
    assert json.loads(cache.read_text())[f"{cognito['pool']}/{cognito['client_id']}/"
                                         "ada@example.org"]["access_token"] == token


def test_cognito_logs_in_again_when_the_refresh_token_is_dead(cognito, tmp_path, monkeypatch):
    cache = tmp_path / "qick.tokens"
    monkeypatch.setenv("QICK_PASSWORD", "Real-pass1!")
    make_auth(cognito, cache).token()
    data = json.loads(cache.read_text())
    for entry in data.values():
        entry["refresh_token"] = "revoked"
        entry["access_token"] = None
    cache.write_text(json.dumps(data))
    auth = make_auth(cognito, cache)
    assert auth.token() and auth.logins == 1


def test_cognito_without_a_password_source_says_how_to_give_one(cognito, tmp_path):
    with pytest.raises(AuthError, match="QICK_PASSWORD"):
        make_auth(cognito, tmp_path / "t").token()


def test_cognito_unknown_user_is_an_auth_error(cognito, tmp_path, monkeypatch):
    monkeypatch.setenv("QICK_PASSWORD", "x")
    auth = CognitoUserAuth(cognito["pool"], cognito["client_id"], "nobody@example.org",
                           cache_path=tmp_path / "t")
    with pytest.raises(AuthError, match="nobody@example.org"):
        auth.token()


def test_cognito_is_chosen_from_the_stock_config(cognito, tmp_path, monkeypatch):
    monkeypatch.delenv("QICK_API_KEY", raising=False)
    monkeypatch.setenv("QICK_TOKEN_CACHE", str(tmp_path / "tc"))
    conf = tmp_path / "c.conf"
    conf.write_text(f"[service]\ncognito_userpool = {cognito['pool']}\n"
                    f"clientid = {cognito['client_id']}\napi_endpoint = http://h/dev\n"
                    "[user]\nusername = ada@example.org\n")
    auth = user_auth_from_config(load_config(conf), password_prompt=lambda u: "pw")
    assert isinstance(auth, CognitoUserAuth) and auth.token()
    assert (tmp_path / "tc").exists()


@pytest.mark.device310
def test_the_board_side_imports_stay_light():
    """The board imports the client: no AWS SDK, no pycognito, no web framework."""
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "tests.client.import_probe"], cwd=root,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


# --- stock item 1: the stock README's cognito_url ends with "/" ---------------------------
@pytest.mark.parametrize("url", ["https://cognito-idp.us-east-1.amazonaws.com/",
                                 "https://cognito-idp.us-east-1.amazonaws.com"])
def test_cognito_url_with_or_without_final_slash_gives_the_issuer(cognito, tmp_path, url):
    """pycognito checks the token issuer against endpoint_url + "/" + pool: a final "/" in
    cognito_url made it "...amazonaws.com//<pool>" and every login "Invalid issuer"."""
    auth = make_auth(cognito, tmp_path / "t", endpoint_url=url,
                     password_prompt=lambda user: "Real-pass1!")
    assert auth.token() and auth.logins == 1
    auth.invalidate()
    assert auth.token() and auth.refreshes == 1


def test_stock_readme_cognito_url_from_the_config(cognito, tmp_path, monkeypatch):
    monkeypatch.delenv("QICK_API_KEY", raising=False)
    monkeypatch.setenv("QICK_TOKEN_CACHE", str(tmp_path / "tc"))
    conf = tmp_path / "c.conf"
    conf.write_text(f"[service]\ncognito_userpool = {cognito['pool']}\n"
                    f"cognito_url = https://cognito-idp.us-east-1.amazonaws.com/\n"
                    f"clientid = {cognito['client_id']}\napi_endpoint = http://h/dev\n"
                    "[user]\nusername = ada@example.org\n")
    auth = user_auth_from_config(load_config(conf), password_prompt=lambda u: "Real-pass1!")
    assert auth.token() and auth.logins == 1


# --- stock item 5: a first login with nobody to choose a new password ---------------------
@pytest.mark.parametrize("prompt", [None, lambda user: ""])
def test_temporary_password_without_a_new_one_says_to_run_login(cognito, tmp_path, prompt):
    cognito["idp"].admin_create_user(UserPoolId=cognito["pool"], Username="new@example.org",
                                     TemporaryPassword="Temp-pass1!", MessageAction="SUPPRESS")
    auth = CognitoUserAuth(cognito["pool"], cognito["client_id"], "new@example.org",
                           cache_path=tmp_path / "t", password_prompt=lambda u: "Temp-pass1!",
                           new_password_prompt=prompt)
    with pytest.raises(AuthError) as err:
        auth.token()
    assert err.value.kind == "new_password_required"
    assert "temporary password" in str(err.value) and "`userclient login`" in str(err.value)
    assert "configure --login" not in str(err.value)
