"""Mock devices: ``POST /devices {Mock}`` makes the service run the board daemon
(``qick-supervisor`` with a simulated board) as a supervised subprocess that speaks the
ordinary device protocol over HTTP."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys

import psutil
import pytest
from qick import QickConfig

from cloudqueue.auth import ApiKeyAuth
from cloudqueue.client import QueueClient
from queueservice.mockspec import MOCK_BOARDS
from executor.boards import BOARDS, zcu216_v1, zcu216_v2
from tests.helpers import wait_for
from tests.qick.programs import QickSweep1D, SweepV2
from tests.server.api import Api, World, assert_error, put_file
from userclient.client import UserClient
from userclient.workload import WorkloadManager

CLI = [sys.executable, "-m", "userclient.cli"]


@pytest.fixture(autouse=True)
def _quiet_qick():
    logging.getLogger("qick").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from tests.conftest import start_queue_service
    svc = start_queue_service(tmp_path_factory.mktemp("mockq"), mock_deadline_seconds=60)
    yield svc
    svc.stop()


def cli(conf, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    return subprocess.run(CLI + ["--config", str(conf), *args], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)


def user_client(service, world: World) -> UserClient:
    api, _ = world.user()
    return UserClient(client=QueueClient(service.url, ApiKeyAuth(api.token), timeout=30))


def daemon_pids(service, device_id: str) -> list[int]:
    """The running board daemons of this mock device (children of the service)."""
    found = []
    for p in psutil.Process(service.proc.pid).children():
        try:
            cmdline = p.cmdline()
            if p.status() != psutil.STATUS_ZOMBIE and "supervisor.cli" in cmdline \
                    and any(device_id in arg for arg in cmdline):
                found.append(p.pid)
        except psutil.Error:  # exited while we looked
            continue
    return found


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def ready(admin: Api, device_id: str) -> dict:
    """Wait until the mock heartbeats ONLINE with its configuration uploaded."""
    def check():
        body = admin.get(f"/devices/{device_id}").json()
        return body if body["DeviceStatus"] == "ONLINE" and "DeviceConfigurationUrl" in body \
            else None
    return wait_for(check, 30, interval=0.1, what=f"mock device {device_id} online")


def sweep_workload(soccfg: dict, tmp_path, name="w.json.gz"):
    cfg = QickConfig(soccfg)
    wm = WorkloadManager(cfg)
    wm.add(SweepV2(cfg, reps=5, final_delay=1.0,
                   cfg={"freq": QickSweep1D("f", 140, 160), "steps": 11}), rounds=2,
           save_raw=True)
    wm.add(SweepV2(cfg, reps=3, final_delay=1.0, cfg={"freq": 150.0}), acqtype="decimated")
    wm.write(tmp_path / name)
    return wm, tmp_path / name


def test_mock_boards_are_the_simulated_boards():
    assert set(MOCK_BOARDS) == set(BOARDS)


def test_a_workload_on_a_mock_device_comes_back_done_with_results(service, tmp_path):
    conf = tmp_path / "admin.conf"
    conf.write_text(f"[service]\napi_endpoint = {service.url}\n"
                    f"[user]\napi_key = {service.admin_key}\n")
    made = cli(conf, "--json", "add-device", "sim", "--mock", "--board", "zcu216-v2")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["Mock"] == {"Board": "zcu216-v2"} and "ClientSecret" not in created
    world = World(service)
    listed = {d["DeviceId"]: d for d in world.admin.get("/devices").json()}
    assert listed[created["DeviceId"]]["Mock"] is True
    assert listed[created["DeviceId"]]["MockBoard"] == "zcu216-v2"
    ready(world.admin, created["DeviceId"])
    uc = user_client(service, world)
    soccfg = uc.get_soccfg(created["DeviceId"])
    assert soccfg["fw_timestamp"] == zcu216_v2()["fw_timestamp"]
    wm, path = sweep_workload(soccfg, tmp_path)
    work_id = uc.create_work(path, created["DeviceId"])
    work = uc.wait_until_done(work_id, timeout=60, interval=0.2)
    assert work.WorkStatus == "DONE", work.ErrorMessage
    assert work.Progress == {"ProgramsDone": 2, "ProgramsTotal": 2}
    uc.download_results(work_id, tmp_path / "r.h5")
    (_, r0), (_, r1) = list(wm.read_results(tmp_path / "r.h5"))
    assert [a.shape for a in r0.avg] == [(1, 11, 2)]
    assert [a.shape for a in r0.raw] == [(5, 11, 1, 2)]
    assert r1.dec[0].shape[0] == 3 and r1.dec[0].shape[2] == 2


def test_a_mirror_refuses_a_workload_of_another_firmware_naming_both(service, tmp_path):
    world = World(service)
    real = world.device("real-v1")
    other = zcu216_v1()
    other["fw_timestamp"] = "lab board build 2024-05-01"
    other["gens"][0]["maxlen"] = 32768  # another build: a smaller envelope memory
    url = real.heartbeat().json()["UploadUrl"]
    assert put_file(url, json.dumps(other).encode()).status_code == 200
    resp = world.admin.post("/devices", json={"DeviceName": "mirror",
                                              "Mock": {"MirrorOf": real.id}})
    assert resp.status_code == 201, resp.text
    mirror = resp.json()["DeviceId"]
    listed = {d["DeviceId"]: d for d in world.admin.get("/devices").json()}
    assert listed[mirror]["MirrorOf"] == real.id and listed[mirror]["Mock"] is True
    ready(world.admin, mirror)
    uc = user_client(service, world)
    assert uc.get_soccfg(mirror)["fw_timestamp"] == "lab board build 2024-05-01"
    # compiled for the simulated v1 board, not for the lab board's firmware
    from qickwork.firmware import describe
    from tests.qick.programs import LoopV1
    cfg = QickConfig(zcu216_v1())
    wm = WorkloadManager(cfg)
    wm.add(LoopV1(cfg, {"gen": 0, "freq": 300.0, "ro_len": 100, "reps": 5}))
    wm.write(tmp_path / "v1.json.gz")
    work = uc.wait_until_done(uc.create_work(tmp_path / "v1.json.gz", mirror), timeout=60,
                              interval=0.2)
    assert work.WorkStatus == "FAILED" and work.ErrorKind == "firmware_mismatch"
    assert describe(zcu216_v1()) in work.ErrorMessage
    assert describe(other) in work.ErrorMessage


def test_bad_mock_requests_are_clear_4xx(service):
    world = World(service)
    admin = world.admin
    assert_error(admin.post("/devices", json={"DeviceName": "m", "Mock": {"Board": "zcu111"}}),
                 400, "bad_request")
    assert_error(admin.post("/devices", json={"DeviceName": "m", "Mock": {
        "Board": "zcu216-v2", "MirrorOf": "x"}}), 400)
    assert_error(admin.post("/devices", json={"DeviceName": "m",
                                              "Mock": {"MirrorOf": "no-such"}}), 404)
    assert_error(admin.post("/devices", json={"DeviceName": "m", "Mock": "yes"}), 400)
    user, _ = world.user()
    assert_error(user.post("/devices", json={"DeviceName": "m", "Mock": {}}), 403)


def test_a_killed_mock_daemon_is_restarted_and_the_queue_still_works(service, tmp_path):
    world = World(service)
    resp = world.admin.post("/devices", json={"DeviceName": "phoenix",
                                              "Mock": {"Board": "zcu216-v2"}})
    device_id = resp.json()["DeviceId"]
    ready(world.admin, device_id)

    first = wait_for(lambda: daemon_pids(service, device_id), 10, what="the daemon process")
    children = psutil.Process(first[0]).children()
    assert len(children) == 3  # its downloader, executor and uploader
    os.kill(first[0], signal.SIGKILL)
    wait_for(lambda: daemon_pids(service, device_id) not in ([], first), 20, interval=0.1,
             what="a new daemon")
    # the orphans stop by themselves (no word from their supervisor; the executor dies
    # with its parent)
    wait_for(lambda: all(gone(c.pid) for c in children), 20, interval=0.1,
             what="the killed daemon's children to stop")
    uc = user_client(service, world)
    wm, path = sweep_workload(uc.get_soccfg(device_id), tmp_path)
    work = uc.wait_until_done(uc.create_work(path, device_id), timeout=60, interval=0.2)
    assert work.WorkStatus == "DONE", work.ErrorMessage
    assert "board daemon exited (killed by SIGKILL)" in service.log_path.read_text()


def test_the_web_process_never_imports_qick_or_zmq(service):
    """The mock devices run in their daemons; the web process (which has served them all
    in this module) never loads qick or zmq. (numpy and h5py come in with the first
    workload file, for its estimate: ``queueservice.estimates``.)"""
    maps = psutil.Process(service.proc.pid)
    files = " ".join(m.path for m in maps.memory_maps())
    for mapped in ("/qick/", "/zmq/", "libzmq"):
        assert mapped not in files  # no such extension or module mapped
    code = ("import sys, queueservice.app, queueservice.mockfleet, queueservice.cli; "
            "print(sorted({'qick', 'numpy', 'zmq', 'h5py'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
