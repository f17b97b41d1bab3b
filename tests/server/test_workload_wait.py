"""Users' long poll on a workload: ``GET /workloads/{id}?WaitSeconds=N&Seen=<ChangeToken>``
answers as soon as the workload changes (hand-out, progress, outcome, cancel), not at the
next poll; on a stock-protocol service the feature is hidden."""
from __future__ import annotations

import threading
from typing import Any

import requests

from tests.helpers import wait_for
from tests.server.api import Api, World, assert_error, long_polls, put_file, status, submit
from tests.server.test_progress import health

#: the longest wait the service grants: a poll answered well before it was woken
LONGEST = 20
#: how long a test waits for an answer that a change should bring at once: under LONGEST,
#: so an answer within it cannot be the poll's own timeout (it fails only on a real hang)
WOKEN_WITHIN = 12


class Waiter(threading.Thread):
    """A user's long poll in the background (``WaitSeconds`` = the longest)."""

    def __init__(self, user: Api, work_id: str, seen: str, wait: float = LONGEST):
        super().__init__(daemon=True)
        self.user, self.work_id, self.seen, self.wait = user, work_id, seen, wait
        self.body: dict[str, Any] | None = None
        self.start()

    def run(self) -> None:
        resp = self.user.get(f"/workloads/{self.work_id}",
                             params={"WaitSeconds": self.wait, "Seen": self.seen})
        assert resp.status_code == 200, resp.text
        self.body = resp.json()

    def result(self, within: float = WOKEN_WITHIN) -> dict[str, Any]:
        """The answer, which must come ``within`` seconds: woken, not timed out."""
        self.join(within)
        assert self.body is not None, "the long poll was not woken by the change"
        return self.body

    def assert_still_waiting(self, world: World, user: Api) -> None:
        """The poll is held: the service counts it among its long polls."""
        wait_for(lambda: long_polls(world.service, "workload") >= 1, 10,
                 what="the service to hold the poll")
        assert self.is_alive(), self.body


def test_waiting_user_learns_of_hand_out_progress_and_outcome_at_once(world: World):
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    token = status(user, work_id)["ChangeToken"]

    waiter = Waiter(user, work_id, token)
    waiter.assert_still_waiting(world, user)
    assert device.next_work().json()["WorkId"] == work_id
    body = waiter.result()
    assert body["WorkStatus"] == "EXECUTING" and body["ChangeToken"] != token

    waiter = Waiter(user, work_id, body["ChangeToken"])
    waiter.assert_still_waiting(world, user)
    device.heartbeat("BUSY", Health=health(work_id, 7, 20))
    body = waiter.result()
    assert body["Progress"] == {"ProgramsDone": 7, "ProgramsTotal": 20}

    # the same progress again changes nothing the user watches: the poll stays held
    waiter = Waiter(user, work_id, body["ChangeToken"])
    waiter.assert_still_waiting(world, user)
    device.heartbeat("BUSY", Health=health(work_id, 7, 20))
    waiter.assert_still_waiting(world, user)
    url = device.report(work_id).json()["UploadUrl"]
    assert waiter.result()["WorkStatus"] == "UPLOADING"

    waiter = Waiter(user, work_id, status(user, work_id)["ChangeToken"])
    waiter.assert_still_waiting(world, user)
    assert put_file(url, b"results").status_code == 200
    body = waiter.result()
    assert body["WorkStatus"] == "DONE" and body["WorkloadResultUrl"]


def test_a_failure_and_a_cancel_end_the_wait(world: World):
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    device.next_work()
    waiter = Waiter(user, work_id, status(user, work_id)["ChangeToken"])
    waiter.assert_still_waiting(world, user)
    device.report(work_id, {"Outcome": "FAILED", "ErrorMessage": "qubit fled",
                            "ErrorKind": "device_error"})
    body = waiter.result()
    assert body["WorkStatus"] == "FAILED" and body["ErrorMessage"] == "qubit fled"

    queued = submit(user, device.id)
    waiter = Waiter(user, queued, status(user, queued)["ChangeToken"])
    waiter.assert_still_waiting(world, user)
    assert user.post(f"/workloads/{queued}/cancel").status_code == 200
    assert waiter.result()["WorkStatus"] == "CANCELLED"


def test_queue_position_change_ends_the_wait_of_the_work_behind(world: World):
    device = world.device()
    user, _ = world.user()
    first, second = submit(user, device.id), submit(user, device.id)
    before = status(user, second)
    assert before["QueuePosition"] == 2
    waiter = Waiter(user, second, before["ChangeToken"])
    waiter.assert_still_waiting(world, user)
    assert user.post(f"/workloads/{first}/cancel").status_code == 200
    assert waiter.result()["QueuePosition"] == 1


def test_answers_at_once_when_changed_finished_or_without_seen(world: World):
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    path = f"/workloads/{work_id}"
    # each request's own timeout is under its WaitSeconds: a held poll fails it
    for params in ({"WaitSeconds": LONGEST, "Seen": "0123456789abcdef"},  # an older token
                   {"WaitSeconds": LONGEST}):                            # no token yet
        assert user.get(path, params=params, timeout=WOKEN_WITHIN).status_code == 200
    assert user.post(f"/workloads/{work_id}/cancel").status_code == 200
    done = status(user, work_id)
    body = user.get(path, params={"WaitSeconds": LONGEST, "Seen": done["ChangeToken"]},
                    timeout=WOKEN_WITHIN).json()
    assert body["WorkStatus"] == "CANCELLED"


def test_no_change_holds_for_wait_seconds_and_answers_the_same_token(world: World):
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    token = status(user, work_id)["ChangeToken"]
    waiter = Waiter(user, work_id, token, wait=1)
    waiter.assert_still_waiting(world, user)  # held, not answered at once
    body = waiter.result()  # and answered at its end
    assert body["ChangeToken"] == token and body["WorkStatus"] == "READY"


def test_only_the_owner_or_an_admin_may_wait(world: World):
    device = world.device()
    owner, _ = world.user()
    stranger, _ = world.user()
    work_id = submit(owner, device.id)
    token = status(owner, work_id)["ChangeToken"]
    params = {"WaitSeconds": LONGEST, "Seen": token}
    # refused before any wait (a held request would fail its shorter timeout)
    assert_error(stranger.get(f"/workloads/{work_id}", params=params, timeout=WOKEN_WITHIN),
                 404, "not_found")
    assert_error(device.api.get(f"/workloads/{work_id}", params=params,
                                timeout=WOKEN_WITHIN), 403)
    admin_waiter = Waiter(world.admin, work_id, token)
    admin_waiter.assert_still_waiting(world, owner)
    device.next_work()
    assert admin_waiter.result()["WorkStatus"] == "EXECUTING"


def test_bad_wait_parameters_are_400(world: World):
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    for params in ({"WaitSeconds": "soon", "Seen": "ab"}, {"WaitSeconds": 21, "Seen": "ab"},
                   {"WaitSeconds": -1, "Seen": "ab"}, {"WaitSeconds": 1, "Seen": "x" * 65},
                   {"WaitSeconds": 1, "Seen": "../etc"}):
        assert_error(user.get(f"/workloads/{work_id}", params=params), 400, "bad_request")


def test_capabilities_offer_workload_wait(world: World):
    features = requests.get(world.service.url + "/capabilities", timeout=10).json()["Features"]
    assert "workload-wait" in features


def test_stock_protocol_hides_the_wait(queue_service_factory, database_options):
    world = World(queue_service_factory(stock_protocol=True, **database_options))
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    assert requests.get(world.service.url + "/capabilities", timeout=10).status_code == 403
    body = status(user, work_id)
    assert "ChangeToken" not in body
    resp = user.get(f"/workloads/{work_id}", params={"WaitSeconds": LONGEST, "Seen": "abc"},
                    timeout=WOKEN_WITHIN)  # answered at once: the wait is ignored
    assert resp.status_code == 200
