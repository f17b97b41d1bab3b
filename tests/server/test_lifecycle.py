"""The process: init, clean shutdown, and a kill -9 mid-traffic that loses nothing."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import requests

from tests.conftest import QueueService
from tests.server.api import Api, World, put_file, status, submit


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "queueservice.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_init_writes_private_files_and_refuses_to_reinit(tmp_path):
    data = tmp_path / "store"
    first = run_cli("init", "--data", str(data), "--port", "9123",
                    "--admin-email", "boss@lab.test")
    assert first.returncode == 0, first.stderr
    conf = (data / "admin.conf").read_text()
    assert "api_endpoint = http://127.0.0.1:9123" in conf
    # ready for `userclient add-device` (board files) and the original user client's login
    assert "oauth_endpoint = http://127.0.0.1:9123" in conf
    assert "cognito_url = http://127.0.0.1:9123" in conf
    assert "username = boss@lab.test" in conf and "api_key = qk_" in conf
    for name in ("admin.conf", "secret"):
        assert stat.S_IMODE(os.stat(data / name).st_mode) == 0o600
    assert "qk_" not in first.stdout  # the key is in the 0600 file, not on the screen
    again = run_cli("init", "--data", str(data))
    assert again.returncode == 1
    assert "already holds a qick-queue store" in again.stderr and "Traceback" not in again.stderr
    assert (data / "admin.conf").read_text() == conf


def test_serve_without_a_store_says_what_to_do(tmp_path):
    result = run_cli("serve", "--data", str(tmp_path / "nothing"), "--port", "0")
    assert result.returncode == 1
    assert "qick-queue init" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_stops_cleanly_even_during_a_long_poll(queue_service: QueueService):
    world = World(queue_service)
    device = world.device()
    poll = threading.Thread(target=lambda: _quiet(lambda: device.next_work(wait=20)))
    poll.start()
    assert queue_service.stop(timeout=15) == 0
    poll.join(20)
    assert "Traceback" not in queue_service.log_path.read_text()


def _quiet(fn):
    try:
        fn()
    except requests.RequestException:
        pass


def test_kill_9_mid_traffic_loses_no_accepted_workload(queue_service: QueueService):
    world = World(queue_service)
    device = world.device()
    user, _ = world.user()
    accepted: list[str] = []
    uploaded: list[str] = []
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                resp = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"},
                                 timeout=5)
                if resp.status_code == 201:
                    accepted.append(resp.json()["WorkId"])
                    if put_file(resp.json()["UploadUrl"], b"w").status_code == 200:
                        uploaded.append(resp.json()["WorkId"])
            except requests.RequestException:
                return

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for t in threads:
        t.start()
    from tests.helpers import wait_for
    wait_for(lambda: len(uploaded) >= 20, 30, what="some traffic")
    queue_service.kill()
    stop.set()
    for t in threads:
        t.join(10)
    queue_service.start()  # same data, same port
    user = Api(queue_service.url, user.token)
    for work_id in accepted:
        body = status(user, work_id)
        assert body["WorkStatus"] in ("CREATED", "READY")
    for work_id in uploaded:
        assert status(user, work_id)["WorkStatus"] == "READY"
        assert requests.get(status(user, work_id)["WorkloadUrl"], timeout=10).content == b"w"
    # and the restarted service still hands work out
    assert device.next_work().json()["WorkId"] in uploaded
    assert not list((queue_service.data_dir / "files" / "tmp").iterdir())


def test_restart_keeps_devices_users_and_results(queue_service: QueueService):
    world = World(queue_service)
    device = world.device()
    user, _ = world.user()
    work = submit(user, device.id)
    device.next_work()
    put_file(device.report(work).json()["UploadUrl"], b"results")
    queue_service.restart()
    body = status(user, work)
    assert body["WorkStatus"] == "DONE"
    assert requests.get(body["WorkloadResultUrl"], timeout=10).content == b"results"
    assert device.next_work().json() == []  # its token still works after the restart
