"""Queue policy as plain functions of (state, now) -> decision: no I/O, no clock reads.

Rows are mappings with the workload columns of ``db`` (``status``, ``priority``,
``ready_at``, ``attempts``, ``cancel_requested``, ``work_id``, ...). Times are integer
milliseconds since the epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Collection, Iterable, Mapping, Sequence

from cloudqueue.models import format_time

PRIORITY_RANK = {"HIGH": 1, "MEDIUM": 2, "LOW": 3}
#: stock order: work being uploaded, then executing, then ready (an implicit retry)
STATUS_RANK = {"UPLOADING": 0, "EXECUTING": 1, "READY": 2}
ACTIVE = tuple(STATUS_RANK)
TERMINAL = ("DONE", "FAILED", "CANCELLED")
DEVICE_STATUSES = ("ONLINE", "BUSY", "ERROR", "OFFLINE")

Row = Mapping[str, Any]
#: the longest board time a run may report or be estimated at (a year): a larger
#: ``DeviceSeconds`` is refused, and a stored one (an old database) is not believed
MAX_RUN_SECONDS = 366 * 86400


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as the wire's ``2024-05-01T12:00:00.123Z``; None for
    none, and for a moment no datetime can hold (a bad stored value must not fail answers)."""
    if ms is None:
        return None
    try:
        return format_time(datetime.fromtimestamp(ms / 1000, tz=timezone.utc))
    except (OverflowError, OSError, ValueError):
        return None


def run_time(seconds: Any) -> float | None:
    """A stored board time as a plausible number of seconds, else None (NaN, infinite,
    negative or past ``MAX_RUN_SECONDS``: only an old database can hold those)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    return float(seconds) if 0 <= seconds <= MAX_RUN_SECONDS else None


def queue_key(row: Row) -> tuple:
    """The device queue order: (status rank, priority rank, ReadyAt), then id for ties."""
    return (STATUS_RANK.get(row["status"], 9), PRIORITY_RANK.get(row["priority"], 9),
            row["ready_at"] or 0, row["work_id"])


def queue_order(rows: Iterable[Row]) -> list[Row]:
    """A device's active work (UPLOADING, EXECUTING, READY) in hand-out order."""
    return sorted((r for r in rows if r["status"] in ACTIVE), key=queue_key)


@dataclass(frozen=True)
class Finalize:
    """A workload the hand-out ends instead of handing it out."""

    work_id: str
    status: str
    error_kind: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Handout:
    """What one ``GET /devices/{id}/workload`` decides."""

    chosen: Row | None            # the work to hand out (None: no work, answer [])
    counts_attempt: bool          # this hand-out is one more attempt
    finalize: list[Finalize]      # work passed over and ended on the way


def plan_handout(rows: Iterable[Row], max_attempts: int,
                 asked_at: int | None = None, holding: Collection[str] = ()) -> Handout:
    """Pick the work to hand out, ending on the way what must not run again.

    - Work the device says it already holds (``holding``: ours, ``?Holding=``) is skipped
      without counting an attempt: the board is running or uploading it, and asks for the
      *next* work. Without it, the stock rule below applies.

    - EXECUTING/UPLOADING work is handed back (stock: a restarted device resumes it) only
      when it was handed out before this request was made (``asked_at``); work handed to a
      concurrent request of the same device is skipped, so two racing polls never share.
      (``asked_at`` and ``handed_out_at`` are microseconds, so sequential calls differ.)

    - EXECUTING work whose cancel was requested is re-handed to nobody: ``CANCELLED``.
    - A hand-out of READY or EXECUTING work counts one attempt; one that would exceed
      ``max_attempts`` ends it ``FAILED``/``attempts_exhausted`` and the next work is
      considered (no poison pill).
    - UPLOADING work is handed back without counting an attempt: it ran, only its results
      upload is missing.
    """
    ended: list[Finalize] = []
    for row in queue_order(rows):
        if row["work_id"] in holding:
            continue
        if (row["status"] != "READY" and asked_at is not None
                and (row["handed_out_at"] or 0) >= asked_at):
            continue
        if row["status"] == "UPLOADING":
            return Handout(row, False, ended)
        if row["status"] == "EXECUTING" and row["cancel_requested"]:
            ended.append(Finalize(row["work_id"], "CANCELLED"))
            continue
        if row["attempts"] >= max_attempts:
            ended.append(Finalize(
                row["work_id"], "FAILED", "attempts_exhausted",
                f"the device was handed this workload {row['attempts']} times without "
                f"finishing it (limit {max_attempts}); it may crash the device: check it "
                f"and submit it again"))
            continue
        return Handout(row, True, ended)
    return Handout(None, False, ended)


def takes_results(row: Row) -> bool:
    """Whether a results file may arrive for this workload now: running or finished work
    (a re-upload of DONE/FAILED replaces the file: an uploader retrying), and CANCELLED
    work that ran on its device, once (the programs done before the stop)."""
    if row["status"] in ("EXECUTING", "UPLOADING", "DONE", "FAILED"):
        return True
    return (row["status"] == "CANCELLED" and row["started_at"] is not None
            and not row["has_result"])


def lease_expired(last_seen: int | None, now: int, lease_seconds: float) -> bool:
    """A device silent for longer than the lease has lost its EXECUTING/UPLOADING work."""
    return last_seen is None or now - last_seen > lease_seconds * 1000


def after_lease(row: Row) -> str:
    """Where work goes when its lease ends: back to READY, or CANCELLED if asked to."""
    return "CANCELLED" if row["cancel_requested"] else "READY"


def upload_expired(row: Row, now: int, ttl_seconds: float) -> bool:
    """CREATED work whose file did not arrive within the TTL."""
    return row["status"] == "CREATED" and now - row["created_at"] > ttl_seconds * 1000


def device_status(reported: str | None, last_refreshed: int | None, refresh_timeout: int,
                  now: int) -> str:
    """What the device last said, or OFFLINE when its heartbeat is older than RefreshTimeout."""
    if last_refreshed is None or now > last_refreshed + refresh_timeout * 1000:
        return "OFFLINE"
    return reported or "ONLINE"


def queue_position(rows: Sequence[Row], work_id: str) -> int | None:
    """Where READY work stands in its device's queue: 1 runs next, 2 after that, ...;
    0 for work the device already has (running or uploading); None when not queued
    (CREATED, finished, or another device's)."""
    ready = 0
    for row in queue_order(rows):
        if row["status"] == "READY":
            ready += 1
        if row["work_id"] == work_id:
            return ready if row["status"] == "READY" else 0
    return None


def run_seconds(row: Row, fallback_seconds: float) -> float:
    """Board time a workload is expected to take: its own estimate (made from its file's
    programs at upload, ``estimated_seconds``) where known, else ``fallback_seconds`` (the
    device's recent measured mean)."""
    own = run_time(row.get("estimated_seconds"))
    return own if own is not None else fallback_seconds


def remaining_seconds(row: Row, now: int, fallback_seconds: float) -> float:
    """What is left of active work: all of READY work; for running work the pace measured
    so far (elapsed per program done) when the device reported progress, else its
    expected time less the time since it started; nothing of work being uploaded."""
    if row["status"] == "UPLOADING":
        return 0.0
    expected = run_seconds(row, fallback_seconds)
    if row["status"] == "READY" or row["started_at"] is None:
        return expected
    elapsed = max(0.0, (now - row["started_at"]) / 1000)
    done, total = row.get("programs_done"), row.get("programs_total")
    if done and total and 0 < done < total:
        return elapsed / done * (total - done)
    return max(0.0, expected - elapsed)


@dataclass(frozen=True)
class StartEstimate:
    """``EstimatedStartAt`` (ms, or None) and, when there is none for READY work, why."""

    at: int | None
    reason: str | None = None


def estimated_start(rows: Sequence[Row], work_id: str, now: int, fallback_seconds: float,
                    device_state: str, device_reason: str | None = None) -> StartEstimate:
    """When READY work may start: now plus what is left of each workload ahead of it
    (``remaining_seconds``). A device that is OFFLINE or in ERROR runs nothing: no
    estimate, with the reason. Work that is not READY has no estimate and no reason."""
    order = queue_order(rows)
    index = next((i for i, r in enumerate(order) if r["work_id"] == work_id), None)
    if index is None or order[index]["status"] != "READY":
        return StartEstimate(None)
    if device_state == "OFFLINE":
        return StartEstimate(None, "device offline: no estimate")
    if device_state == "ERROR":
        why = f" ({device_reason})" if device_reason else ""
        return StartEstimate(None, f"device in ERROR{why}: no estimate")
    ahead = sum(remaining_seconds(r, now, fallback_seconds) for r in order[:index])
    return StartEstimate(int(now + ahead * 1000))


def device_seconds(reported: float | None, started_at: int | None, now: int) -> float | None:
    """Board time of a finished run: what the device measured, else StartedAt to now."""
    if run_time(reported) is not None:
        return float(reported)
    if started_at is None:
        return None
    return max(0.0, (now - started_at) / 1000)


def current_work(health: Mapping[str, Any] | None) -> tuple[str, int, int] | None:
    """``(work_id, programs_done, programs_total)`` from a heartbeat's Health, as the board
    daemon sends it (``Health.CurrentWork = {work_id, programs_done, programs_total, ...}``),
    or None when it carries no usable progress. Hostile input: anything malformed is None."""
    if not isinstance(health, Mapping):
        return None
    cur = health.get("CurrentWork")
    if not isinstance(cur, Mapping):
        return None
    work_id, done, total = cur.get("work_id"), cur.get("programs_done"), cur.get("programs_total")
    if not isinstance(work_id, str) or not work_id or len(work_id) > 100:
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (done, total)):
        return None
    if total <= 0 or done < 0 or total > 10_000_000:
        return None
    return work_id, min(done, total), total


def progress_view(status: str, done: int | None, total: int | None) -> dict | None:
    """``Progress`` of ``GET /workloads/{id}``: the last value the device reported (kept
    through UPLOADING and a failure), total/total once DONE; None when never reported."""
    if total is None:
        return None
    if status == "DONE":
        return {"ProgramsDone": total, "ProgramsTotal": total}
    if status in ("READY", "CREATED"):
        return None
    return {"ProgramsDone": done or 0, "ProgramsTotal": total}
