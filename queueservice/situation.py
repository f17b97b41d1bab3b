"""What ``scheduling.pick`` is given for one device, read from the store inside the
caller's transaction (``Connection``): its READY candidates, its calendar, its open
session, the balances and decayed usage of the candidates' teams, its prices and the
accounting switch. The claim (``WorkloadStore.hand_out``), a workload's ``Waiting`` reason
and the queue forecast (``scheduling.forecast``) all decide from this one reading.

The fast path: a device with accounting off, no standing booking ahead, no pay-as-you-go
window, no open session and no READY timeslot or session work needs no policy at all
(``rules_apply`` and ``special_work``; ``needed``): the stock queue order decides, as it
always did, at the cost of one small query. Under the rules a claim does not read the
timeslot work that cannot run now (``claim_rows``).

Choices: the calendar is read over ``[now, now + HORIZON_MS)`` (longer when a candidate's
run is longer), so a weekly window's next opening is always in it; a claim, which decides
only what runs now, reads ``CLAIM_HORIZON_MS`` ahead (a device with a thousand timeslots
booked does not read them all at every poll; its recheck falls back to every 5 s); fair share reads the
``charge`` lines of the last ``USAGE_MEMORY_MS`` (past that a line weighs under 0.4 %);
work queued without a team (before accounting was turned on) is not held for credits:
it was accepted under the old rules.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Optional, Sequence

from queueservice import facility, policy, scheduling
from queueservice.db import Connection

Row = Mapping[str, Any]
HORIZON_MS = 8 * scheduling.DAY_MS
CLAIM_HORIZON_MS = 3600 * 1000
USAGE_MEMORY_MS = 8 * scheduling.HALF_LIFE_MS
#: the team of work queued without one (before accounting): never held for credits
NO_TEAM = ""


@dataclass(frozen=True)
class Situation:
    """Everything ``scheduling.pick`` needs for one device at ``now``."""

    now: int
    calendar: scheduling.Calendar
    session: Optional[scheduling.Session]
    candidates: tuple[scheduling.Candidate, ...]
    balances: Mapping[str, float]
    usage: Mapping[str, float]
    prices: scheduling.Prices
    accounting: bool

    def decide(self, excluded: Collection[str] = ()) -> scheduling.Decision:
        """The pick among the candidates but ``excluded`` (work a claim just ended or
        another replica holds)."""
        cands = [c for c in self.candidates if c.work_id not in excluded]
        return scheduling.pick(self.now, self.calendar, self.session, cands, self.balances,
                               self.usage, self.prices, accounting=self.accounting)

    def forecast(self, free_at: Optional[int] = None) -> scheduling.Forecast:
        """The queue played forward from ``free_at`` (``scheduling.forecast``)."""
        return scheduling.forecast(self.now, self.calendar, self.session, self.candidates,
                                   self.balances, self.usage, self.prices,
                                   accounting=self.accounting, free_at=free_at)

    def slot_of(self, cand: scheduling.Candidate) -> Optional[str]:
        """The reservation timeslot work runs in now (its BookingId), None for shared work."""
        if not cand.reservation:
            return None
        return next((b.ref for b in self.calendar.bookings
                     if b.kind == scheduling.RESERVATION and b.team_id == cand.team_id
                     and b.start <= self.now < b.end), None)


def rules_apply(conn: Connection, device_id: str, now: int) -> bool:
    """Whether a facility rule applies to the device (one query): accounting on, a
    standing booking ahead, weekly windows, or an open session."""
    r = conn.execute(
        "SELECT (SELECT value FROM service_settings WHERE name = ?) AS accounting, "
        "EXISTS (SELECT 1 FROM bookings WHERE device_id = ? AND cancelled_at IS NULL "
        "AND end_at > ?) AS booked, "
        "EXISTS (SELECT 1 FROM windows WHERE device_id = ?) AS windowed, "
        "EXISTS (SELECT 1 FROM sessions WHERE device_id = ? AND closed_at IS NULL) AS held",
        (facility.ACCOUNTING_SETTING, device_id, now, device_id, device_id)).fetchone()
    return (r["accounting"] == "1" or bool(r["booked"]) or bool(r["windowed"])
            or bool(r["held"]))


def special_work(rows: Sequence[Row]) -> bool:
    """Whether READY timeslot or session work is among ``rows`` (it needs the policy
    even where no rule applies: a timeslot's work waits for a slot)."""
    return any(r["status"] == "READY" and (r.get("timeslot") or r.get("session_id"))
               for r in rows)


def needed(conn: Connection, device_id: str, now: int) -> bool:
    """Whether the device's READY work is ruled by the policy (else the stock order
    decides): ``rules_apply``, or READY timeslot or session work."""
    if rules_apply(conn, device_id, now):
        return True
    return conn.execute("SELECT 1 FROM workloads WHERE device_id = ? AND status = 'READY' "
                        "AND (timeslot = 1 OR session_id IS NOT NULL) LIMIT 1",
                        (device_id,)).fetchone() is not None


def claim_rows(conn: Connection, device_id: str, now: int) -> list[Row]:
    """The device's active work a claim may hand out under the policy: its running work,
    and its READY work but timeslot work of a team whose slot is not running now (which
    rules 1-2 skip for sure: a queue of work waiting for future slots is not read)."""
    return [dict(r) for r in conn.execute(  # three index ranges (workloads_claim)
        "SELECT * FROM workloads WHERE device_id = ? AND status IN ('EXECUTING', "
        "'UPLOADING') UNION ALL "
        "SELECT * FROM workloads WHERE device_id = ? AND status = 'READY' AND timeslot = 0 "
        "UNION ALL "
        "SELECT * FROM workloads WHERE device_id = ? AND status = 'READY' AND timeslot = 1 "
        "AND team_id IN (SELECT team_id FROM bookings WHERE device_id = ? AND kind = "
        "'reservation' AND cancelled_at IS NULL AND start_at <= ? AND end_at > ?)",
        (device_id, device_id, device_id, device_id, now, now)).fetchall()]


def candidate(row: Row, fallback_seconds: float) -> scheduling.Candidate:
    """A READY workload as the policy sees it: its own estimate, else the device's."""
    cap = policy.run_time(row.get("max_seconds"))
    return scheduling.Candidate(
        work_id=row["work_id"], team_id=row.get("team_id") or NO_TEAM,
        user_id=row["account_id"], priority=row["priority"], ready_seq=row["ready_seq"] or 0,
        estimated_seconds=policy.run_seconds(row, fallback_seconds),
        max_seconds=cap if cap is not None and cap > 0 else None,
        reservation=bool(row.get("timeslot")), session_id=row.get("session_id"),
        estimate_known=policy.run_time(row.get("estimated_seconds")) is not None)


def read(conn: Connection, device_id: str, now: int, rows: Sequence[Row],
         fallback_seconds: float, horizon_ms: int = HORIZON_MS) -> Situation:
    """The device's situation at ``now``; ``rows``: its active work as read in this
    transaction (the READY ones are the candidates); its calendar ``horizon_ms`` ahead."""
    cands = tuple(candidate(r, fallback_seconds) for r in rows if r["status"] == "READY")
    longest = max((c.run_ms() for c in cands), default=0)
    calendar = facility.calendar(conn, device_id, now, now + max(horizon_ms, 2 * longest))
    accounting = facility.accounting_on(conn)
    teams = sorted({c.team_id for c in cands} - {NO_TEAM})
    balances: dict[str, float] = {NO_TEAM: math.inf}
    usage: dict[str, float] = {}
    if accounting:
        balances.update((t, facility.balance(conn, t)) for t in teams)
        usage = _usage(conn, teams, now)
    return Situation(now, calendar, open_session(conn, device_id, rows, now), cands,
                     balances, usage, facility.prices_at(conn, device_id, now), accounting)


def _usage(conn: Connection, teams: Sequence[str], now: int) -> dict[str, float]:
    """Each team's decayed use (``scheduling.decayed_usage``) of its recent charges."""
    if not teams:
        return {}
    marks = ", ".join("?" for _ in teams)
    events: dict[str, list[tuple[int, float]]] = {t: [] for t in teams}
    for r in conn.execute(f"SELECT team_id, at, seconds FROM ledger WHERE kind = 'charge' "
                          f"AND at > ? AND team_id IN ({marks})",
                          (now - USAGE_MEMORY_MS, *teams)).fetchall():
        events[r[0]].append((int(r[1]), -float(r[2])))  # a charge line is negative
    return {t: scheduling.decayed_usage(e, now) for t, e in events.items() if e}


def open_session(conn: Connection, device_id: str, rows: Sequence[Row],
                 now: int) -> Optional[scheduling.Session]:
    """The device's open session (a started one first, else the oldest), as the policy
    sees it. Its work running on the device now counts as activity (a run longer than the
    idle limit does not let the session go idle)."""
    r = conn.execute("SELECT * FROM sessions WHERE device_id = ? AND closed_at IS NULL "
                     "ORDER BY started_at IS NULL, opened_at, session_id LIMIT 1",
                     (device_id,)).fetchone()
    if r is None:
        return None
    started = r["started_at"]
    base = started if started is not None else int(r["opened_at"])
    last = r["last_activity_at"] if r["last_activity_at"] is not None else base
    if any(w.get("session_id") == r["session_id"] and w["status"] in ("EXECUTING",
                                                                      "UPLOADING")
           for w in rows):
        last = max(last, now)
    return scheduling.Session(
        session_id=r["session_id"], user_id=r["user_id"], team_id=r["team_id"] or NO_TEAM,
        started_at=started, ends_at=base + math.ceil(float(r["max_seconds"]) * 1000),
        idle_until=int(last) + math.ceil(float(r["idle_seconds"]) * 1000))


def note_session_activity(conn: Connection, session_id: str, now: int, *,
                          handed_out: bool) -> None:
    """A session's work was handed out (the session starts at its first) or finished:
    the idle limit counts from now."""
    if handed_out:
        conn.execute("UPDATE sessions SET started_at = COALESCE(started_at, ?), "
                     "last_activity_at = ? WHERE session_id = ? AND closed_at IS NULL",
                     (now, now, session_id))
    else:
        conn.execute("UPDATE sessions SET last_activity_at = ? WHERE session_id = ? "
                     "AND closed_at IS NULL", (now, session_id))
