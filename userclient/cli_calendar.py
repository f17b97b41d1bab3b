"""``userclient`` commands for a device's calendar (our service; feature ``calendar``;
issue 12): ``reserve``, ``reservations``, ``maintenance``, ``windows`` and ``calendar``
(JSON, a table, or an ``.ics`` file; a feed URL for calendar applications). Thin: the
rules are the service's; exit codes and errors as ``userclient.cli`` documents them.

Times: ``userclient.moments`` (ISO 8601 with an offset, or ``now+2h``). Windows:
``--set "Mon-Fri 18:00-24:00"`` (days ``Mon``..``Sun``, a range ``Fri-Mon``, a list
``Sat,Sun``, or ``daily``; hours in UTC, ``24:00`` the end of the day); a window that
crosses midnight (``daily 22:00-06:00``) is sent as two rules, to 24:00 and from 00:00
the next day.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable

from userclient import cli
from userclient.display import table
from userclient.errors import UsageError
from userclient.moments import HELP as TIME_HELP

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SPEC_HELP = ('DAYS HH:MM-HH:MM in UTC: "Mon-Fri 18:00-24:00", "Sat,Sun 00:00-24:00", '
             '"daily 22:00-06:00" (crossing midnight: to 24:00, then from 00:00 the next day)')
_SPEC = re.compile(r"^\s*(\S+)\s+(\d{1,2}):(\d\d)\s*-\s*(\d{1,2}):(\d\d)\s*$")


def _day(name: str, spec: str) -> int:
    for i, day in enumerate(DAYS):
        if name.strip().lower() in (day.lower(), _FULL[i]):
            return i
    raise UsageError(f"{name!r} in {spec!r} is not a day: write Mon, Tue, ... Sun ({SPEC_HELP})")


def _days(text: str, spec: str) -> list[int]:
    if text.lower() in ("daily", "all"):
        return list(range(7))
    days: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        a = _day(first, spec)
        b = _day(last, spec) if last else a
        days += [(a + i) % 7 for i in range((b - a) % 7 + 1)]
    return sorted(set(days))


def parse_window_spec(spec: str) -> list[dict[str, str]]:
    """``"Mon-Fri 18:00-24:00"`` as the service's weekly rules ``[{Day, Start, End}]``;
    one crossing midnight becomes two rules per day."""
    match = _SPEC.match(spec)
    if match is None:
        raise UsageError(f"{spec!r} is not a window: write {SPEC_HELP}")
    days = _days(match[1], spec)
    start = int(match[2]) * 60 + int(match[3])
    end = int(match[4]) * 60 + int(match[5])
    if max(start, end) > 1440 or max(int(match[3]), int(match[5])) > 59:
        raise UsageError(f"{spec!r}: hours are 00:00 .. 24:00 ({SPEC_HELP})")
    if start == end:
        raise UsageError(f"{spec!r} is empty: its end must differ from its start")
    rules = []
    for day in days:
        if start < end:
            rules.append((day, start, end))
        else:  # crosses midnight
            rules += [(day, start, 1440)] if start < 1440 else []
            rules += [((day + 1) % 7, 0, end)] if end > 0 else []
    return [{"Day": DAYS[d], "Start": _clock(s), "End": _clock(e)} for d, s, e in rules]


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# --- views --------------------------------------------------------------------------------
def bookings_table(rows: list[dict]) -> str:
    if not rows:
        return "none"
    lines = []
    for r in rows:
        if r["Kind"] == "maintenance":
            who = f"maintenance: {r.get('Reason') or ''}"
        elif r["Kind"] == "reserved":
            who = "reserved (another team)"
        else:
            who = f"team {r.get('Team') or r.get('TeamId')}" + (
                f": {r['Note']}" if r.get("Note") else "")
        cost = f"{r['Cost']:g}" if r.get("Cost") is not None else ""
        lines.append([r["Start"], r["End"], r.get("DeviceId") or "", who, cost,
                      r.get("Id") or ""])
    return table(lines, ["START", "END", "DEVICE", "WHAT", "COST", "ID"])


def windows_text(answer: dict) -> str:
    if answer["AlwaysOpen"]:
        return f"device {answer['DeviceId']}: the shared queue is always open"
    rules = ", ".join(f"{w['Day']} {w['Start']}-{w['End']}" for w in answer["Windows"])
    return f"device {answer['DeviceId']}: the shared queue runs (UTC) {rules}"


def calendar_text(cal: dict) -> str:
    head = f"device {cal['DeviceName']} ({cal['DeviceId']}), {cal['From']} .. {cal['To']}"
    if cal["AlwaysOpen"]:
        shared = "shared queue: always open (but in timeslots and maintenance)"
    elif not cal["Windows"]:
        shared = "shared queue: no window in this span"
    else:
        shared = "shared queue windows:\n" + "\n".join(
            f"  {w['Start']} .. {w['End']}" for w in cal["Windows"])
    booked = sorted(cal["Reservations"] + cal["Maintenance"], key=lambda r: r["Start"])
    return f"{head}\n{shared}\nbookings:\n{bookings_table(booked)}"


def _booking_line(row: dict) -> str:
    what = (f"maintenance ({row['Reason']})" if row["Kind"] == "maintenance"
            else f"timeslot of team {row['Team']}")
    return f"{what} {row['Id']} on {row['DeviceId']}: {row['Start']} .. {row['End']}"


# --- commands -----------------------------------------------------------------------------
def cmd_reserve(args: argparse.Namespace) -> int:
    row = cli.client_from_args(args).reserve(args.device, args.team, args.start, args.end,
                                             note=args.note)
    paid = (f"; paid {row['Cost']:g} device-seconds" if row.get("Cost") is not None else "")
    cli.emit(args, row, f"booked {_booking_line(row)}{paid}")
    return cli.EXIT_OK


def cmd_reservations(args: argparse.Namespace) -> int:
    client = cli.client_from_args(args)
    if args.cancel:
        row = client.cancel_reservation(args.cancel)
        refund = f"; refunded {row['Refund']:g} device-seconds" if row.get("Refund") else ""
        cli.emit(args, row, f"cancelled {_booking_line(row)}{refund}")
        return cli.EXIT_OK
    rows = client.get_reservations(args.device)
    cli.emit(args, rows, bookings_table(rows) if rows else "no timeslots of your teams")
    return cli.EXIT_OK


def cmd_maintenance(args: argparse.Namespace) -> int:
    client = cli.client_from_args(args)
    if args.cancel:
        if args.device or args.start or args.end or args.reason:
            raise UsageError("--cancel ID takes no DEVICE, --start, --end or --reason")
        row = client.end_maintenance(args.cancel)
        ended = "cancelled" if row.get("CancelledAt") else "ended"
        cli.emit(args, row, f"{ended} {_booking_line(row)}")
        return cli.EXIT_OK
    if not args.device:
        raise UsageError("give DEVICE (and --start --end --reason to book), or --cancel ID")
    if not (args.start or args.end or args.reason):
        rows = client.get_maintenance(args.device)
        cli.emit(args, rows, bookings_table(rows) if rows else
                 f"no maintenance booked on {args.device}")
        return cli.EXIT_OK
    if not (args.start and args.end and args.reason):
        raise UsageError("booking maintenance needs --start, --end and --reason")
    row = client.add_maintenance(args.device, args.start, args.end, args.reason,
                                 force=args.force)
    text = f"booked {_booking_line(row)}"
    for gone in row["Cancelled"]:
        text += (f"\ncancelled {_booking_line(gone)} (refunded "
                 f"{gone.get('Refund') or 0:g} device-seconds)")
    cli.emit(args, row, text)
    return cli.EXIT_OK


def cmd_windows(args: argparse.Namespace) -> int:
    client = cli.client_from_args(args)
    if args.clear and args.set:
        raise UsageError("give --set or --clear, not both")
    if args.clear or args.set:
        rules = [rule for spec in args.set or () for rule in parse_window_spec(spec)]
        answer = client.set_windows(args.device, rules)
    else:
        answer = client.get_windows(args.device)
    cli.emit(args, answer, windows_text(answer))
    return cli.EXIT_OK


def cmd_calendar(args: argparse.Namespace) -> int:
    client = cli.client_from_args(args)
    if args.revoke_feed:
        revoked = client.revoke_calendar_feed()
        cli.emit(args, {"Revoked": revoked}, "your calendar feed URL is revoked" if revoked
                 else "you had no calendar feed URL")
        return cli.EXIT_OK
    if args.feed:
        url = client.calendar_feed_url(args.device)
        cli.emit(args, {"FeedUrl": url}, f"{url}\nsubscribe to it in your calendar "
                 "application; it reads calendars as you, so keep it private (a new one, "
                 "or --revoke-feed, stops this one)")
        return cli.EXIT_OK
    if args.ics:
        text = client.get_calendar_ics(args.device, args.start, args.end)
        if args.ics == "-":
            print(text, end="")
            return cli.EXIT_OK
        try:
            Path(args.ics).write_text(text, encoding="utf-8", newline="")
        except OSError as exc:
            raise UsageError(f"cannot write {args.ics}: {exc.strerror}") from None
        cli.emit(args, {"File": args.ics}, f"wrote the calendar of {args.device} to {args.ics}")
        return cli.EXIT_OK
    cal = client.get_calendar(args.device, args.start, args.end)
    cli.emit(args, cal, calendar_text(cal))
    return cli.EXIT_OK


# --- parser -------------------------------------------------------------------------------
def add_commands(add: Callable[[str, Any, str], argparse.ArgumentParser]) -> None:
    """Register the calendar's commands through ``cli.build_parser``'s ``add``."""
    p = add("reserve", cmd_reserve, "book a timeslot on a device for your team (its "
            "schedulers, admins); paid when booked, refunded if cancelled before it starts")
    p.add_argument("device", metavar="DEVICE")
    p.add_argument("--start", required=True, help=TIME_HELP)
    p.add_argument("--end", required=True, help="as --start")
    p.add_argument("--team", required=True, help="TeamId or name")
    p.add_argument("--note", help="what it is for (your team sees it)")

    p = add("reservations", cmd_reservations, "your teams' timeslots (admins: all); "
            "--cancel one before it starts")
    p.add_argument("--device", metavar="ID")
    p.add_argument("--cancel", metavar="ID", help="cancel this timeslot (refunded in full)")

    p = add("maintenance", cmd_maintenance, "admin: book maintenance on a device (no work "
            "runs then), cancel it, or list a device's")
    p.add_argument("device", metavar="DEVICE", nargs="?")
    p.add_argument("--start", help=TIME_HELP)
    p.add_argument("--end", help="as --start")
    p.add_argument("--reason", help="shown to everyone")
    p.add_argument("--force", action="store_true",
                   help="cancel the timeslots in the way (each refunded in full)")
    p.add_argument("--cancel", metavar="ID", help="cancel it (or end it now, if begun)")

    p = add("windows", cmd_windows, "a device's weekly pay-as-you-go windows, when the "
            "shared queue runs (default: always); admins set them")
    p.add_argument("device", metavar="DEVICE")
    p.add_argument("--set", action="append", metavar="SPEC", help=SPEC_HELP +
                   "; repeat for more; replaces the device's windows")
    p.add_argument("--clear", action="store_true", help="no windows: always open")

    p = add("calendar", cmd_calendar, "a device's calendar: windows, timeslots (another "
            "team's as 'reserved'), maintenance; or as an .ics file or a feed URL")
    p.add_argument("device", metavar="DEVICE")
    p.add_argument("--from", dest="start", help=f"default now; {TIME_HELP}")
    p.add_argument("--to", dest="end", help="default 14 days after --from (at most 92)")
    p.add_argument("--ics", metavar="FILE", help="write it as iCalendar (RFC 5545; - for "
                   "standard output)")
    p.add_argument("--feed", action="store_true", help="print a new feed URL for your "
                   "calendar application (revokes your earlier one)")
    p.add_argument("--revoke-feed", action="store_true", help="revoke your feed URL")
