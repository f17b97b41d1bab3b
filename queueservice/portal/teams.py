"""The portal's "Teams and credits" section (slice 5a of docs/portal.md): my teams with my
role and balance; a team's page with its balance, its ledger (newest first, paged), its
upcoming timeslots (each cancellable), a form that books a timeslot, a device's calendar
for the next 7 days, and credit requests; and the team's usage per user and per device,
month by month, on a page of its own (a report reads every ledger line of its month, so
the team's page, whose reads are bounded, only links it).

The pages call the stores in process with the API's own rules, the caller being
``user_principal_of(session.user)``:
- ``TeamStore``: a team is seen by its members and admins (anyone else: a 404 page); its
  balance and ledger by its schedulers and admins;
- ``BookingStore``: a scheduler (or an admin) books and cancels the team's timeslots, paid
  when booked and refunded in full before they start; another team's slot shows only as
  "reserved";
- ``UsageStore``: a plain member sees only their own usage; ``CreditRequestStore``: a
  scheduler asks for credits and sees the team's requests.
A button is shown only to whom the store lets use it, and the store refuses it anyway.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cloudqueue.errors import BadRequest, NotFound, QueueError
from queueservice import scheduling
from queueservice.bookings import DAY_MS, RESERVED, BookingStore, CalendarView
from queueservice.credit_requests import MAX_JUSTIFICATION_CHARS, CreditRequestStore
from queueservice.httpedge import Service, call, now_ms, service
from queueservice.identities import Principal, user_principal_of
from queueservice.portal.sessions import PortalSession
from queueservice.portal.web import not_found, page, posted, redirect, session_of
from queueservice.pricing import PriceStore
from queueservice.teams import SCHEDULER, Row, TeamStore
from queueservice.usage import UsageStore, month_of, totals

#: ledger lines on one page
LEDGER_PAGE = 50
#: the calendar shows this many days from today (UTC)
CALENDAR_DAYS = 7
#: usage columns: (row key, heading), as ``userclient credits usage`` shows them
USAGE_COLUMNS = (("charged", "Charged"), ("refunded", "Refunded"), ("spent", "Spent"),
                 ("board_seconds", "Board s"), ("workloads", "Workloads"),
                 ("reservations", "Reservations"), ("sessions", "Sessions"),
                 ("total", "Total"))
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")


# -- reading the page's inputs -------------------------------------------------------------
def form_instant(text: str, label: str) -> int:
    """A ``datetime-local`` value (``2026-12-01T18:00``, seconds optional), taken as UTC,
    as ms; BadRequest saying what to type."""
    text = text.strip()
    example = "a date and time like 2026-12-01T18:00 (UTC)"
    if not text:
        raise BadRequest(f"{label} is empty: give {example}")
    if not _LOCAL_TIME.match(text):
        raise BadRequest(f"{label} must be {example}, not {text[:40]!r}")
    try:
        moment = dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise BadRequest(f"{label} must be {example}, not {text[:40]!r}") from None


def form_seconds(text: str) -> float:
    """The "Device-seconds" field: a number above 0 (the store checks its upper bound)."""
    try:
        value = float(text.strip())
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise BadRequest(f"Device-seconds must be a number above 0, not {text.strip()[:40]!r}")
    return value


def month_span(month: str) -> tuple[int, int]:
    """``YYYY-MM`` as [its first ms, the next month's first ms) in UTC."""
    match = _MONTH.match(month)
    if match is None:
        raise BadRequest(f"month must be YYYY-MM (2026-11), not {month[:40]!r}")
    year, number = int(match[1]), int(match[2])
    first = dt.datetime(year, number, 1, tzinfo=dt.timezone.utc)
    after = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=dt.timezone.utc)
    return int(first.timestamp() * 1000), int(after.timestamp() * 1000)


def other_month(month: str, step: int) -> str:
    year, number = int(month[:4]), int(month[5:])
    index = year * 12 + number - 1 + step
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _query(request: Request) -> tuple[dict[str, Any], str | None]:
    """The team page's query (``before``: a ledger line; ``device``: the calendar's, by
    default the device of the team's next timeslot, else the first device), and what was
    wrong with it (None: nothing; a bad value is left out)."""
    params = request.query_params
    query: dict[str, Any] = {"before": None, "device": params.get("device") or None}
    problem = None
    if params.get("before"):
        if params["before"].isdigit() and len(params["before"]) < 19:
            query["before"] = int(params["before"])
        else:
            problem = f"before must be a ledger line's number, not {params['before'][:40]!r}"
    return query, problem


# -- what a page shows ---------------------------------------------------------------------
def teams_overview(svc: Service, caller: Principal) -> list[Row]:
    """The caller's teams (an admin: every team), each with ``role`` (the caller's, or
    ``admin``) and ``balance`` (None: a plain member does not see it)."""
    store = TeamStore(svc.identities.db)
    rows = []
    for team in store.teams(caller):
        role = _role_in(team, caller)
        seen = caller.is_admin or role == SCHEDULER
        balance = store.balance(team["team_id"], caller) if seen else None
        rows.append({**team, "role": role or "admin",
                     "balance": None if balance is None else balance["balance"],
                     "lines": None if balance is None else balance["lines"]})
    return rows


def _role_in(team: Row, caller: Principal) -> str | None:
    return next((m["role"] for m in team["members"] if m["user_id"] == caller.id), None)


def team_context(svc: Service, caller: Principal, ref: str, query: dict[str, Any],
                 now: int) -> dict[str, Any]:
    """Everything a team's page shows (NotFound: not a team of the caller's)."""
    db = svc.identities.db
    teams = TeamStore(db)
    team = teams.team(ref, caller)
    team_id = team["team_id"]
    role = _role_in(team, caller)
    accountable = caller.is_admin or role == SCHEDULER
    ctx: dict[str, Any] = {"team": team, "role": role or "admin",
                           "accountable": accountable, "can_request": role == SCHEDULER,
                           "now": now, "balance": None, "lines": [], "more": False,
                           "requests": []}
    if accountable:
        ctx["balance"] = teams.balance(team_id, caller)
        _, ctx["lines"], ctx["more"] = teams.ledger_page(team_id, caller,
                                                         before=query["before"],
                                                         limit=LEDGER_PAGE)
        ctx["requests"] = CreditRequestStore(db).requests(caller, team_ref=team_id)
    bookings = BookingStore(db)
    ctx["reservations"] = bookings.reservations(caller, now, team_id=team_id)
    devices = svc.identities.devices()
    ctx["devices"] = devices
    wanted = query["device"] or next((r["device_id"] for r in ctx["reservations"]), None)
    device = next((d for d in devices if d["device_id"] == wanted),
                  devices[0] if devices else None)
    ctx["device"] = device
    ctx["calendar"] = ctx["prices"] = None
    if device is not None:
        day0 = now // DAY_MS * DAY_MS
        ctx["calendar"] = calendar_days(bookings.calendar(
            device["device_id"], day0, day0 + CALENDAR_DAYS * DAY_MS, caller=caller))
        ctx["prices"] = PriceStore(db).prices(device["device_id"], now)
    return ctx


def usage_context(svc: Service, caller: Principal, ref: str, month: str) -> dict[str, Any]:
    """The team's usage in ``month`` per user and per device, as ``credits usage --team
    --by user|device`` reports it (a plain member: their own; NotFound: not a team of the
    caller's)."""
    usage = UsageStore(svc.identities.db)
    team = usage.team(ref, caller)
    role = _role_in(team, caller)
    start, end = month_span(month)
    rows = usage.reports(("user", "device"), caller, start=start, end=end,
                         team_ref=team["team_id"])
    return {"team": team, "role": role or "admin",
            "accountable": caller.is_admin or role == SCHEDULER, "month": month,
            "months": (other_month(month, -1), other_month(month, 1)), "usage": rows,
            "usage_total": {by: totals(r) for by, r in rows.items()}, "columns": USAGE_COLUMNS}


def _clock(ms: int, day: int) -> str:
    """``HH:MM`` of ``ms`` within the day starting at ``day`` (its end: 24:00)."""
    if ms >= day + DAY_MS:
        return "24:00"
    minutes = (max(ms, day) - day) // 60_000
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def calendar_days(cal: CalendarView) -> dict[str, Any]:
    """The calendar as a day-by-day table: for each UTC day, its bookings (``what``:
    maintenance and its reason, a timeslot of the caller's teams, or "reserved") and its
    pay-as-you-go windows (``always_open``: the device has none, so it always takes work)."""
    days = []
    for day in range(cal.start, cal.end, DAY_MS):
        items = []
        for r in [*cal.maintenance, *cal.reservations]:
            if r["start_at"] >= day + DAY_MS or r["end_at"] <= day:
                continue
            if r["kind"] == scheduling.MAINTENANCE:
                what = f"Maintenance: {r['reason']}"
            elif r["kind"] == RESERVED:
                what = "Reserved (another team)"
            else:
                what = f"Timeslot: team {r.get('team_name')}"
            items.append({"start": r["start_at"], "begin": _clock(r["start_at"], day),
                          "until": _clock(r["end_at"], day), "what": what,
                          "kind": r["kind"]})
        windows = [f"{_clock(s, day)}-{_clock(e, day)}" for s, e in cal.windows or ()
                   if s < day + DAY_MS and e > day]
        label = dt.datetime.fromtimestamp(day / 1000, dt.timezone.utc).strftime("%a %Y-%m-%d")
        days.append({"label": label, "bookings": sorted(items, key=lambda i: i["start"]),
                     "windows": windows})
    return {"device": cal.device, "days": days, "always_open": cal.windows is None}


def _notice(ctx: dict[str, Any], request: Request) -> str | None:
    """What the last form did (the 303's query names it), read back from the store."""
    params = request.query_params
    if params.get("booked"):
        slot = next((r for r in ctx["reservations"]
                     if r["booking_id"] == params["booked"]), None)
        if slot is not None:
            cost = ("free (accounting is off)" if slot["cost"] is None
                    else f"it cost {slot['cost']:g} device-seconds")
            device = next((d["name"] for d in ctx["devices"]
                           if d["device_id"] == slot["device_id"]), slot["device_id"])
            return (f"Timeslot booked on {device} from {_iso(slot['start_at'])} "
                    f"to {_iso(slot['end_at'])}: {cost}.")
    if params.get("cancelled"):
        refund = next((line for line in ctx["lines"]
                       if line["booking_id"] == params["cancelled"]
                       and line["kind"] == "reservation_refund"), None)
        paid = (f": {refund['seconds']:g} device-seconds refunded" if refund is not None
                else "")
        return f"Reservation {params['cancelled']} cancelled{paid}."
    if params.get("requested"):
        asked = next((r for r in ctx["requests"]
                      if r["request_id"] == params["requested"]), None)
        if asked is not None:
            return (f"Credit request for {asked['seconds']:g} device-seconds sent: it is "
                    f"{asked['state']} until an admin decides.")
    return None


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# -- pages -----------------------------------------------------------------------------------
def _not_found(request: Request, session: PortalSession, ref: str) -> Response:
    return not_found(request, session, "Not found", f"No team {ref} of yours.",
                     ("/portal/teams", "Back to my teams"))


async def _team_page(request: Request, session: PortalSession, ref: str, *,
                     status: int = 200, error: str | None = None,
                     form: dict[str, str] | None = None,
                     device: str | None = None) -> Response:
    now = now_ms()
    query, problem = _query(request)
    if device:
        query["device"] = device
    try:
        ctx = await call(team_context, service(request), user_principal_of(session.user),
                         ref, query, now)
    except NotFound:
        return _not_found(request, session, ref)
    if problem is not None and error is None:
        status, error = 400, problem
    return page(request, "teams_team.html", {
        **ctx, "error": error, "form": form or {}, "notice": _notice(ctx, request),
        "before": query["before"], "month": month_of(now), "utc": _iso,
        "device_names": {d["device_id"]: d["name"] for d in ctx["devices"]}},
        status=status, session=session)


async def teams_page(request: Request) -> Response:
    """``GET /portal/teams``: my teams, my role in each and its balance."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    rows = await call(teams_overview, service(request), user_principal_of(session.user))
    return page(request, "teams_list.html", {"teams": rows}, session=session)


async def team_page(request: Request) -> Response:
    """``GET /portal/teams/{team}?before=&device=``: one team's page."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    return await _team_page(request, session, request.path_params["team"])


async def usage_page(request: Request) -> Response:
    """``GET /portal/teams/{team}/usage?month=YYYY-MM`` (default: this month, UTC): the
    team's usage per user and per device."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    ref = request.path_params["team"]
    month, status, error = request.query_params.get("month") or month_of(now_ms()), 200, None
    try:
        month_span(month)
    except BadRequest as exc:
        month, status, error = month_of(now_ms()), 400, exc.message
    try:
        ctx = await call(usage_context, service(request), user_principal_of(session.user),
                         ref, month)
    except NotFound:
        return _not_found(request, session, ref)
    return page(request, "teams_usage.html", {**ctx, "error": error}, status=status,
                session=session)


async def _posted_team(
        request: Request) -> tuple[PortalSession, dict[str, str], Row] | Response:
    """A form posted to a team's page: the session, the form and the team (the caller's:
    else the 404 page), the Origin and CSRF token checked first."""
    answer = await posted(request)
    if isinstance(answer, Response):
        return answer
    session, form = answer
    ref = request.path_params["team"]
    try:
        team = await call(TeamStore(service(request).identities.db).team, ref,
                          user_principal_of(session.user))
    except NotFound:
        return _not_found(request, session, ref)
    return session, form, team


def _team_url(team: Row, **query: str) -> str:
    url = f"/portal/teams/{quote(team['team_id'], safe='')}"
    return f"{url}?{urlencode(query)}" if query else url


async def book(request: Request) -> Response:
    """``POST /portal/teams/{team}/reservations`` (device, start, end: UTC; csrf): a
    timeslot for the team, as ``POST /reservations`` books it."""
    answer = await _posted_team(request)
    if isinstance(answer, Response):
        return answer
    session, form, team = answer
    fields = {name: form.get(name, "").strip() for name in ("device", "start", "end")}
    try:
        if not fields["device"]:
            raise BadRequest("choose a Device for the timeslot")
        start = form_instant(fields["start"], "Start (UTC)")
        end = form_instant(fields["end"], "End (UTC)")
        row = await call(BookingStore(service(request).identities.db).reserve,
                         fields["device"], team["team_id"], start, end, None, now_ms(),
                         caller=user_principal_of(session.user))
    except QueueError as exc:
        return await _team_page(request, session, team["team_id"], status=exc.status or 400,
                                error=exc.message, form=fields, device=fields["device"])
    await service(request).queue_changed(row["device_id"])
    return redirect(_team_url(team, booked=row["booking_id"], device=row["device_id"]))


async def cancel(request: Request) -> Response:
    """``POST /portal/teams/{team}/reservations/{booking_id}/cancel`` (csrf): the timeslot
    cancelled before it starts, refunded in full, as ``DELETE /reservations/{id}``."""
    answer = await _posted_team(request)
    if isinstance(answer, Response):
        return answer
    session, _, team = answer
    booking_id = request.path_params["booking_id"]
    try:
        row = await call(BookingStore(service(request).identities.db).cancel_reservation,
                         booking_id, now_ms(), caller=user_principal_of(session.user))
    except QueueError as exc:
        return await _team_page(request, session, team["team_id"], status=exc.status or 400,
                                error=exc.message)
    await service(request).queue_changed(row["device_id"])
    return redirect(_team_url(team, cancelled=row["booking_id"], device=row["device_id"]))


async def request_credits(request: Request) -> Response:
    """``POST /portal/teams/{team}/credit-requests`` (seconds, justification, csrf): a
    pending credit request, as ``POST /credits/requests`` makes it (a scheduler)."""
    answer = await _posted_team(request)
    if isinstance(answer, Response):
        return answer
    session, form, team = answer
    fields = {name: form.get(name, "") for name in ("seconds", "justification")}
    try:
        seconds = form_seconds(fields["seconds"])
        if len(fields["justification"]) > MAX_JUSTIFICATION_CHARS:
            raise BadRequest(f"Justification must be at most {MAX_JUSTIFICATION_CHARS} "
                             "characters: say it shorter")
        row = await call(CreditRequestStore(service(request).identities.db).create,
                         team["team_id"], seconds, fields["justification"], None, now_ms(),
                         caller=user_principal_of(session.user))
    except QueueError as exc:
        return await _team_page(request, session, team["team_id"], status=exc.status or 400,
                                error=exc.message, form=fields)
    return redirect(_team_url(team, requested=row["request_id"]))


def routes() -> list[BaseRoute]:
    """The section's pages (``routes.portal_routes`` joins them)."""
    return [
        Route("/portal/teams", teams_page, methods=["GET"]),
        Route("/portal/teams/{team}", team_page, methods=["GET"]),
        Route("/portal/teams/{team}/usage", usage_page, methods=["GET"]),
        Route("/portal/teams/{team}/reservations", book, methods=["POST"]),
        Route("/portal/teams/{team}/reservations/{booking_id}/cancel", cancel,
              methods=["POST"]),
        Route("/portal/teams/{team}/credit-requests", request_credits, methods=["POST"]),
    ]
