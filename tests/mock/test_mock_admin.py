"""The admin lifecycle on mock devices: no secret to rotate, a mirrored device cannot be
deleted before its mirror, and deleting a mock stops its board daemon (and the daemon's
children) and removes its folder."""
from __future__ import annotations

import json

import psutil

from executor.boards import zcu216_v1
from tests.conftest import QueueService
from tests.helpers import wait_for
from tests.mock.test_mock_device import daemon_pids, gone
from tests.server.api import World, assert_error, put_file


def test_deleting_a_mock_device_stops_its_daemon(queue_service: QueueService):
    world = World(queue_service)
    real = world.device("real")
    url = real.heartbeat().json()["UploadUrl"]  # a mirror runs on the soccfg it uploaded
    assert put_file(url, json.dumps(zcu216_v1()).encode()).status_code == 200
    made = world.admin.post("/devices", json={"DeviceName": "mirror",
                                              "Mock": {"MirrorOf": real.id}})
    assert made.status_code == 201, made.text
    mock_id = made.json()["DeviceId"]
    first = wait_for(lambda: daemon_pids(queue_service, mock_id), 20, what="the mock daemon")
    children = wait_for(lambda: [p.pid for p in psutil.Process(first[0]).children()]
                        if len(psutil.Process(first[0]).children()) == 3 else None, 20,
                        interval=0.1, what="its downloader, executor and uploader")

    assert_error(world.admin.post(f"/devices/{mock_id}/rotate-secret"), 409, "mock_device")
    refused = assert_error(world.admin.call("DELETE", f"/devices/{real.id}"), 409, "mirrored")
    assert mock_id in refused["ErrorMessage"]

    assert world.admin.call("DELETE", f"/devices/{mock_id}").status_code == 200
    wait_for(lambda: gone(first[0]), 20, interval=0.1, what="the deleted mock's daemon to stop")
    assert not daemon_pids(queue_service, mock_id)
    wait_for(lambda: all(gone(pid) for pid in children), 10, interval=0.1,
             what="the deleted mock daemon's children to stop")
    wait_for(lambda: not (queue_service.data_dir / "mock" / mock_id).exists(), 10,
             interval=0.1, what="the deleted mock's folder (its credentials) to go")
    assert world.admin.call("DELETE", f"/devices/{real.id}").status_code == 200
    assert "Traceback" not in queue_service.log_path.read_text()
