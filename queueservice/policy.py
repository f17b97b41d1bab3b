"""Queue policy as plain functions of (state, now) -> decision: no I/O, no clock reads.

Rows are mappings with the workload columns of ``db`` (``status``, ``priority``,
``ready_seq``, ``attempts``, ``cancel_requested``, ``work_id``, ...). Times are integer
milliseconds since the epoch. What an event does to a workload's state is
``transitions``'; which work comes next, and the timers it uses, are here.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Collection, Iterable, Iterator, Mapping, Sequence

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
    """The device queue order: (status rank, priority rank, place in line), then id. The
    place in line is the number of the database's queue sequence the work took when it
    became READY (``ready_seq``), not a time: a clock that steps back reorders nothing."""
    return (STATUS_RANK.get(row["status"], 9), PRIORITY_RANK.get(row["priority"], 9),
            row["ready_seq"] or 0, row["work_id"])


def queue_order(rows: Iterable[Row]) -> list[Row]:
    """A device's active work (UPLOADING, EXECUTING, READY) in hand-out order."""
    return sorted((r for r in rows if r["status"] in ACTIVE), key=queue_key)


def handout_candidates(rows: Iterable[Row], asked: int | None = None,
                       holding: Collection[str] = ()) -> Iterator[Row]:
    """The device's active work a poll may be handed, in queue order: the store asks
    ``transitions`` about each in turn (``HandedOut``), ending on the way what must not run
    again (no poison pill), until one is handed out.

    - Work the device says it already holds (``holding``: ours, ``?Holding=``) is skipped
      without counting an attempt: the board is running or uploading it, and asks for the
      *next* work. Without it, the stock rule below applies.
    - EXECUTING/UPLOADING work is handed back (stock: a restarted device resumes it) only
      when it was handed out before this request was made: ``asked`` is the queue
      sequence's last number when the poll arrived (``WorkloadStore.sequence_mark``), and
      work handed to a concurrent poll of the same device took a later number
      (``handout_seq``), so two racing polls never share.
    """
    for row in queue_order(rows):
        if row["work_id"] in holding:
            continue
        if (row["status"] != "READY" and asked is not None
                and (row["handout_seq"] or 0) > asked):
            continue
        yield row


def lease_expired(last_seen: int | None, now: int, lease_seconds: float) -> bool:
    """A device silent for longer than the lease has lost its EXECUTING/UPLOADING work."""
    return last_seen is None or now - last_seen > lease_seconds * 1000


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
