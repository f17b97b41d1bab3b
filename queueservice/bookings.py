"""A device's calendar (issue 12, docs/facility.md): timeslots (reservations), maintenance,
weekly pay-as-you-go windows and the per-user calendar feed token; sync, no HTTP.

A **booking** is an exclusive ``[start, end)`` stretch of one device: a team's timeslot
(``reservation``) or ``maintenance``. No two standing bookings of a device overlap: every
booking is made in one transaction that first holds the device (an advisory lock per
device on PostgreSQL, the write transaction on SQLite) and then looks for an overlap, so of two
racing bookings of the same slot exactly one is made.

- A timeslot is booked by a ``scheduler`` of the team (or an admin), not in the past (a
  start up to ``PAST_GRACE_MS`` ago is taken as now), at most ``MAX_RESERVATION_MS`` long
  and starting within ``MAX_AHEAD_MS``. With accounting on it is paid when booked: a
  ``reservation`` ledger line of -(its seconds x the device's price per reserved second in
  force at its start), kept in ``bookings.cost``; a balance that cannot cover it is a
  refusal with the numbers. Cancelled before it starts, it is refunded in full
  (``reservation_refund``); once started it cannot be cancelled.
- Maintenance is booked by admins (with a reason), at most ``MAX_MAINTENANCE_MS`` long.
  Overlapping timeslots refuse it unless ``force``: those are cancelled, each refunded in
  full with a ledger note naming the maintenance. Deleting maintenance that has begun
  ends it now (its record stays); deleting it before it starts cancels it.
- Windows: weekly rules ``(day, start_minute, end_minute)`` in UTC (day 0 is Monday; a
  window crossing midnight is two rules); none means always open.

Who sees what: a timeslot in full (id, team, note) to its team's members and admins;
to anyone else only as ``reserved`` with its times. Maintenance, with its reason, to all.

The calendar feed: calendar applications cannot send a bearer token, so a user may make a
feed token (``FEED_PREFIX`` + random) that reads calendars as them from a URL's query. Only
its SHA-256 is kept (a ``service_settings`` row ``calendar_feed:<sha256>`` -> user id); a
new token replaces the old one, and revoking deletes it.
"""
from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Optional

from cloudqueue.errors import BadRequest, Conflict, Forbidden, NotFound
from queueservice import facility, scheduling
from queueservice.db import Connection, Database
from queueservice.identities import Principal
from queueservice.policy import iso

Row = dict[str, Any]
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
#: the longest timeslot (7 days): longer ones block a shared device for too long
MAX_RESERVATION_MS = 7 * DAY_MS
#: the longest maintenance (31 days)
MAX_MAINTENANCE_MS = 31 * DAY_MS
#: how far ahead a booking may start (366 days)
MAX_AHEAD_MS = 366 * DAY_MS
#: a start this little in the past is taken as now (a `--start now` on its way)
PAST_GRACE_MS = 60 * 1000
#: the most weekly window rules a device may have
MAX_WINDOW_RULES = 100
#: the longest calendar one request answers (92 days); the default span (14 days)
MAX_CALENDAR_SPAN_MS = 92 * DAY_MS
DEFAULT_CALENDAR_SPAN_MS = 14 * DAY_MS
#: a listing answers at most this many bookings
MAX_LISTED = 1000
FEED_PREFIX = "qcf_"
_FEED_SETTING = "calendar_feed:"
RESERVED = "reserved"


@dataclass(frozen=True)
class CalendarView:
    """A device's calendar over ``[start, end)`` as the caller may see it: ``windows``
    (None: always open), bookings (rows; another team's timeslot reduced to ``reserved``)."""

    device: Row
    start: int
    end: int
    windows: Optional[tuple[tuple[int, int], ...]]
    reservations: list[Row]
    maintenance: list[Row]


class BookingStore:
    def __init__(self, db: Database):
        self.db = db

    # -- timeslots ---------------------------------------------------------------------
    def reserve(self, device_id: str, team_ref: str, start: int, end: int,
                note: Optional[str], now: int, *, caller: Principal) -> Row:
        """Book ``[start, end)`` on the device for the team (its scheduler or an admin),
        paid when accounting is on. Answers the booking row (with ``team_name``)."""
        start = _not_past(start, now)
        _check_span(start, end, now, MAX_RESERVATION_MS, "a timeslot")
        booking_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            team = _team_for(conn, team_ref, caller)
            if not caller.is_admin and team["role"] != "scheduler":
                raise Forbidden(f"only a scheduler of team {team['name']} (or an admin) may "
                                "book a timeslot: ask one of its schedulers")
            _hold_device(conn, device_id)
            _refuse_overlap(conn, device_id, start, end, caller)
            cost = None
            if facility.accounting_on(conn):
                price = facility.prices_at(conn, device_id, start).per_reserved_second
                cost = (end - start) / 1000 * price
                facility.lock_team(conn, team["team_id"])
                balance = facility.balance(conn, team["team_id"])
                if balance < cost:
                    raise Conflict(
                        f"team {team['name']} has {balance:g} device-seconds; this timeslot "
                        f"costs {cost:g} ({(end - start) / 1000:g} s x {price:g} per reserved "
                        "second): book a shorter one, or ask an admin for credits "
                        "(`userclient credits request`)", kind="insufficient_credits")
            conn.execute(
                "INSERT INTO bookings (booking_id, device_id, kind, team_id, start_at, end_at, "
                "reason, created_by, created_at, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (booking_id, device_id, scheduling.RESERVATION, team["team_id"], start, end,
                 note, caller.id, now, cost))
            if cost is not None:
                facility.append_line(conn, team["team_id"], "reservation", -cost, caller.id,
                                     f"timeslot {iso(start)} .. {iso(end)}", now,
                                     device_id=device_id, booking_id=booking_id)
            conn.notify(device_id)
            return _booking(conn, booking_id)

    def cancel_reservation(self, booking_id: str, now: int, *, caller: Principal) -> Row:
        """Cancel a timeslot before it starts (its team's scheduler or an admin), refunding
        what it cost in full. Answers the booking row (``refund``: seconds given back)."""
        with self.db.transaction() as conn:
            row = _booking_or_none(conn, booking_id)
            if row is None or row["kind"] != scheduling.RESERVATION:
                raise NotFound(f"no reservation {booking_id}: `userclient reservations` "
                               "lists yours")
            team = _team_for(conn, row["team_id"], caller, hidden=f"no reservation "
                             f"{booking_id} of your teams: `userclient reservations` lists "
                             "yours")
            if not caller.is_admin and team["role"] != "scheduler":
                raise Forbidden(f"only a scheduler of team {team['name']} (or an admin) may "
                                "cancel its timeslots: ask one of its schedulers")
            _hold_device(conn, row["device_id"])
            row = _booking(conn, booking_id)  # as it is now that the device is held
            if row["cancelled_at"] is not None:
                raise Conflict(f"reservation {booking_id} was cancelled at "
                               f"{iso(row['cancelled_at'])} already", kind="cancelled")
            if row["start_at"] <= now:
                raise Conflict(f"reservation {booking_id} started at {iso(row['start_at'])}: "
                               "a timeslot cannot be cancelled once it has begun (it was "
                               "paid for its whole length)", kind="started")
            refund = _cancel(conn, row, now, caller.id, "cancelled by its team")
            return {**_booking(conn, booking_id), "refund": refund}

    def reservations(self, caller: Principal, now: int, *, device_id: Optional[str] = None,
                     start: Optional[int] = None, end: Optional[int] = None,
                     team_id: Optional[str] = None) -> list[Row]:
        """Standing timeslots of the caller's teams (an admin: all; ``team_id``: that
        team's only) that end after ``start`` (default now) and begin before ``end``,
        earliest first."""
        sql = ("SELECT b.*, t.name AS team_name FROM bookings b JOIN teams t ON "
               "t.team_id = b.team_id WHERE b.kind = ? AND b.cancelled_at IS NULL "
               "AND b.end_at > ?")
        params: list[Any] = [scheduling.RESERVATION, now if start is None else start]
        if end is not None:
            sql += " AND b.start_at < ?"
            params.append(end)
        if device_id is not None:
            sql += " AND b.device_id = ?"
            params.append(device_id)
        if team_id is not None:
            sql += " AND b.team_id = ?"
            params.append(team_id)
        if not caller.is_admin:
            sql += (" AND b.team_id IN (SELECT team_id FROM team_members WHERE "
                    "user_id = ?)")
            params.append(caller.id)
        sql += f" ORDER BY b.start_at, b.booking_id LIMIT {MAX_LISTED}"
        with self.db.reading() as conn:
            return [dict(r) for r in conn.execute(sql, params).fetchall()]

    # -- maintenance -------------------------------------------------------------------
    def add_maintenance(self, device_id: str, start: int, end: int, reason: str, now: int, *,
                        caller: Principal, force: bool = False) -> Row:
        """Book maintenance (admins). Overlapping timeslots refuse it unless ``force``,
        which cancels them with a full refund. Answers the booking row, with
        ``cancelled`` (the timeslots it cancelled)."""
        if not caller.is_admin:
            raise Forbidden("only an admin (facility staff) may book maintenance: ask one")
        start = _not_past(start, now)
        _check_span(start, end, now, MAX_MAINTENANCE_MS, "maintenance")
        booking_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            _hold_device(conn, device_id)
            hits = _overlapping(conn, device_id, start, end)
            standing = [h for h in hits if h["kind"] == scheduling.MAINTENANCE]
            if standing or (hits and not force):
                raise Conflict(_overlap_message(hits[0] if not standing else standing[0],
                                                caller, maintenance=not standing),
                               kind="booking_overlap")
            cancelled = []
            for hit in hits:
                refund = _cancel(conn, hit, now, caller.id,
                                 f"cancelled for maintenance {booking_id}: {reason}")
                cancelled.append({**_booking(conn, hit["booking_id"]), "refund": refund})
            conn.execute(
                "INSERT INTO bookings (booking_id, device_id, kind, team_id, start_at, end_at, "
                "reason, created_by, created_at) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?)",
                (booking_id, device_id, scheduling.MAINTENANCE, start, end, reason, caller.id,
                 now))
            conn.notify(device_id)
            return {**_booking(conn, booking_id), "cancelled": cancelled}

    def end_maintenance(self, booking_id: str, now: int, *, caller: Principal) -> Row:
        """Delete maintenance (admins): before it starts it is cancelled; once begun it
        ends now (the record keeps when it ran). Answers the booking row."""
        if not caller.is_admin:
            raise Forbidden("only an admin (facility staff) may change maintenance: ask one")
        with self.db.transaction() as conn:
            row = _booking_or_none(conn, booking_id)
            if row is None or row["kind"] != scheduling.MAINTENANCE:
                raise NotFound(f"no maintenance {booking_id}: `userclient calendar DEVICE` "
                               "shows a device's maintenance")
            _hold_device(conn, row["device_id"])
            row = _booking(conn, booking_id)
            if row["cancelled_at"] is not None:
                raise Conflict(f"maintenance {booking_id} was cancelled already",
                               kind="cancelled")
            if row["end_at"] <= now:
                raise Conflict(f"maintenance {booking_id} ended at {iso(row['end_at'])} "
                               "already", kind="ended")
            if row["start_at"] > now:
                conn.execute("UPDATE bookings SET cancelled_at = ?, cancelled_by = ? WHERE "
                             "booking_id = ?", (now, caller.id, booking_id))
            else:
                conn.execute("UPDATE bookings SET end_at = ? WHERE booking_id = ?",
                             (max(now, row["start_at"] + 1), booking_id))
            conn.notify(row["device_id"])
            return _booking(conn, booking_id)

    def maintenance(self, now: int, *, device_id: Optional[str] = None,
                    start: Optional[int] = None, end: Optional[int] = None) -> list[Row]:
        """Standing maintenance ending after ``start`` (default now), earliest first (any
        user may see it)."""
        sql = ("SELECT * FROM bookings WHERE kind = ? AND cancelled_at IS NULL AND "
               "end_at > ?")
        params: list[Any] = [scheduling.MAINTENANCE, now if start is None else start]
        if end is not None:
            sql += " AND start_at < ?"
            params.append(end)
        if device_id is not None:
            sql += " AND device_id = ?"
            params.append(device_id)
        sql += f" ORDER BY start_at, booking_id LIMIT {MAX_LISTED}"
        with self.db.reading() as conn:
            return [dict(r) for r in conn.execute(sql, params).fetchall()]

    # -- windows -----------------------------------------------------------------------
    def windows(self, device_id: str) -> list[tuple[int, int, int]]:
        """The device's weekly rules ``(day, start_minute, end_minute)``, sorted; [] when
        it has none (always open)."""
        with self.db.reading() as conn:
            _device(conn, device_id)
            return _rules(conn, device_id)

    def set_windows(self, device_id: str, rules: list[tuple[int, int, int]], now: int, *,
                    caller: Principal) -> list[tuple[int, int, int]]:
        """Replace the device's weekly rules (admins); [] makes it always open."""
        if not caller.is_admin:
            raise Forbidden("only an admin (facility staff) may set a device's windows: ask "
                            "one")
        if len(rules) > MAX_WINDOW_RULES:
            raise BadRequest(f"at most {MAX_WINDOW_RULES} window rules, not {len(rules)}")
        scheduling.unroll_weekly(rules, 0, 1)  # checks each rule (ValueError: the route's)
        with self.db.transaction() as conn:
            _hold_device(conn, device_id)
            conn.execute("DELETE FROM windows WHERE device_id = ?", (device_id,))
            for day, first, last in sorted(set(rules)):
                conn.execute("INSERT INTO windows (window_id, device_id, day, start_minute, "
                             "end_minute, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (str(uuid.uuid4()), device_id, day, first, last, caller.id, now))
            conn.notify(device_id)
            return _rules(conn, device_id)

    # -- the calendar ------------------------------------------------------------------
    def calendar(self, device_id: str, start: int, end: int, *,
                 caller: Principal) -> CalendarView:
        """The device's calendar over ``[start, end)`` as the caller may see it."""
        if end <= start:
            raise BadRequest(f"To ({iso(end)}) must be after From ({iso(start)})")
        if end - start > MAX_CALENDAR_SPAN_MS:
            raise BadRequest(f"a calendar spans at most {MAX_CALENDAR_SPAN_MS // DAY_MS} "
                             "days: ask for a shorter From .. To")
        with self.db.reading() as conn:
            device = _device(conn, device_id)
            policy_view = facility.calendar(conn, device_id, start, end)
            rows = [dict(r) for r in conn.execute(
                "SELECT b.*, t.name AS team_name FROM bookings b LEFT JOIN teams t ON "
                "t.team_id = b.team_id WHERE b.device_id = ? AND b.cancelled_at IS NULL AND "
                "b.start_at < ? AND b.end_at > ? ORDER BY b.start_at, b.booking_id",
                (device_id, end, start)).fetchall()]
            mine = _teams_of(conn, caller)
        windows = None
        if policy_view.windows is not None:
            windows = tuple((max(s, start), min(e, end)) for s, e in policy_view.windows)
        reservations = [r if caller.is_admin or r["team_id"] in mine else
                        {"kind": RESERVED, "start_at": r["start_at"], "end_at": r["end_at"]}
                        for r in rows if r["kind"] == scheduling.RESERVATION]
        maintenance = [r for r in rows if r["kind"] == scheduling.MAINTENANCE]
        return CalendarView(device, start, end, windows, reservations, maintenance)

    # -- the feed token ------------------------------------------------------------------
    def new_feed_token(self, caller: Principal) -> str:
        """A new calendar feed token for the caller (replacing any earlier one): shown
        once, kept only as its SHA-256."""
        token = FEED_PREFIX + secrets.token_urlsafe(32)
        with self.db.transaction() as conn:
            _drop_feed(conn, caller.id)
            conn.execute("INSERT INTO service_settings (name, value) VALUES (?, ?)",
                         (_FEED_SETTING + _digest(token), caller.id))
        return token

    def revoke_feed_token(self, caller: Principal) -> bool:
        """Revoke the caller's feed token; False when they had none."""
        with self.db.transaction() as conn:
            return _drop_feed(conn, caller.id) > 0

    def feed_user(self, token: str) -> Optional[str]:
        """The user id a feed token reads as, or None (unknown or revoked)."""
        if not token.startswith(FEED_PREFIX) or len(token) > 200:
            return None
        with self.db.reading() as conn:
            r = conn.execute("SELECT value FROM service_settings WHERE name = ?",
                             (_FEED_SETTING + _digest(token),)).fetchone()
        return None if r is None else r[0]


# -- checks --------------------------------------------------------------------------------
def _not_past(start: int, now: int) -> int:
    if start < now - PAST_GRACE_MS:
        raise BadRequest(f"Start {iso(start)} is in the past (now is {iso(now)}): book from "
                         "now on")
    return max(start, now)


def _check_span(start: int, end: int, now: int, longest: int, what: str) -> None:
    if end <= start:
        raise BadRequest(f"End ({iso(end)}) must be after Start ({iso(start)})")
    if end - start > longest:
        raise BadRequest(f"{what} lasts at most {longest // HOUR_MS} hours, not "
                         f"{(end - start) / HOUR_MS:g}: book it in parts")
    if start - now > MAX_AHEAD_MS:
        raise BadRequest(f"Start {iso(start)} is more than {MAX_AHEAD_MS // DAY_MS} days "
                         "ahead: book it later")


def _hold_device(conn: Connection, device_id: str) -> Row:
    """The device, its bookings held until the transaction ends (PostgreSQL: an advisory
    lock per device, across replicas, which leaves the device's row free for its
    heartbeats; SQLite's write transaction holds the whole file already): its bookings
    change one at a time."""
    device = _device(conn, device_id)
    conn.hold(f"bookings:{device_id}")
    return device


def _device(conn: Connection, device_id: str) -> Row:
    r = conn.execute("SELECT device_id, name FROM devices WHERE device_id = ?",
                     (device_id,)).fetchone()
    if r is None:
        raise NotFound(f"no device {device_id}: `userclient devices` lists them")
    return dict(r)


def _team_for(conn: Connection, ref: str, caller: Principal,
              hidden: Optional[str] = None) -> Row:
    """The team (TeamId or name) with the caller's ``role`` in it (None: not a member);
    a team the caller is not in is NotFound unless they are an admin."""
    r = conn.execute("SELECT t.team_id, t.name, m.role FROM teams t LEFT JOIN team_members m "
                     "ON m.team_id = t.team_id AND m.user_id = ? WHERE t.team_id = ? OR "
                     "t.name = ?", (caller.id, ref, ref)).fetchone()
    if r is None or (r["role"] is None and not caller.is_admin):
        raise NotFound(hidden or f"no team {ref} of yours: `userclient team list` shows "
                                 "your teams")
    return dict(r)


def _teams_of(conn: Connection, caller: Principal) -> set[str]:
    return {r[0] for r in conn.execute("SELECT team_id FROM team_members WHERE user_id = ?",
                                       (caller.id,)).fetchall()}


def _overlapping(conn: Connection, device_id: str, start: int, end: int) -> list[Row]:
    return [dict(r) for r in conn.execute(
        "SELECT b.*, t.name AS team_name FROM bookings b LEFT JOIN teams t ON "
        "t.team_id = b.team_id WHERE b.device_id = ? AND b.cancelled_at IS NULL AND "
        "b.start_at < ? AND b.end_at > ? ORDER BY b.start_at, b.booking_id",
        (device_id, end, start)).fetchall()]


def _refuse_overlap(conn: Connection, device_id: str, start: int, end: int,
                    caller: Principal) -> None:
    hits = _overlapping(conn, device_id, start, end)
    if hits:
        raise Conflict(_overlap_message(hits[0], caller, member_of=_teams_of(conn, caller)),
                       kind="booking_overlap")


def _overlap_message(hit: Row, caller: Principal, *, member_of: frozenset | set = frozenset(),
                     maintenance: bool = False) -> str:
    """Which booking is in the way; another team's timeslot only as "reserved"."""
    when = f"from {iso(hit['start_at'])} to {iso(hit['end_at'])}"
    if hit["kind"] == scheduling.MAINTENANCE:
        what = f"maintenance {hit['booking_id']} ({hit['reason']}) {when}"
    elif caller.is_admin or hit["team_id"] in member_of:
        what = f"team {hit['team_name']}'s reservation {hit['booking_id']} {when}"
    else:
        what = f"the device is reserved {when}"
    if maintenance:
        return (f"it overlaps {what}: give Force (--force) to cancel the timeslots in the "
                "way, each refunded in full")
    return (f"it overlaps {what}: choose a free time (`userclient calendar "
            f"{hit['device_id']}` shows them)")


def _cancel(conn: Connection, row: Row, now: int, user_id: str, why: str) -> float:
    """Cancel a standing timeslot, refunding what it cost in full; answers the refund."""
    conn.execute("UPDATE bookings SET cancelled_at = ?, cancelled_by = ? WHERE booking_id = ?",
                 (now, user_id, row["booking_id"]))
    refund = float(row["cost"] or 0)
    if refund > 0:
        facility.append_line(conn, row["team_id"], "reservation_refund", refund, user_id,
                             f"timeslot {iso(row['start_at'])} .. {iso(row['end_at'])} {why}",
                             now, device_id=row["device_id"], booking_id=row["booking_id"])
    conn.notify(row["device_id"])
    return refund


def _booking_or_none(conn: Connection, booking_id: str) -> Optional[Row]:
    r = conn.execute("SELECT b.*, t.name AS team_name FROM bookings b LEFT JOIN teams t ON "
                     "t.team_id = b.team_id WHERE b.booking_id = ?", (booking_id,)).fetchone()
    return None if r is None else dict(r)


def _booking(conn: Connection, booking_id: str) -> Row:
    row = _booking_or_none(conn, booking_id)
    assert row is not None, booking_id
    return row


def _rules(conn: Connection, device_id: str) -> list[tuple[int, int, int]]:
    return [(int(r[0]), int(r[1]), int(r[2])) for r in conn.execute(
        "SELECT day, start_minute, end_minute FROM windows WHERE device_id = ? "
        "ORDER BY day, start_minute, end_minute", (device_id,)).fetchall()]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _drop_feed(conn: Connection, user_id: str) -> int:
    rows = conn.execute("SELECT name FROM service_settings WHERE value = ? AND name LIKE ?",
                        (user_id, _FEED_SETTING + "%")).fetchall()
    for r in rows:
        conn.execute("DELETE FROM service_settings WHERE name = ?", (r[0],))
    return len(rows)
