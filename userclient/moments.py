"""Moments people type for the calendar (timeslots, maintenance, a calendar's span):
ISO 8601 with an offset (``2026-12-01T18:00Z``, ``2026-12-01T19:00+01:00``), or relative
to now: ``now``, ``now+2h``, ``now-30m``, ``now+1d12h`` (units ``w d h m s``). A time
without an offset is refused (the service's calendar is UTC; an offset says which clock
the person meant). Sent to the service as ISO 8601 in UTC.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Optional, Union

from cloudqueue.errors import BadRequest

#: a moment given to the library: a timezone-aware datetime, or text as this module reads
Moment = Union[datetime, str]
HELP = ("ISO 8601 with an offset (2026-12-01T18:00Z, 2026-12-01T19:00+01:00) or relative to "
        "now: now, now+2h, now+1d12h, now-30m (units w d h m s)")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_RELATIVE = re.compile(r"^now(?:([+-])((?:\d{1,6}[wdhms])+))?$")
_TERM = re.compile(r"(\d+)([wdhms])")


def parse_moment(text: str, now: Optional[datetime] = None) -> datetime:
    """``text`` as a timezone-aware datetime (``now``: the moment ``now`` means, default
    the clock's); BadRequest saying what to write for anything else."""
    spoken = text.strip()
    match = _RELATIVE.match(spoken.lower())
    if match:
        base = now or datetime.now(timezone.utc)
        if not match[1]:
            return base
        try:
            delta = sum((timedelta(**{_UNITS[unit]: int(amount)})
                         for amount, unit in _TERM.findall(match[2])), timedelta())
            return base + delta if match[1] == "+" else base - delta
        except OverflowError:
            raise BadRequest(f"{text!r} is further from now than a calendar goes") from None
    try:
        moment = datetime.fromisoformat(spoken[:-1] + "+00:00" if spoken[-1:] in "Zz"
                                        and spoken else spoken)
    except ValueError:
        raise BadRequest(f"{text!r} is not a time: write {HELP}") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{text!r} has no offset: add Z for UTC or your offset "
                         "(e.g. +01:00)")
    return moment


def iso_moment(moment: Moment) -> str:
    """A moment as the wire's ISO 8601 in UTC (``2026-12-01T18:00:00Z``)."""
    if isinstance(moment, str):
        moment = parse_moment(moment)
    if moment.tzinfo is None:
        raise BadRequest(f"the time {moment.isoformat()} has no timezone: give a "
                         "timezone-aware datetime (e.g. tzinfo=timezone.utc)")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
