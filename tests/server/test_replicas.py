"""Two replicas of one service on one PostgreSQL database (a real server: tests/pgserver.py)
and one S3 bucket (moto's server), each a real ``qick-queue serve`` process with its own
data folder holding the shared signing secret: work submitted through one is handed out
through the other, a long poll parked on one wakes when work arrives through the other,
the mock devices run on one replica and move when it is killed, and a replica killed
with SIGKILL under traffic loses nothing and hands nothing out twice."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.conftest import QueueService
from tests.helpers import wait_for
from tests.server.api import Api, World, long_polls, put_file, status, submit

#: far beyond the test's own deadline for a wake-up: only a wake-up answers in time
PARKED_SECONDS = 20
WOKEN_WITHIN = 12


def add_replica(first: Path, folder: Path) -> Path:
    """A replica's data folder: the first one's secret and admin.conf (0600), no queue.db."""
    folder.mkdir(mode=0o700)
    for name in ("secret", "admin.conf"):
        shutil.copy2(first / name, folder / name)
    return folder


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str, s3) -> Iterator[list[QueueService]]:
    first = tmp_path / "a"
    done = subprocess.run([sys.executable, "-m", "queueservice.cli", "init", "--data",
                           str(first), "--port", "0", "--database", postgres_url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    options = {"database": postgres_url, "files": f"s3://{s3.new_bucket()}/queue",
               "env": s3.env}
    services = [QueueService(first, **options).start(),
                QueueService(add_replica(first, tmp_path / "b"), **options).start()]
    yield services
    for service in services:
        service.stop()


def test_a_replica_with_another_secret_is_refused_with_what_to_do(replicas, tmp_path):
    """A token one replica signs must hold on every other: a replica whose secret differs
    from the first one's does not start, and says which file to copy."""
    odd = add_replica(replicas[0].data_dir, tmp_path / "odd")
    (odd / "secret").write_text("ab" * 32 + "\n")
    done = subprocess.run([sys.executable, "-m", "queueservice.cli", "serve", "--data",
                           str(odd), "--port", "0", "--database",
                           replicas[0].options["database"]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "is not the secret the other replicas of this database use" in done.stderr
    assert "Traceback" not in done.stderr


def on(replica: QueueService, api: Api) -> Api:
    """The same caller, sending to another replica."""
    return Api(replica.url, api.token)


def test_work_submitted_through_one_replica_is_handed_out_through_the_other(replicas):
    a, b = replicas
    world = World(a)
    user, _ = world.user()
    device = world.device()
    work = submit(user, device.id, b"workload")
    handed = on(b, device.api).get(f"/devices/{device.id}/workload")
    assert handed.status_code == 200 and handed.json()["WorkId"] == work
    assert requests.get(handed.json()["WorkloadUrl"], timeout=30).content == b"workload"
    assert status(on(b, user), work)["WorkStatus"] == "EXECUTING"
    assert status(user, work)["WorkStatus"] == "EXECUTING"


def test_a_long_poll_on_one_replica_wakes_when_work_arrives_through_another(replicas):
    """The device waits on B; the workload's file arrives through A. Without a notice from
    A the poll would sit out its WaitSeconds; it answers with the work long before."""
    a, b = replicas
    world = World(a)
    user, _ = world.user()
    device = world.device()
    answer: dict = {}
    poll = threading.Thread(target=lambda: answer.update(
        on(b, device.api).get(f"/devices/{device.id}/workload",
                              params={"WaitSeconds": PARKED_SECONDS}).json()))
    poll.start()
    wait_for(lambda: long_polls(b, "device") == 1, 20, what="the device's poll parked on B")
    work = submit(user, device.id)
    poll.join(WOKEN_WITHIN)
    assert not poll.is_alive(), "the poll on B was not woken by work arriving through A"
    assert answer.get("WorkId") == work


def test_a_users_wait_on_one_replica_ends_when_the_outcome_arrives_through_another(replicas):
    a, b = replicas
    world = World(a)
    user, _ = world.user()
    device = world.device()
    work = submit(user, device.id)
    assert device.next_work().json()["WorkId"] == work
    token = status(user, work)["ChangeToken"]
    answer: dict = {}
    waiter = threading.Thread(target=lambda: answer.update(on(b, user).get(
        f"/workloads/{work}", params={"WaitSeconds": PARKED_SECONDS, "Seen": token}).json()))
    waiter.start()
    wait_for(lambda: long_polls(b, "workload") == 1, 20, what="the user's wait parked on B")
    assert put_file(device.report(work).json()["UploadUrl"], b"results").status_code == 200
    waiter.join(WOKEN_WITHIN)
    assert not waiter.is_alive(), "the wait on B was not woken by the outcome through A"
    assert answer["WorkStatus"] in ("UPLOADING", "DONE")  # the first change ends the wait


def test_two_first_uploads_of_one_workload_through_two_replicas_keep_one(replicas):
    """A workload file is written once: two different files PUT at the same moment, one
    through each replica, give one 200 and one 409, and the file handed out is the 200's."""
    a, b = replicas
    world = World(a)
    user, _ = world.user()
    device = world.device()
    for _ in range(4):
        made = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"}).json()
        url_b = made["UploadUrl"].replace(a.root, b.root)
        start = threading.Barrier(2)

        def put(url: str, data: bytes) -> tuple[int, bytes]:
            start.wait(10)
            return put_file(url, data).status_code, data

        with ThreadPoolExecutor(2) as pool:
            answers = sorted(pool.map(put, [made["UploadUrl"], url_b], [b"one", b"two"]))
        assert [code for code, _ in answers] == [200, 409], answers
        handed = device.next_work().json()
        assert handed["WorkId"] == made["WorkId"]
        assert requests.get(handed["WorkloadUrl"], timeout=30).content == answers[0][1]
        device.report(made["WorkId"], {"Outcome": "FAILED", "ErrorMessage": "test",
                                       "ErrorKind": "device_error"})


def test_readyz_and_healthz_on_each_replica(replicas):
    for replica in replicas:
        ready = requests.get(replica.root + "/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json() == {"ok": True, "detail": "ready"}
        assert requests.get(replica.root + "/healthz", timeout=10).status_code == 200


def test_a_replica_killed_under_traffic_loses_nothing_and_hands_nothing_out_twice(replicas):
    """Submits and uploads through both replicas for two devices, each device's polls
    (long polls, one at a time, as a board makes them, naming what it holds) alternating
    between the replicas; SIGKILL to A in the middle. Every submit answered 201 is there
    and runs, no workload is handed out twice, and a poll that was parked on A is answered
    by B when the device asks again."""
    a, b = replicas
    world = World(a)
    user, _ = world.user()
    devices = [world.device(), world.device()]
    accepted: list[str] = []
    handed: Counter = Counter()
    stop = threading.Event()
    lock = threading.Lock()
    submitted = threading.Event()  # every submitter has stopped
    drained_by = [float("inf")]  # when the pollers give up draining (a bound, not an order)

    def submitter(replica: QueueService) -> None:
        api, n = on(replica, user), 0
        while not stop.is_set():
            n += 1
            try:
                made = api.post("/workloads", json={"DeviceId": devices[n % 2].id,
                                                    "Priority": "LOW"}, timeout=10)
                if made.status_code != 201:
                    continue
                body = made.json()
                if put_file(body["UploadUrl"], body["WorkId"].encode()).status_code == 200:
                    with lock:
                        accepted.append(body["WorkId"])
            except requests.RequestException:  # A is gone: the client goes to B
                api = on(b, user)

    def poller(device) -> None:
        apis = [on(a, device.api), on(b, device.api)]
        mine: list[str] = []
        n = 0
        # on after the last submit was answered (``submitted``: a submit in flight when the
        # traffic stops is accepted after it), until every accepted workload was handed
        # out (some not in ``accepted`` may be too: a submit whose answer died with A)
        while not submitted.is_set() or (not set(accepted) <= set(handed)
                                         and time.monotonic() < drained_by[0]):
            n += 1
            api = apis[n % len(apis)]
            try:
                got = api.get(f"/devices/{device.id}/workload",
                              params={"WaitSeconds": 2, "Holding": ",".join(mine)},
                              timeout=10)
            except requests.RequestException:
                apis = [on(b, device.api)]  # asked again, of the replica that answers
                continue
            body = got.json() if got.status_code == 200 else None
            if not body:
                continue
            with lock:
                handed[body["WorkId"]] += 1
            mine.append(body["WorkId"])
            while True:  # the outcome, sent again (to B if A dies meanwhile) until taken
                try:
                    sent = apis[n % len(apis)].put(
                        f"/devices/{device.id}/workloads/{body['WorkId']}",
                        json={"Outcome": "FAILED", "ErrorMessage": "test",
                              "ErrorKind": "device_error"}, timeout=10)
                    if sent.status_code in (200, 409):  # 409: taken before the answer died
                        break
                except requests.RequestException:
                    apis = [on(b, device.api)]

    with ThreadPoolExecutor(6) as pool:
        jobs = [pool.submit(submitter, r) for r in (a, b, a)]
        jobs += [pool.submit(poller, d) for d in devices]
        wait_for(lambda: len(accepted) >= 15, 60, what="traffic through both replicas")
        a.kill()
        count_at_kill = len(accepted)
        handed_at_kill = len(handed)
        wait_for(lambda: len(accepted) >= count_at_kill + 10, 60,
                 what="traffic going on through B")
        wait_for(lambda: len(handed) > handed_at_kill, 60, what="polls answered by B")
        stop.set()
        for job in jobs[:3]:  # the submitters
            job.result(90)
        drained_by[0] = time.monotonic() + 60
        submitted.set()
        for job in jobs[3:]:  # the pollers
            job.result(90)

    user_on_b = on(b, user)
    assert {w: status(user_on_b, w)["WorkStatus"] for w in accepted} == {
        w: "FAILED" for w in accepted}, "accepted work missing or not run"
    twice = {w: n for w, n in handed.items() if n != 1}
    assert not twice, f"handed out more than once: {twice}"


def test_mock_devices_run_on_one_replica_and_move_when_it_dies(replicas, tmp_path):
    """A mock device's board daemon runs under exactly one replica; SIGKILL to that one
    and the other starts it, and work runs on it to the end."""
    from tests.mock.test_mock_device import daemon_pids, ready, sweep_workload, user_client

    a, b = replicas
    world = World(a)
    made = world.admin.post("/devices", json={"DeviceName": "mock-q",
                                              "Mock": {"Board": "zcu216-v2"}})
    assert made.status_code == 201, made.text
    device_id = made.json()["DeviceId"]
    ready(world.admin, device_id)
    runners = {r.data_dir.name: daemon_pids(r, device_id) for r in replicas}
    assert sorted(len(pids) for pids in runners.values()) == [0, 1], runners
    leader, other = (a, b) if runners[a.data_dir.name] else (b, a)
    orphan = runners[leader.data_dir.name][0]
    try:
        leader.kill()
        wait_for(lambda: daemon_pids(other, device_id), 60,
                 what="the other replica taking the mock device over")
        world = World(other)
        uc = user_client(other, world)
        wm, path = sweep_workload(uc.get_soccfg(device_id), tmp_path)
        work = uc.wait_until_done(uc.create_work(path, device_id), timeout=60, interval=0.2)
        assert work.WorkStatus == "DONE", work.ErrorMessage
    finally:  # the killed replica's daemon (its own session) outlives it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(orphan, signal.SIGKILL)


def test_the_database_away_for_a_while_gives_503s_not_500s_and_loses_nothing(
        replicas, postgres_server):
    """PostgreSQL stops at once under traffic through both replicas, then comes back. Until
    it does, requests answer 503 ``database_unavailable`` (never 500), each replica's
    /readyz is 503 with the reason while /healthz stays 200; then both recover by
    themselves. Every submit retried with its Idempotency-Key until it was accepted made
    exactly one workload, and every file accepted is there."""
    a, b = replicas
    world = World(a)
    user, _ = world.user()
    device = world.device()
    answers: Counter = Counter()
    accepted: dict[str, str] = {}  # Idempotency-Key -> WorkId
    stop = threading.Event()

    def until_accepted(send) -> requests.Response:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                resp = send()
            except requests.RequestException:
                continue
            answers[resp.status_code] += 1
            if resp.status_code == 503:
                assert resp.json()["ErrorKind"] == "database_unavailable", resp.text
                assert resp.headers["Retry-After"] == "2"
                stop.wait(0.05)  # a client's pause before it retries
                continue
            return resp
        raise AssertionError("only 503s or dropped connections for 120 s")

    def submitter(replica: QueueService) -> None:
        api = on(replica, user)
        while not stop.is_set():
            key = uuid.uuid4().hex
            made = until_accepted(lambda: api.post(
                "/workloads", json={"DeviceId": device.id, "Priority": "LOW"},
                headers={"Idempotency-Key": key}, timeout=10))
            assert made.status_code == 201, made.text
            url = made.json()["UploadUrl"]
            assert until_accepted(lambda: put_file(url, key.encode())).status_code == 200
            accepted[key] = made.json()["WorkId"]

    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(submitter, r) for r in replicas]
        try:
            wait_for(lambda: len(accepted) >= 6, 60, what="traffic before the outage")
            postgres_server.crash()
            try:
                wait_for(lambda: answers[503] >= 4, 60, what="503s while the database is away")
                for replica in replicas:
                    ready = requests.get(replica.root + "/readyz", timeout=30)
                    assert ready.status_code == 503 and "database" in ready.json()["detail"]
                    assert requests.get(replica.root + "/healthz",
                                        timeout=10).status_code == 200
            finally:
                postgres_server.resume()
            for replica in replicas:
                wait_for(lambda: requests.get(replica.root + "/readyz", timeout=30)
                         .status_code == 200, 60, what="the replica ready again by itself")
            count = len(accepted)
            wait_for(lambda: len(accepted) >= count + 6, 60, what="traffic after the outage")
        finally:  # the submitters end (a failure above must not leave them retrying)
            stop.set()
        for job in jobs:
            job.result(150)

    assert set(answers) <= {200, 201, 503}, answers
    assert len(set(accepted.values())) == len(accepted)
    listed = [status(user, w) for w in accepted.values()]
    assert {w["WorkStatus"] for w in listed} == {"READY"}, "an accepted workload is missing"
    assert all_workloads(user, device.id) == set(accepted.values()), \
        "a retried submit made a second workload"


def all_workloads(user: Api, device_id: str) -> set[str]:
    """Every WorkId of the user's on the device (``GET /workloads``, page by page)."""
    found: list[str] = []
    params: dict = {"DeviceId": device_id, "Limit": 100}
    while True:
        page = user.get("/workloads", params=params).json()
        found += [item["WorkId"] for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            assert len(found) == len(set(found))
            return set(found)
        params["ExclusiveStartKeyJson"] = json.dumps(page["LastEvaluatedKey"])
