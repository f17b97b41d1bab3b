"""Part 2: long poll, cancel, outcomes, leases and attempts, expiry, idempotency, insight."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.helpers import wait_for
from tests.server.api import ISO, World, assert_error, long_polls, put_file, status, submit

#: a poll held this long (the service's longest) and answered within WOKEN_WITHIN was woken
LONGEST, WOKEN_WITHIN = 20, 12


def test_long_poll_is_woken_by_an_upload(world: World):
    device = world.device()
    user, _ = world.user()
    created = user.post("/workloads", json={"DeviceId": device.id, "Priority": "HIGH"}).json()
    answer: dict = {}

    def poll():
        answer["body"] = device.next_work(wait=LONGEST).json()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    wait_for(lambda: long_polls(world.service, "device") == 1, 10, what="the poll to park")
    put_file(created["UploadUrl"], b"w")
    poller.join(WOKEN_WITHIN)
    assert "body" in answer, "the poll waited for its timeout instead of being woken"
    assert answer["body"]["WorkId"] == created["WorkId"]


def test_long_poll_without_work_answers_empty_list_after_the_wait(world: World):
    device = world.device()
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(lambda: device.next_work(wait=1).json())
        # held (not answered at once) while there is no work...
        wait_for(lambda: long_polls(world.service, "device") == 1 or answer.done(), 10,
                 what="the poll to park")
        assert not answer.done(), "answered at once instead of waiting"
        assert answer.result(WOKEN_WITHIN) == []  # ...and answered empty at its end


def test_two_concurrent_long_polls_never_get_the_same_work(world: World):
    device = world.device()
    user, _ = world.user()
    created = [user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"}).json()
               for _ in range(6)]
    barrier = threading.Barrier(6)

    def poll(_):
        barrier.wait()
        return device.next_work(wait=10).json()

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(poll, i) for i in range(6)]
        wait_for(lambda: long_polls(world.service, "device") == 6, 10,
                 what="all six polls to park")
        for c in created:  # one upload per poller, all while they wait
            put_file(c["UploadUrl"], b"w")
        got = [f.result(30) for f in futures]
    ids = [g["WorkId"] for g in got if g]
    assert len(ids) == len(set(ids)), f"the same work was handed out twice: {ids}"
    assert set(ids) <= {c["WorkId"] for c in created}
    for work_id in ids:
        assert status(user, work_id)["Attempts"] == 1


def test_cancel_ready_work_at_once_and_finished_work_is_409(world: World):
    device = world.device()
    user, _ = world.user()
    work = submit(user, device.id)
    resp = user.post(f"/workloads/{work}/cancel")
    assert resp.status_code == 200
    assert resp.json()["WorkStatus"] == "CANCELLED" and ISO.match(resp.json()["FinishedAt"])
    assert device.next_work().json() == []
    assert_error(user.post(f"/workloads/{work}/cancel"), 409, "conflict")
    assert_error(put_file(status(user, work)["WorkloadUrl"].replace("Signature", "S"), b""), 403)


def test_cancel_executing_work_reaches_the_device(world: World):
    device = world.device()
    user, _ = world.user()
    work = submit(user, device.id)
    assert device.next_work().json()["WorkId"] == work
    resp = world.admin.post(f"/workloads/{work}/cancel")  # an admin may cancel too
    assert resp.json()["WorkStatus"] == "EXECUTING" and resp.json()["CancelRequested"] is True
    assert device.heartbeat().json()["CancelRequested"] == [work]
    check = device.api.get(f"/devices/{device.id}/workloads/{work}").json()
    assert check == {"WorkId": work, "WorkStatus": "EXECUTING", "CancelRequested": True}
    assert device.report(work, {"Outcome": "CANCELLED"}).status_code == 200
    assert status(user, work)["WorkStatus"] == "CANCELLED"
    assert device.heartbeat().json()["CancelRequested"] == []


def test_cancelled_executing_work_is_not_handed_out_again(world: World):
    device = world.device()
    user, _ = world.user()
    work = submit(user, device.id)
    device.next_work()
    user.post(f"/workloads/{work}/cancel")
    assert device.next_work().json() == []  # a restarted device does not run it again
    assert status(user, work)["WorkStatus"] == "CANCELLED"


def test_failed_outcome_without_partial_results(world: World):
    device = world.device()
    user, _ = world.user()
    work = submit(user, device.id)
    device.next_work()
    resp = device.report(work, {"Outcome": "FAILED", "ErrorMessage": "ADC overflow",
                                "ErrorKind": "invalid_workload", "DeviceSeconds": 1.5})
    assert resp.status_code == 200 and "UploadUrl" in resp.json()
    body = status(user, work)
    assert body["WorkStatus"] == "FAILED" and body["ErrorMessage"] == "ADC overflow"
    assert body["ErrorKind"] == "invalid_workload" and body["DeviceSeconds"] == 1.5
    assert "WorkloadResultUrl" not in body
    assert device.next_work().json() == []


def test_failed_outcome_with_partial_results(world: World):
    device = world.device()
    user, _ = world.user()
    work = submit(user, device.id)
    device.next_work()
    url = device.report(work, {"Outcome": "FAILED", "ErrorMessage": "deadline passed",
                               "ErrorKind": "deadline", "PartialResults": True}).json()["UploadUrl"]
    assert status(user, work)["WorkStatus"] == "UPLOADING"
    again = device.report(work, {"Outcome": "FAILED", "ErrorMessage": "deadline passed",
                                 "ErrorKind": "deadline", "PartialResults": True})
    assert again.status_code == 200  # an uploader that crashed just asks again
    assert put_file(again.json()["UploadUrl"], b"partial").status_code == 200
    body = status(user, work)
    assert body["WorkStatus"] == "FAILED" and body["ErrorKind"] == "deadline"
    assert requests.get(body["WorkloadResultUrl"], timeout=10).content == b"partial"
    assert put_file(url, b"partial again").status_code == 200  # a retried upload is harmless
    assert status(user, work)["WorkStatus"] == "FAILED"


def test_cancelled_running_work_keeps_its_partial_results(world: World):
    """A cancel of running work keeps the programs done: the device reports CANCELLED with
    PartialResults, the upload makes it CANCELLED with WorkloadResultUrl and the final
    ProgramsDone; a second upload is refused (the file is taken once)."""
    device = world.device()
    user, _ = world.user()
    work = submit(user, device.id)
    device.next_work()
    device.heartbeat(Health={"CurrentWork": {"work_id": work, "programs_done": 2,
                                             "programs_total": 10}})
    user.post(f"/workloads/{work}/cancel")
    url = device.report(work, {"Outcome": "CANCELLED", "PartialResults": True,
                               "ErrorMessage": "cancelled after 3 of 10 programs",
                               "ProgramsDone": 3}).json()["UploadUrl"]
    waiting = status(user, work)
    assert waiting["WorkStatus"] == "UPLOADING" and "WorkloadResultUrl" not in waiting
    assert put_file(url, b"three programs").status_code == 200
    body = status(user, work)
    assert body["WorkStatus"] == "CANCELLED", body
    assert body["Progress"] == {"ProgramsDone": 3, "ProgramsTotal": 10}
    assert body["ErrorMessage"] == "cancelled after 3 of 10 programs"
    assert requests.get(body["WorkloadResultUrl"], timeout=10).content == b"three programs"
    assert_error(put_file(url, b"replaced"), 409)  # only the first upload
    assert put_file(url, b"three programs").status_code == 200  # its retry: no change
    assert status(user, work)["FinishedAt"] == body["FinishedAt"]
    assert requests.get(body["WorkloadResultUrl"], timeout=10).content == b"three programs"
    assert device.next_work().json() == []


def test_results_for_cancelled_work_only_from_its_device_and_once(world: World):
    """A device that reported a plain CANCELLED may still upload the partial results once;
    another device cannot get an upload URL for it; work cancelled before it ever ran
    takes no results."""
    device, other = world.device(), world.device()
    user, _ = world.user()
    work = submit(user, device.id)
    device.next_work()
    user.post(f"/workloads/{work}/cancel")
    assert device.report(work, {"Outcome": "CANCELLED"}).status_code == 200
    assert status(user, work)["WorkStatus"] == "CANCELLED"
    assert_error(other.report(work, {"Outcome": "CANCELLED"}), 404)
    url = device.report(work, {"Outcome": "CANCELLED"}).json()["UploadUrl"]
    assert put_file(url, b"partial").status_code == 200
    assert status(user, work)["WorkStatus"] == "CANCELLED"
    assert "WorkloadResultUrl" in status(user, work)
    assert_error(put_file(url, b"again"), 409)
    never = submit(user, device.id)
    user.post(f"/workloads/{never}/cancel")
    late = device.report(never, {"Outcome": "CANCELLED"}).json()["UploadUrl"]
    assert_error(put_file(late, b"nothing ran"), 409)
    assert "WorkloadResultUrl" not in status(user, never)


def test_attempt_limit_ends_a_poison_pill(queue_service_factory, database_options):
    service = queue_service_factory(max_attempts=2, **database_options)
    world = World(service)
    device = world.device()
    user, _ = world.user()
    pill = submit(user, device.id, priority="HIGH")
    other = submit(user, device.id, priority="LOW")
    assert device.next_work().json()["WorkId"] == pill  # attempt 1; the device "crashes"
    assert device.next_work().json()["WorkId"] == pill  # attempt 2
    assert device.next_work().json()["WorkId"] == other  # the pill is not handed a third time
    body = status(user, pill)
    assert body["WorkStatus"] == "FAILED" and body["ErrorKind"] == "attempts_exhausted"
    assert body["Attempts"] == 2 and body["ErrorMessage"]


def test_lease_expiry_puts_work_back_and_wakes_the_poll(queue_service_factory,
                                                        database_options):
    service = queue_service_factory(lease_seconds=1, **database_options)
    world = World(service)
    device = world.device()
    user, _ = world.user()
    work = submit(user, device.id)
    assert device.next_work().json()["WorkId"] == work
    wait_for(lambda: status(user, work)["WorkStatus"] == "READY", 10, interval=0.1,
             what="the lease to end")
    body = status(user, work)
    assert body["Attempts"] == 1 and body["QueuePosition"] == 1
    assert device.next_work().json()["WorkId"] == work
    assert status(user, work)["Attempts"] == 2
    # a cancel requested on leased work ends CANCELLED when the lease ends
    user.post(f"/workloads/{work}/cancel")
    wait_for(lambda: status(user, work)["WorkStatus"] == "CANCELLED", 10, interval=0.1,
             what="the lease to end in CANCELLED")


def test_never_uploaded_work_expires(queue_service_factory, database_options):
    service = queue_service_factory(upload_ttl_seconds=0.5, **database_options)
    world = World(service)
    device = world.device()
    user, _ = world.user()
    created = user.post("/workloads", json={"DeviceId": device.id, "Priority": "LOW"}).json()
    wait_for(lambda: status(user, created["WorkId"])["WorkStatus"] == "FAILED", 10,
             interval=0.1, what="upload expiry")
    assert status(user, created["WorkId"])["ErrorKind"] == "upload_expired"
    assert_error(put_file(created["UploadUrl"], b"late"), 409, "conflict")


def test_idempotent_submit(world: World):
    device = world.device()
    user, _ = world.user()
    other_user, _ = world.user()
    body = {"DeviceId": device.id, "Priority": "HIGH", "WorkloadName": "t1"}
    first = user.post("/workloads", json=body, headers={"Idempotency-Key": "k-1"})
    second = user.post("/workloads", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 201
    assert first.json()["WorkId"] == second.json()["WorkId"]
    different = user.post("/workloads", json={**body, "Priority": "LOW"},
                          headers={"Idempotency-Key": "k-1"})
    assert_error(different, 409, "idempotency_key_reused")
    theirs = other_user.post("/workloads", json=body, headers={"Idempotency-Key": "k-1"})
    assert theirs.status_code == 201 and theirs.json()["WorkId"] != first.json()["WorkId"]
    assert_error(user.post("/workloads", json=body, headers={"Idempotency-Key": "x" * 201}), 400)
    listed = user.get("/workloads", params={"DeviceId": device.id, "Limit": 100}).json()
    assert len(listed["Items"]) == 1


def test_queue_position_and_estimates(world: World):
    device = world.device()
    user, _ = world.user()
    first = submit(user, device.id, priority="HIGH")
    second = submit(user, device.id, priority="LOW")
    created = submit(user, device.id, data=None)
    # a device that never heartbeated is OFFLINE: no estimate, and the reason
    offline = status(user, first)
    assert offline["QueuePosition"] == 1 and offline["EstimatedStartAt"] is None
    assert offline["EstimatedStartReason"] == "device offline: no estimate"
    device.heartbeat()
    a, b = status(user, first), status(user, second)
    assert (a["QueuePosition"], b["QueuePosition"]) == (1, 2)  # 1 runs next
    assert ISO.match(a["EstimatedStartAt"]) and b["EstimatedStartAt"] > a["EstimatedStartAt"]
    assert "EstimatedStartReason" not in a
    assert status(user, created)["QueuePosition"] is None
    device.next_work()
    running = status(user, first)
    assert running["QueuePosition"] == 0 and running["EstimatedStartAt"] is None
    assert status(user, second)["QueuePosition"] == 1
    assert user.get(f"/devices/{device.id}").json()["QueueLength"] == 2
    device.heartbeat("ERROR", Health={"State": "ERROR", "Reason": "disk full"})
    failing = status(user, second)
    assert failing["EstimatedStartAt"] is None
    assert failing["EstimatedStartReason"] == "device in ERROR (disk full): no estimate"
    listed = {d["DeviceId"]: d for d in user.get("/devices").json()}
    assert listed[device.id]["StatusReason"] == "disk full"


def test_estimated_start_uses_each_workloads_own_estimate(world: World, tmp_path):
    """The file's programs give the workload its own board time (EstimatedSeconds, as
    `userclient estimate` computes it), and the work behind waits for exactly that."""
    from tests.board.conftest import make_workload
    from userclient.estimate import estimate_file
    device = world.device()
    device.heartbeat()
    user, _ = world.user()
    path = make_workload(tmp_path / "w.gz", programs=3, reps=50)
    expected = estimate_file(path).seconds
    first = submit(user, device.id, data=path.read_bytes())
    second = submit(user, device.id, data=b"not a workload")  # no estimate of its own
    a, b = status(user, first), status(user, second)
    assert abs(a["EstimatedSeconds"] - expected) < 1e-6 and "EstimatedSeconds" not in b
    from cloudqueue.models import parse_time
    gap = (parse_time(b["EstimatedStartAt"]) - parse_time(a["EstimatedStartAt"])).total_seconds()
    # b starts after a's own estimate, not after a default 60 s (plus the time between reads)
    assert expected - 0.002 <= gap < 59


def test_holding_hands_out_the_next_work_and_counts_one_attempt(world: World):
    """A board that names the work it already runs (``?Holding=``) gets the next work, and
    the held work is neither handed back nor charged another attempt (regression: every
    poll after a run used to count one, so a slow results upload ended the finished work
    FAILED/attempts_exhausted)."""
    device = world.device()
    user, _ = world.user()
    first, second = submit(user, device.id), submit(user, device.id)
    assert device.next_work().json()["WorkId"] == first
    nxt = device.api.get(f"/devices/{device.id}/workload", params={"Holding": first})
    assert nxt.status_code == 200 and nxt.json()["WorkId"] == second
    for _ in range(4):  # more polls than max_attempts, holding both
        both = device.api.get(f"/devices/{device.id}/workload",
                              params={"Holding": f"{first},{second}", "WaitSeconds": 0})
        assert both.status_code == 200 and both.json() == []
    held = status(user, first)
    assert held["Attempts"] == 1 and held["WorkStatus"] == "EXECUTING"
    assert status(user, second)["Attempts"] == 1


def test_holding_must_be_a_list_of_work_ids(world: World):
    device = world.device()
    for bad in ("../etc", "x" * 65, ",".join(["a"] * 101)):
        answer = device.api.get(f"/devices/{device.id}/workload", params={"Holding": bad})
        assert_error(answer, 400, "bad_request")
