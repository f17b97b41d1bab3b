"""Prices and what work costs (issue 12, docs/facility.md "Money flow"), sync, no HTTP.

``PriceStore``: a device's prices (admins set them: a new ``prices`` row, in force from
then on, and the facility's accounting turned on), read by anyone who may use the device.

The rest runs inside the caller's transaction (``Connection``), on the workload store's
writes:

- ``submit_team``: the team a new workload is charged to (``Team``, else the submitter's
  default team); with accounting on a team is required, and shared work is refused
  (``insufficient_credits``) when its team has nothing left to cover it.
- ``check_cover``: when the workload file arrives (the service's own estimate known), its
  team's balance, less what its other queued and running shared work is estimated to
  cost (``QUEUED``), must cover this workload's cost, else the upload is refused (409
  ``insufficient_credits``, the numbers and what to do): the workload stays CREATED,
  nothing is queued.
- ``settle``: when shared work finishes (its first terminal status), one ``charge`` line
  of the board seconds measured x the price per used second in force when it started,
  also kept in ``workloads.cost``; work the board failed by its own fault
  (``BOARD_FAULTS``) gets a ``refund`` line of the same amount. Called by
  ``workloads.write`` in the transaction of the state change, so a finish is charged
  exactly once (the compare-and-set lets one writer finish it; a second report of
  finished work changes nothing and charges nothing).

Shared work is work charged per run: not timeslot work (its slot was paid at booking) and
not session work (a session is charged for the time it held the device). A run that
overshoots its ``MaxSeconds`` is charged what it used: the balance may go below zero by
that much, and the ledger shows it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from cloudqueue.errors import BadRequest, Conflict, Forbidden, NotFound
from queueservice import policy
from queueservice.db import Connection, Database
from queueservice.facility import (ACCOUNTING_SETTING, accounting_on, append_line, balance,
                                   lock_team, prices_at, set_accounting)
from queueservice.identities import NO_DEVICE_HINT, Principal

Row = dict[str, Any]
#: the highest price, in device-seconds of credit per second
MAX_PRICE = 1e6
#: ``ErrorKind`` of work that failed by the board's own fault, not the workload's: refunded
BOARD_FAULTS = frozenset({"device_error", "crashed", "board_restarted", "stopped",
                          "attempts_exhausted", "device_deleted"})
#: work queued or running: what its team's balance must still cover. Not CREATED work:
#: it is not queued until its file arrives (where its own cost is checked), and counting
#: it would let work announced but never uploaded hold the team's credit until its TTL
QUEUED = policy.ACTIVE
NO_TEAM_HINT = "check the TeamId or name against `userclient team list`"
MORE_CREDITS = ("ask a scheduler of the team to request credits (`userclient credits "
                "request`) or an admin to grant some, wait for the team's queued work to "
                "finish, or cap this run with --max-seconds")


class PriceStore:
    def __init__(self, db: Database):
        self.db = db

    def set_prices(self, device_id: str, per_used_second: float, per_reserved_second: float,
                   now: int, *, caller: Principal) -> Row:
        """New prices of the device, in force from ``now`` (admins only), and accounting
        on. Answers what ``prices`` answers."""
        if not caller.is_admin:
            raise Forbidden("only an admin (facility staff) may set prices: ask one")
        for name, value in (("PerUsedSecond", per_used_second),
                            ("PerReservedSecond", per_reserved_second)):
            if not (isinstance(value, (int, float)) and 0 <= value <= MAX_PRICE):
                raise BadRequest(f"{name} must be a number of credits per second from 0 to "
                                 f"{MAX_PRICE:g}, not {value}")
        with self.db.transaction() as conn:
            _device(conn, device_id)
            conn.execute("INSERT INTO prices (device_id, per_used_second, per_reserved_second, "
                         "since, set_by) VALUES (?, ?, ?, ?, ?)",
                         (device_id, float(per_used_second), float(per_reserved_second), now,
                          caller.id))
            _turn_on(conn)
            return _prices(conn, device_id, now)

    def prices(self, device_id: str, now: int) -> Row:
        """The device's prices: ``current`` (in force now; a device never priced costs one
        credit per second), ``history`` (every row, newest first) and ``accounting``."""
        with self.db.reading() as conn:
            _device(conn, device_id)
            return _prices(conn, device_id, now)

    def turn_on_accounting(self) -> None:
        """``qick-queue serve --accounting``."""
        with self.db.transaction() as conn:
            _turn_on(conn)

    def cost_fields(self, row: Mapping[str, Any], now: int) -> dict[str, Any]:
        """What ``GET /workloads/{id}`` adds about money: ``MaxSeconds`` and ``TeamId``
        when set; ``Cost`` (and ``CostRefunded``) once charged; ``EstimatedCost`` of
        unfinished shared work while accounting is on and its run time is estimated."""
        fields: dict[str, Any] = {}
        if row.get("max_seconds") is not None:
            fields["MaxSeconds"] = row["max_seconds"]
        if row.get("team_id") is None:
            return fields
        fields["TeamId"] = row["team_id"]
        if row.get("cost") is not None:
            fields["Cost"] = row["cost"]
            if row.get("error_kind") in BOARD_FAULTS:
                fields["CostRefunded"] = True
            return fields
        if row["status"] in policy.TERMINAL or not charged_per_run(row):
            return fields
        seconds = cost_seconds(row, row.get("estimated_seconds"))
        if seconds is None:
            return fields
        with self.db.reading() as conn:
            if accounting_on(conn):
                price = prices_at(conn, row["device_id"], now).per_used_second
                fields["EstimatedCost"] = round(seconds * price, 6)
        return fields


# -- the workload store's hooks (inside its transaction) ----------------------------------
def charged_per_run(row: Mapping[str, Any]) -> bool:
    """Shared work: neither timeslot work nor session work."""
    return not row.get("timeslot") and row.get("session_id") is None


def cost_seconds(row: Mapping[str, Any], estimate: float | None) -> float | None:
    """The board seconds a workload is expected to be charged for: its estimate, at most
    its ``max_seconds``; its ``max_seconds`` when it has no estimate; None: unknown."""
    own = policy.run_time(estimate)
    cap = row.get("max_seconds")
    if own is None:
        return cap
    return own if cap is None else min(own, cap)


@dataclass(frozen=True)
class Charging:
    """What ``POST /workloads`` says about paying for the work: ``team`` (TeamId or name;
    None: the submitter's default team), ``max_seconds`` (the cost cap, the board's
    deadline), ``timeslot`` (for the team's booked slot) and ``on_slot_end``."""

    team: str | None = None
    max_seconds: float | None = None
    timeslot: bool = False
    on_slot_end: str | None = None


def submit_team(conn: Connection, user_id: str, ref: str | None, *, timeslot: bool,
                now: int) -> Row | None:
    """The team a new workload of ``user_id`` is charged to: ``ref`` (TeamId or name; the
    submitter must be a member, any role), else their default team (None: they have
    none). With accounting on a team is required, and shared work is refused when its
    team has no credit left over its queued work."""
    on = accounting_on(conn)
    if ref is not None:
        team = _team(conn, ref)
        if team is None or not _member(conn, team["team_id"], user_id):
            raise NotFound(f"no team {ref} of yours: {NO_TEAM_HINT}")
    else:
        r = conn.execute("SELECT t.* FROM teams t JOIN team_members m ON m.team_id = "
                         "t.team_id WHERE m.user_id = ? AND m.is_default = 1",
                         (user_id,)).fetchone()
        team = dict(r) if r is not None else None
    if team is None and (on or timeslot):
        why = "this facility charges work to a team" if on else "a timeslot is a team's"
        raise Forbidden(f"you are in no team, and {why}: ask an admin (facility staff) to "
                        "add you to one (`userclient team add TEAM YOU`)", kind="no_team")
    if team is not None and on and not timeslot:
        lock_team(conn, team["team_id"])
        have, held, count = _left(conn, team["team_id"], None, now)
        if have - held <= 0:
            raise Conflict(f"team {team['name']} has no credit left for more work: its balance "
                           f"is {have:g} device-seconds and its {count} workload(s) queued or "
                           f"running are estimated at {held:g}: {MORE_CREDITS}",
                           kind="insufficient_credits")
    return team


def require_slot(conn: Connection, team: Row, device_id: str, now: int) -> None:
    """Timeslot work needs a slot of its team on the device, standing now or later (IQM's
    rule): else 409 ``no_timeslot``, saying how to book one."""
    if conn.execute("SELECT 1 FROM bookings WHERE device_id = ? AND team_id = ? AND kind = "
                    "'reservation' AND cancelled_at IS NULL AND end_at > ?",
                    (device_id, team["team_id"], now)).fetchone() is None:
        raise Conflict(f"team {team['name']} has no timeslot booked on device {device_id} "
                       "from now on, and timeslot work runs only in one: book one "
                       f"(`userclient reserve {device_id} --start ... --end ... --team "
                       f"{team['name']}`, a scheduler of the team) or submit it without "
                       "--timeslot (pay-as-you-go)", kind="no_timeslot")


def check_cover(conn: Connection, row: Mapping[str, Any], estimate: float | None,
                now: int) -> None:
    """Refuse (409 ``insufficient_credits``) to queue shared work whose team cannot cover
    it: its balance less the estimated cost of its other unfinished shared work must
    cover this one's (``cost_seconds`` x the device's price per used second now). A row
    without a ``work_id`` is work not created yet (the portal's check before it is)."""
    team_id = row.get("team_id")
    if team_id is None or not charged_per_run(row) or not accounting_on(conn):
        return
    lock_team(conn, team_id)
    have, held, count = _left(conn, team_id, row["work_id"], now)
    seconds = cost_seconds(row, estimate)
    price = prices_at(conn, row["device_id"], now).per_used_second
    cost = (seconds or 0.0) * price
    left = have - held
    if left >= cost and left > 0:
        return
    name = _team(conn, team_id)["name"]
    what = (f"this workload is estimated at {cost:g} ({seconds:g} s x {price:g} per used "
            f"second on device {row['device_id']})" if seconds is not None
            else "this workload's run time is unknown (no estimate, no --max-seconds)")
    which = f"workload {row['work_id']}" if row.get("work_id") else "this workload"
    raise Conflict(f"team {name} cannot cover {which}: its balance is "
                   f"{have:g} device-seconds, {held:g} are held by its {count} other "
                   f"workload(s) queued or running, so {left:g} are left, and {what}; "
                   f"nothing was queued: {MORE_CREDITS}", kind="insufficient_credits")


def settle(conn: Connection, before: Mapping[str, Any] | None,
           after: Mapping[str, Any]) -> Row:
    """Charge shared work of a team its run, once, as it finishes (see the module
    docstring): answers the row after, with its ``cost`` when one was charged."""
    if (before is None or after.get("team_id") is None or before["status"] in policy.TERMINAL
            or after["status"] not in policy.TERMINAL or not charged_per_run(after)
            or after["started_at"] is None):
        return dict(after)
    seconds = policy.run_time(after["device_seconds"])
    if seconds is None or not accounting_on(conn):
        return dict(after)
    price = prices_at(conn, after["device_id"], after["started_at"]).per_used_second
    cost = round(seconds * price, 6)
    now = after["finished_at"]
    what = after["workload_name"] or after["work_id"]
    append_line(conn, after["team_id"], "charge", -cost, after["account_id"],
                f"{what}: {seconds:g} s on the board x {price:g} per used second", now,
                work_id=after["work_id"], device_id=after["device_id"])
    if after["error_kind"] in BOARD_FAULTS:
        append_line(conn, after["team_id"], "refund", cost, after["account_id"],
                    f"{what} failed by the board's fault ({after['error_kind']})", now,
                    work_id=after["work_id"], device_id=after["device_id"])
    conn.execute("UPDATE workloads SET cost = ? WHERE work_id = ?", (cost, after["work_id"]))
    return {**after, "cost": cost}


# -- rows --------------------------------------------------------------------------------
def _turn_on(conn: Connection) -> None:
    """Accounting on, one replica at a time (two writing the switch at once would collide
    on its row)."""
    conn.hold(ACCOUNTING_SETTING)
    if not accounting_on(conn):
        set_accounting(conn, True)


def _left(conn: Connection, team_id: str, other_than: str | None,
          now: int) -> tuple[float, float, int]:
    """(the team's balance, the estimated cost of its unfinished shared work other than
    ``other_than``, how many such workloads)."""
    rows = conn.execute(
        "SELECT work_id, device_id, estimated_seconds, max_seconds FROM workloads "
        f"WHERE team_id = ? AND status IN ({', '.join('?' for _ in QUEUED)}) "
        "AND timeslot = 0 AND session_id IS NULL", (team_id, *QUEUED)).fetchall()
    prices: dict[str, float] = {}
    held, count = 0.0, 0
    for r in rows:
        if r["work_id"] == other_than:
            continue
        seconds = cost_seconds(dict(r), r["estimated_seconds"])
        if r["device_id"] not in prices:
            prices[r["device_id"]] = prices_at(conn, r["device_id"], now).per_used_second
        held += (seconds or 0.0) * prices[r["device_id"]]
        count += 1
    return balance(conn, team_id), held, count


def _prices(conn: Connection, device_id: str, now: int) -> Row:
    current = prices_at(conn, device_id, now)
    history = [dict(r) for r in conn.execute(
        "SELECT per_used_second, per_reserved_second, since, set_by FROM prices "
        "WHERE device_id = ? ORDER BY since DESC, price_id DESC", (device_id,)).fetchall()]
    return {"device_id": device_id, "per_used_second": current.per_used_second,
            "per_reserved_second": current.per_reserved_second, "history": history,
            "accounting": accounting_on(conn)}


def _device(conn: Connection, device_id: str) -> None:
    if conn.execute("SELECT 1 FROM devices WHERE device_id = ?",
                    (device_id,)).fetchone() is None:
        raise NotFound(f"no device {device_id}: {NO_DEVICE_HINT}")


def _team(conn: Connection, ref: str) -> Row | None:
    r = conn.execute("SELECT * FROM teams WHERE team_id = ? OR name = ?", (ref, ref)).fetchone()
    return dict(r) if r is not None else None


def _member(conn: Connection, team_id: str, user_id: str) -> bool:
    return conn.execute("SELECT 1 FROM team_members WHERE team_id = ? AND user_id = ?",
                        (team_id, user_id)).fetchone() is not None
