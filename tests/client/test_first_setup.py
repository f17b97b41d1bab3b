"""A new user's first steps: no config, a wrong ``QICK_CONFIG``, ``configure`` checking the
URL and the key before writing, a key in a file others can read, ``qick-queue init
--public-url``, and ``--version`` on the three commands. Real CLI subprocesses, the real
service."""
from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cloudqueue.config import read_ini



def run(argv: list[str], home: Path, *, env_extra: dict | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    env["HOME"] = str(home)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                          timeout=60, env=env, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def userclient(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return run(["userclient.cli", *args], home, **kw)


@pytest.mark.skipif(os.path.exists("/etc/qick/config"), reason="this machine has one")
def test_no_config_at_all_says_where_it_looked_and_what_to_run(tmp_path):
    done = userclient(tmp_path, "devices")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no config file found" in done.stderr
    assert str(tmp_path / ".config" / "qick.conf") in done.stderr
    assert "/etc/qick/config" in done.stderr and "userclient configure" in done.stderr


def test_qick_config_naming_a_missing_file_is_an_error(tmp_path):
    (tmp_path / ".config").mkdir()
    (tmp_path / ".config" / "qick.conf").write_text("[service]\napi_endpoint = http://h\n")
    done = userclient(tmp_path, "devices",
                      env_extra={"QICK_CONFIG": str(tmp_path / "typo.conf")})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"QICK_CONFIG names {tmp_path / 'typo.conf'}" in done.stderr


@pytest.fixture
def nobody():
    """A URL where nothing listens: the port is bound (so nothing else can take it) but
    never listened on, so a connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_configure_checks_the_url_and_the_key_before_writing(queue_service, tmp_path,
                                                              nobody):
    conf = tmp_path / "user.conf"
    url, key = queue_service.url, queue_service.admin_key

    bad_key = userclient(tmp_path, "configure", "--config", str(conf), "--api-endpoint", url,
                         "--api-key-stdin", stdin="qk_" + "x" * 43 + "\n")
    assert bad_key.returncode == 3 and "refused the API key" in bad_key.stderr
    assert not conf.exists()

    unreachable = userclient(tmp_path, "--request-timeout", "3", "configure", "--config",
                             str(conf), "--api-endpoint", nobody, "--api-key-stdin",
                             stdin=key + "\n")
    assert unreachable.returncode == 5 and f"cannot reach a queue service at {nobody}" \
        in unreachable.stderr and "--no-check" in unreachable.stderr
    assert not conf.exists()

    # something answers there, but it is not the queue's API (a wrong path)
    wrong_path = userclient(tmp_path, "configure", "--config", str(conf), "--api-endpoint",
                            url + "/files", "--api-key-stdin", stdin=key + "\n")
    assert wrong_path.returncode == 2 and "no queue API" in wrong_path.stderr
    assert not conf.exists()

    good = userclient(tmp_path, "configure", "--config", str(conf), "--api-endpoint", url,
                      "--api-key-stdin", stdin=key + "\n")
    assert good.returncode == 0, good.stderr
    assert "the API key works" in good.stdout and f"wrote {conf}" in good.stdout
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600
    assert read_ini(conf)["user"]["api_key"] == key

    for result in (bad_key, unreachable, wrong_path):
        assert "Traceback" not in result.stderr and key not in result.stderr


def test_configure_no_check_writes_offline(tmp_path, nobody):
    conf = tmp_path / "offline.conf"
    done = userclient(tmp_path, "configure", "--config", str(conf), "--api-endpoint", nobody,
                      "--no-check", "--api-key-stdin", stdin="qk_offline\n")
    assert done.returncode == 0, done.stderr
    assert "not checked" in done.stdout
    assert read_ini(conf)["service"]["api_endpoint"] == nobody


def test_a_config_with_a_key_that_others_can_read_is_warned_about(queue_service, tmp_path):
    conf = tmp_path / "loose.conf"
    conf.write_text(f"[service]\napi_endpoint = {queue_service.url}\n"
                    f"[user]\napi_key = {queue_service.admin_key}\n")
    conf.chmod(0o644)
    done = userclient(tmp_path, "--config", str(conf), "devices")
    assert done.returncode == 0, done.stderr
    assert f"warning: {conf} holds an API key" in done.stderr
    assert f"chmod 600 {conf}" in done.stderr
    assert queue_service.admin_key not in done.stderr
    conf.chmod(0o600)
    quiet = userclient(tmp_path, "--config", str(conf), "devices")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_init_public_url_goes_into_admin_conf_and_the_board_config(tmp_path):
    data = tmp_path / "store"
    public = "https://queue.lab.example.org:8443/"
    done = run(["queueservice.cli", "init", "--data", str(data), "--public-url", public],
               tmp_path)
    assert done.returncode == 0, done.stderr
    service = read_ini(data / "admin.conf")["service"]
    for key in ("api_endpoint", "oauth_endpoint", "cognito_url"):
        assert service[key] == "https://queue.lab.example.org:8443"
    assert "--public-url https://queue.lab.example.org:8443" in done.stdout

    # without it: loopback, and init says so
    local = run(["queueservice.cli", "init", "--data", str(tmp_path / "local")], tmp_path)
    assert local.returncode == 0 and "only this machine reaches it" in local.stdout
    assert read_ini(tmp_path / "local" / "admin.conf")["service"]["api_endpoint"] \
        .startswith("http://127.0.0.1:")


@pytest.mark.parametrize("url", ["queue.lab.example.org", "ftp://queue.lab/",
                                 "http://", "http://host:99999", "http://host/?a=1"])
def test_init_refuses_a_public_url_that_is_not_one(tmp_path, url):
    data = tmp_path / "store"
    done = run(["queueservice.cli", "init", "--data", str(data), "--public-url", url],
               tmp_path)
    assert done.returncode == 1 and "--public-url" in done.stderr
    assert "Traceback" not in done.stderr and not data.exists()


@pytest.mark.parametrize("module, prog", [("userclient.cli", "userclient"),
                                          ("queueservice.cli", "qick-queue"),
                                          ("supervisor.cli", "qick-supervisor")])
def test_version_of_the_three_commands(tmp_path, module, prog):
    from importlib.metadata import version
    done = run([module, "--version"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(rf"{prog} \S+ \(qick-queue\), qick \S.*\n", done.stdout), done.stdout
    assert f"{prog} {version('qick-queue')} " in done.stdout
    assert f"qick {version('qick')}" in done.stdout
