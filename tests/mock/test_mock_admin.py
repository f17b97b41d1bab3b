"""The admin lifecycle on mock devices: no secret to rotate, a mirrored device cannot be
deleted before its mirror, and deleting a mock stops its worker process."""
from __future__ import annotations

import psutil

from tests.conftest import QueueService
from tests.helpers import wait_for
from tests.server.api import World, assert_error


def worker_pids(service: QueueService, device_id: str) -> list[int]:
    found = []
    for p in psutil.Process(service.proc.pid).children():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "mockboard.worker" in p.cmdline() \
                    and device_id in p.cmdline():
                found.append(p.pid)
        except psutil.Error:  # exited while we looked
            continue
    return found


def test_deleting_a_mock_device_stops_its_worker(queue_service: QueueService):
    world = World(queue_service)
    real = world.device("real")
    made = world.admin.post("/devices", json={"DeviceName": "mirror",
                                              "Mock": {"MirrorOf": real.id}})
    assert made.status_code == 201, made.text
    mock_id = made.json()["DeviceId"]
    first = wait_for(lambda: worker_pids(queue_service, mock_id), 20, what="the mock worker")

    assert_error(world.admin.post(f"/devices/{mock_id}/rotate-secret"), 409, "mock_device")
    refused = assert_error(world.admin.call("DELETE", f"/devices/{real.id}"), 409, "mirrored")
    assert mock_id in refused["ErrorMessage"]

    assert world.admin.call("DELETE", f"/devices/{mock_id}").status_code == 200
    wait_for(lambda: not psutil.pid_exists(first[0])
             or psutil.Process(first[0]).status() == psutil.STATUS_ZOMBIE,
             20, interval=0.1, what="the deleted mock's worker to stop")
    assert not worker_pids(queue_service, mock_id)
    assert world.admin.call("DELETE", f"/devices/{real.id}").status_code == 200
    assert "Traceback" not in queue_service.log_path.read_text()
