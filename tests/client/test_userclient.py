"""UserClient behaviour that needs precise control of the answers: waiting, submitting
with a checksum and an idempotency key, results of unfinished work."""
from __future__ import annotations

import hashlib
import json

import pytest

from cloudqueue.auth import ApiKeyAuth
from cloudqueue.client import QueueClient
from cloudqueue.errors import Conflict, NotFound
from qickbase.backoff import Backoff
from userclient.client import UserClient
from userclient.errors import WaitTimeout

from .fakes import FakeServer, Reply

OURS = {"Service": "qick-queue", "Version": "0.1",
        "Features": ["cancel", "sha256", "idempotency", "long-poll", "page-limit"]}


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self):
        return self.now


def user_for(srv, clock):
    client = QueueClient(srv.url, ApiKeyAuth("qk_t"), sleep=clock.sleep,
                         backoff=Backoff(base=0.01, cap=0.02), tries=3)
    return UserClient(client=client, sleep=clock.sleep, clock=clock)


def test_wait_reports_progress_rides_out_an_outage_and_returns_the_final_state():
    statuses = iter(["READY", "READY", "503", "503", "503", "EXECUTING", "DONE"])

    def handler(seen):
        if seen.path == "/capabilities":
            return Reply(200, OURS)
        status = next(statuses)
        if status == "503":
            return Reply(503, {"ErrorMessage": "restarting"})
        return Reply(200, {"WorkId": "w1", "WorkStatus": status, "QueuePosition": 1})

    clock = Clock()
    seen = []
    with FakeServer(handler) as srv:
        work = user_for(srv, clock).wait_until_done("w1", interval=4,
                                                    on_progress=lambda w: seen.append(w.WorkStatus))
    assert work.WorkStatus == "DONE"
    assert seen == ["READY", "READY", "EXECUTING", "DONE"]
    assert max(clock.sleeps) <= 4  # never longer than the poll interval


def test_wait_never_gives_up_without_a_timeout_and_raises_with_one():
    polls = []
    done_at = [40]  # the poll that answers DONE

    def handler(seen):
        polls.append(1)
        return Reply(200, {"WorkId": "w1",
                           "WorkStatus": "READY" if len(polls) < done_at[0] else "DONE"})

    clock = Clock()
    with FakeServer(handler) as srv:
        assert user_for(srv, clock).wait_until_done("w1", interval=10).WorkStatus == "DONE"
        # waited on, with a growing pause: the 39 pauses are at least the lower halves of
        # 0.5, 1, 2, 4, 8 and then 10 s (equal jitter), 177.75 s in all
        assert len(polls) == 40 and clock.now >= 177.75
        polls.clear()
        done_at[0] = 10**6  # READY for good now
        clock2 = Clock()
        with pytest.raises(WaitTimeout, match="still READY after 30 s"):
            user_for(srv, clock2).wait_until_done("w1", timeout=30)
        assert 29.9 < clock2.now <= 30.0001


def test_submit_announces_sha256_and_retries_with_the_same_idempotency_key(tmp_path):
    posts = []

    def handler(seen):
        if seen.path == "/capabilities":
            return Reply(200, OURS)
        if seen.method == "POST":
            posts.append(seen)
            if len(posts) == 1:
                return Reply(503, {"ErrorMessage": "busy"})
            return Reply(201, {"WorkId": "w9", "UploadUrl": f"{root[0]}/files/workloads/w9"})
        return Reply(200)

    root = [None]
    path = tmp_path / "w.gz"
    path.write_bytes(b"workload bytes")
    with FakeServer(handler) as srv:
        root[0] = srv.url
        assert user_for(srv, Clock()).create_work(path, "dev1", "HIGH", name="t1") == "w9"
        upload = srv.seen[-1]
    assert len(posts) == 2
    keys = {p.headers["idempotency-key"] for p in posts}
    assert len(keys) == 1
    body = json.loads(posts[1].body)
    assert body["ContentSHA256"] == hashlib.sha256(b"workload bytes").hexdigest()
    assert body["WorkloadName"] == "t1" and body["Priority"] == "HIGH"
    assert "UserGivenName" not in body  # the submitter's name: the service knows it
    assert upload.method == "PUT" and upload.body == b"workload bytes"


def test_results_of_unfinished_work_say_to_wait(tmp_path):
    with FakeServer(lambda seen: Reply(200, {"WorkId": "w1", "WorkStatus": "EXECUTING",
                                             "WorkloadResultUrl": "http://x/r"})) as srv:
        with pytest.raises(Conflict, match="not finished yet"):
            user_for(srv, Clock()).download_results("w1", tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_soccfg_before_the_board_uploaded_it_is_not_found():
    with FakeServer(lambda seen: Reply(200, {"DeviceId": "d1", "DeviceStatus": "OFFLINE",
                                             "LastRefreshed": 0})) as srv:
        with pytest.raises(NotFound, match="has not uploaded its configuration"):
            user_for(srv, Clock()).get_soccfg("d1")


def test_get_devices_is_the_services_json_as_it_came():
    """Regression: get_devices() went through the Device model, which dropped a new
    device's ``LastRefreshed: 0`` (the stock service's "never"); the original returns the
    JSON list as the service sent it."""
    devices = [{"DeviceId": "d1", "DeviceName": "new", "DeviceStatus": "OFFLINE",
                "LastRefreshed": 0, "RefreshTimeout": 60},
               {"DeviceId": "d2", "DeviceName": "old", "DeviceStatus": "ONLINE",
                "LastRefreshed": "2024-05-01T12:00:00.123Z", "RefreshTimeout": 60,
                "SomethingNew": [1, 2]}]

    def handler(seen):
        if seen.path == "/capabilities":
            return Reply(403, {"message": "Missing Authentication Token"})
        return Reply(200, devices)

    with FakeServer(handler) as srv:
        assert user_for(srv, Clock()).get_devices() == devices
