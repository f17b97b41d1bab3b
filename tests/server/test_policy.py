"""Queue policy as pure functions: no processes, no clock."""
from __future__ import annotations

from queueservice import policy


def row(work_id, status="READY", priority="MEDIUM", ready_seq=0, attempts=0, cancel=0,
        started_at=None, handout_seq=None):
    return {"work_id": work_id, "status": status, "priority": priority, "ready_seq": ready_seq,
            "attempts": attempts, "cancel_requested": cancel, "started_at": started_at,
            "handout_seq": handout_seq}


def test_queue_order_status_then_priority_then_place_in_line():
    rows = [row("r-low", priority="LOW", ready_seq=1),
            row("r-high", priority="HIGH", ready_seq=5),
            row("exec", "EXECUTING", priority="LOW"), row("up", "UPLOADING", priority="LOW"),
            row("r-high-old", priority="HIGH", ready_seq=2), row("done", "DONE")]
    assert [r["work_id"] for r in policy.queue_order(rows)] == [
        "up", "exec", "r-high-old", "r-high", "r-low"]


def test_place_in_line_is_the_sequence_number_not_the_ready_time():
    """Regression: the order was ReadyAt (wall clock), so a clock stepped back put later
    work first."""
    later = dict(row("later", ready_seq=8), ready_at=1_000)   # the clock stepped back
    earlier = dict(row("earlier", ready_seq=7), ready_at=5_000)
    assert [r["work_id"] for r in policy.queue_order([later, earlier])] == ["earlier", "later"]


def test_work_handed_to_a_concurrent_request_is_skipped():
    rows = [row("mine", "EXECUTING", handout_seq=20), row("ready")]
    ids = [r["work_id"] for r in policy.handout_candidates(rows, asked=15)]
    assert ids == ["ready"]  # handed out (20) after this poll arrived (15)
    ids = [r["work_id"] for r in policy.handout_candidates(rows, asked=20)]
    assert ids == ["mine", "ready"]  # handed out before: a restarted device resumes it
    assert [r["work_id"] for r in policy.handout_candidates(rows)] == ["mine", "ready"]


def test_no_work_means_no_candidates():
    assert list(policy.handout_candidates([row("d", "DONE"), row("c", "CREATED")])) == []


def test_lease_and_expiry():
    assert policy.lease_expired(None, 10_000, 5)
    assert not policy.lease_expired(6_000, 10_000, 5)
    assert policy.lease_expired(4_000, 10_000, 5)
    created = {"status": "CREATED", "created_at": 0}
    assert policy.upload_expired(created, 2_001, 2) and not policy.upload_expired(created, 1_000, 2)
    assert not policy.upload_expired({"status": "READY", "created_at": 0}, 10_000, 2)


def test_device_status_offline_after_refresh_timeout():
    assert policy.device_status(None, None, 60, 0) == "OFFLINE"
    assert policy.device_status("BUSY", 1_000, 60, 61_000) == "BUSY"
    assert policy.device_status("BUSY", 1_000, 60, 61_001) == "OFFLINE"


def test_queue_position_counts_from_one_for_the_next_to_run():
    rows = [row("a", "EXECUTING", started_at=0), row("b", ready_seq=1), row("c", ready_seq=2)]
    assert policy.queue_position(rows, "b") == 1  # runs next
    assert policy.queue_position(rows, "c") == 2
    assert policy.queue_position(rows, "a") == 0  # the device has it already
    assert policy.queue_position(rows, "zz") is None
    assert policy.device_seconds(2.5, 0, 99_000) == 2.5
    assert policy.device_seconds(None, 1_000, 3_000) == 2.0
    assert policy.iso(0) == "1970-01-01T00:00:00.000Z"


def test_estimated_start_sums_each_workloads_own_estimate_ahead():
    """Regression: every workload ahead counted as 60 s whatever it held."""
    rows = [dict(row("a", "EXECUTING", started_at=0), estimated_seconds=10.0),
            dict(row("b", ready_seq=1), estimated_seconds=2.5),
            row("c", ready_seq=2),                      # no own estimate: the fallback (30 s)
            dict(row("d", ready_seq=3), estimated_seconds=1.0)]
    start = policy.estimated_start(rows, "d", 6_000, 30.0, "BUSY")
    # a has 4 s of its 10 s left, b its own 2.5 s, c the device's measured 30 s
    assert start == policy.StartEstimate(6_000 + 4_000 + 2_500 + 30_000)
    assert policy.estimated_start(rows, "b", 6_000, 30.0, "BUSY").at == 6_000 + 4_000
    # running work has no start estimate (it started)
    assert policy.estimated_start(rows, "a", 6_000, 30.0, "BUSY") == policy.StartEstimate(None)


def test_running_work_left_is_its_measured_pace_when_progress_is_known():
    running = dict(row("a", "EXECUTING", started_at=0), estimated_seconds=1.0,
                   programs_done=2, programs_total=10)
    # 2 programs in 8 s: 8 more programs take 32 s (its 1 s estimate is long past)
    assert policy.remaining_seconds(running, 8_000, 60.0) == 32.0
    assert policy.remaining_seconds(row("u", "UPLOADING", started_at=0), 8_000, 60.0) == 0.0
    late = dict(row("l", "EXECUTING", started_at=0), estimated_seconds=5.0)
    assert policy.remaining_seconds(late, 9_000, 60.0) == 0.0  # overdue: not negative


def test_no_start_estimate_on_an_offline_or_failing_device_says_why():
    rows = [row("a", ready_seq=1)]
    assert policy.estimated_start(rows, "a", 0, 60.0, "OFFLINE") == policy.StartEstimate(
        None, "device offline: no estimate")
    err = policy.estimated_start(rows, "a", 0, 60.0, "ERROR", "disk full")
    assert err.at is None and err.reason == "device in ERROR (disk full): no estimate"
    assert policy.estimated_start(rows, "a", 5, 60.0, "ONLINE").at == 5


def test_work_the_device_holds_is_skipped():
    rows = [row("running", "EXECUTING", attempts=1), row("uploading", "UPLOADING"),
            row("next")]
    held = {"running", "uploading"}
    assert [r["work_id"] for r in policy.handout_candidates(rows, holding=held)] == ["next"]
    assert list(policy.handout_candidates(rows[:2], holding=held)) == []
