"""Mock devices under their limits: the deadline, the memory limit (a program over it, and a
board that cannot even open under it), a run that dies, and cancel while a workload runs.
Tiny limits, real service, real board daemons (``[executor] deadline_seconds`` and
``address_space_mb`` are the mock limits)."""
from __future__ import annotations

import logging
from typing import Any

import psutil
import pytest
from qick import QickConfig

from tests.helpers import wait_for
from tests.mock.test_mock_device import daemon_pids, ready, user_client
from tests.qick.programs import QickSweep1D, SweepV2
from tests.server.api import World
from userclient.workload import WorkloadManager

LONG_ROUNDS = 1_000_000      # about 300 s on the simulated board: only a stop ends it


@pytest.fixture(autouse=True)
def _quiet_qick():
    logging.getLogger("qick").setLevel(logging.ERROR)


def mock_device(service, name: str) -> tuple[World, str]:
    world = World(service)
    resp = world.admin.post("/devices", json={"DeviceName": name, "RefreshTimeout": 2,
                                              "Mock": {"Board": "zcu216-v2"}})
    assert resp.status_code == 201, resp.text
    device_id = resp.json()["DeviceId"]
    ready(world.admin, device_id)
    return world, device_id


def long_workload(soccfg: dict, path) -> None:
    cfg = QickConfig(soccfg)
    wm = WorkloadManager(cfg)
    wm.add(SweepV2(cfg, reps=1, final_delay=1.0, cfg={"freq": 150.0}), rounds=LONG_ROUNDS)
    wm.write(path)


def big_workload(soccfg: dict, path) -> None:
    """Within the per-program result limit, but its raw data needs more than 500 MB."""
    cfg = QickConfig(soccfg)
    wm = WorkloadManager(cfg)
    wm.add(SweepV2(cfg, reps=200_000, final_delay=1.0,
                   cfg={"freq": QickSweep1D("f", 140, 160), "steps": 100}), save_raw=True)
    wm.write(path)


def run_on_mock(service, name: str, build, tmp_path):
    """Make a mock device, build a workload for its soccfg, submit it, wait for the end."""
    world, device_id = mock_device(service, name)
    uc = user_client(service, world)
    build(uc.get_soccfg(device_id), tmp_path / "w.json.gz")
    work_id = uc.create_work(tmp_path / "w.json.gz", device_id)
    return world, device_id, uc.wait_until_done(work_id, timeout=60, interval=0.2)


def executor_pids(service, device_id: str) -> list[int]:
    """The executor (the one process that runs workloads) of this mock's board daemon."""
    found = []
    for daemon in daemon_pids(service, device_id):
        try:
            found += [p.pid for p in psutil.Process(daemon).children()
                      if "executor.main" in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:  # exited while we looked
            continue
    return found


def start_long_run(service, name: str, tmp_path) -> tuple[World, str, Any, str]:
    """A mock device running a long workload: (world, device id, user client, WorkId)."""
    world, device_id = mock_device(service, name)
    uc = user_client(service, world)
    long_workload(uc.get_soccfg(device_id), tmp_path / "long.json.gz")
    work_id = uc.create_work(tmp_path / "long.json.gz", device_id)
    wait_for(lambda: running(world, device_id, work_id), 20, interval=0.05,
             what="the run to start")
    return world, device_id, uc, work_id


def running(world: World, device_id: str, work_id: str) -> bool:
    """The mock's executor runs this workload (its heartbeat's ``CurrentWork`` says so)."""
    health = world.admin.get(f"/devices/{device_id}").json().get("Health") or {}
    return (health.get("CurrentWork") or {}).get("work_id") == work_id


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    from tests.conftest import start_queue_service
    svc = start_queue_service(tmp_path_factory.mktemp("mocklimits"),
                              mock_deadline_seconds=5, mock_memory_mb=500)
    yield svc
    svc.stop()


def test_a_run_over_the_deadline_is_stopped_and_failed_as_deadline(limited, tmp_path):
    world, device_id, work = run_on_mock(limited, "slow", long_workload, tmp_path)
    assert work.WorkStatus == "FAILED" and work.ErrorKind == "deadline", work
    assert "5 s" in work.ErrorMessage and "smaller" in work.ErrorMessage
    # the device is not stuck: it answers its heartbeat as ONLINE again
    ready(world.admin, device_id)
    wait_for(lambda: executor_pids(limited, device_id), 20, what="an executor, up again")


def test_a_program_over_the_memory_limit_fails_as_too_large_not_device_error(limited,
                                                                            tmp_path):
    """Regression: a MemoryError was reported as device_error with advice about readout
    lengths and buffer sizes."""
    _, _, work = run_on_mock(limited, "small", big_workload, tmp_path)
    assert work.WorkStatus == "FAILED" and work.ErrorKind == "too_large", work
    assert "program 0 ran out of memory" in work.ErrorMessage
    assert "do not save raw data or shots" in work.ErrorMessage


def test_a_mock_whose_board_cannot_open_under_the_memory_limit_shows_error(
        queue_service_factory):
    """64 MB is too small to even import numpy: the executor cannot open the simulated
    board, and the daemon reports ERROR with the reason (work waits, none is lost)."""
    service = queue_service_factory(mock_memory_mb=64)
    world = World(service)
    resp = world.admin.post("/devices", json={"DeviceName": "tiny", "RefreshTimeout": 2,
                                              "Mock": {"Board": "zcu216-v2"}})
    device_id = resp.json()["DeviceId"]

    def in_error():
        body = world.admin.get(f"/devices/{device_id}").json()
        return body if body["DeviceStatus"] == "ERROR" else None

    body = wait_for(in_error, 60, interval=0.2, what="the mock listed as ERROR")
    assert "cannot open the simulated board" in body["StatusReason"], body
    assert "address space limit of 64 MB" in body["StatusReason"], body
    assert body["Simulated"] is True


def test_a_run_whose_executor_dies_is_reported_as_crashed(limited, tmp_path):
    """The out-of-memory killer's way (SIGKILL mid-run): FAILED ``crashed`` saying so, and
    a fresh executor takes the next work."""
    world, device_id, uc, work_id = start_long_run(limited, "dies", tmp_path)
    first = executor_pids(limited, device_id)
    psutil.Process(first[0]).kill()
    work = uc.wait_until_done(work_id, timeout=30, interval=0.1)
    assert work.WorkStatus == "FAILED" and work.ErrorKind == "crashed", work
    assert "killed (SIGKILL)" in work.ErrorMessage
    assert "reduce the workload's size" in work.ErrorMessage
    wait_for(lambda: executor_pids(limited, device_id) not in ([], first), 20,
             what="a fresh executor")


def test_cancel_while_running_stops_the_run_and_ends_cancelled(limited, tmp_path):
    world, device_id, uc, work_id = start_long_run(limited, "cancel-me", tmp_path)
    executor = executor_pids(limited, device_id)
    uc.cancel(work_id)
    work = uc.wait_until_done(work_id, timeout=30, interval=0.1)
    assert work.WorkStatus == "CANCELLED", work
    # stopped between rounds by the executor itself: not killed
    assert executor_pids(limited, device_id) == executor
    ready(world.admin, device_id)


def test_cancel_of_a_mock_run_keeps_the_programs_done(queue_service_factory, tmp_path):
    """As on a board: the run stops between rounds and its results file, recording
    CANCELLED with the programs done, is kept and readable with partial=True."""
    service = queue_service_factory(mock_deadline_seconds=120)
    world, device_id = mock_device(service, "cancel-keeps")
    uc = user_client(service, world)
    cfg = QickConfig(uc.get_soccfg(device_id))
    wm = WorkloadManager(cfg)
    total = 200
    for i in range(total):
        wm.add(SweepV2(cfg, reps=1, final_delay=1.0, cfg={"freq": 150.0 + i}), rounds=2000)
    wm.write(tmp_path / "many.json.gz")
    work_id = uc.create_work(tmp_path / "many.json.gz", device_id)
    wait_for(lambda: (uc.client.get_workload(work_id).programs or (0, 0))[0] >= 2, 60,
             interval=0.05, what="two programs done")
    uc.cancel(work_id)
    work = uc.wait_until_done(work_id, 0.1, False, timeout=30)
    assert work.WorkStatus == "CANCELLED" and work.WorkloadResultUrl, work
    done = work.programs[0]
    assert 2 <= done < total
    from cloudqueue.transfer import download_file
    download_file(work.WorkloadResultUrl, tmp_path / "r.h5")
    kept = list(wm.read_results(tmp_path / "r.h5", partial=True))
    assert [r.index for _, r in kept] == list(range(done))
