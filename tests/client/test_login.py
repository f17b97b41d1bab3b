"""``userclient login``: the first login with a temporary password (NEW_PASSWORD_REQUIRED) and
later password changes, on our service (the CLI as a subprocess, passwords on stdin or typed
on a real pseudo-terminal) and on a stock Cognito user pool (moto, in-process); then the
original SideQICK client's own login (InitiateAuth USER_PASSWORD_AUTH, REFRESH_TOKEN_AUTH,
through botocore) works with the new password."""
from __future__ import annotations

import errno
import io
import json
import os
import pty
import select
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.conftest import start_queue_service
from userclient.cli import PasswordSource, main

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "userclient.cli"]


# --- our service --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = start_queue_service(Path(tmp_path_factory.mktemp("queue")), prefix="/dev")
    yield svc
    svc.stop()


def add_user(service) -> dict:
    email = f"l{uuid.uuid4().hex[:10]}@lab.test"
    made = requests.post(service.url + "/users", json={"Email": email, "FullName": "L"},
                         headers={"Authorization": f"Bearer {service.admin_key}"}, timeout=30)
    assert made.status_code == 200, made.text
    return made.json()


def user_config(tmp_path: Path, service, api_key: str, username: str | None = None) -> Path:
    """A user's config on our service, as `userclient configure` writes it: the API key,
    no cognito_url (login finds the service root from api_endpoint)."""
    path = tmp_path / f"user-{uuid.uuid4().hex[:6]}.conf"
    text = f"[service]\napi_endpoint = {service.url}\n[user]\napi_key = {api_key}\n"
    if username:
        text += f"username = {username}\n"
    path.write_text(text)
    return path


def login(config: Path, stdin: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    return subprocess.run(CLI + ["--config", str(config), "login", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)


def original_client(service):
    """What the original user client uses: an AWS SDK cognito-idp client at cognito_url."""
    return boto3.client("cognito-idp", region_name="us-east-1", endpoint_url=service.root + "/",
                        aws_access_key_id="unused", aws_secret_access_key="unused",
                        config=BotoConfig(retries={"max_attempts": 1}))


def original_login(service, email: str, password: str) -> dict:
    idp = original_client(service)
    tokens = idp.initiate_auth(AuthFlow="USER_PASSWORD_AUTH", ClientId="sideqick",
                               AuthParameters={"USERNAME": email, "PASSWORD": password}
                               )["AuthenticationResult"]
    refreshed = idp.initiate_auth(AuthFlow="REFRESH_TOKEN_AUTH", ClientId="sideqick",
                                  AuthParameters={"REFRESH_TOKEN": tokens["RefreshToken"]}
                                  )["AuthenticationResult"]
    listing = requests.get(service.url + "/devices", timeout=30,
                           headers={"Authorization": refreshed["AccessToken"]})
    assert listing.status_code == 200, listing.text
    return tokens


def still_temporary(service, email: str, temporary: str) -> bool:
    answer = original_client(service).initiate_auth(
        AuthFlow="USER_PASSWORD_AUTH", ClientId="sideqick",
        AuthParameters={"USERNAME": email, "PASSWORD": temporary})
    return answer.get("ChallengeName") == "NEW_PASSWORD_REQUIRED"


def no_traceback(done: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, \
        done.stderr


def test_first_login_from_stdin_then_the_original_client_logs_in(service, tmp_path):
    user = add_user(service)
    conf = user_config(tmp_path, service, user["ApiKey"])
    done = login(conf, f"{user['TemporaryPassword']}\nmy-own-password-1\n",
                 "--username", user["Email"])
    assert done.returncode == 0, done.stderr
    assert f"password of {user['Email']} changed" in done.stdout
    # the config has no username: say what the original client needs
    assert f"username = {user['Email']}" in done.stdout
    assert f"cognito_url = {service.root}/" in done.stdout
    assert "my-own-password-1" not in done.stdout + done.stderr
    original_login(service, user["Email"], "my-own-password-1")
    with pytest.raises(ClientError) as refused:
        original_login(service, user["Email"], user["TemporaryPassword"])
    assert refused.value.response["Error"]["Code"] == "NotAuthorizedException"


def test_login_with_a_good_password_changes_nothing(service, tmp_path):
    user = add_user(service)
    conf = user_config(tmp_path, service, user["ApiKey"], username=user["Email"])
    assert login(conf, f"{user['TemporaryPassword']}\nmy-own-password-1\n").returncode == 0
    again = login(conf, "my-own-password-1\n", "--json")
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    assert out == {"Username": user["Email"], "PasswordChanged": False,
                   "CognitoUrl": service.root + "/", "TokenCache": None}


def test_change_password_ends_the_old_refresh_tokens(service, tmp_path):
    user = add_user(service)
    conf = user_config(tmp_path, service, user["ApiKey"], username=user["Email"])
    assert login(conf, f"{user['TemporaryPassword']}\nfirst-password-1\n").returncode == 0
    before = original_login(service, user["Email"], "first-password-1")
    done = login(conf, "first-password-1\nsecond-password-2\n", "--change-password")
    assert done.returncode == 0, done.stderr
    assert f"password of {user['Email']} changed" in done.stdout
    with pytest.raises(ClientError) as dead:
        original_client(service).initiate_auth(
            AuthFlow="REFRESH_TOKEN_AUTH", ClientId="sideqick",
            AuthParameters={"REFRESH_TOKEN": before["RefreshToken"]})
    assert dead.value.response["Error"]["Code"] == "NotAuthorizedException"
    original_login(service, user["Email"], "second-password-2")


def test_wrong_temporary_password_is_refused_with_exit_3(service, tmp_path):
    user = add_user(service)
    conf = user_config(tmp_path, service, user["ApiKey"], username=user["Email"])
    done = login(conf, "not-the-temporary-one\nmy-own-password-1\n")
    assert done.returncode == 3
    assert "Incorrect username or password" in done.stderr
    no_traceback(done)
    assert still_temporary(service, user["Email"], user["TemporaryPassword"])


def test_empty_stdin_says_what_to_pipe(service, tmp_path):
    user = add_user(service)
    conf = user_config(tmp_path, service, user["ApiKey"], username=user["Email"])
    done = login(conf, "")
    assert done.returncode == 2
    assert "no password was given on stdin" in done.stderr and "second line" in done.stderr
    no_traceback(done)


def test_missing_new_password_on_stdin_changes_nothing(service, tmp_path):
    user = add_user(service)
    conf = user_config(tmp_path, service, user["ApiKey"], username=user["Email"])
    done = login(conf, f"{user['TemporaryPassword']}\n")
    assert done.returncode == 2
    assert "needs a new password" in done.stderr and "second line on stdin" in done.stderr
    no_traceback(done)
    assert still_temporary(service, user["Email"], user["TemporaryPassword"])


def test_a_too_short_password_is_refused_with_the_policy(service, tmp_path):
    user = add_user(service)
    conf = user_config(tmp_path, service, user["ApiKey"], username=user["Email"])
    done = login(conf, f"{user['TemporaryPassword']}\nshort\n")
    assert done.returncode == 2
    assert "not long enough" in done.stderr and "8 characters" in done.stderr
    no_traceback(done)
    assert still_temporary(service, user["Email"], user["TemporaryPassword"])


def test_keeping_the_temporary_password_is_refused(service, tmp_path):
    user = add_user(service)
    conf = user_config(tmp_path, service, user["ApiKey"], username=user["Email"])
    temporary = user["TemporaryPassword"]
    done = login(conf, f"{temporary}\n{temporary}\n")
    assert done.returncode == 2 and "same as the current one" in done.stderr
    assert still_temporary(service, user["Email"], temporary)


def test_without_a_username_login_says_where_to_give_it(service, tmp_path):
    user = add_user(service)
    conf = user_config(tmp_path, service, user["ApiKey"])
    done = login(conf, f"{user['TemporaryPassword']}\nmy-own-password-1\n")
    assert done.returncode == 2 and "--username" in done.stderr
    no_traceback(done)


def test_add_user_says_what_the_new_user_runs(service, tmp_path):
    admin = tmp_path / "admin.conf"
    admin.write_text(f"[service]\napi_endpoint = {service.url}\n"
                     f"[user]\napi_key = {service.admin_key}\n")
    email = f"n{uuid.uuid4().hex[:8]}@lab.test"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    done = subprocess.run(CLI + ["--config", str(admin), "add-user", email, "--name", "N"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert f"userclient login --username {email}" in done.stdout
    assert done.stdout.count("temporary password (shown once)") == 1


# --- on a terminal (a real pseudo-terminal: getpass reads /dev/tty, echo off) ---------------
def on_terminal(args: list[str], replies: list[tuple[bytes, str]],
                timeout: float = 60) -> tuple[int, bytes]:
    """Run the CLI on a new pty; answer each prompt as it appears; (exit code, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    env["PYTHONPATH"] = str(ROOT)
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        try:
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "userclient.cli", *args], env)
        finally:
            os._exit(127)
    deadline = time.monotonic() + timeout
    output = b""

    def read_more() -> bool:
        nonlocal output
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no output within {timeout}s; so far: {output!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError as exc:  # EIO: the child closed the terminal
            if exc.errno != errno.EIO:
                raise
            return False
        output += chunk
        return bool(chunk)

    try:
        for prompt, reply in replies:
            while prompt not in output:
                if not read_more():
                    raise AssertionError(f"the CLI ended before {prompt!r}: {output!r}")
            os.write(fd, reply.encode() + b"\n")
        while read_more():
            pass
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


def test_first_login_on_a_terminal_asks_twice_without_echo(service, tmp_path):
    user = add_user(service)
    conf = user_config(tmp_path, service, user["ApiKey"], username=user["Email"])
    code, out = on_terminal(["--config", str(conf), "login"], [
        (b"Password for", user["TemporaryPassword"]), (b"New password:", "typed-password-1"),
        (b"Repeat the new password:", "typed-password-1")])
    assert code == 0, out
    assert b"changed" in out and b"typed-password-1" not in out
    assert user["TemporaryPassword"].encode() not in out
    original_login(service, user["Email"], "typed-password-1")


def test_mismatched_repeat_on_a_terminal_changes_nothing(service, tmp_path):
    user = add_user(service)
    conf = user_config(tmp_path, service, user["ApiKey"], username=user["Email"])
    code, out = on_terminal(["--config", str(conf), "login"], [
        (b"Password for", user["TemporaryPassword"]), (b"New password:", "typed-password-1"),
        (b"Repeat the new password:", "typed-password-2")])
    assert code == 2, out
    assert b"the two new passwords differ" in out and b"Traceback" not in out
    assert still_temporary(service, user["Email"], user["TemporaryPassword"])


def test_password_source_reads_stdin_lines_only_as_needed():
    stream = io.StringIO("current pw with spaces \r\nnew-one\nunused\n")
    source = PasswordSource("a@b.c", stream=stream, ask=lambda prompt: pytest.fail("prompted"))
    assert not source.terminal
    assert source.current() == "current pw with spaces "
    assert source.new() == "new-one"
    assert stream.readline() == "unused\n"


# --- a stock Cognito user pool (moto, in-process) -------------------------------------------
STOCK_URL = "https://cognito-idp.us-east-1.amazonaws.com/"  # the stock README's, final "/"


@pytest.fixture
def stock(monkeypatch, tmp_path):
    moto = pytest.importorskip("moto")
    import gzip

    import moto.cognitoidp
    resources = Path(moto.cognitoidp.__file__).parent / "resources"
    jwks = json.loads(gzip.decompress((resources / "jwks-public.json.gz").read_bytes()))
    monkeypatch.setenv("COGNITO_JWKS", json.dumps(jwks))
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("QICK_PASSWORD", "QICK_API_KEY", "QICK_CONFIG", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QICK_TOKEN_CACHE", str(tmp_path / "tokens"))
    with moto.mock_aws():
        idp = boto3.client("cognito-idp", region_name="us-east-1")
        pool = idp.create_user_pool(PoolName="qick")["UserPool"]["Id"]
        client_id = idp.create_user_pool_client(
            UserPoolId=pool, ClientName="userclient",
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH",
                               "ALLOW_REFRESH_TOKEN_AUTH"])["UserPoolClient"]["ClientId"]
        idp.admin_create_user(UserPoolId=pool, Username="ada@example.org",
                              TemporaryPassword="Temp-pass1!", MessageAction="SUPPRESS")
        conf = tmp_path / "stock.conf"
        conf.write_text(f"[service]\ncognito_userpool = {pool}\nclientid = {client_id}\n"
                        f"cognito_url = {STOCK_URL}\napi_endpoint = http://127.0.0.1:9/dev\n"
                        "[user]\nusername = ada@example.org\n")
        yield {"idp": idp, "pool": pool, "client_id": client_id, "conf": conf,
               "cache": tmp_path / "tokens"}


def stock_login(stock, stdin: str, *args: str) -> int:
    sys_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return main(["--config", str(stock["conf"]), "login", *args])
    finally:
        sys.stdin = sys_stdin


def test_first_login_on_a_stock_user_pool_caches_tokens(stock, capsys):
    from cloudqueue.auth import user_auth_from_config
    from cloudqueue.config import load_config

    assert stock_login(stock, "Temp-pass1!\nNew-pass1!\n") == 0
    out = capsys.readouterr().out
    assert "password of ada@example.org changed" in out and "tokens cached" in out
    assert stat.S_IMODE(os.stat(stock["cache"]).st_mode) == 0o600  # refresh tokens inside
    # the stock service's own flow now works with the new password
    tokens = stock["idp"].initiate_auth(
        AuthFlow="USER_PASSWORD_AUTH", ClientId=stock["client_id"],
        AuthParameters={"USERNAME": "ada@example.org", "PASSWORD": "New-pass1!"})
    assert "AuthenticationResult" in tokens
    # and the next userclient command uses the cached tokens: no password asked
    auth = user_auth_from_config(load_config(stock["conf"]),
                                 password_prompt=lambda user: pytest.fail("prompted"))
    assert auth.token() and auth.logins == 0
    # a refresh goes through pycognito, which checks the issuer against cognito_url
    auth.invalidate()
    assert auth.token() and auth.refreshes == 1


def test_stock_wrong_temporary_password_exit_3(stock, capsys):
    assert stock_login(stock, "Wrong-pass1!\nNew-pass1!\n") == 3
    err = capsys.readouterr().err
    assert "Incorrect username or password" in err and "Traceback" not in err


def test_stock_change_password(stock, capsys):
    assert stock_login(stock, "Temp-pass1!\nNew-pass1!\n") == 0
    assert stock_login(stock, "New-pass1!\nNewer-pass2!\n", "--change-password") == 0
    assert "changed" in capsys.readouterr().out
    stock["idp"].initiate_auth(AuthFlow="USER_PASSWORD_AUTH", ClientId=stock["client_id"],
                               AuthParameters={"USERNAME": "ada@example.org",
                                               "PASSWORD": "Newer-pass2!"})


def test_first_login_without_a_terminal_says_to_run_login(stock, monkeypatch, capsys):
    """Stock item 5: any command at the first login with no terminal: exit 3, no traceback,
    no empty new password sent, and the command that exists (`userclient login`)."""
    from tests.client.fakes import FakeServer, Reply
    monkeypatch.setenv("QICK_PASSWORD", "Temp-pass1!")
    with FakeServer(lambda seen: Reply(404, {"message": "Not Found"})) as api:
        conf = stock["conf"]
        conf.write_text(conf.read_text().replace("http://127.0.0.1:9/dev", api.url + "/dev"))
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        code = main(["--config", str(conf), "devices"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "still has a temporary password" in err and "userclient login" in err
    assert "configure --login" not in err and "Traceback" not in err
    # nothing was sent with an empty password: the temporary one still works
    answer = stock["idp"].initiate_auth(
        AuthFlow="USER_PASSWORD_AUTH", ClientId=stock["client_id"],
        AuthParameters={"USERNAME": "ada@example.org", "PASSWORD": "Temp-pass1!"})
    assert answer["ChallengeName"] == "NEW_PASSWORD_REQUIRED"


def test_a_url_that_is_not_a_cognito_endpoint_says_to_check_cognito_url(tmp_path):
    """A stock API gateway answers POST / with 403 "Missing Authentication Token"."""
    from tests.client.fakes import FakeServer, Reply
    gateway = FakeServer(lambda seen: Reply(403, {"message": "Missing Authentication Token"}))
    with gateway as srv:
        conf = tmp_path / "c.conf"
        conf.write_text(f"[service]\napi_endpoint = {srv.url}/dev\n"
                        "[user]\nusername = a@lab.test\n")
        done = login(conf, "some-password\n")
    assert done.returncode == 2, done.stderr
    assert f"{srv.url}/ does not answer as a Cognito endpoint" in done.stderr
    assert "cognito_url" in done.stderr
    assert srv.seen[0].path == "/" and srv.seen[0].headers["x-amz-target"] == \
        "AWSCognitoIdentityProviderService.InitiateAuth"
    no_traceback(done)


@pytest.mark.parametrize("service_keys, expected", [
    ({"api_endpoint": "http://queue.lab:8080/dev"}, ("http://queue.lab:8080/", "userclient")),
    ({"api_endpoint": "http://q/dev", "cognito_url": "http://login.lab/"},
     ("http://login.lab/", "userclient")),
    ({"cognito_userpool": "eu-west-1_Abc", "clientid": "c1"},
     ("https://cognito-idp.eu-west-1.amazonaws.com/", "c1")),
    ({"cognito_userpool": "eu-west-1_Abc", "clientid": "c1", "region": "us-east-2"},
     ("https://cognito-idp.us-east-2.amazonaws.com/", "c1")),
    ({"cognito_userpool": "us-east-1_X", "clientid": "c1",
      "cognito_url": "https://cognito-idp.us-east-1.amazonaws.com"},
     ("https://cognito-idp.us-east-1.amazonaws.com/", "c1")),
])
def test_where_login_posts(service_keys, expected):
    from cloudqueue.cognito import cognito_endpoint
    from cloudqueue.config import Config
    assert cognito_endpoint(Config(None, None, {"service": service_keys})) == expected


def test_a_user_pool_without_clientid_is_a_config_error(tmp_path):
    from cloudqueue.cognito import cognito_endpoint
    from cloudqueue.config import load_config
    from cloudqueue.errors import ConfigError
    conf = tmp_path / "c.conf"
    conf.write_text("[service]\ncognito_userpool = us-east-1_X\n")
    with pytest.raises(ConfigError, match="clientid"):
        cognito_endpoint(load_config(conf))


# --- our library's password login on our service ---------------------------------------------
def test_our_library_logs_in_with_the_original_config_on_our_service(service, tmp_path,
                                                                     monkeypatch):
    """A config like the original client's (a user pool, a username, no API key): our
    service offers no SRP, so our library logs in as the original does (USER_PASSWORD_AUTH,
    answering NEW_PASSWORD_REQUIRED), caches the tokens, and later refreshes them with
    REFRESH_TOKEN_AUTH instead of asking for the password again."""
    from cloudqueue.auth import CognitoUserAuth
    from cloudqueue.client import QueueClient
    from cloudqueue.errors import AuthError
    from userclient import UserClient

    made = add_user(service)
    email, cache = made["Email"], tmp_path / "tokens"
    monkeypatch.delenv("QICK_API_KEY", raising=False)

    def auth(**kwargs) -> CognitoUserAuth:
        return CognitoUserAuth("local_qickqueue", "userclient", email, cache_path=cache,
                               endpoint_url=service.root + "/", **kwargs)

    monkeypatch.setenv("QICK_PASSWORD", made["TemporaryPassword"])
    first = auth(new_password_prompt=lambda _: "Ada-new-passw0rd")
    assert isinstance(QueueClient(service.url, first).list_devices(), list)
    assert (first.logins, first.refreshes) == (1, 0)

    monkeypatch.setenv("QICK_PASSWORD", "not-her-password")
    cache.unlink()
    with pytest.raises(AuthError, match="refused"):
        QueueClient(service.url, auth()).list_devices()

    monkeypatch.setenv("QICK_PASSWORD", "Ada-new-passw0rd")
    QueueClient(service.url, auth()).list_devices()  # a fresh login caches new tokens
    monkeypatch.delenv("QICK_PASSWORD")
    later = auth(clock=lambda: time.time() + 7200)  # the cached access token has expired
    assert isinstance(QueueClient(service.url, later).list_devices(), list)
    assert (later.logins, later.refreshes) == (0, 1)

    config = tmp_path / "qick.conf"
    config.write_text(f"[service]\napi_endpoint = {service.url}\ncognito_url = {service.root}/\n"
                      "clientid = userclient\ncognito_userpool = local_qickqueue\n"
                      f"[user]\nusername = {email}\n")
    monkeypatch.setenv("QICK_CONFIG", str(config))
    monkeypatch.setenv("QICK_TOKEN_CACHE", str(cache))
    assert isinstance(UserClient(out=None).get_devices(), list)  # no password asked
