"""The ``userclient`` CLI as a real subprocess against the real queue service, with a board
played by ``cloudqueue.client`` (device token, heartbeat, long-poll, results upload)."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cloudqueue.auth import ApiKeyAuth, device_auth_from_config
from cloudqueue.client import QueueClient
from cloudqueue.config import load_config
from cloudqueue.transfer import download_file, upload_file

CLI = [sys.executable, "-m", "userclient.cli"]


def run(config: Path, *args: str, env_extra: dict | None = None, timeout: float = 60):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QICK_")}
    env.update(env_extra or {})
    return subprocess.run(CLI + ["--config", str(config), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def write_config(path: Path, service, api_key: str) -> Path:
    path.write_text(f"[service]\napi_endpoint = {service.url}\noauth_endpoint = {service.root}\n"
                    f"cognito_url = {service.root}\n[user]\napi_key = {api_key}\n")
    return path


@pytest.fixture
def lab(queue_service_factory, tmp_path):
    """A service with the /dev prefix, an admin config, a user and a device with its board."""
    service = queue_service_factory(prefix="/dev")
    admin = write_config(tmp_path / "admin.conf", service, service.admin_key)
    made = run(admin, "--json", "add-user", "ada@example.org", "--name", "Ada Lovelace")
    assert made.returncode == 0, made.stderr
    user = json.loads(made.stdout)
    ada = write_config(tmp_path / "ada.conf", service, user["ApiKey"])
    board_conf, board_creds = tmp_path / "board" / "config", tmp_path / "board" / "credentials"
    dev = run(admin, "add-device", "board1", "--config-out", str(board_conf),
              "--credentials-out", str(board_creds))
    assert dev.returncode == 0, dev.stderr
    assert "DeviceId" in dev.stdout and "secret" not in dev.stdout
    board_config = load_config(board_conf, credentials_path=board_creds)
    board = QueueClient(board_config.api_endpoint, device_auth_from_config(board_config),
                        timeout=10)
    return {"service": service, "admin": admin, "ada": ada, "user": user, "board": board,
            "device_id": board_config.device_id, "tmp": tmp_path,
            "board_creds": board_creds, "board_conf": board_conf}


def test_add_device_writes_board_files_the_board_can_log_in_with(lab):
    assert stat.S_IMODE(os.stat(lab["board_creds"]).st_mode) == 0o600
    config = load_config(lab["board_conf"], credentials_path=lab["board_creds"])
    assert config.api_endpoint.endswith("/dev")  # the prefix travels with it
    answer = lab["board"].heartbeat(lab["device_id"], "ONLINE")
    assert answer["DeviceId"] == lab["device_id"] and answer["UploadUrl"]


def test_a_workload_goes_round_trip_through_the_cli(lab):
    tmp, board, device_id = lab["tmp"], lab["board"], lab["device_id"]
    # The board says hello and uploads its soccfg.
    beat = board.heartbeat(device_id, "ONLINE")
    soccfg = {"board": "ZCU216", "fs_proc": 430.08}
    (tmp / "soccfg.json").write_text(json.dumps(soccfg))
    upload_file(beat["UploadUrl"], tmp / "soccfg.json")

    listed = run(lab["ada"], "devices")
    assert listed.returncode == 0 and "board1" in listed.stdout and "ONLINE" in listed.stdout
    shown = run(lab["ada"], "device", device_id, "--save-soccfg", str(tmp / "got.json"))
    assert shown.returncode == 0, shown.stderr
    assert json.loads((tmp / "got.json").read_text()) == soccfg

    workload = tmp / "work.json.gz"
    workload.write_bytes(os.urandom(200_000))
    sub = run(lab["ada"], "submit", str(workload), "--device", device_id, "--priority", "high",
              "--force")  # placeholder bytes: not a workload
    assert sub.returncode == 0, sub.stderr
    work_id = sub.stdout.strip()
    uuid.UUID(work_id)

    status = run(lab["ada"], "--json", "status", work_id)
    assert json.loads(status.stdout)["WorkStatus"] == "READY"
    assert json.loads(status.stdout)["Priority"] == "HIGH"

    # The board long-polls, fetches the file, runs it and uploads results.
    work = board.get_work(device_id, wait_seconds=2)
    assert work["WorkId"] == work_id
    fetched = download_file(work["WorkloadUrl"], tmp / "incoming", sha256=True)
    assert fetched.sha256 == hashlib.sha256(workload.read_bytes()).hexdigest()
    results = tmp / "results.h5"
    results.write_bytes(b"HDF5" + os.urandom(50_000))
    upload_file(board.results_upload_url(device_id, work_id, device_seconds=1.5), results)

    waited = run(lab["ada"], "wait", work_id, "--timeout", "20")
    assert waited.returncode == 0, waited.stderr
    assert "DONE" in waited.stderr and "DONE" in waited.stdout  # progress lines on stderr
    got = run(lab["ada"], "results", work_id, "-o", str(tmp / "out" / "r.h5"))
    assert got.returncode == 0, got.stderr
    assert (tmp / "out" / "r.h5").read_bytes() == results.read_bytes()

    everything = run(lab["ada"], "--json", "list")
    assert [w["WorkId"] for w in json.loads(everything.stdout)] == [work_id]


def test_list_follows_every_page(lab):
    client = QueueClient(lab["service"].url, ApiKeyAuth(lab["user"]["ApiKey"]))
    ids = {client.create_workload(lab["device_id"], "LOW")["WorkId"] for _ in range(7)}
    listed = run(lab["ada"], "--json", "list", "--device", lab["device_id"])
    assert listed.returncode == 0, listed.stderr
    assert {w["WorkId"] for w in json.loads(listed.stdout)} == ids
    pages = []
    original = client.list_workloads

    def counting(*args, **kwargs):
        page = original(*args, **kwargs)
        pages.append(len(page.items))
        return page

    client.list_workloads = counting
    assert {w.WorkId for w in client.iter_workloads(lab["device_id"], limit=3)} == ids
    assert pages == [3, 3, 1]


def test_failed_workload_makes_wait_exit_1_with_the_reason(lab):
    tmp, board, device_id = lab["tmp"], lab["board"], lab["device_id"]
    (tmp / "w").write_bytes(b"x" * 100)
    work_id = run(lab["ada"], "submit", str(tmp / "w"), "--device", device_id,
                  "--force").stdout.strip()
    assert board.get_work(device_id)["WorkId"] == work_id
    board.report_outcome(device_id, work_id, "FAILED", error_message="readout 3 is absent",
                         error_kind="invalid_workload", partial_results=False)
    waited = run(lab["ada"], "wait", work_id)
    assert waited.returncode == 1
    assert "readout 3 is absent" in waited.stdout + waited.stderr
    res = run(lab["ada"], "results", work_id, "-o", str(tmp / "r"))
    assert res.returncode == 7 and "FAILED without results" in res.stderr


def test_cancel_then_cancel_again_is_a_conflict(lab):
    tmp = lab["tmp"]
    (tmp / "w").write_bytes(b"x" * 100)
    work_id = run(lab["ada"], "submit", str(tmp / "w"), "--device", lab["device_id"],
                  "--force").stdout.strip()
    first = run(lab["ada"], "cancel", work_id)
    assert first.returncode == 0 and "cancelled" in first.stdout
    again = run(lab["ada"], "cancel", work_id)
    assert again.returncode == 7 and "userclient: error:" in again.stderr
    assert "Traceback" not in again.stderr
    waited = run(lab["ada"], "wait", work_id)
    assert waited.returncode == 1 and "CANCELLED" in waited.stdout


def test_errors_map_to_exit_codes_without_tracebacks(lab, tmp_path):
    unknown = str(uuid.uuid4())
    missing = run(lab["ada"], "status", unknown)
    assert missing.returncode == 4 and unknown in missing.stderr
    # says what to do in the CLI's words, not the HTTP path behind it
    assert "userclient list" in missing.stderr and "GET /" not in missing.stderr
    no_device = run(lab["ada"], "submit", str(lab["ada"]), "--device", unknown, "--force")
    assert no_device.returncode == 4 and "userclient devices" in no_device.stderr
    assert "POST /" not in no_device.stderr and "GET /" not in no_device.stderr

    bad_key = write_config(tmp_path / "bad.conf", lab["service"], "qk_" + "x" * 43)
    denied = run(bad_key, "devices")
    assert denied.returncode == 3 and "API key" in denied.stderr

    not_admin = run(lab["ada"], "add-device", "sneaky")
    assert not_admin.returncode == 3

    no_file = run(lab["ada"], "submit", str(tmp_path / "absent"), "--device", lab["device_id"])
    assert no_file.returncode == 2 and "no such workload file" in no_file.stderr

    no_config = run(tmp_path / "nope.conf", "devices")
    assert no_config.returncode == 2 and "nope.conf" in no_config.stderr

    usage = run(lab["ada"], "submit")
    assert usage.returncode == 2

    as_json = run(lab["ada"], "--json", "status", unknown)
    assert json.loads(as_json.stdout)["ExitCode"] == 4

    timed_out = run(lab["ada"], "wait", run(lab["ada"], "submit", str(lab["ada"]),
                                            "--device", lab["device_id"],
                                            "--force").stdout.strip(),
                    "--timeout", "0.5")
    assert timed_out.returncode == 8 and "still READY" in timed_out.stderr

    lab["service"].stop()
    down = run(lab["ada"], "--request-timeout", "2", "devices")
    assert down.returncode == 5 and "cannot reach" in down.stderr
    for result in (missing, no_device, denied, not_admin, no_file, no_config, down):
        assert "Traceback" not in result.stderr


def test_status_shows_position_one_for_the_next_and_why_there_is_no_estimate(lab):
    """Regression: QueuePosition was 0-based and an OFFLINE device still got an estimate."""
    ada = load_config(lab["ada"])
    client = QueueClient(ada.api_endpoint, ApiKeyAuth(lab["user"]["ApiKey"]), timeout=10)
    made = client.create_workload(lab["device_id"])
    upload_file(made["UploadUrl"], lab["ada"])  # any bytes: the board never heartbeated
    out = run(lab["ada"], "status", made["WorkId"])
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert lines["QueuePosition"] == "1"
    assert lines["EstimatedStartReason"] == "device offline: no estimate"
    assert "EstimatedStartAt" not in lines
    lab["board"].heartbeat(lab["device_id"], "ONLINE")
    online = dict(line.split(None, 1) for line in run(lab["ada"], "status", made["WorkId"])
                  .stdout.splitlines())
    assert "EstimatedStartAt" in online and "EstimatedStartReason" not in online
