"""A device's calendar (feature ``calendar``; issue 12, docs/facility.md): timeslots
(``/reservations``), ``/maintenance``, weekly pay-as-you-go windows
(``/devices/{id}/windows``), the calendar in JSON or iCalendar
(``/devices/{id}/calendar``, ``/devices/{id}/calendar.ics``) and the calendar feed token
(``/calendar-feed``). The rules are ``bookings.BookingStore``'s; under ``--stock-protocol``
these routes are not mounted (``app.api_routes``).

Times on the wire are ISO 8601 with an offset (``2026-12-01T18:00:00Z``,
``2026-12-01T19:00:00+01:00``); answers are the wire's UTC form (``policy.iso``).

A calendar application cannot send a bearer token: ``calendar.ics`` also takes
``?Feed=TOKEN``, the caller's calendar feed token (``POST /calendar-feed``), which the
access log never shows (``cli.HideSecretQueries``).
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Optional

from starlette.requests import Request
from starlette.responses import Response

from cloudqueue.errors import BadRequest, Forbidden
from queueservice import ics, policy, scheduling
from queueservice.admin import check_name
from queueservice.bookings import (DEFAULT_CALENDAR_SPAN_MS, RESERVED, BookingStore,
                                   CalendarView, Row)
from queueservice.httpedge import call, field, json_ok, now_ms, read_json, service, user
from queueservice.identities import Principal, require_enabled, user_principal_of

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_CLOCK = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
ICS_TYPE = "text/calendar; charset=utf-8"


def _store(request: Request) -> BookingStore:
    return BookingStore(service(request).identities.db)


# -- times ---------------------------------------------------------------------------------
def parse_instant(value: Any, name: str) -> int:
    """An ISO 8601 time with an offset (or Z) as ms since the epoch; 400 for anything
    else, saying what to send."""
    hint = (f"{name} must be an ISO 8601 time with its offset, e.g. 2026-12-01T18:00:00Z or "
            "2026-12-01T19:00:00+01:00")
    if not isinstance(value, str) or len(value) > 40:
        raise BadRequest(hint)
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise BadRequest(f"{hint}: {value!r} has no offset (add Z for UTC)")
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise BadRequest(f"{hint}, not {value!r}") from None


def _query_instant(request: Request, name: str) -> Optional[int]:
    raw = request.query_params.get(name)
    return None if raw in (None, "") else parse_instant(raw, name)


def _span(request: Request) -> tuple[int, int]:
    """``?From=&To=`` of a calendar: default now .. 14 days later (the store caps it)."""
    start = _query_instant(request, "From")
    end = _query_instant(request, "To")
    start = now_ms() if start is None else start
    return start, start + DEFAULT_CALENDAR_SPAN_MS if end is None else end


def parse_rule(rule: Any) -> tuple[int, int, int]:
    """``{Day: "Mon".."Sun", Start: "HH:MM", End: "HH:MM"}`` (UTC; End up to "24:00") as
    ``(day, start_minute, end_minute)``."""
    if not isinstance(rule, dict):
        raise BadRequest('each window is an object {"Day": "Mon", "Start": "18:00", '
                         '"End": "24:00"}')
    day = field(rule, "Day", str, required=True, choices=DAYS)
    minutes = []
    for name in ("Start", "End"):
        text = field(rule, name, str, required=True, max_len=5)
        match = _CLOCK.match(text)
        if match is None or (match[1] == "24" and match[2] != "00"):
            raise BadRequest(f"a window's {name} is HH:MM in UTC (00:00 .. 24:00), not "
                             f"{text!r}")
        minutes.append(int(match[1]) * 60 + int(match[2]))
    if minutes[0] >= minutes[1]:
        raise BadRequest(f"a window's End must be after its Start ({day} {rule['Start']} - "
                         f"{rule['End']}): a window crossing midnight is two, one to 24:00 "
                         "and one from 00:00 the next day")
    return DAYS.index(day), minutes[0], minutes[1]


def rule_view(rule: tuple[int, int, int]) -> dict[str, str]:
    day, first, last = rule
    return {"Day": DAYS[day], "Start": f"{first // 60:02d}:{first % 60:02d}",
            "End": f"{last // 60:02d}:{last % 60:02d}"}


# -- views ---------------------------------------------------------------------------------
def booking_view(row: Row) -> dict[str, Any]:
    """A booking as the caller may see it: another team's timeslot only as reserved."""
    if row["kind"] == RESERVED:
        return {"Kind": RESERVED, "Start": policy.iso(row["start_at"]),
                "End": policy.iso(row["end_at"])}
    view = {"Id": row["booking_id"], "Kind": row["kind"], "DeviceId": row["device_id"],
            "Start": policy.iso(row["start_at"]), "End": policy.iso(row["end_at"]),
            "CreatedBy": row["created_by"], "CreatedAt": policy.iso(row["created_at"])}
    if row["kind"] == scheduling.RESERVATION:
        view.update({"TeamId": row["team_id"], "Team": row.get("team_name"),
                     "Note": row["reason"], "Cost": row["cost"]})
    else:
        view["Reason"] = row["reason"]
    if row["cancelled_at"] is not None:
        view["CancelledAt"] = policy.iso(row["cancelled_at"])
    if "refund" in row:
        view["Refund"] = row["refund"]
    return view


def calendar_view(cal: CalendarView) -> dict[str, Any]:
    """``GET /devices/{id}/calendar``: the shared queue's windows (always open: one over
    the whole span, ``AlwaysOpen``), timeslots and maintenance."""
    windows = cal.windows if cal.windows is not None else ((cal.start, cal.end),)
    return {"DeviceId": cal.device["device_id"], "DeviceName": cal.device["name"],
            "From": policy.iso(cal.start), "To": policy.iso(cal.end),
            "AlwaysOpen": cal.windows is None,
            "Windows": [{"Start": policy.iso(s), "End": policy.iso(e)} for s, e in windows],
            "Reservations": [booking_view(r) for r in cal.reservations],
            "Maintenance": [booking_view(r) for r in cal.maintenance]}


def calendar_events(cal: CalendarView) -> list[ics.Event]:
    """The calendar's events for iCalendar: maintenance, timeslots and (when the device
    has them) the pay-as-you-go windows."""
    device = cal.device["device_id"]
    events = [ics.Event(f"{r['booking_id']}@qick-queue", r["start_at"], r["end_at"],
                        f"Maintenance: {r['reason']}", f"device {cal.device['name']} takes "
                        "no work")
              for r in cal.maintenance]
    for r in cal.reservations:
        if r["kind"] == RESERVED:
            events.append(ics.Event(f"reserved-{device}-{r['start_at']}@qick-queue",
                                    r["start_at"], r["end_at"], "Reserved",
                                    "another team's timeslot"))
        else:
            events.append(ics.Event(f"{r['booking_id']}@qick-queue", r["start_at"],
                                    r["end_at"], f"Timeslot: team {r['team_name']}",
                                    r["reason"]))
    for s, e in cal.windows or ():
        events.append(ics.Event(f"window-{device}-{s}@qick-queue", s, e,
                                "Pay-as-you-go window", "the shared queue runs"))
    return sorted(events, key=lambda ev: (ev.start, ev.uid))


# -- timeslots -----------------------------------------------------------------------------
async def reserve(request: Request) -> Response:
    """``POST /reservations {Device, Team, Start, End, Note?}`` (a scheduler of the team,
    or an admin): 201 with the booking (its ``Cost``, when accounting is on)."""
    who = await user(request)
    body = await read_json(request)
    device = field(body, "Device", str, required=True, max_len=100)
    team = field(body, "Team", str, required=True, max_len=100)
    start = parse_instant(field(body, "Start", str, required=True), "Start")
    end = parse_instant(field(body, "End", str, required=True), "End")
    note = field(body, "Note", str, max_len=500)
    if note is not None:
        note = check_name(note, "Note", max_len=500)
    row = await call(_store(request).reserve, device, team, start, end, note, now_ms(),
                     caller=who)
    await service(request).queue_changed(device)
    return json_ok(booking_view(row), 201)


async def list_reservations(request: Request) -> Response:
    """``GET /reservations?Device=&From=&To=``: standing timeslots of your teams (an
    admin: all), ending after From (default now), earliest first."""
    who = await user(request)
    rows = await call(_store(request).reservations, who, now_ms(),
                      device_id=request.query_params.get("Device") or None,
                      start=_query_instant(request, "From"), end=_query_instant(request, "To"))
    return json_ok([booking_view(r) for r in rows])


async def cancel_reservation(request: Request) -> Response:
    """``DELETE /reservations/{id}`` (a scheduler of its team, or an admin), before it
    starts: the booking with its ``Refund``."""
    who = await user(request)
    row = await call(_store(request).cancel_reservation, request.path_params["booking_id"],
                     now_ms(), caller=who)
    await service(request).queue_changed(row["device_id"])
    return json_ok(booking_view(row))


# -- maintenance -----------------------------------------------------------------------------
async def add_maintenance(request: Request) -> Response:
    """``POST /maintenance {Device, Start, End, Reason, Force?}`` (admin): 201 with the
    booking and ``Cancelled``, the timeslots Force cancelled (each refunded)."""
    who = await user(request)
    body = await read_json(request)
    device = field(body, "Device", str, required=True, max_len=100)
    start = parse_instant(field(body, "Start", str, required=True), "Start")
    end = parse_instant(field(body, "End", str, required=True), "End")
    reason = check_name(field(body, "Reason", str, required=True), "Reason", max_len=500)
    force = field(body, "Force", bool, default=False)
    row = await call(_store(request).add_maintenance, device, start, end, reason, now_ms(),
                     caller=who, force=force)
    await service(request).queue_changed(device)
    return json_ok({**booking_view(row),
                    "Cancelled": [booking_view(r) for r in row["cancelled"]]}, 201)


async def list_maintenance(request: Request) -> Response:
    """``GET /maintenance?Device=&From=&To=``: standing maintenance (any user)."""
    await user(request)
    rows = await call(_store(request).maintenance, now_ms(),
                      device_id=request.query_params.get("Device") or None,
                      start=_query_instant(request, "From"), end=_query_instant(request, "To"))
    return json_ok([booking_view(r) for r in rows])


async def end_maintenance(request: Request) -> Response:
    """``DELETE /maintenance/{id}`` (admin): cancelled before it starts, ended now once
    begun."""
    who = await user(request)
    row = await call(_store(request).end_maintenance, request.path_params["booking_id"],
                     now_ms(), caller=who)
    await service(request).queue_changed(row["device_id"])
    return json_ok(booking_view(row))


# -- windows ---------------------------------------------------------------------------------
async def get_windows(request: Request) -> Response:
    """``GET /devices/{id}/windows``: the weekly rules (UTC); none: always open."""
    await user(request)
    device_id = request.path_params["device_id"]
    rules = await call(_store(request).windows, device_id)
    return json_ok({"DeviceId": device_id, "AlwaysOpen": not rules,
                    "Windows": [rule_view(r) for r in rules]})


async def set_windows(request: Request) -> Response:
    """``PUT /devices/{id}/windows {Windows: [{Day, Start, End}]}`` (admin): replaces the
    rules; an empty list makes the shared queue always open."""
    who = await user(request)
    body = await read_json(request)
    raw = field(body, "Windows", list, required=True)
    rules = [parse_rule(r) for r in raw]
    device_id = request.path_params["device_id"]
    saved = await call(_store(request).set_windows, device_id, rules, now_ms(), caller=who)
    await service(request).queue_changed(device_id)
    return json_ok({"DeviceId": device_id, "AlwaysOpen": not saved,
                    "Windows": [rule_view(r) for r in saved]})


# -- the calendar ----------------------------------------------------------------------------
async def _feed_reader(request: Request) -> Principal:
    """The caller of ``calendar.ics``: a bearer token, else ``?Feed=`` (a feed token)."""
    token = request.query_params.get("Feed")
    if token is None or request.headers.get("authorization"):
        return await user(request)
    store = _store(request)
    user_id = await call(store.feed_user, token)
    row = None if user_id is None else await call(service(request).identities.user, user_id)
    if row is None:
        raise Forbidden("this calendar feed token is not valid (revoked or replaced): make "
                        "a new feed URL with `userclient calendar DEVICE --feed`",
                        kind="unauthorized")
    require_enabled(row)
    return user_principal_of(row)


async def get_calendar(request: Request) -> Response:
    """``GET /devices/{id}/calendar?From=&To=``: JSON, or iCalendar when the caller
    accepts ``text/calendar`` (and not JSON)."""
    who = await user(request)
    accept = request.headers.get("accept", "")
    if "text/calendar" in accept and "application/json" not in accept:
        return await _ics_answer(request, who)
    start, end = _span(request)
    cal = await call(_store(request).calendar, request.path_params["device_id"], start, end,
                     caller=who)
    return json_ok(calendar_view(cal))


async def get_calendar_ics(request: Request) -> Response:
    """``GET /devices/{id}/calendar.ics?From=&To=[&Feed=TOKEN]``: the calendar as
    iCalendar (RFC 5545)."""
    return await _ics_answer(request, await _feed_reader(request))


async def _ics_answer(request: Request, who: Principal) -> Response:
    start, end = _span(request)
    cal = await call(_store(request).calendar, request.path_params["device_id"], start, end,
                     caller=who)
    text = ics.calendar_text(f"{cal.device['name']} ({cal.device['device_id']})",
                             calendar_events(cal), now_ms())
    return Response(text.encode("utf-8"), media_type=ICS_TYPE,
                    headers={"Cache-Control": "private, max-age=60"})


async def new_feed(request: Request) -> Response:
    """``POST /calendar-feed``: a new calendar feed token for you (replacing your earlier
    one), shown once: ``{Token, Path}`` (Path: where to put it, for any device)."""
    who = await user(request)
    token = await call(_store(request).new_feed_token, who)
    prefix = service(request).prefix
    return json_ok({"Token": token,
                    "Path": f"{prefix}/devices/{{DeviceId}}/calendar.ics?Feed={token}"}, 201)


async def revoke_feed(request: Request) -> Response:
    """``DELETE /calendar-feed``: revoke your calendar feed token."""
    who = await user(request)
    revoked = await call(_store(request).revoke_feed_token, who)
    return json_ok({"Revoked": revoked})
