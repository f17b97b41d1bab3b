"""The workload store: workloads and the device queue over SQLite (sync, no HTTP).

Every state change is one transaction under the database lock; the policy (which work to
hand out, what a lease or an attempt limit does) comes from ``policy``.
"""
from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any, Collection, Iterable

from cloudqueue.errors import BadRequest, Conflict, NotFound
from queueservice import policy
from queueservice.db import Database
from queueservice.identities import NO_DEVICE_HINT
from queueservice.settings import Limits

Row = dict[str, Any]


def _row(r: sqlite3.Row | None) -> Row | None:
    return dict(r) if r is not None else None


@dataclass(frozen=True)
class PageKey:
    """A keyset pagination position: the last item of the previous page."""

    created_at: int
    work_id: str


class WorkloadStore:
    def __init__(self, db: Database, limits: Limits):
        self.db = db
        self.limits = limits

    # -- reads -------------------------------------------------------------------------
    def get(self, work_id: str) -> Row | None:
        with self.db.reading() as conn:
            return _row(conn.execute("SELECT * FROM workloads WHERE work_id = ?",
                                     (work_id,)).fetchone())

    def active_for_device(self, device_id: str) -> list[Row]:
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM workloads WHERE device_id = ? AND status IN (?, ?, ?)",
                (device_id, *policy.ACTIVE)).fetchall()
        return [dict(r) for r in rows]

    def cancel_requested(self, device_id: str) -> list[str]:
        """Active work of this device that its owner asked to cancel."""
        return sorted(r["work_id"] for r in self.active_for_device(device_id)
                      if r["cancel_requested"])

    def run_estimate_seconds(self, device_id: str) -> float:
        """Mean board time of the device's last 20 finished runs (the default if none):
        what a workload without its own estimate is expected to take."""
        with self.db.reading() as conn:
            row = conn.execute(
                "SELECT AVG(device_seconds) FROM (SELECT device_seconds FROM workloads "
                "WHERE device_id = ? AND status = 'DONE' AND device_seconds IS NOT NULL "
                "ORDER BY finished_at DESC LIMIT 20)", (device_id,)).fetchone()
        seconds = policy.run_time(row[0]) if row else None  # None too for a bad stored value
        return float(seconds if seconds is not None else self.limits.default_run_seconds)

    def list(self, *, account_id: str | None = None, device_id: str | None = None,
             status: str | None = None, limit: int = 5,
             start: PageKey | None = None) -> tuple[list[Row], PageKey | None]:
        """Newest first by (created_at, work_id); answers the page and the next page's key."""
        where, args = [], []
        for column, value in (("account_id", account_id), ("device_id", device_id),
                              ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if start is not None:
            where.append("(created_at, work_id) < (?, ?)")
            args += [start.created_at, start.work_id]
        sql = "SELECT * FROM workloads"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, work_id DESC LIMIT ?"
        args.append(limit + 1)
        with self.db.reading() as conn:
            rows = [dict(r) for r in conn.execute(sql, args).fetchall()]
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, PageKey(rows[-1]["created_at"], rows[-1]["work_id"])
        return rows, None

    # -- submit ------------------------------------------------------------------------
    def create(self, *, account_id: str, device_id: str, priority: str,
               user_given_name: str | None, sha256: str | None, now: int,
               workload_name: str | None = None,
               idempotency_key: str | None = None, body_hash: str = "") -> tuple[Row, bool]:
        """A new CREATED workload; with an Idempotency-Key, a retry answers the first one.
        ``user_given_name``: the submitter's name (stock meaning); ``workload_name``: its own.

        Answers (row, created). Raises ``Conflict`` when the key was used with another body.
        """
        with self.db.transaction() as conn:
            # checked again here: an admin may have deleted the device since the route did
            if conn.execute("SELECT 1 FROM devices WHERE device_id = ?",
                            (device_id,)).fetchone() is None:
                raise NotFound(f"no device {device_id}: {NO_DEVICE_HINT}")
            if idempotency_key is not None:
                seen = conn.execute(
                    "SELECT body_hash, work_id, created_at FROM idempotency "
                    "WHERE account_id = ? AND key = ?", (account_id, idempotency_key)).fetchone()
                fresh = seen is not None and (
                    now - seen["created_at"] <= self.limits.idempotency_seconds * 1000)
                if fresh:
                    if seen["body_hash"] != body_hash:
                        raise Conflict(
                            "this Idempotency-Key was already used for a different request: "
                            "use a new key for a new workload", kind="idempotency_key_reused")
                    row = conn.execute("SELECT * FROM workloads WHERE work_id = ?",
                                       (seen["work_id"],)).fetchone()
                    if row is not None:
                        return dict(row), False
            work_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO workloads (work_id, device_id, account_id, user_given_name, "
                "workload_name, priority, status, created_at, workload_sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, 'CREATED', ?, ?)",
                (work_id, device_id, account_id, user_given_name, workload_name, priority,
                 now, sha256))
            if idempotency_key is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO idempotency (account_id, key, body_hash, work_id, "
                    "created_at) VALUES (?, ?, ?, ?, ?)",
                    (account_id, idempotency_key, body_hash, work_id, now))
            row = conn.execute("SELECT * FROM workloads WHERE work_id = ?",
                               (work_id,)).fetchone()
        return dict(row), True

    def bulk_insert(self, rows: Iterable[dict]) -> int:
        """Insert ready-made workload rows (benchmarks, imports); answers how many."""
        count = 0
        with self.db.transaction() as conn:
            for r in rows:
                cols = ", ".join(r)
                marks = ", ".join("?" for _ in r)
                conn.execute(f"INSERT INTO workloads ({cols}) VALUES ({marks})", tuple(r.values()))
                count += 1
        return count

    # -- file arrivals (the S3 events of the stock service) ----------------------------
    def check_workload_upload(self, work_id: str) -> Row:
        """The workload a workload file may be uploaded for (else NotFound / Conflict)."""
        row = self.get(work_id)
        if row is None:
            raise NotFound(f"no workload {work_id}: submit the workload again "
                           "(`userclient submit`)")
        if row["status"] in policy.TERMINAL and not row["has_workload"]:
            raise Conflict(f"workload {work_id} is {row['status']}: it takes no file any "
                           "more; submit a new workload")
        return row

    def workload_uploaded(self, work_id: str, now: int,
                          estimated_seconds: float | None = None) -> Row:
        """The workload's first file arrived: CREATED becomes READY, ReadyAt = now, with the
        board time estimated from the file (None: unknown). Only CREATED work without a file
        takes one: a file, once there, is never replaced (``immutable_workload_file``), so
        nothing here resets work that was handed out."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM workloads WHERE work_id = ?", (work_id,)).fetchone()
            if row is None or row["status"] != "CREATED" or row["has_workload"]:
                raise Conflict(f"workload {work_id} can no longer take a file")
            status = "CANCELLED" if row["cancel_requested"] else "READY"
            finished = now if status == "CANCELLED" else None
            changed = conn.execute(
                "UPDATE workloads SET status = ?, ready_at = ?, has_workload = 1, "
                "finished_at = ?, estimated_seconds = ? "
                "WHERE work_id = ? AND status = 'CREATED' AND has_workload = 0",
                (status, now, finished, estimated_seconds, work_id)).rowcount
            if changed != 1:
                raise Conflict(f"workload {work_id} can no longer take a file")
            return dict(conn.execute("SELECT * FROM workloads WHERE work_id = ?",
                                     (work_id,)).fetchone())

    def check_results_upload(self, work_id: str) -> Row:
        """The workload a results file may be uploaded for (else NotFound / Conflict):
        one that takes results now, of a device that still exists (the upload URL of a
        deleted device's board is refused, as its credentials are)."""
        with self.db.reading() as conn:
            row = _row(conn.execute("SELECT w.*, d.device_id IS NOT NULL AS device_exists "
                                    "FROM workloads w LEFT JOIN devices d "
                                    "ON d.device_id = w.device_id WHERE w.work_id = ?",
                                    (work_id,)).fetchone())
        if row is None:
            raise NotFound(f"no workload {work_id}")
        if not row.pop("device_exists"):
            raise Conflict(f"workload {work_id}'s device was deleted: it takes no results")
        if not policy.takes_results(row):
            raise Conflict(f"workload {work_id} is {row['status']}: it takes no results")
        return row

    def results_uploaded(self, work_id: str, now: int) -> Row:
        """The results file arrived: DONE, or FAILED/CANCELLED when the device reported
        that outcome with partial results. CANCELLED work takes its partial results once."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM workloads WHERE work_id = ?", (work_id,)).fetchone()
            if row is None or not policy.takes_results(row):
                raise Conflict(f"workload {work_id} takes no results now")
            if row["status"] in ("EXECUTING", "UPLOADING"):
                status = row["pending_outcome"] if row["pending_outcome"] in (
                    "FAILED", "CANCELLED") else "DONE"
                seconds = row["device_seconds"]
                if seconds is None:
                    seconds = policy.device_seconds(None, row["started_at"], now)
                conn.execute(
                    "UPDATE workloads SET status = ?, finished_at = ?, device_seconds = ?, "
                    "pending_outcome = NULL, has_result = 1 WHERE work_id = ?",
                    (status, now, seconds, work_id))
            else:  # a re-upload of finished work (an uploader retrying): replace, no change
                conn.execute("UPDATE workloads SET has_result = 1 WHERE work_id = ?", (work_id,))
            return dict(conn.execute("SELECT * FROM workloads WHERE work_id = ?",
                                     (work_id,)).fetchone())

    # -- the device side ---------------------------------------------------------------
    def touch_device(self, device_id: str, now: int) -> list[str]:
        """Record a call from the device (after ending a lease it had already lost)."""
        with self.db.transaction() as conn:
            changed = self._expire_leases(conn, now, device_id)
            conn.execute("UPDATE devices SET last_seen = ? WHERE device_id = ?", (now, device_id))
        return changed

    def claim(self, device_id: str, asked_at: int | None = None,
              holding: Collection[str] = ()) -> tuple[Row | None, list[policy.Finalize]]:
        """Hand the device its next work, ending on the way what must not run.

        One atomic claim: the read, the choice and the update are one transaction under
        the lock, the times are taken inside it, and the update changes the chosen row only
        in the state it was read in (else ``Conflict``, rolled back), so two polls can
        never both take the same work.

        ``asked_at``: when the device's request arrived, in microseconds since the epoch;
        ``holding``: work the device already has (see ``policy.plan_handout``)."""
        with self.db.transaction() as conn:
            now = time.time_ns() // 1_000_000
            rows = [dict(r) for r in conn.execute(
                "SELECT * FROM workloads WHERE device_id = ? AND status IN (?, ?, ?)",
                (device_id, *policy.ACTIVE)).fetchall()]
            plan = policy.plan_handout(rows, self.limits.max_attempts, asked_at, holding)
            by_id = {r["work_id"]: r for r in rows}
            for end in plan.finalize:
                seconds = policy.device_seconds(None, by_id[end.work_id]["started_at"], now)
                conn.execute(
                    "UPDATE workloads SET status = ?, error_kind = ?, error_message = ?, "
                    "finished_at = ?, device_seconds = COALESCE(device_seconds, ?) "
                    "WHERE work_id = ?",
                    (end.status, end.error_kind, end.error_message, now, seconds, end.work_id))
            chosen = plan.chosen
            if chosen is None:
                return None, plan.finalize
            fresh = plan.counts_attempt and chosen["status"] == "READY"
            # the hand-out's moment, as late as it can be: a poll that arrived before it
            # (whenever that poll gets the lock) never gets this work
            handed_out_at = time.time_ns() // 1000
            changed = conn.execute(
                "UPDATE workloads SET status = ?, attempts = attempts + ?, started_at = ?, "
                "handed_out_at = ?, "
                "programs_done = CASE WHEN ? THEN NULL ELSE programs_done END, "
                "programs_total = CASE WHEN ? THEN NULL ELSE programs_total END "
                "WHERE work_id = ? AND device_id = ? AND status = ? AND attempts = ? "
                "AND handed_out_at IS ?",
                ("EXECUTING" if plan.counts_attempt else chosen["status"],
                 1 if plan.counts_attempt else 0,
                 now if fresh else chosen["started_at"], handed_out_at,
                 fresh, fresh,  # a new run starts from nothing done
                 chosen["work_id"], device_id, chosen["status"], chosen["attempts"],
                 chosen["handed_out_at"])).rowcount
            if changed != 1:  # cannot happen under the lock; never hand out on a doubt
                raise Conflict(f"workload {chosen['work_id']} changed while it was handed "
                               "out: ask again")
            row = conn.execute("SELECT * FROM workloads WHERE work_id = ?",
                               (chosen["work_id"],)).fetchone()
            return dict(row), plan.finalize

    def record_progress(self, device_id: str, work_id: str, done: int, total: int) -> bool:
        """The device's health says how far its current work is: keep it on the workload,
        only when that work is this device's and EXECUTING. Answers whether it was kept."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE workloads SET programs_done = ?, programs_total = ? "
                "WHERE work_id = ? AND device_id = ? AND status = 'EXECUTING'",
                (done, total, work_id, device_id))
            return cur.rowcount > 0

    def report(self, device_id: str, work_id: str, *, outcome: str | None,
               error_message: str | None = None, error_kind: str | None = None,
               partial: bool = False, sha256: str | None = None,
               device_seconds: float | None = None, programs_done: int | None = None,
               now: int) -> Row:
        """``PUT /devices/{id}/workloads/{WorkId}``: the device's outcome for its work.

        Transitions happen only from EXECUTING/UPLOADING (stock: READY or finished work
        still gets an upload URL and does not change).
        """
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM workloads WHERE work_id = ? AND device_id = ?",
                               (work_id, device_id)).fetchone()
            if row is None:
                raise NotFound(f"workload {work_id} is not this device's work")
            row = dict(row)
            if sha256 is not None:
                conn.execute("UPDATE workloads SET result_sha256 = ? WHERE work_id = ?",
                             (sha256, work_id))
            if device_seconds is not None and row["status"] in ("EXECUTING", "UPLOADING"):
                conn.execute("UPDATE workloads SET device_seconds = ? WHERE work_id = ?",
                             (device_seconds, work_id))
            seconds = policy.device_seconds(device_seconds, row["started_at"], now)
            if programs_done is not None and outcome in ("FAILED", "CANCELLED") and \
                    row["status"] in ("EXECUTING", "UPLOADING") and row["programs_total"]:
                # the last count, which the heartbeats' progress may not have caught up with
                conn.execute("UPDATE workloads SET programs_done = ? WHERE work_id = ?",
                             (min(programs_done, row["programs_total"]), work_id))
            if programs_done and outcome == "DONE" and row["status"] == "EXECUTING":
                # a run shorter than a heartbeat: its count came only with the outcome
                conn.execute("UPDATE workloads SET programs_done = ?, programs_total = ? "
                             "WHERE work_id = ?", (programs_done, programs_done, work_id))
            if row["status"] in ("EXECUTING", "UPLOADING"):
                if outcome in (None, "DONE"):
                    if row["status"] == "EXECUTING":
                        conn.execute("UPDATE workloads SET status = 'UPLOADING' "
                                     "WHERE work_id = ?", (work_id,))
                elif outcome == "FAILED":
                    message = error_message or "the device reported a failure without a message"
                    kind = error_kind or "device_error"
                    if partial:
                        conn.execute(
                            "UPDATE workloads SET status = 'UPLOADING', pending_outcome = "
                            "'FAILED', error_message = ?, error_kind = ? WHERE work_id = ?",
                            (message, kind, work_id))
                    else:
                        conn.execute(
                            "UPDATE workloads SET status = 'FAILED', error_message = ?, "
                            "error_kind = ?, finished_at = ?, device_seconds = ?, "
                            "pending_outcome = NULL WHERE work_id = ?",
                            (message, kind, now, seconds, work_id))
                elif outcome == "CANCELLED" and partial:
                    # the programs done before the stop: CANCELLED once they arrive
                    conn.execute(
                        "UPDATE workloads SET status = 'UPLOADING', pending_outcome = "
                        "'CANCELLED', error_message = ?, error_kind = ? WHERE work_id = ?",
                        (error_message, error_kind, work_id))
                elif outcome == "CANCELLED":
                    conn.execute(
                        "UPDATE workloads SET status = 'CANCELLED', finished_at = ?, "
                        "device_seconds = ?, pending_outcome = NULL WHERE work_id = ?",
                        (now, seconds, work_id))
                else:
                    raise BadRequest(f"unknown Outcome {outcome!r}: use DONE, FAILED or CANCELLED")
            return dict(conn.execute("SELECT * FROM workloads WHERE work_id = ?",
                                     (work_id,)).fetchone())

    # -- users -------------------------------------------------------------------------
    def cancel(self, work_id: str, now: int) -> Row:
        """Cancel: CREATED/READY at once; EXECUTING/UPLOADING once the device learns of it."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM workloads WHERE work_id = ?", (work_id,)).fetchone()
            if row is None:
                raise NotFound(f"no workload {work_id}")
            if row["status"] in policy.TERMINAL:
                raise Conflict(f"workload {work_id} is already {row['status']}: "
                               "there is nothing to cancel")
            if row["status"] in ("CREATED", "READY"):
                conn.execute("UPDATE workloads SET status = 'CANCELLED', finished_at = ?, "
                             "cancel_requested = 1 WHERE work_id = ?", (now, work_id))
            else:
                conn.execute("UPDATE workloads SET cancel_requested = 1 WHERE work_id = ?",
                             (work_id,))
            return dict(conn.execute("SELECT * FROM workloads WHERE work_id = ?",
                                     (work_id,)).fetchone())

    # -- housekeeping ------------------------------------------------------------------
    def expire_leases(self, now: int) -> list[str]:
        """End the leases of silent devices; answers the devices whose queue changed."""
        with self.db.transaction() as conn:
            return self._expire_leases(conn, now, None)

    def _expire_leases(self, conn: sqlite3.Connection, now: int,
                       device_id: str | None) -> list[str]:
        sql = ("SELECT w.work_id, w.device_id, w.cancel_requested, w.started_at, d.last_seen "
               "FROM workloads w JOIN devices d ON d.device_id = w.device_id "
               "WHERE w.status IN ('EXECUTING', 'UPLOADING')")
        args: tuple = ()
        if device_id is not None:
            sql += " AND w.device_id = ?"
            args = (device_id,)
        changed = set()
        for r in conn.execute(sql, args).fetchall():
            if not policy.lease_expired(r["last_seen"], now, self.limits.lease_seconds):
                continue
            status = policy.after_lease(r)
            if status == "CANCELLED":
                conn.execute("UPDATE workloads SET status = 'CANCELLED', finished_at = ?, "
                             "pending_outcome = NULL WHERE work_id = ?", (now, r["work_id"]))
            else:
                conn.execute("UPDATE workloads SET status = 'READY', pending_outcome = NULL, "
                             "error_message = NULL, error_kind = NULL WHERE work_id = ?",
                             (r["work_id"],))
            changed.add(r["device_id"])
        return sorted(changed)

    def expire_uploads(self, now: int) -> list[tuple[str, str]]:
        """CREATED work never uploaded within the TTL: FAILED/upload_expired. Answers
        (WorkId, DeviceId) of each."""
        cutoff = now - int(self.limits.upload_ttl_seconds * 1000)
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT work_id, device_id FROM workloads "
                                "WHERE status = 'CREATED' AND created_at < ?",
                                (cutoff,)).fetchall()
            for r in rows:
                conn.execute(
                    "UPDATE workloads SET status = 'FAILED', error_kind = 'upload_expired', "
                    "error_message = ?, finished_at = ? WHERE work_id = ?",
                    ("the workload file was never uploaded; submit the workload again",
                     now, r["work_id"]))
        return [(r["work_id"], r["device_id"]) for r in rows]

    def purge_idempotency(self, now: int) -> None:
        cutoff = now - self.limits.idempotency_seconds * 1000
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM idempotency WHERE created_at < ?", (cutoff,))
