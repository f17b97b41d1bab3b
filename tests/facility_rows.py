"""Facility rows written straight into a service's database (tests only): teams, grants,
prices, bookings, weekly windows, sessions, the accounting switch, and a workload's
facility columns. The APIs that make these (``userclient reserve``, ``maintenance``,
``price set``, ``session open``, ``submit --team --timeslot``) are other slices'; the claim
and its tests need only the rows. ``db``: an open ``queueservice.db.Database`` on the
service's ``database_target`` (SQLite or PostgreSQL; a served process sees the rows at its
next query)."""
from __future__ import annotations

import uuid
from typing import Any

from queueservice import facility
from queueservice.db import Database

ADMIN = "admin-of-tests"


def accounting(db: Database, on: bool = True) -> None:
    with db.transaction() as conn:
        facility.set_accounting(conn, on)


def team(db: Database, now: int, name: str | None = None) -> str:
    team_id = str(uuid.uuid4())
    with db.transaction() as conn:
        conn.execute("INSERT INTO teams (team_id, name, created_by, created_at) "
                     "VALUES (?, ?, ?, ?)",
                     (team_id, name or f"team-{team_id[:8]}", ADMIN, now))
    return team_id


def ledger(db: Database, team_id: str, kind: str, seconds: float, now: int,
           **refs: Any) -> None:
    """A ledger line (``facility.append_line``): a grant, or a charge (negative) that
    counts in fair share."""
    with db.transaction() as conn:
        facility.append_line(conn, team_id, kind, seconds, ADMIN, "test", now, **refs)


def price(db: Database, device_id: str, per_used: float, per_reserved: float,
          since: int) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO prices (device_id, per_used_second, per_reserved_second, "
                     "since, set_by) VALUES (?, ?, ?, ?, ?)",
                     (device_id, per_used, per_reserved, since, ADMIN))


def book(db: Database, device_id: str, start: int, end: int, now: int, *,
         team_id: str | None = None, reason: str | None = None) -> str:
    """A booking: a team's reservation (``team_id``) or maintenance (none)."""
    booking_id = str(uuid.uuid4())
    kind = "reservation" if team_id is not None else "maintenance"
    with db.transaction() as conn:
        conn.execute("INSERT INTO bookings (booking_id, device_id, kind, team_id, start_at, "
                     "end_at, reason, created_by, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (booking_id, device_id, kind, team_id, start, end, reason, ADMIN, now))
    return booking_id


def cancel_booking(db: Database, booking_id: str, now: int) -> None:
    with db.transaction() as conn:
        conn.execute("UPDATE bookings SET cancelled_at = ?, cancelled_by = ? "
                     "WHERE booking_id = ?", (now, ADMIN, booking_id))


def window(db: Database, device_id: str, day: int, start_minute: int, end_minute: int,
           now: int) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO windows (window_id, device_id, day, start_minute, "
                     "end_minute, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (str(uuid.uuid4()), device_id, day, start_minute, end_minute, ADMIN,
                      now))


def session(db: Database, device_id: str, user_id: str, now: int, *,
            team_id: str | None = None, max_seconds: float = 600,
            idle_seconds: float = 60) -> str:
    session_id = str(uuid.uuid4())
    with db.transaction() as conn:
        conn.execute("INSERT INTO sessions (session_id, device_id, user_id, team_id, "
                     "opened_at, max_seconds, idle_seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (session_id, device_id, user_id, team_id, now, max_seconds,
                      idle_seconds))
    return session_id


def session_row(db: Database, session_id: str) -> dict:
    with db.reading() as conn:
        return dict(conn.execute("SELECT * FROM sessions WHERE session_id = ?",
                                 (session_id,)).fetchone())


def mark(db: Database, work_id: str, **columns: Any) -> None:
    """Set a workload's facility columns (``team_id``, ``timeslot``, ``on_slot_end``,
    ``max_seconds``, ``session_id``, ``estimated_seconds``), as submit will."""
    sets = ", ".join(f"{name} = ?" for name in columns)
    with db.transaction() as conn:
        conn.execute(f"UPDATE workloads SET {sets} WHERE work_id = ?",
                     (*columns.values(), work_id))
