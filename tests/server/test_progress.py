"""Workload progress: the service copies the running work's progress from the device's
heartbeat Health (as the board daemon sends it) into ``GET /workloads/{id}``."""
from __future__ import annotations

from queueservice.policy import current_work, progress_view
from tests.helpers import wait_for
from tests.server.api import World, put_file, status, submit


def health(work_id: str | None, done: int = 0, total: int = 0) -> dict:
    """The shape of ``supervisor.daemon.Supervisor.health_summary()``."""
    current = None if work_id is None else {"work_id": work_id, "programs_done": done,
                                            "programs_total": total, "seconds": 1.25}
    return {"State": "BUSY" if work_id else "ONLINE", "Reason": "",
            "Processes": {"executor": {"State": "RUNNING", "Restarts": 0},
                          "downloader": {"State": "RUNNING", "Restarts": 0},
                          "uploader": {"State": "RUNNING", "Restarts": 0}},
            "Spool": {"incoming": 0, "ready": 0, "outgoing": 0, "done": 3},
            "CurrentWork": current,
            "Firmware": {"board": "simulated zcu216-v2", "board_kind": "simulated",
                         "fingerprint": "sha256:0123456789abcdef", "network": False}}


def running(world: World):
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    assert device.next_work().json()["WorkId"] == work_id
    return device, user, work_id


def test_progress_follows_the_heartbeat_and_done_shows_total(world: World):
    device, user, work_id = running(world)
    assert "Progress" not in status(user, work_id)  # nothing reported yet
    assert device.heartbeat("BUSY", Health=health(work_id, 0, 201)).status_code == 200
    assert status(user, work_id)["Progress"] == {"ProgramsDone": 0, "ProgramsTotal": 201}
    device.heartbeat("BUSY", Health=health(work_id, 120, 201))
    assert status(user, work_id)["Progress"] == {"ProgramsDone": 120, "ProgramsTotal": 201}
    # the board goes idle (CurrentWork None): the last value is kept
    device.heartbeat("ONLINE", Health=health(None))
    assert status(user, work_id)["Progress"] == {"ProgramsDone": 120, "ProgramsTotal": 201}
    url = device.report(work_id).json()["UploadUrl"]
    assert status(user, work_id)["Progress"]["ProgramsDone"] == 120  # UPLOADING: kept
    assert put_file(url, b"results").status_code == 200
    body = status(user, work_id)
    assert body["WorkStatus"] == "DONE"
    assert body["Progress"] == {"ProgramsDone": 201, "ProgramsTotal": 201}


def test_a_run_shorter_than_a_heartbeat_shows_its_count_from_the_done_report(world: World):
    """The board daemon's uploader sends ``ProgramsDone`` with ``DONE``: a run over before
    any heartbeat carried its progress still shows total/total (it did: None)."""
    device, user, work_id = running(world)
    url = device.report(work_id, {"Outcome": "DONE", "ProgramsDone": 2}).json()["UploadUrl"]
    assert status(user, work_id)["Progress"] == {"ProgramsDone": 2, "ProgramsTotal": 2}
    assert put_file(url, b"results").status_code == 200
    assert status(user, work_id)["Progress"] == {"ProgramsDone": 2, "ProgramsTotal": 2}


def test_progress_only_from_the_device_the_work_is_on(world: World):
    device, user, work_id = running(world)
    other = world.device("other")
    assert other.heartbeat("BUSY", Health=health(work_id, 7, 9)).status_code == 200
    assert "Progress" not in status(user, work_id)


def test_progress_only_for_executing_work_of_that_id(world: World):
    device = world.device()
    user, _ = world.user()
    ready = submit(user, device.id, priority="LOW")
    device.heartbeat("BUSY", Health=health(ready, 1, 5))  # READY: not running, ignored
    assert "Progress" not in status(user, ready)
    first = submit(user, device.id, priority="HIGH")
    assert device.next_work().json()["WorkId"] == first
    device.heartbeat("BUSY", Health=health(first, 2, 5))
    assert status(user, first)["Progress"] == {"ProgramsDone": 2, "ProgramsTotal": 5}
    assert "Progress" not in status(user, ready)


def test_a_failed_run_keeps_its_last_progress(world: World):
    device, user, work_id = running(world)
    device.heartbeat("BUSY", Health=health(work_id, 3, 10))
    device.report(work_id, {"Outcome": "FAILED", "ErrorMessage": "program 3 failed",
                            "ErrorKind": "device_error"})
    body = status(user, work_id)
    assert body["WorkStatus"] == "FAILED"
    assert body["Progress"] == {"ProgramsDone": 3, "ProgramsTotal": 10}


def test_malformed_current_work_is_ignored_not_an_error(world: World):
    device, user, work_id = running(world)
    for bad in ({"work_id": work_id, "programs_done": "3", "programs_total": 10},
                {"work_id": work_id, "programs_done": 3, "programs_total": 0},
                {"work_id": work_id, "programs_done": True, "programs_total": 10},
                {"work_id": 5, "programs_done": 3, "programs_total": 10},
                "running", [work_id]):
        h = health(None)
        h["CurrentWork"] = bad
        assert device.heartbeat("BUSY", Health=h).status_code == 200
    assert "Progress" not in status(user, work_id)
    # done above total is clamped, not shown as 12/10
    device.heartbeat("BUSY", Health=health(work_id, 12, 10))
    assert status(user, work_id)["Progress"] == {"ProgramsDone": 10, "ProgramsTotal": 10}


def test_a_fresh_run_after_a_lease_starts_from_nothing(queue_service_factory,
                                                       database_options):
    world = World(queue_service_factory(lease_seconds=0.3, **database_options))
    device, user, work_id = running(world)
    device.heartbeat("BUSY", Health=health(work_id, 4, 10))
    assert status(user, work_id)["Progress"]["ProgramsDone"] == 4
    # the device goes silent past its lease; the work goes back to READY and starts again
    wait_for(lambda: status(user, work_id)["WorkStatus"] == "READY", 10, what="lease end")
    assert "Progress" not in status(user, work_id)
    assert device.next_work().json()["WorkId"] == work_id
    assert "Progress" not in status(user, work_id)


def test_progress_policy_is_pure():
    assert progress_view("READY", 4, 10) is None
    assert progress_view("EXECUTING", None, None) is None
    assert progress_view("CANCELLED", 4, 10) == {"ProgramsDone": 4, "ProgramsTotal": 10}
    assert current_work({"CurrentWork": None}) is None
    assert current_work(None) is None
    assert current_work({"CurrentWork": {"work_id": "w", "programs_done": 1,
                                         "programs_total": 2}}) == ("w", 1, 2)


def test_capabilities_list_progress(world: World):
    assert "progress" in world.admin.get("/capabilities").json()["Features"]
