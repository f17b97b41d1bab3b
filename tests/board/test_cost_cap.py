"""A workload's cost cap (``workloads.max_seconds``, the poll's ``MaxSeconds``) is the run's
deadline on the board when it is shorter than the board's own: through the real service
and a real board daemon on the simulated board, such a workload FAILS with kind
``deadline`` at the cap, its message naming MaxSeconds. (The cap is set in the service's
database here: ``submit --max-seconds`` is another slice's; this is the board's side.)"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from downloader.main import max_seconds
from queueservice.db import Database
from tests.board.conftest import make_workload
from tests.server.api import World, put_file

SLOW = {"time_scale": "2000"}  # the simulated board runs ~2000x slower than real time


def set_cost_cap(service, work_id: str, seconds: float) -> None:
    """What a submit with ``--max-seconds`` stores, written before the file is uploaded."""
    database = Database(service.database_target)
    try:
        with database.transaction() as conn:
            conn.execute("UPDATE workloads SET max_seconds = ? WHERE work_id = ?",
                         (seconds, work_id))
    finally:
        database.close()


def test_the_poll_answer_carries_max_seconds_only_when_set(queue_service, tmp_path: Path):
    world = World(queue_service)
    device = world.device()
    ids = []
    for cap in (2.5, None):
        made = world.admin.post("/workloads", json={"DeviceId": device.id,
                                                    "Priority": "MEDIUM"}).json()
        if cap is not None:
            set_cost_cap(queue_service, made["WorkId"], cap)
        assert put_file(made["UploadUrl"], b"workload").status_code == 200
        ids.append(made["WorkId"])
    capped = device.next_work().json()
    assert (capped["WorkId"], capped["MaxSeconds"]) == (ids[0], 2.5)
    plain = device.api.get(f"/devices/{device.id}/workload",
                           params={"Holding": ids[0]}).json()
    assert plain["WorkId"] == ids[1] and set(plain) == {"WorkId", "WorkloadUrl"}


def test_a_workload_past_its_max_seconds_fails_at_the_cap(board_factory, tmp_path: Path):
    board = board_factory(executor=SLOW).start()  # the board's own deadline: 3600 s
    made = board.admin.create_workload(board.device_id)
    set_cost_cap(board.service, made["WorkId"], 0.5)
    path = make_workload(tmp_path / "long.gz", programs=6, reps=300)
    assert put_file(made["UploadUrl"], path.read_bytes()).status_code == 200
    work = board.wait_terminal(made["WorkId"], 60)
    assert (work.WorkStatus, work.ErrorKind) == ("FAILED", "deadline"), work
    assert "stopped at its MaxSeconds of 0.5 s (its cost cap)" in work.ErrorMessage
    done = int(re.search(r"after (\d+) of 6 programs", work.ErrorMessage).group(1))
    assert 1 <= done < 6
    # the next workload, with no cap, runs to the end
    plain = board.wait_terminal(board.submit(make_workload(tmp_path / "short.gz")), 60)
    assert plain.WorkStatus == "DONE"


@pytest.mark.parametrize("answer, cap", [
    ({"WorkId": "w"}, None), ({"MaxSeconds": 30}, 30.0), ({"MaxSeconds": 2.5}, 2.5),
    ({"MaxSeconds": 0}, None), ({"MaxSeconds": -1}, None), ({"MaxSeconds": "30"}, None),
    ({"MaxSeconds": True}, None), ({"MaxSeconds": float("inf")}, None),
])
def test_the_downloader_takes_only_a_positive_max_seconds(answer, cap):
    assert max_seconds(answer) == cap
