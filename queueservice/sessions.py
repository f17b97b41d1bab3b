"""Sessions (issue 12 item 6, IBM Runtime's; docs/facility.md), sync, no HTTP.

A user opens a session on a device for closed-loop work (calibration: run, read the
results, choose the next run). Its first workload queues as usual; once it is handed out
(``started_at``), the device runs only that session's work (``scheduling.pick``, rule
``session``) until the session ends. The rules:

- **One open session per device.** A second is refused (409 ``session_open``), naming when
  the first ends at the latest. (IBM queues sessions; one open session is the simplest
  honest rule: nobody holds a place they cannot see.)
- **Open:** ``Team`` defaults to the user's default team; with accounting on a team is
  required, the user must be in it, and its balance must cover the most the session can
  cost (``MaxMinutes`` x the price per used second; refused 409 ``insufficient_credits``
  with the numbers). ``MaxMinutes`` (default 30, at most ``MAX_MINUTES``), ``IdleMinutes``
  (default 5, at most ``MaxMinutes``).
- **Submit in it** (``SessionId`` on ``POST /workloads``): its owner only, on its device,
  while it is open (``facility.session_for_submit``); the work is charged to the
  session's team.
- **Held:** from its first hand-out (``started_at``, set by the claim through
  ``situation.note_session_activity``, as is ``last_activity_at`` at each hand-out and
  each finish) until
  the first of: it is closed (``DELETE``: ``closed``), ``started_at + max_seconds``
  (``max_time``), or ``last_activity_at + idle_seconds`` while none of its work runs
  (``idle``). A session never started ends as ``idle`` once it has nothing queued and was
  idle that long since it was opened. The housekeeping ``sweep`` closes the expired ones.
- **Charged** once, at its close, for the time it held the device (``held_until`` -
  ``started_at``, never more than ``max_seconds``, not the sweep's lateness) x the price per
  used second in force when it started: one ``session`` ledger line (accounting on only),
  written in the transaction that closes it (a compare-and-set on ``closed_at``), so it is
  charged exactly once; ``charged_seconds`` keeps the device-seconds held (0 for a session
  never started: no line). Its work is not charged per run.
- **On close** its work still queued (CREATED, READY) is CANCELLED (``session_closed``):
  it was submitted to run inside the session, and would otherwise run later as shared work
  that nobody pays for. Work already running finishes.

Who sees what: a user their own sessions; an admin every session; anyone else is told
there is no such session.
"""
from __future__ import annotations

import uuid
from typing import Any

from cloudqueue.errors import BadRequest, Conflict, NotFound
from queueservice import facility, policy, transitions
from queueservice.db import Connection, Database
from queueservice.identities import NO_DEVICE_HINT, Principal
from queueservice.workloads import write

Row = dict[str, Any]
STATES = ("open", "closed")
#: why a session ended (``close_reason``)
CLOSED, MAX_TIME, IDLE = "closed", "max_time", "idle"
DEFAULT_MAX_MINUTES = 30.0
DEFAULT_IDLE_MINUTES = 5.0
#: the longest a session may hold a device (IBM Runtime's maximum: 8 hours)
MAX_MINUTES = 480.0
QUEUED = ("CREATED", "READY")
RUNNING = transitions.RUNNING
NO_SESSION_HINT = facility.NO_SESSION_HINT


class SessionStore:
    def __init__(self, db: Database):
        self.db = db

    # -- reading -----------------------------------------------------------------------
    def sessions(self, caller: Principal, *, device_id: str | None = None,
                 state: str | None = None, limit: int = 100) -> list[Row]:
        """The caller's newest ``limit`` sessions (an admin: everyone's), newest first,
        each with ``cost``, ``workloads`` (how many were submitted in it), ``ends_at``."""
        where, args = [], []
        if not caller.is_admin:
            where.append("user_id = ?")
            args.append(caller.id)
        if device_id is not None:
            where.append("device_id = ?")
            args.append(device_id)
        if state is not None:
            where.append("closed_at IS NULL" if state == "open" else "closed_at IS NOT NULL")
        sql = "SELECT * FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.db.reading() as conn:
            rows = conn.execute(sql + " ORDER BY opened_at DESC, session_id DESC LIMIT ?",
                                (*args, limit)).fetchall()
            return [_described(conn, dict(r)) for r in rows]

    def get(self, session_id: str, caller: Principal) -> Row:
        with self.db.reading() as conn:
            return _described(conn, _visible(conn, session_id, caller))

    # -- opening and closing -----------------------------------------------------------
    def open(self, device_id: str, now: int, *, caller: Principal, team: str | None = None,
             max_seconds: float = DEFAULT_MAX_MINUTES * 60,
             idle_seconds: float = DEFAULT_IDLE_MINUTES * 60) -> Row:
        """A new open session of the caller on the device (module docstring: the rules)."""
        if not 0 < max_seconds <= MAX_MINUTES * 60:
            raise BadRequest(f"MaxMinutes must be more than 0 and at most {MAX_MINUTES:g}, "
                             f"not {max_seconds / 60:g}")
        if not 0 < idle_seconds <= max_seconds:
            raise BadRequest(f"IdleMinutes must be more than 0 and at most MaxMinutes "
                             f"({max_seconds / 60:g}), not {idle_seconds / 60:g}")
        session_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM devices WHERE device_id = ?",
                            (device_id,)).fetchone() is None:
                raise NotFound(f"no device {device_id}: {NO_DEVICE_HINT}")
            conn.hold(f"session:{device_id}")  # replicas: one open session per device
            _refuse_a_second(conn, device_id, now)
            team_id = _team_of(conn, caller, team)
            if facility.accounting_on(conn):
                if team_id is None:
                    raise BadRequest("a session is charged to a team: give Team (--team), "
                                     "or join a team (`userclient team list` shows yours)",
                                     kind="team_required")
                _check_credits(conn, team_id, device_id, max_seconds, now)
            conn.execute("INSERT INTO sessions (session_id, device_id, user_id, team_id, "
                         "opened_at, max_seconds, idle_seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (session_id, device_id, caller.id, team_id, now, max_seconds,
                          idle_seconds))
            return _described(conn, _session(conn, session_id))

    def close(self, session_id: str, now: int, *, caller: Principal) -> tuple[Row, bool]:
        """Close the session (its owner or an admin): answers (the session, whether this
        call closed it). Closing a closed session answers it unchanged (a retry)."""
        with self.db.transaction() as conn:
            row = _visible(conn, session_id, caller, lock=True)
            closed = row["closed_at"] is None and close_session(conn, row, CLOSED, now)
            return _described(conn, _session(conn, session_id)), closed

    def sweep(self, now: int) -> list[str]:
        """Close the open sessions past their maximum time or idle limit (housekeeping):
        answers the devices whose sessions ended (their queue changed)."""
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT * FROM sessions WHERE closed_at IS NULL"
                                + _row_lock(conn, skip_locked=True)).fetchall()
            ended = []
            for r in rows:
                row = dict(r)
                reason = expiry(row, now, _running(conn, row), _queued(conn, row))
                if reason is not None and close_session(conn, row, reason, now):
                    ended.append(row["device_id"])
        return sorted(set(ended))


# -- the rules of a session's life (pure) -------------------------------------------------
def expiry(row: Row, now: int, running: bool, queued: bool) -> str | None:
    """Why an open session ends at ``now`` (``max_time``, ``idle``), or None: it goes on.
    ``running``: some of its work runs (it is not idle then); ``queued``: some waits."""
    if row["started_at"] is None:
        if queued or now < row["opened_at"] + _ms(row["idle_seconds"]):
            return None
        return IDLE
    if now >= row["started_at"] + _ms(row["max_seconds"]):
        return MAX_TIME
    if not running and now >= _idle_from(row) + _ms(row["idle_seconds"]):
        return IDLE
    return None


def held_until(row: Row, now: int, running: bool) -> int | None:
    """When the session stopped holding the device, if it closes at ``now``: never after
    its maximum time, nor after its idle limit while none of its work ran (a sweep that
    comes late charges nothing for its lateness). None: it never started."""
    if row["started_at"] is None:
        return None
    end = min(now, row["started_at"] + _ms(row["max_seconds"]))
    if not running:
        end = min(end, _idle_from(row) + _ms(row["idle_seconds"]))
    return max(end, row["started_at"])


def close_session(conn: Connection, row: Row, reason: str, now: int) -> bool:
    """Close the open session ``row`` (read in this transaction), charge its held time
    and cancel its queued work. Answers False, changing nothing, when it was closed
    already (a compare-and-set on ``closed_at``: so it is charged exactly once)."""
    running = _running(conn, row)
    until = held_until(row, now, running)
    held = 0.0 if until is None else (until - row["started_at"]) / 1000
    updated = conn.execute(
        "UPDATE sessions SET closed_at = ?, close_reason = ?, charged_seconds = ? "
        "WHERE session_id = ? AND closed_at IS NULL",
        (now, reason, held, row["session_id"])).rowcount
    if updated != 1:
        return False
    if held > 0 and row["team_id"] is not None and facility.accounting_on(conn):
        price = facility.prices_at(conn, row["device_id"], row["started_at"]).per_used_second
        facility.append_line(conn, row["team_id"], "session", -held * price, row["user_id"],
                             f"session held the device {held:.3f} s ({reason})", now,
                             device_id=row["device_id"], session_id=row["session_id"])
    event = transitions.SessionClosed(row["session_id"], reason)
    for r in conn.execute("SELECT * FROM workloads WHERE device_id = ? AND status IN (?, ?) "
                          "AND session_id = ?" + _row_lock(conn),
                          (row["device_id"], *QUEUED, row["session_id"])).fetchall():
        work = dict(r)
        write(conn, work["work_id"], work, transitions.transition(work["work_id"], work,
                                                                  event, now))
    conn.notify(row["device_id"])
    return True


def ends_at(row: Row, running: bool) -> int | None:
    """The latest an open, started session holds the device if nothing more is handed
    out: its maximum time, or its idle limit when none of its work runs."""
    if row["closed_at"] is not None or row["started_at"] is None:
        return None
    end = row["started_at"] + _ms(row["max_seconds"])
    return end if running else min(end, _idle_from(row) + _ms(row["idle_seconds"]))


# -- rows --------------------------------------------------------------------------------
def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _idle_from(row: Row) -> int:
    return row["last_activity_at"] if row["last_activity_at"] is not None \
        else row["started_at"]


def _session(conn: Connection, session_id: str, *, lock: bool = False) -> Row:
    r = conn.execute("SELECT * FROM sessions WHERE session_id = ?"
                     + (_row_lock(conn) if lock else ""), (session_id,)).fetchone()
    if r is None:
        raise NotFound(f"no session {session_id}: {NO_SESSION_HINT}")
    return dict(r)


def _visible(conn: Connection, session_id: str, caller: Principal, *,
             lock: bool = False) -> Row:
    """The session if the caller owns it or is an admin, else NotFound (hidden)."""
    try:
        row = _session(conn, session_id, lock=lock)
    except NotFound:
        row = None
    if row is None or not (caller.is_admin or row["user_id"] == caller.id):
        raise NotFound(f"no session {session_id} of yours: {NO_SESSION_HINT}")
    return row


def _described(conn: Connection, row: Row) -> Row:
    """The row with ``cost`` (its ledger line's credits, None: none) and ``workloads``."""
    line = conn.execute("SELECT COALESCE(-SUM(seconds), 0), COUNT(*) FROM ledger "
                        "WHERE session_id = ?", (row["session_id"],)).fetchone()
    count = conn.execute("SELECT COUNT(*) FROM workloads WHERE device_id = ? AND "
                         "session_id = ?", (row["device_id"], row["session_id"])).fetchone()
    open_started = row["closed_at"] is None and row["started_at"] is not None
    return {**row, "cost": float(line[0]) if line[1] else None, "workloads": int(count[0]),
            "ends_at": ends_at(row, open_started and _running(conn, row))}


def _running(conn: Connection, row: Row) -> bool:
    return _count(conn, row, RUNNING) > 0


def _queued(conn: Connection, row: Row) -> bool:
    return _count(conn, row, QUEUED) > 0


def _count(conn: Connection, row: Row, statuses: tuple[str, ...]) -> int:
    marks = ", ".join("?" for _ in statuses)
    return int(conn.execute(f"SELECT COUNT(*) FROM workloads WHERE device_id = ? AND "
                            f"status IN ({marks}) AND session_id = ?",
                            (row["device_id"], *statuses, row["session_id"])).fetchone()[0])


def _refuse_a_second(conn: Connection, device_id: str, now: int) -> None:
    other = conn.execute("SELECT * FROM sessions WHERE device_id = ? AND closed_at IS NULL",
                         (device_id,)).fetchone()
    if other is None:
        return
    other = dict(other)
    if other["started_at"] is None:
        when = (f"it has not started yet; once its first workload runs it holds the device "
                f"for at most {other['max_seconds'] / 60:g} minutes")
    else:
        when = f"it ends at {policy.iso(ends_at(other, _running(conn, other)))} at the latest"
    raise Conflict(f"device {device_id} has an open session already ({when}): a device has "
                   "one open session at a time; try again after it ends, or submit without "
                   "a session", kind="session_open")


def _team_of(conn: Connection, caller: Principal, ref: str | None) -> str | None:
    """The team the session is charged to: ``ref`` (TeamId or name; the caller must be in
    it, unless an admin), else the caller's default team (None: they have none)."""
    if ref is None:
        r = conn.execute("SELECT team_id FROM team_members WHERE user_id = ? AND "
                         "is_default = 1", (caller.id,)).fetchone()
        return None if r is None else r["team_id"]
    r = conn.execute("SELECT team_id, name FROM teams WHERE team_id = ? OR name = ?",
                     (ref, ref)).fetchone()
    if r is None or not (caller.is_admin or conn.execute(
            "SELECT 1 FROM team_members WHERE team_id = ? AND user_id = ?",
            (r["team_id"], caller.id)).fetchone()):
        raise NotFound(f"no team {ref} of yours: check it against `userclient team list`")
    return r["team_id"]


def _check_credits(conn: Connection, team_id: str, device_id: str, max_seconds: float,
                   now: int) -> None:
    price = facility.prices_at(conn, device_id, now).per_used_second
    most = max_seconds * price
    balance = facility.balance(conn, team_id)
    if balance < most:
        raise Conflict(f"the team's balance {balance:.1f} device-seconds cannot cover this "
                       f"session's most {max_seconds / 60:g} minutes x {price:g} = "
                       f"{most:.1f}: open a shorter one (--max-minutes), or the team's "
                       "scheduler can request credits", kind="insufficient_credits")


def _row_lock(conn: Connection, *, skip_locked: bool = False) -> str:
    """PostgreSQL's row lock for rows read to be changed (SQLite: the write transaction
    holds the whole file)."""
    if conn.dialect != "postgresql":
        return ""
    return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
