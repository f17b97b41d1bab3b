"""The admin lifecycle through ``userclient`` (a real subprocess) against the real service:
users, disable/enable, API keys, rotate-secret, rename-device, delete-device; exit codes,
``--json``, one-time secrets never lost, NotSupported (exit 6) on a stock service."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cloudqueue.auth import device_auth_from_config
from cloudqueue.client import QueueClient
from cloudqueue.config import load_config, write_atomically
from cloudqueue.errors import Forbidden
from userclient import cli

CLI = [sys.executable, "-m", "userclient.cli"]


def run(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    return subprocess.run(CLI + ["--config", str(config), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def write_config(path: Path, service, api_key: str) -> Path:
    path.write_text(f"[service]\napi_endpoint = {service.url}\noauth_endpoint = {service.root}\n"
                    f"[user]\napi_key = {api_key}\n")
    path.chmod(0o600)
    return path


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def board_client(conf: Path, creds: Path) -> tuple[QueueClient, str]:
    config = load_config(conf, credentials_path=creds)
    return QueueClient(config.api_endpoint, device_auth_from_config(config), timeout=10), \
        config.device_id


@pytest.fixture
def lab(queue_service_factory, tmp_path):
    """A service, the admin's config, a user (ada) and a device with its board's files."""
    service = queue_service_factory()
    admin = write_config(tmp_path / "admin.conf", service, service.admin_key)
    user = json.loads(ok(run(admin, "--json", "add-user", "ada@example.org", "--name",
                             "Ada Lovelace")).stdout)
    ada = write_config(tmp_path / "ada.conf", service, user["ApiKey"])
    conf, creds = tmp_path / "board" / "config", tmp_path / "board" / "credentials"
    ok(run(admin, "add-device", "board1", "--config-out", str(conf),
           "--credentials-out", str(creds)))
    board, device_id = board_client(conf, creds)
    return {"service": service, "admin": admin, "ada": ada, "user": user, "tmp": tmp_path,
            "board": board, "device_id": device_id, "conf": conf, "creds": creds}


def test_users_disable_and_enable(lab):
    admin, ada = lab["admin"], lab["ada"]
    listed = ok(run(admin, "users")).stdout
    assert "ada@example.org" in listed and "Ada Lovelace" in listed and "enabled" in listed
    users = json.loads(ok(run(admin, "--json", "users")).stdout)
    assert {u["Email"] for u in users} == {lab["service"].admin_email, "ada@example.org"}
    assert run(ada, "users").returncode == 3

    off = ok(run(admin, "disable-user", "ada@example.org"))
    assert "disabled" in off.stdout and "userclient enable-user ada@example.org" in off.stdout
    refused = run(ada, "devices")
    assert refused.returncode == 3 and "disabled" in refused.stderr
    assert "Traceback" not in refused.stderr
    as_json = json.loads(ok(run(admin, "--json", "users")).stdout)
    assert next(u for u in as_json if u["Email"] == "ada@example.org")["Disabled"] is True
    on = json.loads(ok(run(admin, "--json", "enable-user", lab["user"]["UserId"])).stdout)
    assert on["Disabled"] is False
    ok(run(ada, "devices"))

    assert run(ada, "disable-user", lab["service"].admin_email).returncode == 3
    self_disable = run(admin, "disable-user", lab["service"].admin_email)
    assert self_disable.returncode == 7 and "your own account" in self_disable.stderr
    missing = run(admin, "--json", "enable-user", "nobody@example.org")
    assert missing.returncode == 4 and json.loads(missing.stdout)["ExitCode"] == 4


def test_reset_password_prints_a_temporary_password_once(lab):
    admin, ada = lab["admin"], lab["ada"]
    reset = ok(run(admin, "reset-password", "ada@example.org"))
    line = next(line for line in reset.stdout.splitlines()
                if "new temporary password (shown once): " in line)
    temporary = line.split("(shown once): ", 1)[1]
    assert temporary.startswith("Tmp-") and "userclient login --username ada@example.org" \
        in reset.stdout
    again = json.loads(ok(run(admin, "--json", "reset-password",
                              lab["user"]["UserId"])).stdout)
    assert again["Email"] == "ada@example.org" and again["TemporaryPassword"] != temporary
    assert run(ada, "reset-password", lab["service"].admin_email).returncode == 3
    missing = run(admin, "reset-password", "nobody@example.org")
    assert missing.returncode == 4 and "nobody@example.org" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_api_keys_create_list_revoke(lab, tmp_path):
    ada = lab["ada"]
    made = ok(run(ada, "create-api-key", "--label", "laptop"))
    key = next(line.split(": ", 1)[1] for line in made.stdout.splitlines()
               if line.startswith("API key (shown once)"))
    laptop = write_config(tmp_path / "laptop.conf", lab["service"], key)
    ok(run(laptop, "devices"))
    listed = ok(run(ada, "api-keys")).stdout
    assert "laptop" in listed and "created with the user" in listed and key not in listed
    keys = json.loads(ok(run(ada, "--json", "api-keys")).stdout)
    laptop_id = next(k["KeyId"] for k in keys if k["Label"] == "laptop")

    other = json.loads(ok(run(lab["admin"], "--json", "create-api-key", "--user",
                              "ada@example.org")).stdout)
    assert other["UserId"] == lab["user"]["UserId"] and other["ApiKey"].startswith("qk_")
    assert run(ada, "api-keys", "--user", lab["service"].admin_email).returncode == 3
    assert len(json.loads(ok(run(lab["admin"], "--json", "api-keys", "--user",
                                 "ada@example.org")).stdout)) == 3

    revoked = ok(run(ada, "revoke-api-key", laptop_id))
    assert f"API key {laptop_id} revoked" in revoked.stdout
    assert run(laptop, "devices").returncode == 3
    assert run(ada, "revoke-api-key", "0123456789abcdef").returncode == 4
    admin_keys = json.loads(ok(run(lab["admin"], "--json", "api-keys")).stdout)
    assert run(ada, "revoke-api-key", admin_keys[0]["KeyId"]).returncode == 4  # not hers
    last = run(lab["admin"], "revoke-api-key", admin_keys[0]["KeyId"])
    assert last.returncode == 7 and "create another key first" in last.stderr


def test_rotate_secret_writes_new_credentials_and_ends_the_old_ones(lab, tmp_path):
    board, device_id = lab["board"], lab["device_id"]
    board.heartbeat(device_id)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    refused = run(lab["admin"], "rotate-secret", device_id, "--credentials-out",
                  str(blocked / "credentials"))
    assert refused.returncode == 2 and "nothing was changed" in refused.stderr
    assert "is not a directory" in refused.stderr
    folder = run(lab["admin"], "rotate-secret", device_id, "--credentials-out", str(tmp_path))
    assert folder.returncode == 2 and "is a directory" in folder.stderr
    board.heartbeat(device_id)  # checked before rotating: the old secret still works

    new_creds = tmp_path / "new" / "credentials"
    done = ok(run(lab["admin"], "rotate-secret", device_id, "--credentials-out",
                  str(new_creds)))
    assert "written to" in done.stdout and "secret =" not in done.stdout
    assert stat.S_IMODE(os.stat(new_creds).st_mode) == 0o600
    with pytest.raises(Forbidden):
        board.heartbeat(device_id)  # the token from before the rotation
    fresh, _ = board_client(lab["conf"], new_creds)
    assert fresh.heartbeat(device_id)["DeviceId"] == device_id

    printed = ok(run(lab["admin"], "rotate-secret", device_id))
    assert "[credentials]" in printed.stdout and "secret = " in printed.stdout
    assert run(lab["ada"], "rotate-secret", device_id).returncode == 3
    assert run(lab["admin"], "rotate-secret", "no-such-device").returncode == 4


def test_rotate_secret_prints_the_secret_when_writing_fails_afterwards(lab, monkeypatch,
                                                                       capsys):
    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("userclient.cli_admin.write_atomically", full_disk)
    target = lab["tmp"] / "creds"
    code = cli.main(["--config", str(lab["admin"]), "rotate-secret", lab["device_id"],
                     "--credentials-out", str(target)])
    out, err = capsys.readouterr()
    assert code == 2 and "No space left on device" in err and "printed above" in err
    assert not target.exists()
    creds = lab["tmp"] / "saved-by-hand"  # what the admin copies from the screen
    write_atomically(creds, out[out.index("[credentials]"):])
    fresh, _ = board_client(lab["conf"], creds)
    assert fresh.heartbeat(lab["device_id"])["DeviceId"] == lab["device_id"]


def test_rename_and_delete_device(lab):
    admin, ada, device_id = lab["admin"], lab["ada"], lab["device_id"]
    renamed = ok(run(admin, "rename-device", device_id, "fridge-2"))
    assert f"device {device_id} renamed to fridge-2" in renamed.stdout
    assert "fridge-2" in ok(run(ada, "devices")).stdout
    assert run(ada, "rename-device", device_id, "mine").returncode == 3

    work = lab["tmp"] / "w"
    work.write_bytes(b"x" * 100)
    work_id = ok(run(ada, "submit", str(work), "--device", device_id, "--force")).stdout.strip()
    busy = run(admin, "delete-device", device_id)
    assert busy.returncode == 7 and "--cancel-work" in busy.stderr
    lab["board"].heartbeat(device_id)  # untouched
    gone = json.loads(ok(run(admin, "--json", "delete-device", device_id,
                             "--cancel-work")).stdout)
    assert gone["Deleted"] is True and gone["CancelledWork"] == [work_id]
    waited = run(ada, "wait", work_id)
    assert waited.returncode == 1 and "CANCELLED" in waited.stdout
    assert "deleted device fridge-2" in waited.stdout
    with pytest.raises(Forbidden):
        lab["board"].heartbeat(device_id)
    assert run(admin, "delete-device", device_id).returncode == 4


def test_stock_service_answers_not_supported(queue_service_factory, tmp_path):
    service = queue_service_factory(stock_protocol=True)
    admin = write_config(tmp_path / "admin.conf", service, service.admin_key)
    for args in (["users"], ["disable-user", "x@y.z"], ["enable-user", "x@y.z"],
                 ["api-keys"], ["create-api-key"], ["revoke-api-key", "abc"],
                 ["rotate-secret", "d"], ["rename-device", "d", "n"], ["delete-device", "d"]):
        done = run(admin, *args)
        assert done.returncode == 6, (args, done.stderr)
        assert "not supported" in done.stderr and "stock Cloud Queue" in done.stderr
        assert "Traceback" not in done.stderr
