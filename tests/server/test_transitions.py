"""The workload state machine as a table: every state x every event, no database, no clock."""
from __future__ import annotations

from itertools import product

import pytest

from cloudqueue.errors import BadRequest, Conflict, NotFound
from queueservice import transitions as t

NOW = 100_000
W = "w-1"


def row(status: str, **facts) -> dict:
    """A typical row of work in ``status`` (every column a change may read or set)."""
    base = {"work_id": W, "status": status, "created_at": 0, "ready_at": None,
            "started_at": None, "finished_at": None, "attempts": 0, "device_seconds": None,
            "error_message": None, "error_kind": None, "pending_outcome": None,
            "cancel_requested": 0, "result_sha256": None, "has_workload": 0, "has_result": 0,
            "estimated_seconds": None, "programs_done": None, "programs_total": None,
            "ready_seq": None, "handout_seq": None}
    typical = {
        "CREATED": {},
        "READY": {"has_workload": 1, "ready_at": 1_000, "ready_seq": 1},
        "EXECUTING": {"has_workload": 1, "ready_at": 1_000, "ready_seq": 1, "attempts": 1,
                      "started_at": 2_000, "handout_seq": 2, "programs_total": 10,
                      "programs_done": 3},
        "UPLOADING": {"has_workload": 1, "ready_at": 1_000, "ready_seq": 1, "attempts": 1,
                      "started_at": 2_000, "handout_seq": 2},
        "DONE": {"has_workload": 1, "started_at": 2_000, "finished_at": 9_000,
                 "has_result": 1, "device_seconds": 7.0},
        # never uploaded (upload_expired): no file
        "FAILED": {"finished_at": 9_000, "error_kind": "upload_expired"},
        # cancelled before it ran: no file, no results
        "CANCELLED": {"finished_at": 9_000, "cancel_requested": 1},
    }[status]
    return {**base, **typical, **facts}


STATES = (None, "CREATED", "READY", "EXECUTING", "UPLOADING", "DONE", "FAILED", "CANCELLED")
EVENTS = {
    "Submitted": t.Submitted(),
    "FileUploaded": t.FileUploaded(2.5),
    "UploadTimeout": t.UploadTimeout(ttl_seconds=1),           # 100 s late: expired
    "HandedOut": t.HandedOut(max_attempts=3),
    "Progress": t.Progress(5, 10),
    "Reported": t.Reported("DONE"),
    "ResultsUploaded": t.ResultsUploaded(device_exists=True),
    "CancelRequested": t.CancelRequested(),
    "LeaseTimeout": t.LeaseTimeout(last_seen=0, lease_seconds=1),  # silent 100 s: expired
    "DeviceDeleted": t.DeviceDeleted("d-1", "lab-board"),
    "SessionClosed": t.SessionClosed("s-1", "idle"),
}
GONE = (NotFound, f"no workload {W}")
NOT_MINE = (NotFound, f"workload {W} is not this device's work")
EXISTS = (Conflict, f"workload {W} exists already")
NO_FILE = (Conflict, f"workload {W} can no longer take a file")
NOT_HANDED = (Conflict, "it cannot be handed out")
NO_PROGRESS = (Conflict, "it takes no progress")
NO_RESULTS = (Conflict, "it takes no results")

#: state -> event -> the status after, or the refusal (error class, part of its message)
TABLE = {
    None: {"Submitted": "CREATED",
           "FileUploaded": (NotFound, f"no workload {W}: submit the workload again "
                                      "(`userclient submit`)"),
           "UploadTimeout": GONE, "HandedOut": GONE, "Progress": NOT_MINE,
           "Reported": NOT_MINE, "ResultsUploaded": GONE, "CancelRequested": GONE,
           "LeaseTimeout": GONE, "DeviceDeleted": GONE, "SessionClosed": GONE},
    "CREATED": {"Submitted": EXISTS, "FileUploaded": "READY", "UploadTimeout": "FAILED",
                "HandedOut": NOT_HANDED, "Progress": NO_PROGRESS, "Reported": "CREATED",
                "ResultsUploaded": NO_RESULTS, "CancelRequested": "CANCELLED",
                "LeaseTimeout": "CREATED", "DeviceDeleted": "CANCELLED",
                "SessionClosed": "CANCELLED"},
    "READY": {"Submitted": EXISTS, "FileUploaded": NO_FILE, "UploadTimeout": "READY",
              "HandedOut": "EXECUTING", "Progress": NO_PROGRESS, "Reported": "READY",
              "ResultsUploaded": NO_RESULTS, "CancelRequested": "CANCELLED",
              "LeaseTimeout": "READY", "DeviceDeleted": "CANCELLED",
              "SessionClosed": "CANCELLED"},
    "EXECUTING": {"Submitted": EXISTS, "FileUploaded": NO_FILE, "UploadTimeout": "EXECUTING",
                  "HandedOut": "EXECUTING", "Progress": "EXECUTING", "Reported": "UPLOADING",
                  "ResultsUploaded": "DONE", "CancelRequested": "EXECUTING",
                  "LeaseTimeout": "READY", "DeviceDeleted": "CANCELLED",
                  "SessionClosed": "EXECUTING"},
    "UPLOADING": {"Submitted": EXISTS, "FileUploaded": NO_FILE, "UploadTimeout": "UPLOADING",
                  "HandedOut": "UPLOADING", "Progress": NO_PROGRESS, "Reported": "UPLOADING",
                  "ResultsUploaded": "DONE", "CancelRequested": "UPLOADING",
                  "LeaseTimeout": "READY", "DeviceDeleted": "CANCELLED",
                  "SessionClosed": "UPLOADING"},
    "DONE": {"Submitted": EXISTS, "FileUploaded": NO_FILE, "UploadTimeout": "DONE",
             "HandedOut": NOT_HANDED, "Progress": NO_PROGRESS, "Reported": "DONE",
             "ResultsUploaded": "DONE",
             "CancelRequested": (Conflict, f"workload {W} is already DONE: there is "
                                           "nothing to cancel"),
             "LeaseTimeout": "DONE", "DeviceDeleted": "DONE", "SessionClosed": "DONE"},
    "FAILED": {"Submitted": EXISTS,
               "FileUploaded": (Conflict, f"workload {W} is FAILED: it takes no file any "
                                          "more; submit a new workload"),
               "UploadTimeout": "FAILED", "HandedOut": NOT_HANDED, "Progress": NO_PROGRESS,
               "Reported": "FAILED", "ResultsUploaded": "FAILED",
               "CancelRequested": (Conflict, "is already FAILED: there is nothing to cancel"),
               "LeaseTimeout": "FAILED", "DeviceDeleted": "FAILED",
               "SessionClosed": "FAILED"},
    "CANCELLED": {"Submitted": EXISTS,
                  "FileUploaded": (Conflict, "is CANCELLED: it takes no file any more"),
                  "UploadTimeout": "CANCELLED", "HandedOut": NOT_HANDED,
                  "Progress": NO_PROGRESS, "Reported": "CANCELLED",
                  "ResultsUploaded": (Conflict, f"workload {W} is CANCELLED: it takes no "
                                                "results"),
                  "CancelRequested": (Conflict, "is already CANCELLED"),
                  "LeaseTimeout": "CANCELLED", "DeviceDeleted": "CANCELLED",
                  "SessionClosed": "CANCELLED"},
}


def test_the_table_covers_every_state_and_event():
    assert set(TABLE) == set(STATES)
    for state in STATES:
        assert set(TABLE[state]) == set(EVENTS), state


@pytest.mark.parametrize("state,event", list(product(STATES, EVENTS)))
def test_every_state_and_event(state, event):
    current = None if state is None else row(state)
    expected = TABLE[state][event]
    if isinstance(expected, str):
        change = t.transition(W, current, EVENTS[event], NOW)
        assert change.status == expected
        return
    error, message = expected
    with pytest.raises(error) as refused:
        t.transition(W, current, EVENTS[event], NOW)
    assert type(refused.value) is error and message in str(refused.value)
    # a refusal never depends on the time, so a check before the work may ask without one
    with pytest.raises(error):
        t.check(W, current, EVENTS[event])


def test_a_file_puts_work_in_line_with_a_number_of_the_sequence():
    change = t.transition(W, row("CREATED"), t.FileUploaded(2.5), NOW)
    assert change == t.Change("READY", {"ready_at": NOW, "has_workload": 1,
                                        "estimated_seconds": 2.5, "finished_at": None},
                              number="ready_seq")


def test_a_file_of_work_cancelled_before_it_arrived_ends_it():
    change = t.transition(W, row("CREATED", cancel_requested=1), t.FileUploaded(), NOW)
    assert change.status == "CANCELLED" and change.fields["finished_at"] == NOW
    assert change.number is None  # never in line


def test_a_file_is_never_replaced():
    with pytest.raises(Conflict, match="can no longer take a file"):
        t.transition(W, row("CREATED", has_workload=1), t.FileUploaded(), NOW)


def test_upload_timeout_is_the_policy_rule_at_its_boundary():
    ttl = t.UploadTimeout(ttl_seconds=5)
    at_limit = row("CREATED", created_at=NOW - 5_000)
    assert t.transition(W, at_limit, ttl, NOW).changes_nothing(at_limit)
    late = row("CREATED", created_at=NOW - 5_001)
    change = t.transition(W, late, ttl, NOW)
    assert change.status == "FAILED" and change.fields["error_kind"] == "upload_expired"
    assert change.fields["error_message"] == ("the workload file was never uploaded; "
                                              "submit the workload again")


def test_a_hand_out_of_ready_work_starts_a_run_and_counts_an_attempt():
    change = t.transition(W, row("READY"), t.HandedOut(3), NOW)
    assert change == t.Change("EXECUTING", {"attempts": 1, "started_at": NOW,
                                            "programs_done": None, "programs_total": None},
                              number="handout_seq")


def test_a_hand_out_back_to_a_restarted_device_keeps_its_run():
    change = t.transition(W, row("EXECUTING"), t.HandedOut(3), NOW)
    assert change == t.Change("EXECUTING", {"attempts": 2}, number="handout_seq")


def test_uploading_work_is_handed_back_without_an_attempt():
    change = t.transition(W, row("UPLOADING", attempts=3), t.HandedOut(3), NOW)
    assert change == t.Change("UPLOADING", number="handout_seq")


def test_a_poison_pill_fails_once_its_attempts_are_used():
    change = t.transition(W, row("EXECUTING", attempts=3), t.HandedOut(3), NOW)
    assert change.status == "FAILED" and change.fields["error_kind"] == "attempts_exhausted"
    assert "handed this workload 3 times" in change.fields["error_message"]
    assert "(limit 3)" in change.fields["error_message"]
    # board time: from its start to now (none reported)
    assert change.fields["device_seconds"] == (NOW - 2_000) / 1000
    assert change.fields["finished_at"] == NOW and change.number is None


def test_running_work_with_a_cancel_is_cancelled_not_handed_out_again():
    change = t.transition(W, row("EXECUTING", cancel_requested=1, device_seconds=4.0),
                          t.HandedOut(3), NOW)
    assert change == t.Change("CANCELLED", {"error_kind": None, "error_message": None,
                                            "finished_at": NOW, "device_seconds": 4.0})


def test_progress_is_kept_on_executing_work():
    change = t.transition(W, row("EXECUTING"), t.Progress(5, 10), NOW)
    assert change == t.Change("EXECUTING", {"programs_done": 5, "programs_total": 10})


@pytest.mark.parametrize("report,after", [
    (t.Reported("DONE", device_seconds=3.0), ("UPLOADING", {"device_seconds": 3.0})),
    (t.Reported(None), ("UPLOADING", {})),
    (t.Reported("FAILED", programs_done=99),
     ("FAILED", {"programs_done": 10, "finished_at": NOW, "device_seconds": 98.0,
                 "pending_outcome": None, "error_kind": "device_error",
                 "error_message": "the device reported a failure without a message"})),
    (t.Reported("FAILED", "boom", "workload_invalid", partial=True),
     ("UPLOADING", {"pending_outcome": "FAILED", "error_message": "boom",
                    "error_kind": "workload_invalid"})),
    (t.Reported("CANCELLED", partial=True, programs_done=4),
     ("UPLOADING", {"pending_outcome": "CANCELLED", "error_message": None,
                    "error_kind": None, "programs_done": 4})),
    (t.Reported("CANCELLED", device_seconds=1.5),
     ("CANCELLED", {"device_seconds": 1.5, "finished_at": NOW, "pending_outcome": None})),
])
def test_what_a_device_reports_does_to_its_running_work(report, after):
    assert t.transition(W, row("EXECUTING"), report, NOW) == t.Change(*after)


def test_a_report_keeps_the_results_checksum_whatever_the_state():
    change = t.transition(W, row("DONE"), t.Reported("DONE", sha256="ab" * 32), NOW)
    assert change == t.Change("DONE", {"result_sha256": "ab" * 32})


def test_an_unknown_outcome_of_running_work_is_refused():
    with pytest.raises(BadRequest, match="unknown Outcome 'MAYBE': use DONE, FAILED or"):
        t.transition(W, row("UPLOADING"), t.Reported("MAYBE"), NOW)


def test_results_end_the_run_with_the_reported_outcome():
    running = row("UPLOADING", pending_outcome="FAILED", device_seconds=6.0)
    change = t.transition(W, running, t.ResultsUploaded(True), NOW)
    assert change == t.Change("FAILED", {"finished_at": NOW, "device_seconds": 6.0,
                                         "pending_outcome": None, "has_result": 1})


def test_results_of_a_deleted_device_are_refused():
    with pytest.raises(Conflict, match=f"workload {W}'s device was deleted: it takes no "):
        t.transition(W, row("UPLOADING"), t.ResultsUploaded(False), NOW)


def test_cancelled_work_that_ran_takes_its_partial_results_once():
    ran = row("CANCELLED", started_at=2_000)
    assert t.transition(W, ran, t.ResultsUploaded(True), NOW) == t.Change(
        "CANCELLED", {"has_result": 1})
    with pytest.raises(Conflict, match="it takes no results"):
        t.transition(W, {**ran, "has_result": 1}, t.ResultsUploaded(True), NOW)


def test_a_cancel_of_running_work_waits_for_its_device():
    assert t.transition(W, row("EXECUTING"), t.CancelRequested(), NOW) == t.Change(
        "EXECUTING", {"cancel_requested": 1})
    assert t.transition(W, row("READY"), t.CancelRequested(), NOW) == t.Change(
        "CANCELLED", {"finished_at": NOW, "cancel_requested": 1})


def test_a_lease_ends_only_past_its_time_and_keeps_the_place_in_line():
    fresh = t.LeaseTimeout(last_seen=NOW - 1_000, lease_seconds=1)
    assert t.transition(W, row("EXECUTING"), fresh, NOW).changes_nothing(row("EXECUTING"))
    gone = t.LeaseTimeout(last_seen=NOW - 1_001, lease_seconds=1)
    change = t.transition(W, row("UPLOADING", pending_outcome="FAILED"), gone, NOW)
    assert change == t.Change("READY", {"pending_outcome": None, "error_message": None,
                                        "error_kind": None})  # ready_seq untouched
    never_seen = t.LeaseTimeout(last_seen=None, lease_seconds=600)
    asked = row("EXECUTING", cancel_requested=1)
    assert t.transition(W, asked, never_seen, NOW) == t.Change(
        "CANCELLED", {"finished_at": NOW, "pending_outcome": None})


def test_a_deleted_device_cancels_its_unfinished_work_and_says_so():
    change = t.transition(W, row("UPLOADING"), EVENTS["DeviceDeleted"], NOW)
    assert change.status == "CANCELLED"
    assert change.fields["error_kind"] == t.DEVICE_DELETED_KIND == "device_deleted"
    assert change.fields["error_message"] == "an admin deleted device lab-board (d-1)"


def test_a_change_sets_only_known_columns():
    with pytest.raises(ValueError, match="'work_id'"):
        t.Change("READY", {"work_id": "other"})
    with pytest.raises(ValueError, match="'status'"):
        t.Change("READY", {"status": "DONE"})
    with pytest.raises(ValueError, match="'created_at; DROP'"):
        t.Change("READY", number="created_at; DROP")
    with pytest.raises(TypeError, match="not a workload event"):
        t.transition(W, row("READY"), object(), NOW)  # type: ignore[arg-type]
