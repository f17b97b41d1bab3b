"""``UserClient.wait_until_done`` on the workload long poll (feature ``workload-wait``):
against the real service it learns of progress and of the outcome at once; against a
stock-protocol service it still polls to the end; the requests it sends are as documented."""
from __future__ import annotations

import threading
import time

from cloudqueue.auth import ApiKeyAuth
from cloudqueue.client import QueueClient
from cloudqueue.models import Workload
from tests.helpers import wait_for
from tests.server.api import World, put_file, submit
from tests.server.test_progress import health
from userclient.client import UserClient

from .fakes import FakeServer, Reply
from .test_userclient import OURS, Clock, user_for


class Waiting(threading.Thread):
    """``wait_until_done`` in the background, recording when each answer arrived."""

    def __init__(self, service, api_key: str, work_id: str, **kwargs):
        super().__init__(daemon=True)
        self.user = UserClient(client=QueueClient(service.url, ApiKeyAuth(api_key), timeout=10))
        self.work_id, self.kwargs = work_id, kwargs
        self.seen: list[tuple[float, Workload]] = []
        self.result: Workload | None = None
        self.returned_at = 0.0
        self.start()

    def run(self) -> None:
        self.result = self.user.wait_until_done(
            self.work_id, on_progress=lambda w: self.seen.append((time.monotonic(), w)),
            **self.kwargs)
        self.returned_at = time.monotonic()

    def first(self, predicate) -> float | None:
        return next((t for t, w in self.seen if predicate(w)), None)


def _run_to_the_end(queue_service, quiet: float = 2.5, **wait_kwargs):
    world = World(queue_service)
    device = world.device()
    user, _ = world.user()
    work_id = submit(user, device.id)
    waiting = Waiting(queue_service, user.token, work_id, **wait_kwargs)
    wait_for(lambda: waiting.seen, 10, what="the first answer")
    handed = time.monotonic()
    assert device.next_work().json()["WorkId"] == work_id
    wait_for(lambda: waiting.first(lambda w: w.WorkStatus == "EXECUTING"), 15,
             what="EXECUTING")
    beat = time.monotonic()
    device.heartbeat("BUSY", Health=health(work_id, 3, 4))
    wait_for(lambda: waiting.first(lambda w: w.programs == (3, 4)), 15, what="progress 3/4")
    url = device.report(work_id).json()["UploadUrl"]
    wait_for(lambda: waiting.first(lambda w: w.WorkStatus == "UPLOADING"), 15, what="UPLOADING")
    # the waiter has gone quiet (a poller would now be between polls, seconds apart)
    wait_for(lambda: time.monotonic() - waiting.seen[-1][0] > quiet, quiet + 5,
             what="a quiet waiter")
    finished = time.monotonic()
    assert put_file(url, b"results").status_code == 200
    waiting.join(30)
    assert waiting.result is not None and waiting.result.WorkStatus == "DONE"
    return (waiting.first(lambda w: w.WorkStatus == "EXECUTING") - handed,
            waiting.first(lambda w: w.programs == (3, 4)) - beat,
            waiting.returned_at - finished)


def test_wait_learns_of_hand_out_progress_and_outcome_within_a_second(queue_service):
    handed, progressed, finished = _run_to_the_end(queue_service)
    assert handed < 1.0 and progressed < 1.0 and finished < 1.0


def test_wait_still_works_on_a_stock_protocol_service(queue_service_factory):
    service = queue_service_factory(stock_protocol=True)
    assert not QueueClient(service.url).supports("workload-wait")
    # polling: answers come at the poll interval, and the wait still ends DONE
    _run_to_the_end(service, quiet=0.1, interval=0.2)


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
