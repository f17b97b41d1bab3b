"""The workload state machine in one place: one pure function, (row, event, now) -> change.

::

    (none) --Submitted--> CREATED --FileUploaded--> READY --HandedOut--> EXECUTING
    EXECUTING --Reported DONE (or partial)--> UPLOADING --ResultsUploaded--> DONE
                                                   (FAILED/CANCELLED when so reported)
    EXECUTING --Reported FAILED/CANCELLED--> FAILED/CANCELLED
    EXECUTING/UPLOADING --LeaseTimeout--> READY (its place in line kept)
    CREATED --UploadTimeout--> FAILED;  CREATED/READY --CancelRequested--> CANCELLED
    READY/EXECUTING --HandedOut past max_attempts--> FAILED
    EXECUTING timeslot work --SlotEnded, then stopped--> READY (wait) or FAILED (fail)
    anything unfinished --DeviceDeleted--> CANCELLED
    CREATED/READY work of a session --SessionClosed--> CANCELLED

``transition`` answers the ``Change`` an event makes to a workload (its new status and the
columns to set, possibly none), or raises the refusal the API answers (an error of
``cloudqueue.errors``: ``NotFound``, ``Conflict``, ``BadRequest``), with its message. It
reads no clock and no database: the store reads the row (in the transaction that writes
the change), asks, and writes the change with a compare-and-set (``workloads.write``).

Every event, where it comes from, and what it may do:

=================  ===========================================  ============================
event              sent by                                      from -> to
=================  ===========================================  ============================
Submitted          ``POST /workloads``                          (none) -> CREATED
FileUploaded       the workload file's PUT                      CREATED -> READY (CANCELLED
                                                                if a cancel came first)
UploadTimeout      the sweep, for CREATED work                  CREATED -> FAILED once the
                                                                file is ``upload_ttl`` late
HandedOut          ``GET /devices/{id}/workload``               READY, EXECUTING -> EXECUTING
                                                                (one attempt); UPLOADING ->
                                                                UPLOADING; or ended: FAILED
                                                                (attempts exhausted),
                                                                CANCELLED (cancel requested)
Progress           the device's heartbeat                       EXECUTING (counts only)
Reported           ``PUT /devices/{id}/workloads/{WorkId}``     EXECUTING/UPLOADING -> ...
ResultsUploaded    the results file's PUT                       EXECUTING/UPLOADING -> DONE
                                                                (or the reported outcome)
CancelRequested    ``POST /workloads/{id}/cancel``              CREATED/READY -> CANCELLED;
                                                                running work: flagged
LeaseTimeout       the sweep and the device's own calls         EXECUTING/UPLOADING -> READY
                                                                (CANCELLED if asked) once the
                                                                device is silent too long
SlotEnded          the sweep, for running timeslot work whose    EXECUTING (flagged: the
                   slot is over                                 device stops it; then READY
                                                                or FAILED, not CANCELLED)
DeviceDeleted      an admin deletes the device, ``CancelWork``  unfinished -> CANCELLED
SessionClosed      its session closes (``sessions``)            CREATED/READY -> CANCELLED
=================  ===========================================  ============================

Times are integer milliseconds since the epoch. The hand-out order is not a time: work
takes a number of the database's queue sequence when it joins the queue (``ready_seq``) and
when it is handed out (``handout_seq``); ``Change.number`` names the column that takes one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from cloudqueue.errors import BadRequest, Conflict, NotFound
from queueservice import policy

Row = Mapping[str, Any]

#: the columns a change may set (every other column is set once, at the insert)
COLUMNS = frozenset({
    "status", "created_at", "ready_at", "started_at", "finished_at", "attempts",
    "device_seconds", "error_message", "error_kind", "pending_outcome", "cancel_requested",
    "result_sha256", "has_workload", "has_result", "estimated_seconds", "programs_done",
    "programs_total", "ready_seq", "handout_seq", "reservation_id"})
#: ``ErrorKind`` of the work of a device an admin deleted with ``CancelWork``
DEVICE_DELETED_KIND = "device_deleted"
#: ``ErrorKind`` of queued work of a session that closed (``sessions``)
SESSION_CLOSED_KIND = "session_closed"
#: ``ErrorKind`` of timeslot work its slot's end stopped (``SlotEnded``)
SLOT_ENDED_KIND = "slot_ended"
RUNNING = ("EXECUTING", "UPLOADING")


# -- events ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Submitted:
    """A user submitted the workload (no row yet)."""


@dataclass(frozen=True)
class FileUploaded:
    """The workload's file arrived; ``estimated_seconds``: board time estimated from it."""

    estimated_seconds: float | None = None


@dataclass(frozen=True)
class UploadTimeout:
    """The sweep looks at CREATED work: has its file been awaited past the TTL?"""

    ttl_seconds: float


@dataclass(frozen=True)
class HandedOut:
    """The device's poll chose this work (``policy.handout_candidates``; READY work:
    ``scheduling.pick``); ``reservation_id``: the timeslot READY work runs in."""

    max_attempts: int
    reservation_id: str | None = None


@dataclass(frozen=True)
class Progress:
    """The device's heartbeat says how far its current work is."""

    done: int
    total: int


@dataclass(frozen=True)
class Reported:
    """The device's outcome for its work (``Outcome`` None: the stock call, no outcome)."""

    outcome: str | None
    error_message: str | None = None
    error_kind: str | None = None
    partial: bool = False
    sha256: str | None = None
    device_seconds: float | None = None
    programs_done: int | None = None


@dataclass(frozen=True)
class ResultsUploaded:
    """The results file arrived (``device_exists``: the workload's device is still there)."""

    device_exists: bool


@dataclass(frozen=True)
class CancelRequested:
    """The workload's owner asked to cancel it."""


@dataclass(frozen=True)
class LeaseTimeout:
    """The sweep looks at running work: has its device (seen at ``last_seen``) been silent
    past the lease?"""

    last_seen: int | None
    lease_seconds: float


@dataclass(frozen=True)
class SlotEnded:
    """The sweep found timeslot work still running when its slot (ending at ``end``,
    ms) was over: the device is asked to stop it, and then it waits for another slot or
    fails, as its submitter chose (``on_slot_end``)."""

    end: int


@dataclass(frozen=True)
class DeviceDeleted:
    """An admin deletes the workload's device, cancelling its unfinished work."""

    device_id: str
    device_name: str


@dataclass(frozen=True)
class SessionClosed:
    """The session the workload was submitted in closed (``reason``: why)."""

    session_id: str
    reason: str


Event = Union[Submitted, FileUploaded, UploadTimeout, HandedOut, Progress, Reported,
              ResultsUploaded, CancelRequested, LeaseTimeout, SlotEnded, DeviceDeleted,
              SessionClosed]


# -- the answer -----------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """What an event does to a workload: its status after (the same: none), the columns
    to set, and the column (if any) that takes the next number of the queue sequence."""

    status: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    number: str | None = None

    def __post_init__(self) -> None:
        wrong = (set(self.fields) | {self.number} - {None}) - (COLUMNS - {"status"})
        if wrong:
            raise ValueError(f"a change may not set {sorted(wrong)}")

    def changes_nothing(self, row: Row | None) -> bool:
        """Whether this changes nothing in ``row``."""
        return (row is not None and self.status == row["status"] and not self.fields
                and self.number is None)


def unchanged(row: Row) -> Change:
    return Change(row["status"])


# -- the rules ------------------------------------------------------------------------
def transition(work_id: str, row: Row | None, event: Event, now: int) -> Change:
    """The change ``event`` makes to workload ``work_id`` (its row, None when there is
    none), or the refusal the API answers, raised. Pure: no clock, no I/O; refusals never
    depend on ``now`` (so ``check`` may ask without one)."""
    rule = _RULES.get(type(event))
    if rule is None:
        raise TypeError(f"not a workload event: {event!r}")
    return rule(work_id, row, event, now)


def check(work_id: str, row: Row | None, event: Event) -> None:
    """Raise the refusal ``transition`` would raise for this event, if any (a check before
    the work that precedes the event, e.g. a file's upload)."""
    transition(work_id, row, event, 0)


def takes_results(row: Row) -> bool:
    """Whether a results file may arrive for this workload now: running or finished work
    (a re-upload of DONE/FAILED replaces the file: an uploader retrying), and CANCELLED
    work that ran on its device, once (the programs done before the stop)."""
    if row["status"] in ("EXECUTING", "UPLOADING", "DONE", "FAILED"):
        return True
    return (row["status"] == "CANCELLED" and row["started_at"] is not None
            and not row["has_result"])


def _submitted(work_id: str, row: Row | None, event: Submitted, now: int) -> Change:
    if row is not None:
        raise Conflict(f"workload {work_id} exists already")
    return Change("CREATED", {"created_at": now})


def _file_uploaded(work_id: str, row: Row | None, event: FileUploaded, now: int) -> Change:
    if row is None:
        raise NotFound(f"no workload {work_id}: submit the workload again (`userclient submit`)")
    if row["status"] in policy.TERMINAL and not row["has_workload"]:
        raise Conflict(f"workload {work_id} is {row['status']}: it takes no file any more; "
                       "submit a new workload")
    if row["status"] != "CREATED" or row["has_workload"]:
        raise Conflict(f"workload {work_id} can no longer take a file")
    fields = {"ready_at": now, "has_workload": 1, "estimated_seconds": event.estimated_seconds}
    if row["cancel_requested"]:
        return Change("CANCELLED", {**fields, "finished_at": now})
    return Change("READY", {**fields, "finished_at": None}, number="ready_seq")


def _upload_timeout(work_id: str, row: Row | None, event: UploadTimeout, now: int) -> Change:
    row = _existing(work_id, row)
    if not policy.upload_expired(row, now, event.ttl_seconds):
        return unchanged(row)
    return Change("FAILED", {"error_kind": "upload_expired", "finished_at": now,
                             "error_message": "the workload file was never uploaded; "
                                              "submit the workload again"})


def _handed_out(work_id: str, row: Row | None, event: HandedOut, now: int) -> Change:
    row = _existing(work_id, row)
    status = row["status"]
    if status == "UPLOADING":  # it ran: only its results upload is missing, no attempt
        return Change("UPLOADING", number="handout_seq")
    if status not in ("READY", "EXECUTING"):
        raise Conflict(f"workload {work_id} is {status}: it cannot be handed out")
    if status == "EXECUTING" and row["cancel_requested"]:
        if _slot_ended(row):
            return _after_slot(row, now, partial=False)
        return _ended(row, "CANCELLED", None, None, now)
    attempts = row["attempts"]
    if attempts >= event.max_attempts:
        return _ended(row, "FAILED", "attempts_exhausted",
                      f"the device was handed this workload {attempts} times without "
                      f"finishing it (limit {event.max_attempts}); it may crash the device: "
                      "check it and submit it again", now)
    fields: dict[str, Any] = {"attempts": attempts + 1}
    if status == "READY":  # a new run starts from nothing done
        fields.update(started_at=now, programs_done=None, programs_total=None)
        if event.reservation_id is not None:
            fields["reservation_id"] = event.reservation_id
    return Change("EXECUTING", fields, number="handout_seq")


def _ended(row: Row, status: str, kind: str | None, message: str | None, now: int) -> Change:
    """Work a hand-out passes over and ends instead of handing it out again."""
    seconds = row["device_seconds"]
    if seconds is None:
        seconds = policy.device_seconds(None, row["started_at"], now)
    return Change(status, {"error_kind": kind, "error_message": message, "finished_at": now,
                           "device_seconds": seconds})


def _progress(work_id: str, row: Row | None, event: Progress, now: int) -> Change:
    if row is None:
        raise NotFound(f"workload {work_id} is not this device's work")
    if row["status"] != "EXECUTING":
        raise Conflict(f"workload {work_id} is {row['status']}: it takes no progress")
    return Change("EXECUTING", {"programs_done": event.done, "programs_total": event.total})


def _reported(work_id: str, row: Row | None, event: Reported, now: int) -> Change:
    """Transitions only from EXECUTING/UPLOADING (stock: READY or finished work still gets
    an upload URL and does not change; a results checksum is kept whatever the state)."""
    if row is None:
        raise NotFound(f"workload {work_id} is not this device's work")
    fields: dict[str, Any] = {}
    if event.sha256 is not None:
        fields["result_sha256"] = event.sha256
    status = row["status"]
    if status not in RUNNING:
        return Change(status, fields)
    outcome = event.outcome
    if outcome not in (None, "DONE", "FAILED", "CANCELLED"):
        raise BadRequest(f"unknown Outcome {outcome!r}: use DONE, FAILED or CANCELLED")
    if event.device_seconds is not None:
        fields["device_seconds"] = event.device_seconds
    if (event.programs_done is not None and outcome in ("FAILED", "CANCELLED")
            and row["programs_total"]):
        # the last count, which the heartbeats' progress may not have caught up with
        fields["programs_done"] = min(event.programs_done, row["programs_total"])
    if event.programs_done and outcome == "DONE" and status == "EXECUTING":
        # a run shorter than a heartbeat: its count came only with the outcome
        fields["programs_done"] = fields["programs_total"] = event.programs_done
    seconds = policy.device_seconds(event.device_seconds, row["started_at"], now)
    finished = {"finished_at": now, "device_seconds": seconds, "pending_outcome": None}
    if _slot_ended(row) and outcome == "CANCELLED":  # the stop its slot's end asked for
        return _after_slot(row, now, partial=event.partial, seconds=seconds)
    if _slot_ended(row):  # it finished (or failed) by itself before the stop
        fields.update(error_kind=None, error_message=None)
    if outcome in (None, "DONE"):
        return Change("UPLOADING", fields)
    if outcome == "FAILED":
        fields.update(error_message=event.error_message
                      or "the device reported a failure without a message",
                      error_kind=event.error_kind or "device_error")
        if event.partial:  # FAILED once the programs done before the failure arrive
            return Change("UPLOADING", {**fields, "pending_outcome": "FAILED"})
        return Change("FAILED", {**fields, **finished})
    if event.partial:  # the programs done before the stop: CANCELLED once they arrive
        return Change("UPLOADING", {**fields, "pending_outcome": "CANCELLED",
                                    "error_message": event.error_message,
                                    "error_kind": event.error_kind})
    return Change("CANCELLED", {**fields, **finished})


def _results_uploaded(work_id: str, row: Row | None, event: ResultsUploaded,
                      now: int) -> Change:
    if row is None:
        raise NotFound(f"no workload {work_id}")
    if not event.device_exists:
        raise Conflict(f"workload {work_id}'s device was deleted: it takes no results")
    if not takes_results(row):
        raise Conflict(f"workload {work_id} is {row['status']}: it takes no results")
    if row["status"] not in RUNNING:  # a re-upload of finished work: the file, no change
        return Change(row["status"], {"has_result": 1})
    status = row["pending_outcome"] if row["pending_outcome"] in ("FAILED", "CANCELLED") \
        else "DONE"
    seconds = row["device_seconds"]
    if seconds is None:
        seconds = policy.device_seconds(None, row["started_at"], now)
    return Change(status, {"finished_at": now, "device_seconds": seconds,
                           "pending_outcome": None, "has_result": 1})


def _cancel_requested(work_id: str, row: Row | None, event: CancelRequested,
                      now: int) -> Change:
    """CREATED/READY work is CANCELLED at once; running work once its device learns of it
    (``cancel_requested``: the heartbeat's ``CancelRequested``, the next hand-out)."""
    if row is None:
        raise NotFound(f"no workload {work_id}")
    if row["status"] in policy.TERMINAL:
        raise Conflict(f"workload {work_id} is already {row['status']}: "
                       "there is nothing to cancel")
    if row["status"] in ("CREATED", "READY"):
        return Change("CANCELLED", {"finished_at": now, "cancel_requested": 1})
    if _slot_ended(row):  # its owner's cancel: CANCELLED after all, not the slot's rule
        return Change(row["status"], {"error_kind": None, "error_message": None})
    return Change(row["status"], {"cancel_requested": 1})


def _lease_timeout(work_id: str, row: Row | None, event: LeaseTimeout, now: int) -> Change:
    """Running work of a device silent past the lease goes back to READY (its place in the
    queue kept: ``ready_seq`` does not change), or CANCELLED if its cancel was asked."""
    row = _existing(work_id, row)
    if row["status"] not in RUNNING or not policy.lease_expired(event.last_seen, now,
                                                                event.lease_seconds):
        return unchanged(row)
    if _slot_ended(row):
        return _after_slot(row, now, partial=False)
    if row["cancel_requested"]:
        return Change("CANCELLED", {"finished_at": now, "pending_outcome": None})
    return Change("READY", {"pending_outcome": None, "error_message": None,
                            "error_kind": None})


def _slot_end(work_id: str, row: Row | None, event: SlotEnded, now: int) -> Change:
    """Running timeslot work past its slot's end: the device is asked to stop it (as a
    cancel is), marked so that the stop ends it by the slot's rule (``_after_slot``)."""
    row = _existing(work_id, row)
    if (row["status"] != "EXECUTING" or not row.get("timeslot") or row["cancel_requested"]
            or now < event.end):
        return unchanged(row)
    return Change("EXECUTING", {
        "cancel_requested": 1, "error_kind": SLOT_ENDED_KIND,
        "error_message": f"its timeslot ended at {policy.iso(event.end)}: the device is "
                         "stopping it"})


def _slot_ended(row: Row) -> bool:
    return bool(row["cancel_requested"]) and row["error_kind"] == SLOT_ENDED_KIND


def _after_slot(row: Row, now: int, *, partial: bool,
                seconds: float | None = None) -> Change:
    """Timeslot work stopped at its slot's end: back to READY, its place in line kept,
    to run in the team's next slot (``on_slot_end`` ``wait``, the default), or FAILED
    (``fail``; with its partial results when the device kept them)."""
    if row.get("on_slot_end") != "fail":  # the stopped run is no failed attempt: given back
        return Change("READY", {"cancel_requested": 0, "error_kind": None,
                                "error_message": None, "pending_outcome": None,
                                "programs_done": None, "programs_total": None,
                                "device_seconds": None, "finished_at": None,
                                "attempts": max(0, row["attempts"] - 1)})
    fields = {"error_kind": SLOT_ENDED_KIND,
              "error_message": "its timeslot ended before it finished, and it was submitted "
                               "to fail then (on-slot-end fail): submit it again for a "
                               "later timeslot, or to wait (on-slot-end wait)"}
    if partial:  # FAILED once the programs done before the stop arrive
        return Change("UPLOADING", {**fields, "pending_outcome": "FAILED"})
    if seconds is None:
        seconds = row["device_seconds"]
    if seconds is None:
        seconds = policy.device_seconds(None, row["started_at"], now)
    return Change("FAILED", {**fields, "finished_at": now, "device_seconds": seconds,
                             "pending_outcome": None})


def _device_deleted(work_id: str, row: Row | None, event: DeviceDeleted, now: int) -> Change:
    row = _existing(work_id, row)
    if row["status"] in policy.TERMINAL:  # finished work and its files stay
        return unchanged(row)
    return Change("CANCELLED", {
        "finished_at": now, "cancel_requested": 1, "pending_outcome": None,
        "error_kind": DEVICE_DELETED_KIND,
        "error_message": f"an admin deleted device {event.device_name} ({event.device_id})"})


def _session_closed(work_id: str, row: Row | None, event: SessionClosed,
                    now: int) -> Change:
    """Queued work of a closed session is CANCELLED: it was to run inside the session
    (running work finishes; finished work stays)."""
    row = _existing(work_id, row)
    if row["status"] not in ("CREATED", "READY"):
        return unchanged(row)
    return Change("CANCELLED", {
        "finished_at": now, "cancel_requested": 1, "error_kind": SESSION_CLOSED_KIND,
        "error_message": f"its session {event.session_id} ended ({event.reason}) before it "
                         "ran: submit it again, in a new session or without one"})


def _existing(work_id: str, row: Row | None) -> Row:
    """The row of an event the service sends itself about work it read."""
    if row is None:
        raise NotFound(f"no workload {work_id}")
    return row


_RULES: dict[type, Any] = {
    Submitted: _submitted, FileUploaded: _file_uploaded, UploadTimeout: _upload_timeout,
    HandedOut: _handed_out, Progress: _progress, Reported: _reported,
    ResultsUploaded: _results_uploaded, CancelRequested: _cancel_requested,
    LeaseTimeout: _lease_timeout, SlotEnded: _slot_end, DeviceDeleted: _device_deleted,
    SessionClosed: _session_closed}
