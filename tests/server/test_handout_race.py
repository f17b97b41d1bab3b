"""The race test: many polls of one device in flight at once, work arriving while they
wait; every workload is handed out exactly once (one atomic claim per hand-out).

A poll that arrives after a hand-out is a repeat poll and is handed the device's running
work back, as on the stock service (a restarted device resumes it); so each round parks all
its polls (seen in ``/metrics``) before its work becomes READY, and the work is finished
before the next round."""
from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.helpers import wait_for
from tests.server.api import Api, World, put_file, status
from tests.server.conftest import DATABASES

POLLS = 16     # concurrent polls of one device
ROUNDS = 3
UPLOADERS = 4  # threads uploading the round's workload files at once


def _parked_polls(service) -> int:
    text = requests.get(service.root + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('qick_queue_long_polls{waiter="device"}'):
            return int(float(line.split()[-1]))
    raise AssertionError(f"no long-poll gauge in /metrics:\n{text}")


def test_concurrent_polls_of_one_device_never_share_work(world: World):
    device = world.device()
    user, _ = world.user()
    handed: Counter = Counter()
    everything: list[str] = []
    apis = [Api(device.api.base, device.api.token) for _ in range(POLLS)]  # a socket each

    def poll(api: Api) -> dict | list:
        resp = api.get(f"/devices/{device.id}/workload", params={"WaitSeconds": 20})
        assert resp.status_code == 200, resp.text
        return resp.json()

    for _ in range(ROUNDS):
        created = [user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"})
                   .json() for _ in range(POLLS)]
        everything += [c["WorkId"] for c in created]
        with ThreadPoolExecutor(POLLS + UPLOADERS) as pool:
            polls = [pool.submit(poll, api) for api in apis]
            wait_for(lambda: _parked_polls(world.service) >= POLLS, 20,
                     what=f"{POLLS} polls waiting")
            start = threading.Barrier(UPLOADERS)

            def upload(part: list[dict]) -> None:
                start.wait(10)
                for c in part:
                    assert put_file(c["UploadUrl"], c["WorkId"].encode()).status_code == 200

            uploads = [pool.submit(upload, created[i::UPLOADERS]) for i in range(UPLOADERS)]
            for u in uploads:
                u.result(60)
            answers = [p.result(60) for p in polls]
        got = [a["WorkId"] for a in answers if a]
        assert len(got) == POLLS, f"a poll was left without work while work waited: {answers}"
        handed.update(got)
        for work_id in got:  # finished, so the next round's polls have nothing running
            url = device.report(work_id).json()["UploadUrl"]
            assert put_file(url, b"results").status_code == 200

    assert sorted(handed) == sorted(everything), "not every workload was handed out"
    twice = {w: n for w, n in handed.items() if n != 1}
    assert not twice, f"handed out more than once: {twice}"
    for work_id in everything:
        body = status(user, work_id)
        assert body["WorkStatus"] == "DONE" and body["Attempts"] == 1, body


@pytest.fixture(params=DATABASES)
def database_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """What ``Database`` opens on each engine: a SQLite file, a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "queue.db"
    return request.getfixturevalue("postgres_url")


def test_claims_of_polls_in_flight_together_never_share_work(database_target):
    """The store's claim, under real threads on a real SQLite store, and on a real
    PostgreSQL database through two stores with their own connection pools (two replicas):
    16 polls that arrived together (one ``sequence_mark``) against 40 READY workloads, round
    after round, alternating between the replicas, each round's polls naming the work
    handed out before in ``Holding`` (as a board does): every workload is handed out exactly
    once, one attempt each, and polls beyond the work get nothing (a poll never comes back
    empty while work it may take waits)."""
    import time
    import uuid
    from queueservice.db import Database
    from queueservice.settings import ServiceLimits
    from queueservice.workloads import WorkloadStore

    db = Database(database_target)
    store = WorkloadStore(db, ServiceLimits())
    replicas = [store] if isinstance(database_target, Path) else [
        store, WorkloadStore(Database(database_target), ServiceLimits())]
    device_id, now = str(uuid.uuid4()), int(time.time() * 1000)
    with db.transaction() as conn:
        conn.execute("INSERT INTO devices (device_id, name, client_id, secret_hash, "
                     "created_at) VALUES (?, 'race', ?, 'x', ?)", (device_id, device_id, now))
    everything = [str(uuid.uuid4()) for _ in range(40)]
    store.bulk_insert({"work_id": w, "device_id": device_id, "account_id": "a",
                       "priority": "MEDIUM", "status": "READY", "created_at": now + i,
                       "ready_at": now + i, "has_workload": 1}
                      for i, w in enumerate(everything))
    handed: Counter = Counter()
    nothing = 0
    while len(handed) < len(everything):
        asked = store.sequence_mark()  # the round's polls arrive together
        holding = frozenset(handed)
        start = threading.Barrier(POLLS)

        def claim(i: int) -> str | None:
            start.wait(10)
            row, _ended = replicas[i % len(replicas)].claim(device_id, asked, holding)
            return row["work_id"] if row else None

        with ThreadPoolExecutor(POLLS) as pool:
            got = list(pool.map(claim, range(POLLS)))
        handed.update(w for w in got if w)
        nothing += got.count(None)
        assert got.count(None) == max(0, POLLS - (len(everything) - len(holding))), got
    for replica in replicas:
        replica.db.close()
    assert sorted(handed) == sorted(everything)
    assert set(handed.values()) == {1}, {w: n for w, n in handed.items() if n != 1}
    assert nothing == 3 * POLLS - len(everything)  # the last round: 8 polls, no work
    db = Database(database_target)
    with db.reading() as conn:
        rows = conn.execute("SELECT status, attempts FROM workloads").fetchall()
    db.close()
    assert {(r["status"], r["attempts"]) for r in rows} == {("EXECUTING", 1)}
