"""The uploader's and downloader's mechanisms, directly (no processes, no bus): a fake
queue API and a mock transport at the network seam, a real spool on a temporary disk (with
a full disk faked at its seam)."""
from __future__ import annotations

import gzip
import time
from typing import Any, Dict, List, Tuple

import pytest

from boardcore.queuelink import Link
from boardcore.settings import BoardSettings
from boardcore.spool import RESULTS, WORKLOAD, Spool, WorkMeta
from cloudqueue.errors import ServiceUnavailable
from downloader.main import Downloader
from tests.board.fakequeue import FakeQueueClient, mock_session
from uploader.main import Uploader

pytestmark = pytest.mark.device310
DEVICE = "dev-1"


class FullDisk(Spool):
    """A spool whose disk is full (``full``) or whose moves to ``done/`` fail."""
    full = False
    failing_moves = 0

    def free_bytes(self) -> int:
        return 0 if self.full else super().free_bytes()

    def move(self, work_id: str, src: str, dst: str, meta=None):
        if dst == "done" and self.failing_moves:
            self.failing_moves -= 1
            raise OSError(28, "No space left on device")
        return super().move(work_id, src, dst, meta)


def posted(link: Link) -> List[Tuple[str, Dict[str, Any]]]:
    out = []
    while not link.outbox.empty():
        out.append(link.outbox.get_nowait())
    return out


@pytest.fixture
def spool(tmp_path):
    return FullDisk(tmp_path / "spool", min_free_bytes=1).ensure()


@pytest.fixture
def link(spool):
    made = Link("test", spool)
    yield made
    made.waker.close()


# --- the uploader --------------------------------------------------------------------------
def finished(spool: Spool, work_id: str, payload: bytes = b"results") -> None:
    folder = spool.path("outgoing", work_id)
    folder.mkdir(parents=True)
    (folder / RESULTS).write_bytes(payload)
    spool.write_meta("outgoing", WorkMeta(work_id, seconds=1.5).finish("DONE",
                                                                        has_results=True))


def uploader(link: Link, handler, **settings: Any) -> Tuple[Uploader, Any, Any]:
    session, transport = mock_session(handler)
    client = FakeQueueClient(session)
    values = {"retry_base_seconds": 30.0, "retry_max_seconds": 60.0, **settings}
    return Uploader(link, client, DEVICE, BoardSettings(**values)), client, transport


def test_nothing_moves_to_done_before_the_service_has_the_results(spool, link):
    where_during_put = []

    answers = [(403, b'{"message": "link expired"}'), (200, b"")]

    def handler(method, url, body):
        where_during_put.append((spool.find("w1"), body))
        return answers.pop(0)
    up, client, _ = uploader(link, handler)
    finished(spool, "w1")
    up.upload("w1")  # the store refuses the PUT: the work stays where it was
    assert spool.find("w1") == "outgoing" and posted(link) == []
    meta = spool.read_meta("outgoing", "w1")
    assert meta.upload_attempts == 1 and "link expired" in meta.upload_error
    up.upload("w1")
    assert where_during_put == [("outgoing", b"results"), ("outgoing", b"results")]
    assert spool.find("w1") == "done"
    assert posted(link) == [("uploaded", {"work_id": "w1", "outcome": "DONE"})]
    assert [name for name, _ in client.calls] == ["results_upload_url"] * 2


def test_a_transient_error_is_retried_after_a_backoff_and_others_go_on(spool, link):
    up, client, transport = uploader(link, lambda m, u, b: (200, b""))
    client.answers["results_upload_url"] = [ServiceUnavailable("the queue is restarting")]
    finished(spool, "w1")
    finished(spool, "w2")
    now = time.monotonic()
    up.upload("w1")
    up.upload("w2")  # one bad entry never stops the others
    assert spool.find("w1") == "outgoing" and spool.find("w2") == "done"
    assert not up.due("w1", now) and up.due("w2", now)
    assert up.due("w1", now + 60.0)  # retry_max_seconds bounds the wait
    assert spool.read_meta("outgoing", "w1").upload_error == "the queue is restarting"
    up.upload("w1")
    assert spool.find("w1") == "done" and len(transport.seen) == 2


def test_a_full_disk_after_the_service_has_it_keeps_it_for_a_retry(spool, link):
    up, _, _ = uploader(link, lambda m, u, b: (200, b""))
    finished(spool, "w1")
    spool.failing_moves = 1
    up.upload("w1")
    assert spool.find("w1") == "outgoing" and posted(link) == []
    assert "No space left" in spool.read_meta("outgoing", "w1").upload_error
    up.upload("w1")
    assert spool.find("w1") == "done" and posted(link)[0][0] == "uploaded"


# --- the downloader -----------------------------------------------------------------------
def downloader(link: Link, handler, **settings: Any) -> Tuple[Downloader, Any, Any]:
    session, transport = mock_session(handler)
    client = FakeQueueClient(session)
    d = Downloader(link, client, DEVICE, BoardSettings(**settings))
    d.want.set()
    return d, client, transport


def test_a_hand_out_is_fetched_into_incoming_then_ready(spool, link):
    workload = gzip.compress(b"[]")
    during = []

    def handler(method, url, body):
        during.append((spool.ids("incoming"), spool.ids("ready")))
        return 200, workload
    d, client, transport = downloader(link, handler)
    client.answers["get_work"] = [{"WorkId": "w1", "WorkloadUrl": "https://store.test/w1"}]
    assert d.ask_once() == 0.0
    assert during == [(["w1"], [])]  # streamed into incoming/, not yet ready
    assert spool.find("w1") == "ready"
    assert (spool.path("ready", "w1") / WORKLOAD).read_bytes() == workload
    assert spool.read_meta("ready", "w1").size == len(workload)
    assert posted(link)[-1] == ("work", {"work_id": "w1"})
    assert not d.want.is_set()  # the supervisor says when it wants more
    assert client.calls[0] == ("get_work", {"device_id": DEVICE, "holding": []})


def test_a_workload_over_the_limit_is_refused_without_filling_the_disk(spool, link):
    d, client, _ = downloader(link, lambda m, u, b: (200, b"x" * (2 * 2**20)),
                              max_workload_mb=1)
    client.answers["get_work"] = [{"WorkId": "big", "WorkloadUrl": "https://store.test/big"}]
    d.ask_once()
    assert spool.find("big") == "outgoing"
    meta = spool.read_meta("outgoing", "big")
    assert meta.outcome == "FAILED" and meta.error_kind == "too_large"
    assert "over this board's limit of 1 MB" in meta.error_message
    assert not (spool.path("outgoing", "big") / WORKLOAD).exists()
    assert posted(link)[-1] == ("work", {"work_id": "big"})


def test_a_refused_download_leaves_nothing_and_backs_off(spool, link):
    d, client, _ = downloader(link, lambda m, u, b: (403, b'{"message": "expired"}'))
    client.answers["get_work"] = [{"WorkId": "w1", "WorkloadUrl": "https://store.test/w1"}]
    assert d.ask_once() > 0
    assert spool.find("w1") is None and spool.ids("incoming") == []


def test_a_queue_that_cannot_be_reached_is_reported_and_backed_off(spool, link):
    d, client, transport = downloader(link, lambda m, u, b: (200, b""))
    client.answers["get_work"] = [ServiceUnavailable("cannot reach the queue")]
    assert d.ask_once() > 0
    kind, fields = posted(link)[-1]
    assert kind == "queue" and fields["ok"] is False
    assert fields["error"] == "cannot reach the queue" and transport.seen == []


def test_a_full_disk_takes_no_download(spool, link):
    d, client, transport = downloader(link, lambda m, u, b: (200, b"x"))
    client.answers["get_work"] = [{"WorkId": "w1", "WorkloadUrl": "https://store.test/w1"}]
    spool.full = True
    assert d.ask_once() == 30.0
    assert transport.seen == [] and spool.find("w1") is None


def test_a_stop_is_forwarded_once_per_run_and_again_for_a_new_run(spool, link):
    """The heartbeat repeats the service's ask to stop work until the run ends: the
    supervisor is told once; work handed out again (a timeslot's work, back after its slot
    ended) is a new run, whose stop is forwarded too."""
    d, client, _ = downloader(link, lambda method, url, body: (200, gzip.compress(b"[]")))
    d.forward_cancels(["w1"])
    d.forward_cancels(["w1"])
    assert [m for m in posted(link) if m[0] == "cancel"] == [("cancel", {"work_id": "w1"})]
    client.answers["get_work"] = [{"WorkId": "w1", "WorkloadUrl": "https://store.test/w1"}]
    assert d.ask_once() == 0.0
    posted(link)
    d.forward_cancels(["w1"])
    assert [m for m in posted(link) if m[0] == "cancel"] == [("cancel", {"work_id": "w1"})]
