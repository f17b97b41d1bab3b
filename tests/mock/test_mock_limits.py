"""Mock devices under their limits: the deadline, the memory limit (a program over it, and a
run that cannot even start under it), and cancel while a workload runs. Tiny limits, real
service, real worker and child processes."""
from __future__ import annotations

import logging

import psutil
import pytest
from qick import QickConfig

from tests.helpers import wait_for
from tests.mock.test_mock_device import ready, user_client
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


def run_children(service, work_id: str) -> list[psutil.Process]:
    found = []
    for p in psutil.Process(service.proc.pid).children(recursive=True):
        try:
            if "mockboard.run" in p.cmdline() and work_id in p.cmdline() \
                    and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:  # exited while we looked
            continue
    return found


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    from tests.conftest import start_queue_service
    svc = start_queue_service(tmp_path_factory.mktemp("mocklimits"),
                              mock_deadline_seconds=5, mock_memory_mb=500)
    yield svc
    svc.stop()


def test_a_run_over_the_deadline_is_killed_and_failed_as_deadline(limited, tmp_path):
    world, device_id, work = run_on_mock(limited, "slow", long_workload, tmp_path)
    assert work.WorkStatus == "FAILED" and work.ErrorKind == "deadline", work
    assert "deadline of 5 s" in work.ErrorMessage
    assert "make the workload smaller" in work.ErrorMessage
    assert run_children(limited, work.WorkId) == []
    # the device is not stuck: it answers its heartbeat as ONLINE again
    ready(world.admin, device_id)


def test_a_program_over_the_memory_limit_fails_as_too_large_not_device_error(limited,
                                                                            tmp_path):
    """Regression: a MemoryError was reported as device_error with advice about readout
    lengths and buffer sizes."""
    _, _, work = run_on_mock(limited, "small", big_workload, tmp_path)
    assert work.WorkStatus == "FAILED" and work.ErrorKind == "too_large", work
    assert "program 0 ran out of memory" in work.ErrorMessage
    assert "do not save raw data or shots" in work.ErrorMessage


def test_a_run_that_dies_under_the_memory_limit_is_reported_as_crashed(queue_service_factory,
                                                                       tmp_path):
    service = queue_service_factory(mock_memory_mb=64)  # too small to even import numpy
    _, _, work = run_on_mock(service, "tiny", long_workload, tmp_path)
    assert work.WorkStatus == "FAILED" and work.ErrorKind == "crashed", work
    assert "died (exit code 1)" in work.ErrorMessage
    assert "more than the mock's 64 MB of memory" in work.ErrorMessage


def test_cancel_while_running_stops_the_run_and_ends_cancelled(limited, tmp_path):
    world, device_id = mock_device(limited, "cancel-me")
    uc = user_client(limited, world)
    long_workload(uc.get_soccfg(device_id), tmp_path / "long.json.gz")
    work_id = uc.create_work(tmp_path / "long.json.gz", device_id)
    wait_for(lambda: run_children(limited, work_id), 20, interval=0.05,
             what="the run's child process")
    uc.cancel(work_id)
    work = uc.wait_until_done(work_id, timeout=30, interval=0.1)
    assert work.WorkStatus == "CANCELLED", work
    wait_for(lambda: run_children(limited, work_id) == [], 10, what="the child to be gone")


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


def test_a_mock_cancel_stopped_by_force_still_keeps_the_programs_done(
        queue_service_factory, tmp_path, monkeypatch):
    """Regression: a cancelled run that did not stop within the grace period was killed
    and the programs it had finished were thrown away. A worker of this process (its run
    child is real) with no grace at all: the kill always comes, and the results file it
    leaves (still RUNNING) is finished as CANCELLED and kept."""
    import argparse
    import threading

    import h5py

    from cloudqueue.auth import DeviceTokenAuth
    from cloudqueue.client import QueueClient
    from cloudqueue.transfer import download_file
    from executor.boards import board_config
    from mockboard import worker as mockworker

    monkeypatch.setattr(mockworker, "CANCEL_GRACE_SECONDS", 0.0)
    service = queue_service_factory()
    world = World(service)
    device = world.device("in-process-mock")
    client = QueueClient(service.url, DeviceTokenAuth.for_endpoint(
        service.root, device.client_id, device.secret), timeout=30)
    args = argparse.Namespace(heartbeat=0.2, deadline_seconds=120.0, memory_mb=2048)
    (tmp_path / "mock").mkdir()
    mock = mockworker.MockWorker(client, device.id, tmp_path / "mock", args)
    threads = [threading.Thread(target=mock.heartbeat_loop, daemon=True),
               threading.Thread(target=mock.work_loop, daemon=True)]
    for t in threads:
        t.start()
    try:
        uc = user_client(service, world)
        cfg = QickConfig(board_config("zcu216-v2"))
        wm = WorkloadManager(cfg)
        total = 200
        for i in range(total):
            wm.add(SweepV2(cfg, reps=1, final_delay=1.0, cfg={"freq": 150.0 + i}),
                   rounds=2000)
        wm.write(tmp_path / "many.json.gz")
        work_id = uc.create_work(tmp_path / "many.json.gz", device.id)
        wait_for(lambda: (uc.client.get_workload(work_id).programs or (0, 0))[0] >= 2, 60,
                 interval=0.05, what="two programs done")
        uc.cancel(work_id)
        work = uc.wait_until_done(work_id, 0.1, False, timeout=30)
        assert work.WorkStatus == "CANCELLED" and work.WorkloadResultUrl, work
        done = work.programs[0]
        assert 2 <= done < total
        assert f"stopped by force after {done} of {total} programs" in work.ErrorMessage
        download_file(work.WorkloadResultUrl, tmp_path / "r.h5")
        with h5py.File(tmp_path / "r.h5") as f:
            assert f.attrs["status"] == "CANCELLED"
        kept = list(wm.read_results(tmp_path / "r.h5", partial=True))
        # the program finished as the kill came may be in the file before its progress
        # line was read: the file holds the programs done, perhaps one more
        assert [r.index for _, r in kept] == list(range(len(kept)))
        assert len(kept) in (done, done + 1)
    finally:
        mock.stop.set()
        for t in threads:
            t.join(10)
