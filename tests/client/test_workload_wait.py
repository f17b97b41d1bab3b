"""``UserClient.wait_until_done`` on the workload long poll (feature ``workload-wait``):
against the real service it learns of progress and of the outcome at once (its request is
held by the service, seen in ``/metrics``, until the change wakes it); against a
stock-protocol service it still polls to the end; the requests it sends are as documented."""
from __future__ import annotations

import threading

from cloudqueue.auth import ApiKeyAuth
from cloudqueue.client import QueueClient
from cloudqueue.models import Workload
from tests.helpers import wait_for
from tests.server.api import World, long_polls, put_file, submit
from tests.server.test_progress import health
from userclient.client import UserClient

from .fakes import FakeServer, Reply
from .test_userclient import OURS, Clock, user_for


class Waiting(threading.Thread):
    """``wait_until_done`` in the background, recording each answer."""

    def __init__(self, service, api_key: str, work_id: str, **kwargs):
        super().__init__(daemon=True)
        self.user = UserClient(client=QueueClient(service.url, ApiKeyAuth(api_key), timeout=10))
        self.work_id, self.kwargs = work_id, kwargs
        self.seen: list[Workload] = []
        self.result: Workload | None = None
        self.start()

    def run(self) -> None:
        self.result = self.user.wait_until_done(self.work_id, on_progress=self.seen.append,
                                                **self.kwargs)

    def saw(self, predicate) -> bool:
        return any(predicate(w) for w in self.seen)


#: a change must reach a held request within this: well under the 20 s hold (and under the
#: 60 s poll interval the held case is given), so it fails only when nothing woke it
WOKEN_WITHIN = 12


def _run_to_the_end(service, held: bool, **wait_kwargs) -> Waiting:
    """Hand-out, progress, upload, outcome; with ``held``, each change is made only once
    the service holds the waiter's request, and must reach it within WOKEN_WITHIN."""
    world = World(service)
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    waiting = Waiting(service, user.token, work_id, **wait_kwargs)
    wait_for(lambda: waiting.seen, 10, what="the first answer")

    def parked() -> None:
        if held:
            wait_for(lambda: long_polls(service, "workload") == 1, 10,
                     what="the service to hold the waiter's request")

    parked()
    assert device.next_work().json()["WorkId"] == work_id
    wait_for(lambda: waiting.saw(lambda w: w.WorkStatus == "EXECUTING"), WOKEN_WITHIN,
             what="EXECUTING")
    parked()
    device.heartbeat("BUSY", Health=health(work_id, 3, 4))
    wait_for(lambda: waiting.saw(lambda w: w.programs == (3, 4)), WOKEN_WITHIN,
             what="progress 3/4")
    url = device.report(work_id).json()["UploadUrl"]
    wait_for(lambda: waiting.saw(lambda w: w.WorkStatus == "UPLOADING"), WOKEN_WITHIN,
             what="UPLOADING")
    parked()
    assert put_file(url, b"results").status_code == 200
    waiting.join(WOKEN_WITHIN)
    assert waiting.result is not None and waiting.result.WorkStatus == "DONE"
    return waiting


def test_wait_learns_of_hand_out_progress_and_outcome_at_once(queue_service):
    # each change is made while the service holds the request: it is what brings it
    _run_to_the_end(queue_service, held=True, interval=60)


def test_wait_still_works_on_a_stock_protocol_service(queue_service_factory):
    service = queue_service_factory(stock_protocol=True)
    assert not QueueClient(service.url).supports("workload-wait")
    # polling: answers come at the poll interval, and the wait still ends DONE
    _run_to_the_end(service, held=False, interval=0.2)


def test_requests_carry_wait_and_seen_only_when_offered_and_back_off_on_early_answers():
    asked = []

    def handler(seen):
        if seen.path == "/capabilities":
            return Reply(200, {**OURS, "Features": OURS["Features"] + ["workload-wait"]})
        asked.append(seen.query)
        # answers at once with an unchanged token, as a service shutting down does
        status = "DONE" if len(asked) >= 5 else "READY"
        return Reply(200, {"WorkId": "w1", "WorkStatus": status, "ChangeToken": "t1"})

    clock = Clock()
    with FakeServer(handler) as srv:
        assert user_for(srv, clock).wait_until_done("w1").WorkStatus == "DONE"
    assert asked[0] == {}
    assert all(q.get("Seen") == ["t1"] and float(q["WaitSeconds"][0]) == 20 for q in asked[1:])
    assert len(clock.sleeps) == 3  # early, unchanged answers are not re-asked at once

    asked.clear()

    def stock(seen):
        if seen.path == "/capabilities":
            return Reply(404, {"message": "Not Found"})
        asked.append(seen.query)
        return Reply(200, {"WorkId": "w1", "WorkStatus": "DONE" if len(asked) > 2 else "READY"})

    with FakeServer(stock) as srv:
        assert user_for(srv, Clock()).wait_until_done("w1").WorkStatus == "DONE"
    assert asked == [{}, {}, {}]
