"""What a device may run now, for a facility: one pure decision (no I/O, no clock).

``pick(now, calendar, session, candidates, balances, usage, prices, accounting=...)``
answers the workload the device runs next and, for every other candidate, exactly one
reason it does not run now (a ``Skip``). Times are integer milliseconds since the epoch;
every interval is half-open ``[start, end)``.

The rules, checked in this order for each candidate (the first that applies is its Skip):

1. ``maintenance`` / ``reserved``: a booking that excludes the candidate overlaps its run
   ``[now, now + length)``, where the length is ``max_seconds`` when given (the run's cap)
   else ``estimated_seconds``. Maintenance excludes all work. A reservation (a team's
   timeslot) excludes all work but its own team's timeslot work: another team's work, and
   also the team's own shared (pay-as-you-go) work, which would be charged a second time
   inside a slot already paid for. So no run ever overlaps another team's slot or
   maintenance. ``until`` is that booking's end.
2. ``needs_timeslot``: timeslot work (``reservation=True``) starts only inside a booked
   slot of its team (IQM's rule). ``until`` is the start of the team's next slot, if any.
   A slot's end cuts what still runs: that is the service's job, not this decision's.
3. ``outside_window``: shared work starts only inside a pay-as-you-go window, when the
   calendar has windows (``None``: always open). ``until`` is the next window's start.
   Windows say when shared work may *start*; a run started inside one may end after it.
4. ``session``: a started session holds the device (until its maximum time or its idle
   limit, whichever comes first) for its own work; everyone else's waits, ``until`` the
   hold's end if nothing more comes. Session work is shared work, so during maintenance
   or any timeslot (its own team's too) the session holds nothing: the booking decides.
   A session not yet started holds nothing: its first workload queues as usual.
5. ``credits`` (accounting only): shared work runs only when its team's balance covers
   its cost, ``estimated_seconds`` (at most ``max_seconds``) x the price per used second;
   work with no estimate of its own (``estimate_known``) is weighed at its cap, and with
   no cap either runs while the team has anything left (the rule the service admits it
   by at submit). Timeslot work is not checked: its slot was paid at booking; nor session
   work: its session is charged for the time it holds the device.
6. ``behind``: runnable, but another runnable candidate comes first.

Order among the runnable (while a session holds the device, only its own work is
runnable): priority (``policy.PRIORITY_RANK``), then fair share (accounting only: lower
decayed usage of the team first, ``decayed_usage``), then place in line (``ready_seq``),
then ``work_id``. With
``accounting=False`` (a lab that turned nothing on) there is no credits rule and no fair
share: the order is the stock ``policy.queue_order`` of READY work.

``forecast`` plays the same rules forward (each run its own length, the clock moved to
the end of a rule when nothing may run) for QueuePosition and EstimatedStartAt.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Sequence

from queueservice.policy import PRIORITY_RANK, iso

#: fair share's memory: usage counts half after this long (7 days, in ms)
HALF_LIFE_MS = 7 * 86400 * 1000

MAINTENANCE, RESERVATION = "maintenance", "reservation"
BOOKING_KINDS = (RESERVATION, MAINTENANCE)
#: every Skip's rule, in the order they are checked
RULES = ("maintenance", "reserved", "needs_timeslot", "outside_window", "session",
         "credits", "behind")


@dataclass(frozen=True)
class Booking:
    """An exclusive stretch of the device's calendar: a team's timeslot (``reservation``,
    ``ref`` its id) or ``maintenance`` (``team_id`` None, ``ref`` the reason)."""

    kind: str
    start: int
    end: int
    team_id: Optional[str]
    ref: str

    def __post_init__(self) -> None:
        if self.kind not in BOOKING_KINDS:
            raise ValueError(f"booking kind {self.kind!r}: expected one of {BOOKING_KINDS}")
        if self.end <= self.start:
            raise ValueError(f"booking {self.ref!r}: end {self.end} is not after start "
                             f"{self.start}")
        if (self.kind == RESERVATION) != (self.team_id is not None):
            raise ValueError(f"booking {self.ref!r}: a reservation has a team, "
                             "maintenance has none")

    def excludes(self, team_id: str, reservation: bool) -> bool:
        """Whether work of ``team_id`` (timeslot work when ``reservation``) may not run
        during this booking."""
        return self.kind == MAINTENANCE or not (reservation and self.team_id == team_id)


@dataclass(frozen=True)
class Calendar:
    """A device's calendar around now: pay-as-you-go ``windows`` (``(start, end)`` pairs,
    recurring ones already unrolled by the caller; None: always open) and its bookings."""

    windows: Optional[tuple[tuple[int, int], ...]] = None
    bookings: tuple[Booking, ...] = ()


@dataclass(frozen=True)
class Session:
    """A session on the device: ``started_at`` None until its first workload starts;
    then it holds the device until ``ends_at`` (its maximum time) or ``idle_until`` (its
    idle limit from the last activity), whichever comes first."""

    session_id: str
    user_id: str
    team_id: str
    started_at: Optional[int]
    ends_at: int
    idle_until: int

    @property
    def hold_end(self) -> int:
        return min(self.ends_at, self.idle_until)

    def holds(self, now: int) -> bool:
        return self.started_at is not None and self.started_at <= now < self.hold_end


@dataclass(frozen=True)
class Candidate:
    """READY work of the device. ``reservation``: submitted for its team's timeslot;
    ``session_id``: submitted in that session."""

    work_id: str
    team_id: str
    user_id: str
    priority: str
    ready_seq: int
    estimated_seconds: float
    max_seconds: Optional[float] = None
    reservation: bool = False
    session_id: Optional[str] = None
    #: False: ``estimated_seconds`` is the device's mean, not this work's own estimate
    estimate_known: bool = True

    def run_ms(self) -> int:
        """The longest the run may hold the device, at least a moment (1 ms)."""
        seconds = self.max_seconds if self.max_seconds is not None else self.estimated_seconds
        return max(1, math.ceil(seconds * 1000))

    def charged_seconds(self) -> float:
        """Board time expected to be charged: the estimate, at most the cap."""
        if self.max_seconds is None:
            return self.estimated_seconds
        return min(self.estimated_seconds, self.max_seconds)

    def cost_seconds(self) -> Optional[float]:
        """Board time the credit check weighs, as the service admits work at submit: its
        own estimate, at most the cap; the cap alone without an estimate of its own; None
        with neither (it runs while its team has anything left)."""
        if self.estimate_known:
            return self.charged_seconds()
        return self.max_seconds


@dataclass(frozen=True)
class Prices:
    """A device's prices in device-seconds of credit: per used second (pay-as-you-go)
    and per reserved second (timeslots, charged at booking)."""

    per_used_second: float = 1.0
    per_reserved_second: float = 1.0


@dataclass(frozen=True)
class Skip:
    """Why a candidate does not run now: one of ``RULES``, a sentence for people, and
    when that reason ends (ms) if known."""

    rule: str
    message: str
    until: Optional[int] = None


@dataclass(frozen=True)
class Decision:
    """The work to run now (None: nothing may), and a Skip for every other candidate."""

    chosen: Optional[Candidate]
    skipped: Mapping[str, Skip]


def decayed_usage(events: Iterable[tuple[int, float]], now: int,
                  half_life_ms: int = HALF_LIFE_MS) -> float:
    """A team's recent use for fair share: the sum of each run's seconds halved for every
    ``half_life_ms`` since it ran (``at`` ms). A time after ``now`` counts in full."""
    if half_life_ms <= 0:
        raise ValueError(f"half life {half_life_ms} ms: must be positive")
    return sum(seconds * 0.5 ** (max(0, now - at) / half_life_ms) for at, seconds in events)


DAY_MS = 86400 * 1000
WEEK_MS = 7 * DAY_MS
#: a Monday, 00:00 UTC (1969-12-29): weekly rules count their days from it
_MONDAY_MS = -3 * DAY_MS


def unroll_weekly(rules: Iterable[tuple[int, int, int]], start: int,
                  end: int) -> tuple[tuple[int, int], ...]:
    """Weekly windows ``(day, start_minute, end_minute)`` (day 0 is Monday, minutes of
    that day in UTC, ``0 <= start_minute < end_minute <= 1440``) as the ``(start, end)``
    intervals (ms) that overlap ``[start, end)``, sorted, with touching or overlapping
    ones merged (Monday until midnight and Tuesday from midnight are one window), each
    whole as far as a day beyond the range (a window is not cut at the range's edge)."""
    rules = list(rules)
    for day, first, last in rules:
        if not (0 <= day <= 6 and 0 <= first < last <= 1440):
            raise ValueError(f"weekly window ({day}, {first}, {last}): expected a day 0-6 "
                             "and minutes 0 <= start < end <= 1440")
    spans = []
    week = (start - DAY_MS - _MONDAY_MS) // WEEK_MS
    while _MONDAY_MS + week * WEEK_MS < end + DAY_MS:
        base = _MONDAY_MS + week * WEEK_MS
        spans += [(base + day * DAY_MS + first * 60_000, base + day * DAY_MS + last * 60_000)
                  for day, first, last in rules]
        week += 1
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return tuple((s, e) for s, e in merged if s < end and e > start)


def _at(ms: int) -> str:
    """A moment for people: the wire's ISO time (the number when no date can hold it)."""
    return iso(ms) or str(ms)


def _first_excluding(calendar: Calendar, cand: Candidate, now: int) -> Optional[Booking]:
    """The earliest booking excluding ``cand`` that overlaps its run (maintenance first
    among those starting together)."""
    end = now + cand.run_ms()
    hits = [b for b in calendar.bookings
            if b.start < end and now < b.end and b.excludes(cand.team_id, cand.reservation)]
    return min(hits, key=lambda b: (b.start, b.kind != MAINTENANCE, b.ref), default=None)


def _excluded_now(calendar: Calendar, team_id: str, reservation: bool, now: int) -> bool:
    return any(b.start <= now < b.end and b.excludes(team_id, reservation)
               for b in calendar.bookings)


def _calendar_skip(calendar: Calendar, cand: Candidate, now: int) -> Optional[Skip]:
    """Rules 1-3: bookings, timeslots, windows."""
    booking = _first_excluding(calendar, cand, now)
    if booking is not None:
        started = booking.start <= now
        if booking.kind == MAINTENANCE:
            when = "now" if started else "before this run could end"
            return Skip("maintenance", f"the device is in maintenance {when} "
                        f"({booking.ref}) until {_at(booking.end)}", booking.end)
        if booking.team_id == cand.team_id:
            return Skip("reserved", f"team {cand.team_id}'s timeslot {booking.ref} runs "
                        "only work submitted for it (submit with --timeslot)", booking.end)
        when = "now" if started else "before this run could end"
        return Skip("reserved", f"the device is reserved by another team {when}, "
                    f"until {_at(booking.end)}", booking.end)
    if cand.reservation:
        if any(b.kind == RESERVATION and b.team_id == cand.team_id and b.start <= now < b.end
               for b in calendar.bookings):
            return None
        nxt = min((b.start for b in calendar.bookings if b.kind == RESERVATION
                   and b.team_id == cand.team_id and b.start > now), default=None)
        if nxt is None:
            return Skip("needs_timeslot", f"timeslot work, and team {cand.team_id} has no "
                        "booked timeslot ahead: book one (userclient reserve) or submit "
                        "without --timeslot")
        return Skip("needs_timeslot", f"timeslot work: waits for team {cand.team_id}'s "
                    f"next timeslot at {_at(nxt)}", nxt)
    if calendar.windows is None or any(s <= now < e for s, e in calendar.windows):
        return None
    nxt = min((s for s, _e in calendar.windows if s > now), default=None)
    if nxt is None:
        return Skip("outside_window", "shared work runs only inside the device's "
                    "pay-as-you-go windows, and none is ahead")
    return Skip("outside_window", f"shared work waits for the next pay-as-you-go window "
                f"at {_at(nxt)}", nxt)


def _why_behind(ahead: Candidate, cand: Candidate, usage: Mapping[str, float],
                accounting: bool) -> str:
    lead = f"behind {ahead.work_id}: "
    if PRIORITY_RANK.get(ahead.priority, 9) < PRIORITY_RANK.get(cand.priority, 9):
        return lead + f"higher priority ({ahead.priority} before {cand.priority})"
    ahead_use, own_use = usage.get(ahead.team_id, 0.0), usage.get(cand.team_id, 0.0)
    if accounting and ahead_use < own_use:
        return lead + (f"fair share: team {ahead.team_id}'s recent use {ahead_use:.1f} s "
                       f"is below team {cand.team_id}'s {own_use:.1f} s")
    return lead + "earlier in line"


def _holding(calendar: Calendar, session: Optional[Session], now: int) -> Optional[Session]:
    """The session that holds the device at ``now`` (rule 4), if any."""
    if session is None or not session.holds(now):
        return None
    return None if _excluded_now(calendar, session.team_id, False, now) else session


def _skip(now: int, calendar: Calendar, held: Optional[Session], cand: Candidate,
          balances: Mapping[str, float], prices: Prices, accounting: bool,
          seen: dict[tuple, Optional[Skip]]) -> Optional[Skip]:
    """Rules 1-5 for one candidate (None: it may run now). ``seen``: rules 1-3's answers
    at this ``now`` so far, by what they depend on (team, timeslot or not, run length):
    a queue of thousands asks the calendar once per kind of work."""
    key = (cand.team_id, cand.reservation, cand.run_ms())
    if key not in seen:
        seen[key] = _calendar_skip(calendar, cand, now)
    skip = seen[key]
    if skip is None and held is not None and cand.session_id != held.session_id:
        skip = Skip("session", f"the device is held by session {held.session_id} "
                    f"until {_at(held.hold_end)} at the latest: only its work runs",
                    held.hold_end)
    if skip is None and accounting and not cand.reservation and cand.session_id is None:
        skip = _credits_skip(cand, balances.get(cand.team_id, 0.0), prices)
    return skip


def _credits_skip(cand: Candidate, balance: float, prices: Prices) -> Optional[Skip]:
    """Rule 5: shared work runs only when its team's balance covers its cost; work of
    unknown cost while the team has anything left (a free device: always)."""
    seconds = cand.cost_seconds()
    if seconds is None:
        if balance > 0 or prices.per_used_second == 0:
            return None
        return Skip("credits", f"team {cand.team_id}'s balance is {balance:.1f} "
                    "device-seconds, nothing left for work whose cost is not known in "
                    "advance: the team's scheduler can request credits")
    cost = seconds * prices.per_used_second
    if balance >= cost:
        return None
    return Skip("credits", f"team {cand.team_id}'s balance {balance:.1f} device-seconds "
                f"cannot cover this workload's {seconds:.1f} s x "
                f"{prices.per_used_second:g} = {cost:.1f}: the team's scheduler can "
                "request credits")


def _order(usage: Mapping[str, float], accounting: bool) -> Callable[[Candidate], tuple]:
    """The order among the runnable (module docstring) as a sort key."""
    def key(c: Candidate) -> tuple:
        fair = usage.get(c.team_id, 0.0) if accounting else 0.0
        return (PRIORITY_RANK.get(c.priority, 9), fair, c.ready_seq, c.work_id)
    return key


def pick(now: int, calendar: Calendar, session: Optional[Session],
         candidates: Sequence[Candidate], balances: Mapping[str, float],
         usage: Mapping[str, float], prices: Prices, *, accounting: bool) -> Decision:
    """The candidate the device runs now, and one Skip for each other (module docstring:
    the rules and the order). ``balances``: each team's credit (device-seconds; a team
    not listed has none); ``usage``: each team's ``decayed_usage`` (not listed: none)."""
    ids = [c.work_id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError("candidates: a work_id appears twice")
    held = _holding(calendar, session, now)
    skipped: dict[str, Skip] = {}
    runnable: list[Candidate] = []
    seen: dict[tuple, Optional[Skip]] = {}
    for cand in candidates:
        skip = _skip(now, calendar, held, cand, balances, prices, accounting, seen)
        if skip is None:
            runnable.append(cand)
        else:
            skipped[cand.work_id] = skip
    runnable.sort(key=_order(usage, accounting))
    for ahead, cand in zip(runnable, runnable[1:]):
        skipped[cand.work_id] = Skip("behind", _why_behind(ahead, cand, usage, accounting))
    return Decision(runnable[0] if runnable else None, skipped)


#: the most hand-outs (and waits for a rule's end) a forecast plays through
FORECAST_STEPS = 2000


@dataclass(frozen=True)
class Forecast:
    """When each candidate is expected to start (ms; a candidate missing from ``starts``
    has no estimate: it waits for something with no known end, or lies beyond the
    forecast's steps), and the order they are expected to start in."""

    starts: Mapping[str, int]
    order: tuple[str, ...]

    def position(self, work_id: str) -> Optional[int]:
        """1 for the work expected to run next, 2 after it, ...; None without a start."""
        return self.order.index(work_id) + 1 if work_id in self.starts else None


def forecast(now: int, calendar: Calendar, session: Optional[Session],
             candidates: Sequence[Candidate], balances: Mapping[str, float],
             usage: Mapping[str, float], prices: Prices, *, accounting: bool,
             free_at: Optional[int] = None, max_steps: int = FORECAST_STEPS) -> Forecast:
    """The queue played forward: from ``free_at`` (when the device is done with the work
    it has; default ``now``) the ``pick`` rules choose the next run, which takes the
    time it is expected to (``charged_seconds``: the estimate, at most the cap) and its
    cost off its team's balance; when nothing may run, the simulated clock moves to the
    earliest end of a rule that holds work (``Skip.until``). At most ``max_steps`` runs
    and moves. Fair share keeps today's usage (the order among the runnable is fixed),
    and a session not yet started is not predicted to start: its work queues as shared
    work. Since every run chosen passes rule 1 for its whole length, no forecast start
    lies in maintenance or another team's slot."""
    t = now if free_at is None else max(now, free_at)
    left = dict(balances)
    queue = sorted(candidates, key=_order(usage, accounting))
    starts: dict[str, int] = {}
    order: list[str] = []
    for _step in range(max_steps):
        if not queue:
            break
        held = _holding(calendar, session, t)
        chosen, wake = None, None
        seen: dict[tuple, Optional[Skip]] = {}
        for i, cand in enumerate(queue):
            skip = _skip(t, calendar, held, cand, left, prices, accounting, seen)
            if skip is None:
                chosen = i
                break
            if skip.until is not None and skip.until > t:
                wake = skip.until if wake is None else min(wake, skip.until)
        if chosen is None:
            if wake is None:
                break
            t = wake
            continue
        cand = queue.pop(chosen)
        starts[cand.work_id] = t
        order.append(cand.work_id)
        if accounting and not cand.reservation and cand.session_id is None:
            left[cand.team_id] = (left.get(cand.team_id, 0.0)
                                  - cand.charged_seconds() * prices.per_used_second)
        t += max(1, math.ceil(cand.charged_seconds() * 1000))
    return Forecast(starts, tuple(order))
