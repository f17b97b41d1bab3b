"""Usage reports from the ledger (issue 12, docs/facility.md), sync, no HTTP: what was
spent, per team, user, device or month (UTC), over ``[start, end)`` of the lines' times.

Each row of a report adds up the ledger lines of its group (grants are not usage, so they
are left out), in credits (device-seconds at the device's price):
- ``charged``: what pay-as-you-go work was charged (``charge`` lines, as a positive number),
  ``refunded``: what came back for work the board failed (``refund`` lines), and
  ``spent``: their difference;
- ``board_seconds``: the device-seconds the board measured for the work charged and not
  refunded, where a line names its work (``workloads.device_seconds``), and ``workloads``:
  how many such works (a work is charged once, as it finishes, and refunded at most once,
  in full, at the same moment: ``pricing.settle``; so a charge counts its work and a
  refund takes it away again, with no grouping per work);
- ``reservations``: timeslots paid net of their refunds (``reservation`` and
  ``reservation_refund`` lines); ``sessions``: sessions' held time (``session`` lines);
- ``total``: ``spent + reservations + sessions``.

Who sees what: admins every line; anyone else the lines of the teams they are a scheduler
of, and their own lines (a plain ``user`` member: only their own usage). ``Team`` narrows
to one team (one the caller sees).

The lines are summed in SQL, in one read of the range (the ``ledger_team_at`` index
bounds a team's to it); only a month's name needs each engine's own date function.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Sequence

from cloudqueue.errors import BadRequest
from queueservice.identities import Principal
from queueservice.teams import SCHEDULER, Row, TeamStore

GROUPINGS = ("team", "user", "device", "month")
#: the numbers of every row, in the order reports show them
COLUMNS = ("charged", "refunded", "spent", "board_seconds", "workloads", "reservations",
           "sessions", "total")
_USAGE_KINDS = ("charge", "refund", "reservation", "reservation_refund", "session")
#: the columns summed in SQL (``spent`` and ``total`` follow from them)
_SUMS = ("charged", "refunded", "reservations", "sessions", "board_seconds", "workloads")


def month_of(ms: int) -> str:
    """``YYYY-MM`` of a time in ms, in UTC."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m")


class UsageStore(TeamStore):
    """Usage reports, on ``TeamStore``'s rules of who sees a team."""

    def report(self, by: str, caller: Principal, *, start: int | None = None,
               end: int | None = None, team_ref: str | None = None) -> list[Row]:
        """One row per group (``key``, ``name`` and the ``COLUMNS``), largest total first
        (months: oldest first)."""
        return self.reports((by,), caller, start=start, end=end, team_ref=team_ref)[by]

    def reports(self, groupings: Sequence[str], caller: Principal, *,
                start: int | None = None, end: int | None = None,
                team_ref: str | None = None) -> dict[str, list[Row]]:
        """``report`` for each grouping, from one read of the lines: they are summed per
        combination of the groupings' keys (a few rows: users x devices), which adds up
        to each grouping's rows."""
        for by in groupings:
            if by not in GROUPINGS:
                raise BadRequest(f"By must be one of {', '.join(GROUPINGS)}, not {by[:40]!r}")
        if start is not None and end is not None and end <= start:
            raise BadRequest("To must be after From")
        marks = ", ".join("?" for _ in _USAGE_KINDS)
        where, params = [f"l.kind IN ({marks})"], list(_USAGE_KINDS)
        with self.db.reading() as conn:
            if team_ref is not None:
                team = self._visible(conn, team_ref, caller)
                where.append("l.team_id = ?")
                params.append(team["team_id"])
            if not caller.is_admin:
                where.append("(l.user_id = ? OR l.team_id IN (SELECT team_id FROM "
                             "team_members WHERE user_id = ? AND role = ?))")
                params += [caller.id, caller.id, SCHEDULER]
            if start is not None:
                where.append("l.at >= ?")
                params.append(start)
            if end is not None:
                where.append("l.at < ?")
                params.append(end)
            groups = [_group_columns(by, conn.dialect) for by in groupings]
            rows = conn.execute(_REPORT.format(
                groups=", ".join(f"{key} AS key{i}, MIN({name}) AS name{i}"
                                 for i, (key, name) in enumerate(groups)),
                keys=", ".join(key for key, _ in groups), where=" AND ".join(where)),
                params).fetchall()
        return {by: _grouped(by, i, rows) for i, by in enumerate(groupings)}


#: a line's device: its own, else its work's, timeslot's or session's
_DEVICE = "COALESCE(l.device_id, w.device_id, b.device_id, s.device_id, '-')"

#: a charge (a billed run: one per work, ``pricing.settle``) counts its work, a refund (all
#: of that charge back, at the same moment) takes it away again
_BILLED = ("CASE WHEN l.work_id IS NULL THEN 0 "
           "WHEN l.kind = 'charge' AND l.seconds < 0 THEN {charged} "
           "WHEN l.kind = 'refund' AND l.seconds > 0 THEN -{charged} ELSE 0 END")

#: the lines in range, summed per combination of the groupings' keys (``{groups}``: each
#: grouping's key and name as ``key{i}``, ``name{i}``)
_REPORT = (
    "SELECT {groups}, "
    "SUM(CASE WHEN l.kind = 'charge' THEN -l.seconds ELSE 0 END) AS charged, "
    "SUM(CASE WHEN l.kind = 'refund' THEN l.seconds ELSE 0 END) AS refunded, "
    "SUM(CASE WHEN l.kind IN ('reservation', 'reservation_refund') THEN -l.seconds "
    "ELSE 0 END) AS reservations, "
    "SUM(CASE WHEN l.kind = 'session' THEN -l.seconds ELSE 0 END) AS sessions, "
    f"SUM({_BILLED.format(charged='COALESCE(w.device_seconds, 0)')}) AS board_seconds, "
    f"SUM({_BILLED.format(charged='1')}) AS workloads "
    "FROM ledger l "
    "JOIN teams t ON t.team_id = l.team_id "
    "LEFT JOIN users u ON u.user_id = l.user_id "
    "LEFT JOIN workloads w ON w.work_id = l.work_id "
    "LEFT JOIN bookings b ON b.booking_id = l.booking_id "
    "LEFT JOIN sessions s ON s.session_id = l.session_id "
    f"LEFT JOIN devices dv ON dv.device_id = {_DEVICE} "
    "WHERE {where} GROUP BY {keys}")


def _group_columns(by: str, dialect: str) -> tuple[str, str]:
    """SQL for (key, name) of a line's group. A month is ``YYYY-MM`` in UTC: the one place
    the two engines need their own date function."""
    if by == "team":
        return "l.team_id", "t.name"
    if by == "user":
        return "l.user_id", "COALESCE(u.email, l.user_id)"
    if by == "device":
        return _DEVICE, f"COALESCE(dv.name, {_DEVICE})"
    month = ("to_char(to_timestamp(l.at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM')"
             if dialect == "postgresql" else "strftime('%Y-%m', l.at / 1000, 'unixepoch')")
    return month, month


def _grouped(by: str, i: int, rows: Iterable[Any]) -> list[Row]:
    """The report by the ``i``-th grouping (``by``): the rows' sums added up per its key,
    largest total first (months: oldest first)."""
    out: dict[str, Row] = {}
    for r in rows:
        row = out.setdefault(r[f"key{i}"], {"key": r[f"key{i}"], "name": r[f"name{i}"],
                                            **{c: 0.0 for c in _SUMS}})
        for c in _SUMS:
            row[c] += float(r[c])
    for row in out.values():
        row["workloads"] = int(row["workloads"])
        row["spent"] = row["charged"] - row["refunded"]
        row["total"] = row["spent"] + row["reservations"] + row["sessions"]
    return sorted(out.values(), key=lambda r: r["key"] if by == "month" else
                  (-r["total"], r["name"], r["key"]))


def totals(rows: Iterable[Row]) -> dict[str, Any]:
    """The sum of every column over the report's rows."""
    rows = list(rows)
    out: dict[str, Any] = {c: sum(r[c] for r in rows) for c in COLUMNS}
    out["workloads"] = int(out["workloads"])
    return out
