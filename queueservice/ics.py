"""iCalendar text (RFC 5545) of a device's calendar, for calendar applications to
subscribe to: pure, no I/O.

One ``VCALENDAR`` of ``VEVENT``s, each with ``UID``, ``DTSTAMP``, ``DTSTART`` and ``DTEND``
in UTC (``20260101T120000Z``), ``SUMMARY`` and an optional ``DESCRIPTION``. Lines end in
CRLF and are folded at 75 octets (a continuation line starts with one space; a UTF-8
character is never split). Text values escape ``\\``, ``;``, ``,`` and newlines
(``\\n``); every other control character becomes a space, so no text, however hostile,
can end a line and start a property of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Optional

PRODID = "-//qick-queue//device calendar//EN"
#: the longest line in octets, CRLF excluded (RFC 5545, 3.1)
FOLD_OCTETS = 75


@dataclass(frozen=True)
class Event:
    """One event: ``[start, end)`` in ms since the epoch."""

    uid: str
    start: int
    end: int
    summary: str
    description: Optional[str] = None


def stamp(ms: int) -> str:
    """A UTC DATE-TIME: ``20260101T120000Z`` (seconds: iCalendar has no finer unit)."""
    return datetime.fromtimestamp(ms // 1000, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def escape(text: str) -> str:
    """A TEXT value: ``\\`` ``;`` ``,`` escaped, any newline (CRLF, CR or LF) as ``\\n``,
    other control characters (but tab) as a space."""
    text = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return "".join(" " if (ord(c) < 32 and c != "\t") or ord(c) == 127 else c for c in text)


def fold(line: str) -> str:
    """``line`` as folded content lines, each at most ``FOLD_OCTETS`` octets (the
    continuation's leading space counted), joined by CRLF."""
    parts: list[str] = []
    current, size, limit = "", 0, FOLD_OCTETS
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            parts.append(current)
            current, size, limit = "", 0, FOLD_OCTETS - 1
        current += char
        size += width
    parts.append(current)
    return "\r\n ".join(parts)


def calendar_text(name: str, events: Iterable[Event], now: int) -> str:
    """The whole VCALENDAR (CRLF line endings, a final CRLF); ``now`` is every event's
    DTSTAMP. Times are whole seconds: a start rounds down, an end up."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN",
             "METHOD:PUBLISH", f"X-WR-CALNAME:{escape(name)}"]
    for event in events:
        lines += ["BEGIN:VEVENT", f"UID:{escape(event.uid)}", f"DTSTAMP:{stamp(now)}",
                  f"DTSTART:{stamp(event.start)}", f"DTEND:{stamp(event.end + 999)}",
                  f"SUMMARY:{escape(event.summary)}"]
        if event.description:
            lines.append(f"DESCRIPTION:{escape(event.description)}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)
