"""The workload store: workloads and the device queue in the database (sync, no HTTP).

Every state change is one transaction under the database lock: read the row, ask
``transitions`` what the event does (or the refusal), write the change with a
compare-and-set (``write``). Which work to hand out comes from ``policy``.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping

from cloudqueue.errors import BadRequest, Conflict, NotFound
from queueservice import facility, policy, pricing, scheduling, situation, transitions
from queueservice.clock import now_ms
from queueservice.db import Connection, Database
from queueservice.identities import NO_DEVICE_HINT
from queueservice.settings import ServiceLimits

Row = dict[str, Any]


def _row(r: Any) -> Row | None:
    return dict(r) if r is not None else None


@dataclass(frozen=True)
class HandOut:
    """A claim's answer: the work handed out (None: none), the WorkIds it ended, and when
    (ms) a rule holding READY work ends (None: no such time known), so that a waiting
    poll looks again then."""

    row: Row | None
    ended: list[str]
    recheck_at: int | None = None


#: a poll the policy left without work looks again at least this often (ms): a grant,
#: a booking or a session's change elsewhere need not wake the device
RECHECK_MS = 5000


def _recheck_at(decision: scheduling.Decision, now: int) -> int | None:
    """When a poll the policy left without work looks again: at the earliest end of a
    rule that holds work, within ``RECHECK_MS``; None when no work waits."""
    if not decision.skipped:
        return None
    return min([now + RECHECK_MS] + [s.until for s in decision.skipped.values()
                                     if s.until is not None and s.until > now])


@dataclass(frozen=True)
class PageKey:
    """A keyset pagination position: the last item of the previous page."""

    created_at: int
    work_id: str


#: what a queue view reads of a device's active work: the hand-out order
#: (``policy.queue_key``), the time left (``policy.remaining_seconds``), the facility's
#: candidates and sessions (``situation``) and a cancel asked for
QUEUE_COLUMNS = ("work_id", "device_id", "account_id", "status", "priority", "ready_seq",
                 "started_at", "estimated_seconds", "programs_done", "programs_total",
                 "team_id", "max_seconds", "timeslot", "session_id", "cancel_requested")


class WorkloadStore:
    def __init__(self, db: Database, limits: ServiceLimits):
        self.db = db
        self.limits = limits
        with db.reading() as conn:
            self._mark = _sequence_value(conn)

    # -- reads -------------------------------------------------------------------------
    def get(self, work_id: str) -> Row | None:
        with self.db.reading() as conn:
            return _row(conn.execute("SELECT * FROM workloads WHERE work_id = ?",
                                     (work_id,)).fetchone())

    def active_for_device(self, device_id: str) -> list[Row]:
        """The device's active work (UPLOADING, EXECUTING, READY), each with the columns
        its queue is worked out from (``QUEUE_COLUMNS``), not the whole row: a long
        queue is read at every queue view (``GET /workloads/{id}``, the portal's pages)."""
        with self.db.reading() as conn:
            return conn.dicts(
                f"SELECT {', '.join(QUEUE_COLUMNS)} FROM workloads WHERE device_id = ? "
                "AND status IN (?, ?, ?)", (device_id, *policy.ACTIVE))

    def queue_lengths(self, device_ids: Iterable[str]) -> dict[str, int]:
        """Each device's queue length (``QueueLength`` of ``GET /devices/{id}``: its
        UPLOADING, EXECUTING and READY work), counted on the index ``workloads_queue``
        alone, one device at a time (a grouped count over every active workload reads
        the table)."""
        with self.db.reading() as conn:
            return {d: int(conn.execute(
                "SELECT COUNT(*) FROM workloads WHERE device_id = ? AND status IN (?, ?, ?)",
                (d, *policy.ACTIVE)).fetchone()[0]) for d in device_ids}

    def cancel_requested(self, device_id: str) -> list[str]:
        """Active work of this device that its owner asked to cancel."""
        return sorted(r["work_id"] for r in self.active_for_device(device_id)
                      if r["cancel_requested"])

    def run_estimate_seconds(self, device_id: str) -> float:
        """Mean board time of the device's last 20 finished runs (the default if none):
        what a workload without its own estimate is expected to take."""
        with self.db.reading() as conn:
            return self._run_estimate(conn, device_id)

    def _run_estimate(self, conn: Connection, device_id: str) -> float:
        row = conn.execute(
                "SELECT AVG(device_seconds) FROM (SELECT device_seconds FROM workloads "
            "WHERE device_id = ? AND status = 'DONE' AND device_seconds IS NOT NULL "
            "ORDER BY finished_at DESC, work_id DESC LIMIT 20) AS recent",  # the id:
            (device_id,)).fetchone()  # the same 20 on both engines when times tie
        seconds = policy.run_time(row[0]) if row else None  # None too for a bad stored value
        return float(seconds if seconds is not None else self.limits.default_run_seconds)

    def list(self, *, account_id: str | None = None, device_id: str | None = None,
             status: str | None = None, limit: int = 5, start: PageKey | None = None,
             team_id: str | None = None) -> tuple[list[Row], PageKey | None]:
        """Newest first by (created_at, work_id); answers the page and the next page's key."""
        where, args = [], []
        for column, value in (("account_id", account_id), ("device_id", device_id),
                              ("status", status), ("team_id", team_id)):
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
               idempotency_key: str | None = None, body_hash: str = "",
               charging: pricing.Charging | None = None,
               session_id: str | None = None) -> tuple[Row, bool]:
        """A new CREATED workload; with an Idempotency-Key, a retry answers the first one.
        ``user_given_name``: the submitter's name (stock meaning); ``workload_name``: its own.
        ``charging``: its team and cost cap (``pricing.submit_team`` decides the team and
        refuses what the facility's rules refuse); None: none (the stock protocol).
        ``session_id``: submitted in that session (``facility.session_for_submit``: the
        submitter's open session on this device), charged to the session's team (at the
        session's close, for the time it held the device).

        Answers (row, created). Raises ``Conflict`` when the key was used with another body.
        """
        with self.db.transaction() as conn:
            # checked again here: an admin may have deleted the device since the route did
            if conn.execute("SELECT 1 FROM devices WHERE device_id = ?",
                            (device_id,)).fetchone() is None:
                raise NotFound(f"no device {device_id}: {NO_DEVICE_HINT}")
            if idempotency_key is not None:
                # replicas: one request of a key at a time; a retry racing the first waits,
                # then finds its row
                conn.hold(f"idempotency:{account_id}:{idempotency_key}")
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
            if session_id is not None:
                session = facility.session_for_submit(conn, session_id, account_id, device_id)
                paying = _session_columns(session, charging)
            else:
                paying = _charging_columns(conn, account_id, device_id, charging, now)
            work_id = str(uuid.uuid4())
            change = transitions.transition(work_id, None, transitions.Submitted(), now)
            _insert(conn, {"work_id": work_id, "device_id": device_id,
                           "account_id": account_id, "user_given_name": user_given_name,
                           "workload_name": workload_name, "priority": priority,
                           "workload_sha256": sha256, "status": change.status,
                           **change.fields, **paying})
            if idempotency_key is not None:
                _remember_key(conn, {"account_id": account_id, "key": idempotency_key,
                                     "body_hash": body_hash, "work_id": work_id,
                                     "created_at": now})
            row = conn.execute("SELECT * FROM workloads WHERE work_id = ?",
                               (work_id,)).fetchone()
        return dict(row), True

    def bulk_insert(self, rows: Iterable[dict]) -> int:
        """Insert ready-made workload rows (benchmarks, imports); answers how many. Work in
        a queue (READY, EXECUTING, UPLOADING) without its place in line (``ready_seq``)
        takes the next number of the queue sequence, in the order given."""
        count = 0
        with self._transaction() as conn:
            for r in rows:
                if r["status"] in policy.ACTIVE and r.get("ready_seq") is None:
                    r = {**r, "ready_seq": take_number(conn)}
                _insert(conn, r)
                count += 1
        return count

    # -- file arrivals (the S3 events of the stock service) ----------------------------
    def check_workload_upload(self, work_id: str) -> Row:
        """The workload a workload file may be uploaded for (else NotFound / Conflict): one
        that takes its file now, or has it already (the caller compares the bytes)."""
        row = self.get(work_id)
        if row is None or not row["has_workload"]:
            transitions.check(work_id, row, transitions.FileUploaded())
        return row

    def workload_uploaded(self, work_id: str, now: int,
                          estimated_seconds: float | None = None) -> Row:
        """The workload's first file arrived: CREATED becomes READY (joining its device's
        queue), ReadyAt = now, with the board time estimated from the file (None: unknown).
        A file, once there, is never replaced (``immutable_workload_file``). Shared work
        its team cannot cover stays CREATED (``pricing.check_cover``: 409)."""
        with self._transaction() as conn:
            row = _select(conn, work_id)
            if (row is not None and row["status"] == "CREATED" and not row["has_workload"]
                    and not row["cancel_requested"]):
                pricing.check_cover(conn, row, estimated_seconds, now)
            return self._apply(conn, work_id, row,
                               transitions.FileUploaded(estimated_seconds), now)

    def check_results_upload(self, work_id: str) -> Row:
        """The workload a results file may be uploaded for (else NotFound / Conflict):
        one that takes results now, of a device that still exists (the upload URL of a
        deleted device's board is refused, as its credentials are)."""
        with self.db.reading() as conn:
            row, exists = _select_with_device(conn, work_id)
        transitions.check(work_id, row, transitions.ResultsUploaded(exists))
        return row

    def results_uploaded(self, work_id: str, now: int) -> Row:
        """The results file arrived: DONE, or FAILED/CANCELLED when the device reported
        that outcome with partial results. CANCELLED work takes its partial results once."""
        with self.db.transaction() as conn:
            row, exists = _select_with_device(conn, work_id)
            after = self._apply(conn, work_id, row, transitions.ResultsUploaded(exists), now)
            _session_activity(conn, row, after, now)
            return after

    # -- the device side ---------------------------------------------------------------
    def touch_device(self, device_id: str, now: int) -> list[str]:
        """Record a call from the device (after ending a lease it had already lost)."""
        with self.db.transaction() as conn:
            changed = self._expire_leases(conn, now, device_id)
            self._end_slots(conn, now, device_id)  # its heartbeat's answer asks the stop
            conn.execute("UPDATE devices SET last_seen = ? WHERE device_id = ?", (now, device_id))
        return changed

    def sequence_mark(self) -> int:
        """The last number of the queue sequence given out (committed): a poll takes it on
        arrival, and is never handed back work handed out after it (``asked`` of
        ``policy.handout_candidates``). On SQLite it is kept here after each commit and read
        without the lock, so a poll never waits to arrive; replicas (PostgreSQL) number
        for each other, so it is read from the database's counter."""
        if self.db.shared:
            with self.db.reading() as conn:
                return _sequence_value(conn)
        return self._mark

    def claim(self, device_id: str, asked: int | None = None,
              holding: Collection[str] = ()) -> tuple[Row | None, list[str]]:
        """``hand_out`` as (the work handed out or None, the WorkIds ended)."""
        answer = self.hand_out(device_id, asked, holding)
        return answer.row, answer.ended

    def hand_out(self, device_id: str, asked: int | None = None,
                 holding: Collection[str] = ()) -> HandOut:
        """Hand the device its next work, ending on the way what must not run: answers the
        work handed out (None: none), the WorkIds ended, and when a rule that holds READY
        work ends (``HandOut.recheck_at``).

        One atomic claim: the read, the choice and the update are one transaction (on
        SQLite under the lock and the file's write lock), the time is taken inside it, and
        each change is a compare-and-set on the row as it was read (else ``Conflict``,
        rolled back), so two polls can never both take the same work. On PostgreSQL each
        candidate is locked before it is taken, skipping one another replica's poll holds
        (that poll takes it; this one takes the next), and looked at again as it is now.

        Work the device had (EXECUTING, UPLOADING) comes back as the stock service hands
        it; which READY work runs is the facility's policy (``scheduling.pick``, read by
        ``situation``) unless the device needs none (no ``situation.rules_apply`` and no
        READY timeslot or session work: the stock queue order, today's claim). Skipped work
        stays READY.

        ``asked``: ``sequence_mark()`` when the device's request arrived; ``holding``: work
        the device already has (see ``policy.handout_candidates``)."""
        with self._transaction() as conn:
            now = now_ms()
            ruled = situation.rules_apply(conn, device_id, now)
            if ruled:
                rows = situation.claim_rows(conn, device_id, now)
            else:  # today's read; READY timeslot or session work still needs the policy
                rows = [dict(r) for r in conn.execute(
                    "SELECT * FROM workloads WHERE device_id = ? AND status IN (?, ?, ?)",
                    (device_id, *policy.ACTIVE))]
                ruled = situation.special_work(rows)
            ended: list[str] = []
            event = transitions.HandedOut(self.limits.max_attempts)
            ready: dict[str, Row] = {}
            for row in policy.handout_candidates(rows, asked, holding):
                if ruled and row["status"] == "READY":
                    ready[row["work_id"]] = row
                    continue
                if conn.dialect == "postgresql":
                    row = _still_a_candidate(conn, row["work_id"], asked, holding)
                    if row is None:
                        continue
                after = self._apply(conn, row["work_id"], row, event, now)
                if after["status"] in policy.ACTIVE:
                    return HandOut(after, ended)
                ended.append(row["work_id"])
            if not ruled:
                return HandOut(None, ended)
            return self._hand_out_ruled(conn, device_id, now, rows, ready, asked, holding,
                                        ended)

    def _hand_out_ruled(self, conn: Connection, device_id: str, now: int, rows: list[Row],
                        ready: dict[str, Row], asked: int | None,
                        holding: Collection[str], ended: list[str]) -> HandOut:
        """The READY work the policy picks (``ready``: the READY candidates in queue
        order), ending on the way what must not run as the stock claim does."""
        fallback = self._run_estimate(conn, device_id)
        sit = situation.read(conn, device_id, now, [r for r in rows if r["status"] != "READY"
                                                    or r["work_id"] in ready], fallback,
                             situation.CLAIM_HORIZON_MS)
        passed: set[str] = set()
        while True:
            decision = sit.decide(passed)
            cand = decision.chosen
            if cand is None:
                return HandOut(None, ended, _recheck_at(decision, now))
            passed.add(cand.work_id)
            row: Row | None = ready[cand.work_id]
            if conn.dialect == "postgresql":
                if cand.session_id is not None:  # the session before its work, as its
                    conn.execute(                 # close locks them: no deadlock
                        "SELECT session_id FROM sessions WHERE session_id = ? FOR UPDATE",
                        (cand.session_id,))
                row = _still_a_candidate(conn, cand.work_id, asked, holding)
                if row is None:
                    continue
            event = transitions.HandedOut(self.limits.max_attempts, sit.slot_of(cand))
            after = self._apply(conn, cand.work_id, row, event, now)
            if after["status"] in policy.ACTIVE:
                if cand.session_id is not None:
                    situation.note_session_activity(conn, cand.session_id, now,
                                                    handed_out=True)
                return HandOut(after, ended)
            ended.append(cand.work_id)

    def waiting(self, device_id: str, now: int, active: list[Row] | None = None,
                run_estimate: float | None = None) -> situation.Situation | None:
        """The device's situation for its READY work's ``Waiting`` reasons and forecast
        (read-only); None when the device needs no policy (the stock queue order).
        ``active`` and ``run_estimate`` (``run_estimate_seconds``): when the caller read
        them already."""
        with self.db.reading() as conn:
            if active is None:
                if not situation.needed(conn, device_id, now):
                    return None
                active = [dict(r) for r in conn.execute(
                    "SELECT * FROM workloads WHERE device_id = ? AND status IN (?, ?, ?)",
                    (device_id, *policy.ACTIVE))]
            elif not (situation.rules_apply(conn, device_id, now)
                      or situation.special_work(active)):
                return None
            if run_estimate is None:
                run_estimate = self._run_estimate(conn, device_id)
            return situation.read(conn, device_id, now, active, run_estimate)

    def record_progress(self, device_id: str, work_id: str, done: int, total: int) -> bool:
        """The device's health says how far its current work is: keep it on the workload,
        only when that work is this device's and EXECUTING. Answers whether it was kept
        (a refused one is dropped: the heartbeat carries no answer about it)."""
        with self.db.transaction() as conn:
            row = _select(conn, work_id, device_id)
            try:
                self._apply(conn, work_id, row, transitions.Progress(done, total), 0)
            except (NotFound, Conflict):
                return False
            return True

    def report(self, device_id: str, work_id: str, *, outcome: str | None,
               error_message: str | None = None, error_kind: str | None = None,
               partial: bool = False, sha256: str | None = None,
               device_seconds: float | None = None, programs_done: int | None = None,
               now: int) -> Row:
        """``PUT /devices/{id}/workloads/{WorkId}``: the device's outcome for its work
        (``transitions.Reported``)."""
        event = transitions.Reported(outcome, error_message, error_kind, partial, sha256,
                                     device_seconds, programs_done)
        with self.db.transaction() as conn:
            row = _select(conn, work_id, device_id)
            after = self._apply(conn, work_id, row, event, now)
            _session_activity(conn, row, after, now)
            return after

    # -- users -------------------------------------------------------------------------
    def cancel(self, work_id: str, now: int) -> Row:
        """Cancel: CREATED/READY at once; EXECUTING/UPLOADING once the device learns of it."""
        with self.db.transaction() as conn:
            return self._apply(conn, work_id, _select(conn, work_id),
                               transitions.CancelRequested(), now)

    # -- housekeeping ------------------------------------------------------------------
    def expire_leases(self, now: int) -> list[str]:
        """End the leases of silent devices; answers the devices whose queue changed."""
        with self.db.transaction() as conn:
            return self._expire_leases(conn, now, None)

    def _expire_leases(self, conn: Connection, now: int,
                       device_id: str | None) -> list[str]:
        """The candidates are the running work (of one device); ``transitions`` decides
        (``policy.lease_expired``)."""
        def lease_timeout(row: Row) -> transitions.Event:
            return transitions.LeaseTimeout(row.pop("device_last_seen"),
                                            self.limits.lease_seconds)
        return self._sweep(conn, "SELECT w.*, d.last_seen AS device_last_seen FROM workloads "
                           "w JOIN devices d ON d.device_id = w.device_id WHERE w.status "
                           "IN (?, ?)", transitions.RUNNING, device_id, lease_timeout, now)

    def end_slots(self, now: int) -> list[str]:
        """Timeslot work still running past its slot's end (or the slot was cancelled):
        the device is asked to stop it (``transitions.SlotEnded``). Answers the devices
        whose work changed. The device's own calls do the same for its work
        (``touch_device``), so its next heartbeat's answer carries the stop."""
        with self.db.transaction() as conn:
            return self._end_slots(conn, now, None)

    def _end_slots(self, conn: Connection, now: int, device_id: str | None) -> list[str]:
        def slot_ended(row: Row) -> transitions.Event:
            end, cancelled = row.pop("slot_end"), row.pop("slot_cancelled")
            return transitions.SlotEnded(end if cancelled is None else min(end, cancelled))
        return self._sweep(
            conn, "SELECT w.*, b.end_at AS slot_end, b.cancelled_at AS slot_cancelled "
            "FROM workloads w JOIN bookings b ON b.booking_id = w.reservation_id "
            "WHERE w.status = 'EXECUTING' AND w.timeslot = 1 AND w.cancel_requested = 0 "
            "AND (b.end_at <= ? OR b.cancelled_at IS NOT NULL)", (now,), device_id,
            slot_ended, now)

    def _sweep(self, conn: Connection, sql: str, args: tuple, device_id: str | None,
               event_of: Callable[[Row], transitions.Event], now: int) -> list[str]:
        """Apply ``event_of(row)`` (which takes the joined columns off the row) to each
        workload ``sql`` selects, of one device when given; on PostgreSQL the rows another
        replica is changing are left to its next sweep. Answers the devices whose work
        changed."""
        if device_id is not None:
            sql += " AND w.device_id = ?"
            args += (device_id,)
        if conn.dialect == "postgresql":
            sql += " FOR UPDATE OF w SKIP LOCKED"
        changed = set()
        for r in conn.execute(sql, args).fetchall():
            row = dict(r)
            event = event_of(row)
            if self._apply(conn, row["work_id"], row, event, now) is not row:
                changed.add(row["device_id"])
        return sorted(changed)

    def expire_uploads(self, now: int) -> list[tuple[str, str]]:
        """CREATED work never uploaded within the TTL: FAILED/upload_expired. Answers
        (WorkId, DeviceId) of each. The candidates are the CREATED work at least the TTL
        old (the index on status and creation time finds them; work just submitted, which
        may be thousands under load, is not read and not locked at every sweep);
        ``transitions`` decides (``policy.upload_expired``), so the rule has one copy."""
        event = transitions.UploadTimeout(self.limits.upload_ttl_seconds)
        old_enough = now - round(self.limits.upload_ttl_seconds * 1000)
        ended = []
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT * FROM workloads WHERE status = 'CREATED' "
                                "AND created_at <= ?" + _row_lock(conn, skip_locked=True),
                                (old_enough,)).fetchall()
            for r in rows:
                row = dict(r)
                if self._apply(conn, row["work_id"], row, event, now) is not row:
                    ended.append((row["work_id"], row["device_id"]))
        return ended

    # -- applying a transition ---------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction that may take numbers of the queue sequence: once it is
        committed, ``sequence_mark`` shows them."""
        with self.db.lock:
            with self.db.transaction() as conn:
                yield conn
            if not self.db.shared:
                with self.db.reading() as conn:
                    self._mark = _sequence_value(conn)

    def _apply(self, conn: Connection, work_id: str, row: Row | None,
               event: transitions.Event, now: int) -> Row:
        """Ask ``transitions`` what ``event`` does to the row read in this transaction and
        write it (``write``): answers the row after, ``row`` itself when nothing changed."""
        return write(conn, work_id, row, transitions.transition(work_id, row, event, now))

    def purge_idempotency(self, now: int) -> None:
        cutoff = now - self.limits.idempotency_seconds * 1000
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM idempotency WHERE created_at < ?", (cutoff,))


# -- the writes, shared with the admin's store ---------------------------------------------
def write(conn: Connection, work_id: str, row: Row | None,
          change: transitions.Change) -> Row:
    """Write ``change`` to the workload read as ``row`` in this transaction, as a
    compare-and-set: the update applies only while the status and every column it sets
    still hold what was read, so of two racing writers only one applies (the other gets
    ``Conflict``; the transaction rolls back). Answers the row after; ``row`` itself when
    the change is none."""
    if change.changes_nothing(row):
        return row
    if row is None:
        raise ValueError(f"a change needs the row of workload {work_id}")
    sets = {"status": change.status, **change.fields}
    if change.number is not None:
        sets[change.number] = take_number(conn)
    guard = {column: row[column] for column in sets}
    assignments = ", ".join(f"{column} = ?" for column in sets)
    conditions = " AND ".join(f"{column} IS NOT DISTINCT FROM ?" for column in guard)
    updated = conn.execute(
        f"UPDATE workloads SET {assignments} WHERE work_id = ? AND {conditions}",
        (*sets.values(), work_id, *guard.values())).rowcount
    if updated != 1:  # cannot happen (the lock, the row lock); never apply on a doubt
        raise Conflict(f"workload {work_id} changed while it was being changed: try again")
    conn.notify(row["device_id"])
    return pricing.settle(conn, row, _select(conn, work_id))  # a finished run's charge


def take_number(conn: Connection) -> int:
    """The next number of the queue sequence (in this transaction). The update locks the
    counter row until the transaction ends, so numbers commit in the order taken."""
    conn.execute("UPDATE queue_sequence SET value = value + 1")
    return _sequence_value(conn)


def _sequence_value(conn: Connection) -> int:
    return int(conn.execute("SELECT value FROM queue_sequence").fetchone()[0])


def _remember_key(conn: Connection, values: Mapping[str, Any]) -> None:
    """Keep an Idempotency-Key's request (replacing an expired one of the same key)."""
    conn.execute(
        "INSERT INTO idempotency (account_id, key, body_hash, work_id, created_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, key) DO UPDATE SET "
        "body_hash = excluded.body_hash, work_id = excluded.work_id, "
        "created_at = excluded.created_at",
        (values["account_id"], values["key"], values["body_hash"], values["work_id"],
         values["created_at"]))


def _session_activity(conn: Connection, before: Row | None, after: Row, now: int) -> None:
    """A session's work finished running (reported, or its results arrived): the
    session's idle limit counts from now."""
    if (after.get("session_id") and before is not None
            and before["status"] in transitions.RUNNING and after["status"] != before["status"]):
        situation.note_session_activity(conn, after["session_id"], now, handed_out=False)


def _select(conn: Connection, work_id: str, device_id: str | None = None) -> Row | None:
    """The workload's row (of this device only, when ``device_id`` is given), read to be
    changed: on PostgreSQL locked until the transaction ends, so a replica changing it at
    the same time waits and then reads the row as changed (never a failed compare-and-set)."""
    lock = _row_lock(conn)
    if device_id is None:
        return _row(conn.execute("SELECT * FROM workloads WHERE work_id = ?" + lock,
                                 (work_id,)).fetchone())
    return _row(conn.execute("SELECT * FROM workloads WHERE work_id = ? AND device_id = ?"
                             + lock, (work_id, device_id)).fetchone())


def _select_with_device(conn: Connection, work_id: str) -> tuple[Row | None, bool]:
    """The workload's row (locked as ``_select``'s), and whether its device still exists."""
    lock = " FOR UPDATE OF w" if conn.dialect == "postgresql" else ""
    row = _row(conn.execute("SELECT w.*, d.device_id IS NOT NULL AS device_exists "
                            "FROM workloads w LEFT JOIN devices d "
                            "ON d.device_id = w.device_id WHERE w.work_id = ?" + lock,
                            (work_id,)).fetchone())
    if row is None:
        return None, False
    return row, bool(row.pop("device_exists"))


def _still_a_candidate(conn: Connection, work_id: str, asked: int | None,
                       holding: Collection[str]) -> Row | None:
    """The workload, locked, if it is still one to hand out (None: another replica holds
    or took it)."""
    row = _row(conn.execute("SELECT * FROM workloads WHERE work_id = ?"
                            + _row_lock(conn, skip_locked=True), (work_id,)).fetchone())
    return next(policy.handout_candidates([row], asked, holding), None) if row else None


def _row_lock(conn: Connection, *, skip_locked: bool = False) -> str:
    """PostgreSQL's row lock for rows read to be changed (SQLite: the write transaction
    holds the whole file). ``skip_locked``: leave out rows another replica holds."""
    if conn.dialect != "postgresql":
        return ""
    return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"


def _charging_columns(conn: Connection, account_id: str, device_id: str,
                      charging: pricing.Charging | None, now: int) -> dict[str, Any]:
    """A new workload's team and cost cap (nothing under the stock protocol)."""
    if charging is None:
        return {}
    team = pricing.submit_team(conn, account_id, charging.team, timeslot=charging.timeslot,
                               now=now)
    if charging.timeslot and team is not None:
        pricing.require_slot(conn, team, device_id, now)
    return {"team_id": team["team_id"] if team is not None else None,
            "max_seconds": charging.max_seconds, "timeslot": int(charging.timeslot),
            "on_slot_end": charging.on_slot_end}


def _session_columns(session: Row, charging: pricing.Charging | None) -> dict[str, Any]:
    """A new workload's columns in a session: the session's team (the session is charged
    for the time it holds the device, not each run) and the cost cap."""
    if charging is not None and (charging.team is not None or charging.timeslot):
        raise BadRequest("work in a session is charged to the session's team for the time "
                         "the session holds the device: leave Team and Timeslot out")
    return {"session_id": session["session_id"], "team_id": session["team_id"],
            "max_seconds": charging.max_seconds if charging is not None else None}


def _insert(conn: Connection, row: Mapping[str, Any]) -> None:
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    conn.execute(f"INSERT INTO workloads ({columns}) VALUES ({marks})", tuple(row.values()))
