"""``userclient add-device --config-out/--credentials-out``: paths are checked before the
device is created, a write that still fails prints the board's files (the one-time secret
is never lost), both files are 0600, and a board config pointing at loopback is warned
about. CLI subprocesses against the real service."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import pytest

from cloudqueue.config import cannot_write, loopback_host, read_ini
from tests.server.api import Api, device_token

CLI = [sys.executable, "-m", "userclient.cli"]


def add_device(conf, *args: str, prefix: list[str] | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    return subprocess.run((prefix or []) + CLI + ["--config", str(conf), "add-device", *args],
                          capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def admin(queue_service, tmp_path):
    conf = tmp_path / "admin.conf"
    conf.write_text(f"[service]\napi_endpoint = {queue_service.url}\n"
                    f"oauth_endpoint = {queue_service.root}\n"
                    f"[user]\napi_key = {queue_service.admin_key}\n")
    api = Api(queue_service.url, queue_service.admin_key)

    def device_names() -> list[str]:
        return [d["DeviceName"] for d in api.get("/devices").json()]

    return {"conf": conf, "names": device_names, "service": queue_service, "tmp": tmp_path}


def test_board_files_are_written_0600_and_a_loopback_service_is_warned_about(admin):
    tmp = admin["tmp"]
    done = add_device(admin["conf"], "b1", "--config-out", str(tmp / "new" / "config"),
                      "--credentials-out", str(tmp / "new" / "credentials"))
    assert done.returncode == 0, done.stderr
    for name in ("config", "credentials"):
        assert stat.S_IMODE(os.stat(tmp / "new" / name).st_mode) == 0o600
    assert "ClientSecret" not in done.stdout and "secret" not in done.stdout
    # the admin config says 127.0.0.1: the board's config would too
    assert "warning" in done.stderr and "loopback" in done.stderr
    assert "--public-url" in done.stderr
    assert read_ini(tmp / "new" / "credentials")["credentials"]["secret"]


@pytest.mark.parametrize("case", ["config is a directory", "credentials under a file",
                                  "the same file twice"])
def test_unwritable_paths_are_refused_before_the_device_exists(admin, case):
    tmp = admin["tmp"]
    (tmp / "plain").write_text("a file")
    (tmp / "folder").mkdir()
    config, creds = tmp / "ok" / "config", tmp / "ok" / "credentials"
    if case == "config is a directory":
        config, message = tmp / "folder", "is a directory"
    elif case == "credentials under a file":
        creds, message = tmp / "plain" / "credentials", "is not a directory"
    else:
        creds, message = config, "the same file"
    done = add_device(admin["conf"], "never", "--config-out", str(config),
                      "--credentials-out", str(creds))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "no device was created" in done.stderr
    assert "Traceback" not in done.stderr
    assert "never" not in admin["names"]()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
def test_a_folder_without_write_permission_is_refused_first(admin):
    locked = admin["tmp"] / "locked"
    locked.mkdir(mode=0o500)
    done = add_device(admin["conf"], "never", "--credentials-out", str(locked / "creds"))
    assert done.returncode == 2 and "permission denied" in done.stderr
    assert "never" not in admin["names"]()


def test_a_write_that_fails_after_creation_prints_the_secret(admin):
    """The paths pass the check, then the writes fail (the shell's file-size limit of 0
    makes every write to a file fail with EFBIG): the device exists, and its files are on
    stdout, with a secret that works."""
    tmp = admin["tmp"]
    done = add_device(admin["conf"], "b2", "--config-out", str(tmp / "c"),
                      "--credentials-out", str(tmp / "k"),
                      prefix=["bash", "-c", 'ulimit -f 0 && exec "$@"', "bash"])
    assert done.returncode == 10, (done.stdout, done.stderr)
    assert "could NOT be written" in done.stdout and "Traceback" not in done.stderr
    assert "was created, but writing" in done.stderr and "keep the secret" in done.stderr
    assert "b2" in admin["names"]()
    assert not (tmp / "k").exists() and not list(tmp.glob(".k.*"))
    # the printed credentials log the board in
    block = done.stdout.split("# /etc/qick/credentials")[1]
    values = dict(line.split(" = ", 1) for line in block.splitlines() if " = " in line)
    assert device_token(admin["service"].root, values["id"], values["secret"])


def test_a_config_that_cannot_make_board_files_still_shows_the_secret(admin):
    """An admin config without oauth_endpoint: the board's config cannot be written, but
    the device exists by then; its id and secret are printed."""
    conf = admin["tmp"] / "no-oauth.conf"
    conf.write_text(f"[service]\napi_endpoint = {admin['service'].url}\n"
                    f"[user]\napi_key = {admin['service'].admin_key}\n")
    done = add_device(conf, "b3", "--credentials-out", str(admin["tmp"] / "creds"))
    assert done.returncode == 2 and "oauth_endpoint" in done.stderr
    assert "Traceback" not in done.stderr and "b3" in admin["names"]()
    found = re.search(r"ClientId (\S+), ClientSecret (\S+) \(shown once", done.stdout)
    assert found, done.stdout
    assert device_token(admin["service"].root, found.group(1), found.group(2))


def test_cannot_write_and_loopback_host(tmp_path):
    (tmp_path / "f").write_text("x")
    assert cannot_write(tmp_path / "new" / "deeper" / "file") is None
    assert cannot_write(tmp_path / "f") is None  # replaced atomically
    assert "is a directory" in cannot_write(tmp_path)
    assert "is not a directory" in cannot_write(tmp_path / "f" / "x" / "y")
    for url in ("http://127.0.0.1:8080", "http://127.4.5.6/dev", "http://[::1]:80",
                "http://localhost:8080", "https://LOCALHOST/x"):
        assert loopback_host(url), url
    for url in ("http://192.168.1.10:8080", "https://queue.lab.example.org/dev",
                "http://[2001:db8::1]/", "", None, "not a url"):
        assert loopback_host(url) is None, url
