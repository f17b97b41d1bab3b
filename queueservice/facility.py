"""What the facility's rules read and write in the store (docs/facility.md), inside the
caller's transaction (``Connection``): the accounting switch, a device's prices and
calendar, a team's balance, and the one way a ledger line is written. Sync, no HTTP; the
decisions themselves are ``scheduling``'s (pure).
"""
from __future__ import annotations

from typing import Any

from cloudqueue.errors import BadRequest, Conflict, NotFound
from queueservice import scheduling
from queueservice.db import Connection
from queueservice.policy import iso

Row = dict[str, Any]
#: ``service_settings`` name of the switch: "1" once an admin turned accounting on
ACCOUNTING_SETTING = "accounting"
LEDGER_KINDS = ("grant", "charge", "refund", "reservation", "reservation_refund", "session")
NO_SESSION_HINT = "check the SessionId against `userclient session list`"


def accounting_on(conn: Connection) -> bool:
    """Whether the facility's accounting is on (off: no team needed, no balance checked,
    the stock queue order)."""
    r = conn.execute("SELECT value FROM service_settings WHERE name = ?",
                     (ACCOUNTING_SETTING,)).fetchone()
    return r is not None and r[0] == "1"


def set_accounting(conn: Connection, on: bool) -> None:
    conn.execute("DELETE FROM service_settings WHERE name = ?", (ACCOUNTING_SETTING,))
    conn.execute("INSERT INTO service_settings (name, value) VALUES (?, ?)",
                 (ACCOUNTING_SETTING, "1" if on else "0"))


def prices_at(conn: Connection, device_id: str, at: int) -> scheduling.Prices:
    """The device's prices in force at ``at`` (ms): its newest ``prices`` row since then;
    a device never priced costs one credit per second (``scheduling.Prices()``)."""
    r = conn.execute("SELECT per_used_second, per_reserved_second FROM prices "
                     "WHERE device_id = ? AND since <= ? ORDER BY since DESC, price_id DESC "
                     "LIMIT 1", (device_id, at)).fetchone()
    return scheduling.Prices() if r is None else scheduling.Prices(float(r[0]), float(r[1]))


def balance(conn: Connection, team_id: str) -> float:
    """The team's balance: the sum of its ledger, in device-seconds (kept with its newest
    line, ``balance_after``)."""
    r = conn.execute("SELECT balance_after FROM ledger WHERE team_id = ? "
                     "ORDER BY entry_id DESC LIMIT 1", (team_id,)).fetchone()
    return 0.0 if r is None else float(r[0])


def lock_team(conn: Connection, team_id: str) -> None:
    """Hold the team until the transaction ends: its ledger lines and member changes are
    made one at a time (no two demotions leave it without a scheduler, a balance read
    after a line is not overtaken). On PostgreSQL the team's row lock; SQLite's write
    transaction holds the whole file already."""
    if conn.dialect == "postgresql":
        conn.execute("SELECT team_id FROM teams WHERE team_id = ? FOR UPDATE", (team_id,))


def append_line(conn: Connection, team_id: str, kind: str, seconds: float, user_id: str,
                note: str | None, now: int, *, work_id: str | None = None,
                device_id: str | None = None, booking_id: str | None = None,
                session_id: str | None = None) -> Row:
    """One new ledger line (the only way lines are written: never updated or deleted),
    under the team's lock, so its newest line is this one, with the balance after it.
    ``seconds`` is signed: a grant or refund adds, a charge or a booking's payment takes
    away."""
    if kind not in LEDGER_KINDS:
        raise ValueError(f"ledger kind {kind!r}: expected one of {LEDGER_KINDS}")
    lock_team(conn, team_id)
    after = balance(conn, team_id) + seconds
    conn.execute("INSERT INTO ledger (team_id, kind, seconds, user_id, note, at, work_id, "
                 "device_id, booking_id, session_id, balance_after) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (team_id, kind, seconds, user_id, note, now, work_id, device_id, booking_id,
                  session_id, after))
    return dict(conn.execute("SELECT * FROM ledger WHERE team_id = ? ORDER BY entry_id DESC "
                             "LIMIT 1", (team_id,)).fetchone())


def calendar(conn: Connection, device_id: str, start: int, end: int) -> scheduling.Calendar:
    """The device's calendar over ``[start, end)`` for ``scheduling.pick``: its standing
    bookings overlapping it, and its weekly windows unrolled (None: it has none, so the
    shared queue is always open)."""
    rules = [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT day, start_minute, end_minute FROM windows WHERE device_id = ?",
        (device_id,)).fetchall()]
    rows = conn.execute(
        "SELECT booking_id, kind, team_id, start_at, end_at, reason FROM bookings "
        "WHERE device_id = ? AND cancelled_at IS NULL AND start_at < ? AND end_at > ? "
        "ORDER BY start_at, booking_id", (device_id, end, start)).fetchall()
    bookings = tuple(scheduling.Booking(
        r["kind"], int(r["start_at"]), int(r["end_at"]),
        r["team_id"] if r["kind"] == scheduling.RESERVATION else None,
        r["booking_id"] if r["kind"] == scheduling.RESERVATION else (r["reason"] or
                                                                     r["booking_id"]))
        for r in rows)
    windows = scheduling.unroll_weekly(rules, start, end) if rules else None
    return scheduling.Calendar(windows, bookings)


# -- sessions (the store is ``sessions``; these run in the workload store's transactions) --
def session_for_submit(conn: Connection, session_id: str, user_id: str,
                       device_id: str) -> Row:
    """The open session a workload of ``user_id`` for ``device_id`` may be submitted in,
    locked until the transaction ends (its close waits), else the refusal: no session of
    theirs (404), another device's (400), closed (409)."""
    lock = " FOR UPDATE" if conn.dialect == "postgresql" else ""
    row = conn.execute("SELECT * FROM sessions WHERE session_id = ?" + lock,
                       (session_id,)).fetchone()
    if row is None or row["user_id"] != user_id:
        raise NotFound(f"no session {session_id} of yours: {NO_SESSION_HINT}")
    if row["device_id"] != device_id:
        raise BadRequest(f"session {session_id} is on device {row['device_id']}, not "
                         f"{device_id}: submit to its device, or open a session on "
                         f"{device_id}", kind="session_device")
    if row["closed_at"] is not None:
        raise Conflict(f"session {session_id} was closed ({row['close_reason']}) at "
                       f"{iso(row['closed_at'])}: open a new one (`userclient session "
                       "open`)", kind="session_closed")
    return dict(row)
