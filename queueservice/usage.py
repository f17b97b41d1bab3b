"""Usage reports from the ledger (issue 12, docs/facility.md), sync, no HTTP: what was
spent, per team, user, device or month (UTC), over ``[start, end)`` of the lines' times.

Each row of a report adds up the ledger lines of its group (grants are not usage, so they
are left out), in credits (device-seconds at the device's price):
- ``charged``: what pay-as-you-go work was charged (``charge`` lines, as a positive number),
  ``refunded``: what came back for work the board failed (``refund`` lines), and
  ``spent``: their difference;
- ``board_seconds``: the device-seconds the board measured for the work charged and not
  refunded, where a line names its work (``workloads.device_seconds``), and ``workloads``:
  how many such works;
- ``reservations``: timeslots paid net of their refunds (``reservation`` and
  ``reservation_refund`` lines); ``sessions``: sessions' held time (``session`` lines);
- ``total``: ``spent + reservations + sessions``.

Who sees what: admins every line; anyone else the lines of the teams they are a scheduler
of, and their own lines (a plain ``user`` member: only their own usage). ``Team`` narrows
to one team (one the caller sees).

The lines are summed here rather than in SQL: months and both engines alike, no date
functions; a report reads one range of the ledger once.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Iterable

from cloudqueue.errors import BadRequest
from queueservice.identities import Principal
from queueservice.teams import SCHEDULER, Row, TeamStore

GROUPINGS = ("team", "user", "device", "month")
#: the numbers of every row, in the order reports show them
COLUMNS = ("charged", "refunded", "spent", "board_seconds", "workloads", "reservations",
           "sessions", "total")
_USAGE_KINDS = ("charge", "refund", "reservation", "reservation_refund", "session")


def month_of(ms: int) -> str:
    """``YYYY-MM`` of a time in ms, in UTC."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m")


class UsageStore(TeamStore):
    """Usage reports, on ``TeamStore``'s rules of who sees a team."""

    def report(self, by: str, caller: Principal, *, start: int | None = None,
               end: int | None = None, team_ref: str | None = None) -> list[Row]:
        """One row per group (``key``, ``name`` and the ``COLUMNS``), largest total first
        (months: oldest first)."""
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
            lines = conn.execute(
                "SELECT l.kind, l.seconds, l.at, l.team_id, t.name AS team_name, l.user_id, "
                "u.email, l.work_id, w.device_seconds, "
                "COALESCE(l.device_id, w.device_id, b.device_id, s.device_id) AS device_id, "
                "dv.name AS device_name FROM ledger l "
                "JOIN teams t ON t.team_id = l.team_id "
                "LEFT JOIN users u ON u.user_id = l.user_id "
                "LEFT JOIN workloads w ON w.work_id = l.work_id "
                "LEFT JOIN bookings b ON b.booking_id = l.booking_id "
                "LEFT JOIN sessions s ON s.session_id = l.session_id "
                "LEFT JOIN devices dv ON dv.device_id = "
                "COALESCE(l.device_id, w.device_id, b.device_id, s.device_id) "
                f"WHERE {' AND '.join(where)} ORDER BY l.entry_id", params).fetchall()
        return summarize(by, [dict(r) for r in lines])


def _group(by: str, line: Row) -> tuple[str, str]:
    """(key, name) of the line's group."""
    if by == "team":
        return line["team_id"], line["team_name"]
    if by == "user":
        return line["user_id"], line["email"] or line["user_id"]
    if by == "device":
        device = line["device_id"] or "-"
        return device, line["device_name"] or device
    month = month_of(int(line["at"]))
    return month, month


def summarize(by: str, lines: Iterable[Row]) -> list[Row]:
    """The report's rows from the ledger lines (each with kind, seconds, at, team_id,
    team_name, user_id, email, work_id, device_seconds, device_id, device_name)."""
    rows: dict[str, Row] = {}
    #: per group, per work: the net credits of its lines and its board seconds
    works: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for line in lines:
        key, name = _group(by, line)
        row = rows.setdefault(key, {"key": key, "name": name,
                                    **{c: 0.0 for c in COLUMNS}})
        seconds, kind = float(line["seconds"]), line["kind"]
        if kind == "charge":
            row["charged"] -= seconds
        elif kind == "refund":
            row["refunded"] += seconds
        elif kind in ("reservation", "reservation_refund"):
            row["reservations"] -= seconds
        else:
            row["sessions"] -= seconds
        if kind in ("charge", "refund") and line["work_id"]:
            work = works[key].setdefault(line["work_id"],
                                         [0.0, float(line["device_seconds"] or 0.0)])
            work[0] += seconds
    for key, row in rows.items():
        row["spent"] = row["charged"] - row["refunded"]
        billed = [w for w in works[key].values() if w[0] < 0]  # charged, not refunded
        row["board_seconds"] = sum(w[1] for w in billed)
        row["workloads"] = len(billed)
        row["total"] = row["spent"] + row["reservations"] + row["sessions"]
    return sorted(rows.values(), key=lambda r: r["key"] if by == "month" else
                  (-r["total"], r["name"], r["key"]))


def totals(rows: Iterable[Row]) -> dict[str, Any]:
    """The sum of every column over the report's rows."""
    rows = list(rows)
    out: dict[str, Any] = {c: sum(r[c] for r in rows) for c in COLUMNS}
    out["workloads"] = int(out["workloads"])
    return out
