"""``UserClient`` as the original SideQICK ``user_client.UserClient``: no-argument
construction from the config, ``[device] id`` as the default device, file objects in and
out, JSON answers, the original's printed output and its ``RuntimeError`` — against the
real embedded service, with a device played over the real device protocol."""
from __future__ import annotations

import inspect
import io
import json
import os

import pytest
import requests

from cloudqueue.auth import ApiKeyAuth, DeviceTokenAuth
from cloudqueue.client import QueueClient
from cloudqueue.errors import ConfigError, Conflict, QueueError
from cloudqueue.transfer import upload_file
from userclient import UserClient, WorkloadManager, WorkNotDone

SOCCFG = {"board": "ZCU216", "fw_timestamp": "a test build", "gens": [], "readouts": []}


def write_config(path, service, device_id=None):
    text = (f"[service]\napi_endpoint = {service.url}\noauth_endpoint = {service.root}\n"
            f"[user]\nusername = {service.admin_email}\napi_key = {service.admin_key}\n")
    if device_id:
        text += f"[device]\nname = bench\nid = {device_id}\n"
    path.write_text(text)


@pytest.fixture
def board(queue_service):
    """A device, its board's side of the protocol, and its soccfg uploaded."""
    admin = QueueClient(queue_service.url, ApiKeyAuth(queue_service.admin_key))
    device = admin.add_device("bench")
    side = QueueClient(queue_service.url, DeviceTokenAuth.for_endpoint(
        queue_service.root, device["ClientId"], device["ClientSecret"]))
    answer = side.heartbeat(device["DeviceId"])
    upload_file(answer["UploadUrl"], io.BytesIO(json.dumps(SOCCFG).encode()))
    side.device_id = device["DeviceId"]
    return side


def finish(board, outcome="DONE", data=b"results bytes", **kwargs):
    """The board takes the next work and reports it."""
    work = board.get_work(board.device_id)
    if outcome == "DONE":
        upload_file(board.results_upload_url(board.device_id, work["WorkId"]),
                    io.BytesIO(data))
    else:
        board.report_outcome(board.device_id, work["WorkId"], outcome, **kwargs)
    return work["WorkId"]


def test_no_arguments_read_the_config_and_default_to_its_device(home, queue_service, board,
                                                                tmp_path):
    write_config(home / ".config" / "qick.conf", queue_service, board.device_id)
    client = UserClient()
    assert client.get_soccfg() == SOCCFG                     # [device] id by default
    devices = client.get_devices()
    assert isinstance(devices, list) and all(isinstance(d, dict) for d in devices)
    assert board.device_id in [d["DeviceId"] for d in devices]

    workload = tmp_path / "w.json.gz"
    workload.write_bytes(b"workload bytes")
    f = open(workload, "rb")
    f.read(5)                                                # create_work seeks to 0
    work_id = client.create_work(f)
    assert f.closed                                          # and closes it, as the original
    work = client.get_work(work_id)
    assert isinstance(work, dict) and work["WorkId"] == work_id
    assert (work["DeviceId"], work["Priority"]) == (board.device_id, "LOW")
    taken = board.get_work(board.device_id)
    assert requests.get(taken["WorkloadUrl"], timeout=10).content == b"workload bytes"
    # a path works too, and the keyword extras stay keyword-only
    assert client.create_work(workload, board.device_id, "HIGH", name="again")
    with pytest.raises(TypeError):
        client.create_work(workload, board.device_id, "HIGH", "a-name")


def test_qick_config_names_the_file_to_read(home, queue_service, board, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere.conf"
    write_config(other, queue_service, board.device_id)
    monkeypatch.setenv("QICK_CONFIG", str(other))
    assert UserClient().get_soccfg() == SOCCFG


def test_no_device_given_and_none_in_the_config_names_the_key(home, queue_service, board):
    conf = home / ".config" / "qick.conf"
    write_config(conf, queue_service)
    client = UserClient()
    with pytest.raises(ConfigError) as info:
        client.get_soccfg()
    assert f"{conf}: key `id` is missing in section [device]" in str(info.value)
    with pytest.raises(ConfigError, match=r"section \[device\]"):
        client.create_work(io.BytesIO(b"x"))
    assert client.get_soccfg(board.device_id) == SOCCFG     # an explicit id needs no config


def test_no_config_at_all_says_where_it_looked(home):
    with pytest.raises(ConfigError, match="no config file found .*qick.conf"):
        UserClient()


def test_get_results_is_a_runtime_error_until_done_then_an_open_temporary_file(
        home, queue_service, board):
    write_config(home / ".config" / "qick.conf", queue_service, board.device_id)
    client = UserClient(out=None)
    work_id = client.create_work(io.BytesIO(b"workload"))
    with pytest.raises(RuntimeError, match=f"workload {work_id} is not DONE") as info:
        client.get_results(work_id)
    assert isinstance(info.value, Conflict) and isinstance(info.value, QueueError)
    assert info.value.kind == "not_done"

    assert finish(board, data=b"hdf5 bytes") == work_id
    with client.get_results(work_id) as f:
        assert f.tell() == 0 and f.read() == b"hdf5 bytes"
        assert not os.path.exists(str(f.name))               # nothing left on disk
    assert f.closed

    failed = client.create_work(io.BytesIO(b"workload"))
    finish(board, "FAILED", error_message="readout 3 does not exist", error_kind="invalid")
    with pytest.raises(WorkNotDone, match="FAILED: readout 3 does not exist"):
        client.get_results(failed)


def test_wait_until_done_prints_as_the_original_and_returns_on_failed_too(
        home, queue_service, board):
    write_config(home / ".config" / "qick.conf", queue_service, board.device_id)
    out = io.StringIO()
    client = UserClient(out=out)
    work_id = client.create_work(io.BytesIO(b"workload"))
    finish(board, "FAILED", error_message="the board lost its clock", error_kind="device")
    work = client.wait_until_done(work_id, progress=True)
    assert work.WorkStatus == "FAILED"
    assert out.getvalue() == "workload is FAILED: the board lost its clock\n"

    quiet = UserClient(out=None)
    done = quiet.create_work(io.BytesIO(b"workload"))
    finish(board)
    assert quiet.wait_until_done(done, interval=0.1).WorkStatus == "DONE"   # silent
    assert UserClient(out=out).wait_until_done(done, progress=False).WorkStatus == "DONE"
    assert out.getvalue() == "workload is FAILED: the board lost its clock\n"


def test_add_user_and_add_device_print_what_to_send_and_return_the_answer(
        home, queue_service):
    write_config(home / ".config" / "qick.conf", queue_service)
    out = io.StringIO()
    client = UserClient(out=out)
    user = client.add_user("ada@lab.test", "Ada")
    text = out.getvalue()
    assert user["Email"] == "ada@lab.test" and user["ApiKey"] in text
    assert text.startswith("User successfully added!")
    assert f"temporary password: {user['TemporaryPassword']}" in text
    assert "userclient login" in text
    assert (f"They should put the following in ~/.config/qick.conf:\n[service]\n"
            f"api_endpoint = {queue_service.url}\n") in text
    assert "[user]\nusername = ada@lab.test\n" in text

    out.truncate(0), out.seek(0)
    device = client.add_device("lab board", refresh_timeout=30)
    text = out.getvalue()
    assert text.startswith("Device successfully added!\n\nPut the following in the config "
                           "file /etc/qick/config:\n[service]\n")
    assert f"oauth_endpoint = {queue_service.root}\n" in text
    assert f"[device]\nname = lab board\nid = {device['DeviceId']}\n" in text
    assert ("Put the following in the device credentials file /etc/qick/credentials:\n"
            f"[credentials]\nid = {device['ClientId']}\nsecret = {device['ClientSecret']}\n"
            ) in text
    silent = UserClient(out=None)
    assert silent.add_user("bob@lab.test", "Bob")["Email"] == "bob@lab.test"


#: the original's positional parameters and their defaults (ORIGINAL.md); ours come after
#: them and are keyword-only
REQUIRED = inspect.Parameter.empty
ORIGINAL_SIGNATURES = {
    (UserClient, "__init__"): [],
    (UserClient, "add_user"): [("email", REQUIRED), ("fullname", REQUIRED)],
    (UserClient, "add_device"): [("device_name", REQUIRED), ("refresh_timeout", 60)],
    (UserClient, "get_devices"): [],
    (UserClient, "get_soccfg"): [("device_id", None)],
    (UserClient, "create_work"): [("workloadfile", REQUIRED), ("device_id", None),
                                  ("priority", "LOW")],
    (UserClient, "get_work"): [("work_id", REQUIRED)],
    (UserClient, "wait_until_done"): [("work_id", REQUIRED), ("interval", 1.0),
                                      ("progress", True)],
    (UserClient, "get_results"): [("work_id", REQUIRED)],
    (WorkloadManager, "__init__"): [("soccfg", None)],   # required in the original
    (WorkloadManager, "do_stuff"): [("make_progs", False), ("write_progs", False),
                                    ("read_results", False)],
    (WorkloadManager, "add_program"): [("prog", REQUIRED)],
    (WorkloadManager, "add_acquire"): [("prog", REQUIRED), ("save_raw", False),
                                       ("save_shots", False)],
    (WorkloadManager, "add_decimated"): [("prog", REQUIRED)],
    (WorkloadManager, "write_progs"): [("filepath", None)],
    (WorkloadManager, "read_results"): [("resultsfile", REQUIRED)],
}


@pytest.mark.parametrize("owner, name", list(ORIGINAL_SIGNATURES),
                         ids=[f"{o.__name__}.{n}" for o, n in ORIGINAL_SIGNATURES])
def test_the_original_positional_parameters_and_defaults_are_kept(owner, name):
    """Names, order and defaults as the original's, so positional and keyword calls of
    existing notebooks bind the same; everything we add is keyword-only."""
    params = list(inspect.signature(getattr(owner, name)).parameters.values())[1:]
    positional = [(p.name, p.default) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ORIGINAL_SIGNATURES[owner, name]
    extras = [p for p in params if p.kind is not p.POSITIONAL_OR_KEYWORD]
    assert all(p.kind is p.KEYWORD_ONLY for p in extras)
