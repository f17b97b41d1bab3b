"""The portal's admin pages (docs/portal.md, slice 5b): users (add, disable, enable),
devices (add, with the board's two files offered once; rotate a secret), teams (create,
add and remove members, grant credits, decide credit requests), prices and maintenance.

Every page and every POST here is for admins: anyone else is told the page was not found
(the API's ``admin`` rule, without saying the page exists). The pages call the stores the
API routes call (``routes_admin``, ``routes_auth.add_user``, ``routes_devices``,
``routes_teams``, ``routes_prices``, ``routes_bookings``), with the same checks, and pass
the admin as the stores' ``caller``. A POST that succeeds answers a 303 back to its page,
except the three that make a secret (a user's temporary password and API key; a device's
files; a new device secret): their answer is the page that shows it once (``no-store``).

A device's files are links that work once (``admin_downloads``): the credentials file's
secret is made when it is downloaded, so the service never keeps it anywhere.
"""
from __future__ import annotations

import ipaddress
import json
import math
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cloudqueue.cognito import OUR_SERVICE_CLIENT_ID, OUR_SERVICE_USER_POOL
from cloudqueue.config import render_ini
from cloudqueue.errors import BadRequest, QueueError
from queueservice import facility, mockspec, views
from queueservice.admin import AdminStore, check_name
from queueservice.bookings import BookingStore
from queueservice.credit_requests import MAX_NOTE_CHARS, PENDING, CreditRequestStore
from queueservice.httpedge import call, now_ms, service
from queueservice.identities import Principal, user_principal_of
from queueservice.portal.admin_downloads import (CREDENTIALS, LIFETIME_MS, SETTINGS,
                                                 DownloadStore)
from queueservice.portal.sessions import PortalSession
from queueservice.portal.web import HEADERS, not_found, page, posted, redirect, session_of
from queueservice.pricing import MAX_PRICE, PriceStore
from queueservice.routes_auth import check_email
from queueservice.teams import MAX_GRANT_SECONDS, ROLES, TeamStore

BASE = "/portal/admin"
#: the API's limits of ``POST /users`` and ``POST /devices``
MAX_FULL_NAME = 200
MAX_REFRESH_TIMEOUT = 86400
NOT_FOUND = "There is no such page here."
GONE = ("This download link was used already, has expired (a link works once, for "
        f"{LIFETIME_MS // 60000} minutes), or belongs to another login.")
Page = Callable[..., Awaitable[Response]]


# -- who may: admins only --------------------------------------------------------------
def _is_admin(session: PortalSession) -> bool:
    return user_principal_of(session.user).is_admin


def _not_found(request: Request, session: PortalSession) -> Response:
    return not_found(request, session, "Not found", NOT_FOUND, ("/", "The home page"))


async def _admin_session(request: Request) -> PortalSession | Response:
    """A GET's admin session (else the login page, or not found)."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    return session if _is_admin(session) else _not_found(request, session)


async def _admin_form(request: Request) -> tuple[PortalSession, dict[str, str]] | Response:
    """A POST's admin session and form, Origin and CSRF checked (else the answer)."""
    answer = await posted(request)
    if isinstance(answer, Response):
        return answer
    return answer if _is_admin(answer[0]) else _not_found(request, answer[0])


def _caller(session: PortalSession) -> Principal:
    return user_principal_of(session.user)


def _db(request: Request) -> Any:
    return service(request).identities.db


async def _refused(render: Page, request: Request, session: PortalSession,
                   exc: QueueError) -> Response:
    """The page again, with the store's refusal and its status."""
    return await render(request, session, status=exc.status or 400, error=exc.message)


#: what a POST does once its admin session and form are checked (raising QueueError to
#: refuse)
Act = Callable[[Request, PortalSession, dict[str, str]], Awaitable[None]]


async def _done(request: Request, render: Page, to: str, act: Act) -> Response:
    """A POST of an admin page that answers 303 to ``to`` once done: checked, ``act``,
    and on a refusal ``render``'s page again with the store's words."""
    answer = await _admin_form(request)
    if isinstance(answer, Response):
        return answer
    session, form = answer
    try:
        await act(request, session, form)
    except QueueError as exc:
        return await _refused(render, request, session, exc)
    return redirect(to)


def _shown(render: Page) -> Callable[[Request], Awaitable[Response]]:
    """The GET handler of an admin page: an admin's session (else the login page, or not
    found), then ``render``."""
    async def handler(request: Request) -> Response:
        session = await _admin_session(request)
        if isinstance(session, Response):
            return session
        return await render(request, session)
    return handler


# -- form fields -----------------------------------------------------------------------
def _text(form: dict[str, str], name: str, label: str, max_len: int) -> str:
    """A required text field (BadRequest naming its label)."""
    value = form.get(name, "").strip()
    if not value:
        raise BadRequest(f"{label} is empty: fill it in")
    if len(value) > max_len:
        raise BadRequest(f"{label} must be at most {max_len} characters")
    return value


def _number(form: dict[str, str], name: str, label: str, lowest: float,
            highest: float) -> float:
    raw = form.get(name, "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{label} must be a number, not {raw[:40]!r}") from None
    if not math.isfinite(value) or not lowest <= value <= highest:
        raise BadRequest(f"{label} must be a number from {lowest:g} to {highest:g}, "
                         f"not {raw[:40]}")
    return value


def _utc(form: dict[str, str], name: str, label: str) -> int:
    """A time typed as UTC (``2026-12-01T18:00``, what a datetime-local field sends; an
    offset, when given, is kept) as ms."""
    raw = form.get(name, "").strip()
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise BadRequest(f"{label} must be a time like 2026-12-01T18:00 (UTC), not "
                         f"{raw[:40]!r}") from None


# -- the index -------------------------------------------------------------------------
async def _index_page(request: Request, session: PortalSession) -> Response:
    """``GET /portal/admin``: where the admin pages are."""
    return page(request, "admin_index.html", {}, session=session)


# -- users -----------------------------------------------------------------------------
async def _users_page(request: Request, session: PortalSession, *, status: int = 200,
                      **context: Any) -> Response:
    """``GET /portal/admin/users``: every user, and the form that adds one."""
    rows = await call(AdminStore(_db(request)).users)
    users = [{**r, "groups": ", ".join(json.loads(r["groups"]))} for r in rows]
    return page(request, "admin_users.html", {"users": users, **context}, status=status,
                session=session)


async def add_user(request: Request) -> Response:
    """``POST /portal/admin/users`` (email, full_name, admin?): ``POST /users``'s store call;
    the answer shows the temporary password (and the API key) this once."""
    answer = await _admin_form(request)
    if isinstance(answer, Response):
        return answer
    session, form = answer
    try:
        email = check_email(form.get("email", ""), "E-mail")
        full_name = form.get("full_name", "").strip()
        if len(full_name) > MAX_FULL_NAME:
            raise BadRequest(f"Full name must be at most {MAX_FULL_NAME} characters")
        groups = ["Admin"] if form.get("admin") else []
        row, api_key, password = await call(service(request).identities.add_user, email,
                                            full_name, groups, now_ms())
    except QueueError as exc:
        return await _refused(_users_page, request, session, exc)
    return await _users_page(request, session, added=row, password=password,
                             api_key=api_key)


async def _set_disabled(request: Request, disabled: bool) -> Response:
    async def act(request: Request, session: PortalSession, _: dict[str, str]) -> None:
        await call(AdminStore(_db(request)).set_disabled, request.path_params["user_id"],
                   disabled, now_ms(), caller=_caller(session))  # not found; yourself (409)
    return await _done(request, _users_page, f"{BASE}/users", act)


async def reset_password(request: Request) -> Response:
    """``POST /portal/admin/users/{UserId}/reset-password``: ``POST
    /users/{id}/reset-password``'s store call; the answer shows the new temporary password
    this once."""
    answer = await _admin_form(request)
    if isinstance(answer, Response):
        return answer
    session, _ = answer
    try:
        row, password = await call(AdminStore(_db(request)).reset_password,
                                   request.path_params["user_id"], now_ms())
    except QueueError as exc:  # not found
        return await _refused(_users_page, request, session, exc)
    return await _users_page(request, session, reset=row, password=password)


async def disable_user(request: Request) -> Response:
    """``POST /portal/admin/users/{UserId}/disable``: every credential refused from now on."""
    return await _set_disabled(request, True)


async def enable_user(request: Request) -> Response:
    """``POST /portal/admin/users/{UserId}/enable``."""
    return await _set_disabled(request, False)


# -- devices ---------------------------------------------------------------------------
async def _devices_page(request: Request, session: PortalSession, *, status: int = 200,
                        **context: Any) -> Response:
    """``GET /portal/admin/devices``: every device, and the form that adds one."""
    rows = await call(service(request).identities.devices)
    now = now_ms()
    devices = [{**views.device_summary(r, now), "client_id": r["client_id"],
                "mock": r["mock"] is not None} for r in rows]
    return page(request, "admin_devices.html", {"devices": devices,
                                                "boards": mockspec.MOCK_BOARDS, **context},
                status=status, session=session)


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def add_device(request: Request) -> Response:
    """``POST /portal/admin/devices`` (name, refresh_timeout, simulated?, board):
    ``POST /devices``'s store call. A board's device: the answer offers its two files,
    each a link that works once; a simulated one runs inside the service."""
    answer = await _admin_form(request)
    if isinstance(answer, Response):
        return answer
    session, form = answer
    svc = service(request)
    try:
        name = check_name(form.get("name", ""), "Device name")
        timeout = _number(form, "refresh_timeout", "Refresh timeout", 1, MAX_REFRESH_TIMEOUT)
        if timeout != int(timeout):
            raise BadRequest("Refresh timeout must be a whole number of seconds")
        mock = (mockspec.parse({"Board": form.get("board") or mockspec.DEFAULT_BOARD})
                if form.get("simulated") else None)
        row, _ = await call(svc.identities.add_device, name, int(timeout), now_ms(), mock)
    except QueueError as exc:
        return await _refused(_devices_page, request, session, exc)
    # The secret made with the device is dropped here: the credentials file gets its own,
    # made at its download (admin_downloads), so no copy of a secret waits anywhere.
    if mock is not None:
        if svc.fleet is not None:
            svc.fleet.wake()
        return await _devices_page(request, session, added=row)
    tickets = await call(DownloadStore(_db(request)).issue, session.token_hash,
                         row["device_id"], row["token_generation"], (CREDENTIALS, SETTINGS),
                         now_ms())
    return await _devices_page(request, session, added=row, tickets=tickets,
                               loopback=_loopback(svc.root_url(request)))


async def rotate_secret(request: Request) -> Response:
    """``POST /portal/admin/devices/{DeviceId}/rotate-secret``: the old secret stops at once
    (the API's store call); the answer offers the new credentials file once, and the
    settings file again (it holds no secret: a new device's link may have expired)."""
    answer = await _admin_form(request)
    if isinstance(answer, Response):
        return answer
    session, _ = answer
    store = AdminStore(_db(request))
    try:
        row, _ = await call(store.rotate_secret, request.path_params["device_id"])
    except QueueError as exc:  # not found; a mock device (409)
        return await _refused(_devices_page, request, session, exc)
    tickets = await call(DownloadStore(_db(request)).issue, session.token_hash,
                         row["device_id"], row["token_generation"], (CREDENTIALS, SETTINGS),
                         now_ms())
    return await _devices_page(request, session, rotated=row, tickets=tickets,
                               loopback=_loopback(service(request).root_url(request)))


def settings_text(request: Request, device: dict) -> str:
    """The board's config file (``/etc/qick/config``): what ``userclient add-device``
    writes, with this service's addresses (as ``qick-queue init``'s admin config has)."""
    svc = service(request)
    root = svc.root_url(request)
    return render_ini({"service": {"api_endpoint": root + svc.prefix, "oauth_endpoint": root,
                                   "cognito_url": root, "clientid": OUR_SERVICE_CLIENT_ID,
                                   "cognito_userpool": OUR_SERVICE_USER_POOL},
                       "device": {"name": device["name"], "id": device["device_id"]}})


def credentials_text(device: dict, secret: str) -> str:
    """The board's credentials file (``/etc/qick/credentials``, mode 0600 there)."""
    return render_ini({"credentials": {"id": device["client_id"], "secret": secret}})


async def download(request: Request) -> Response:
    """``GET /portal/admin/downloads/{token}``: a device's file, once (a second time, or
    after its ten minutes, or from another login: a page saying so, 410). The credentials
    file's secret is made now: before, the device's secret was one nobody knows."""
    session = await _admin_session(request)
    if isinstance(session, Response):
        return session
    db = _db(request)
    ticket = await call(DownloadStore(db).take, request.path_params["token"],
                        session.token_hash, now_ms())
    if ticket is None:
        return page(request, "admin_gone.html", {"message": GONE}, status=410,
                    session=session)
    try:
        if ticket.file == CREDENTIALS:
            device, secret = await call(AdminStore(db).rotate_secret, ticket.device_id,
                                        generation=ticket.generation)
            text, filename = credentials_text(device, secret), "credentials"
        else:
            device = await call(service(request).identities.require_device, ticket.device_id)
            text, filename = settings_text(request, device), "config"
    except QueueError as exc:  # deleted since (404); a newer secret since (409)
        return page(request, "admin_gone.html", {"message": exc.message},
                    status=exc.status or 400, session=session)
    return Response(text.encode("utf-8"), media_type="text/plain; charset=utf-8", headers={
        **HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'})


# -- teams, grants, credit requests ----------------------------------------------------
async def _teams_page(request: Request, session: PortalSession, *, status: int = 200,
                      **context: Any) -> Response:
    """``GET /portal/admin/teams``: teams with members and balance, pending requests."""
    caller, db = _caller(session), _db(request)

    def read() -> tuple[list[dict], list[dict]]:
        teams = TeamStore(db).teams(caller)
        with db.reading() as conn:  # each balance one indexed read (its newest line)
            teams = [{**t, "balance": facility.balance(conn, t["team_id"])} for t in teams]
        return teams, CreditRequestStore(db).requests(caller, state=PENDING)

    teams, pending = await call(read)
    return page(request, "admin_teams.html", {"teams": teams, "pending": pending,
                                              "roles": ROLES, **context},
                status=status, session=session)


async def _teams_action(request: Request, act: Act) -> Response:
    """A POST of the teams page: checked, done (``act``), back to the page."""
    return await _done(request, _teams_page, f"{BASE}/teams", act)


async def create_team(request: Request) -> Response:
    """``POST /portal/admin/teams`` (name): ``POST /teams``."""
    async def act(request: Request, session: PortalSession, form: dict[str, str]) -> None:
        name = check_name(form.get("name", ""), "Team name", max_len=100)
        await call(TeamStore(_db(request)).create, name, now_ms(), caller=_caller(session))
    return await _teams_action(request, act)


async def add_member(request: Request) -> Response:
    """``POST /portal/admin/teams/members`` (team, email, role): ``POST /teams/{id}/members``."""
    async def act(request: Request, session: PortalSession, form: dict[str, str]) -> None:
        team = _text(form, "team", "Add to team", 100)
        email = _text(form, "email", "E-mail", 254)
        role = form.get("role", "")
        if role not in ROLES:
            raise BadRequest(f"Role must be scheduler or user, not {role[:40]!r}")
        await call(TeamStore(_db(request)).add_member, team, email, role, now_ms(),
                   caller=_caller(session))
    return await _teams_action(request, act)


async def remove_member(request: Request) -> Response:
    """``POST /portal/admin/teams/members/remove`` (team, user):
    ``DELETE /teams/{id}/members/{user}`` (the team's last scheduler stays)."""
    async def act(request: Request, session: PortalSession, form: dict[str, str]) -> None:
        team = _text(form, "team", "Team", 100)
        member = _text(form, "user", "Member", 254)
        await call(TeamStore(_db(request)).remove_member, team, member,
                   caller=_caller(session))
    return await _teams_action(request, act)


async def grant(request: Request) -> Response:
    """``POST /portal/admin/teams/grants`` (team, seconds, reason): ``POST /teams/{id}/grants``."""
    async def act(request: Request, session: PortalSession, form: dict[str, str]) -> None:
        team = _text(form, "team", "Team", 100)
        seconds = _number(form, "seconds", "Device-seconds", 0, MAX_GRANT_SECONDS)
        note = check_name(form.get("reason", ""), "Reason", max_len=500)
        await call(TeamStore(_db(request)).grant, team, seconds, note, now_ms(),
                   caller=_caller(session))
    return await _teams_action(request, act)


async def _decide(request: Request, approve: bool) -> Response:
    async def act(request: Request, session: PortalSession, form: dict[str, str]) -> None:
        note = form.get("note", "").strip() or None
        if note is not None and len(note) > MAX_NOTE_CHARS:
            raise BadRequest(f"the note must be at most {MAX_NOTE_CHARS} characters")
        await call(CreditRequestStore(_db(request)).decide, request.path_params["request_id"],
                   approve, now_ms(), caller=_caller(session), note=note)
    return await _teams_action(request, act)


async def approve_request(request: Request) -> Response:
    """``POST /portal/admin/credit-requests/{id}/approve`` (note?): grants what was asked."""
    return await _decide(request, True)


async def deny_request(request: Request) -> Response:
    """``POST /portal/admin/credit-requests/{id}/deny`` (note): the note says why."""
    return await _decide(request, False)


# -- prices ----------------------------------------------------------------------------
async def _prices_page(request: Request, session: PortalSession, *, status: int = 200,
                       **context: Any) -> Response:
    """``GET /portal/admin/prices``: each device's prices in force, and the form."""
    db, now = _db(request), now_ms()

    def read() -> tuple[list[dict], bool]:
        store, rows = PriceStore(db), service(request).identities.devices()
        prices = [{"device": r, **store.prices(r["device_id"], now)} for r in rows]
        return prices, bool(prices and prices[0]["accounting"])

    prices, accounting = await call(read)
    return page(request, "admin_prices.html", {"prices": prices, "accounting": accounting,
                                               **context}, status=status, session=session)


async def set_prices(request: Request) -> Response:
    """``POST /portal/admin/prices`` (device, per_used, per_reserved):
    ``PUT /devices/{id}/prices`` (turns accounting on)."""
    async def act(request: Request, session: PortalSession, form: dict[str, str]) -> None:
        device = _text(form, "device", "Device", 100)
        used = _number(form, "per_used", "Per used second", 0, MAX_PRICE)
        reserved = _number(form, "per_reserved", "Per reserved second", 0, MAX_PRICE)
        await call(PriceStore(_db(request)).set_prices, device, used, reserved, now_ms(),
                   caller=_caller(session))
    return await _done(request, _prices_page, f"{BASE}/prices", act)


# -- maintenance -----------------------------------------------------------------------
async def _maintenance_page(request: Request, session: PortalSession, *, status: int = 200,
                            **context: Any) -> Response:
    """``GET /portal/admin/maintenance``: standing maintenance, and the form."""
    db, now = _db(request), now_ms()

    def read() -> tuple[list[dict], list[dict]]:
        return (service(request).identities.devices(),
                BookingStore(db).maintenance(now))

    devices, booked = await call(read)
    names = {d["device_id"]: d["name"] for d in devices}
    rows = [{**b, "device_name": names.get(b["device_id"], b["device_id"]),
             "begun": b["start_at"] <= now} for b in booked]
    return page(request, "admin_maintenance.html", {"devices": devices, "booked": rows,
                                                    **context},
                status=status, session=session)


async def book_maintenance(request: Request) -> Response:
    """``POST /portal/admin/maintenance`` (device, start, end, reason, force?):
    ``POST /maintenance``."""
    async def act(request: Request, session: PortalSession, form: dict[str, str]) -> None:
        device = _text(form, "device", "Device", 100)
        start, end = _utc(form, "start", "Start (UTC)"), _utc(form, "end", "End (UTC)")
        reason = check_name(form.get("reason", ""), "Reason", max_len=500)
        await call(BookingStore(_db(request)).add_maintenance, device, start, end, reason,
                   now_ms(), caller=_caller(session), force=bool(form.get("force")))
        await service(request).queue_changed(device)
    return await _done(request, _maintenance_page, f"{BASE}/maintenance", act)


async def cancel_maintenance(request: Request) -> Response:
    """``POST /portal/admin/maintenance/{id}/cancel``: ``DELETE /maintenance/{id}``
    (cancelled before it starts, ended now once begun)."""
    async def act(request: Request, session: PortalSession, _: dict[str, str]) -> None:
        row = await call(BookingStore(_db(request)).end_maintenance,
                         request.path_params["booking_id"], now_ms(), caller=_caller(session))
        await service(request).queue_changed(row["device_id"])
    return await _done(request, _maintenance_page, f"{BASE}/maintenance", act)


def routes() -> list[BaseRoute]:
    return [
        Route(BASE, _shown(_index_page), methods=["GET"]),
        Route(f"{BASE}/users", _shown(_users_page), methods=["GET"]),
        Route(f"{BASE}/users", add_user, methods=["POST"]),
        Route(f"{BASE}/users/{{user_id}}/disable", disable_user, methods=["POST"]),
        Route(f"{BASE}/users/{{user_id}}/enable", enable_user, methods=["POST"]),
        Route(f"{BASE}/users/{{user_id}}/reset-password", reset_password, methods=["POST"]),
        Route(f"{BASE}/devices", _shown(_devices_page), methods=["GET"]),
        Route(f"{BASE}/devices", add_device, methods=["POST"]),
        Route(f"{BASE}/devices/{{device_id}}/rotate-secret", rotate_secret, methods=["POST"]),
        Route(f"{BASE}/downloads/{{token}}", download, methods=["GET"]),
        Route(f"{BASE}/teams", _shown(_teams_page), methods=["GET"]),
        Route(f"{BASE}/teams", create_team, methods=["POST"]),
        Route(f"{BASE}/teams/members", add_member, methods=["POST"]),
        Route(f"{BASE}/teams/members/remove", remove_member, methods=["POST"]),
        Route(f"{BASE}/teams/grants", grant, methods=["POST"]),
        Route(f"{BASE}/credit-requests/{{request_id}}/approve", approve_request,
              methods=["POST"]),
        Route(f"{BASE}/credit-requests/{{request_id}}/deny", deny_request, methods=["POST"]),
        Route(f"{BASE}/prices", _shown(_prices_page), methods=["GET"]),
        Route(f"{BASE}/prices", set_prices, methods=["POST"]),
        Route(f"{BASE}/maintenance", _shown(_maintenance_page), methods=["GET"]),
        Route(f"{BASE}/maintenance", book_maintenance, methods=["POST"]),
        Route(f"{BASE}/maintenance/{{booking_id}}/cancel", cancel_maintenance,
              methods=["POST"]),
    ]
