"""Teams, roles and the credit ledger (feature ``teams``; issue 12, docs/facility.md):
teams created and listed, members added, changed and removed, a team's balance and ledger,
credits granted; credit requests (feature ``credit-requests``) and usage reports (feature
``usage``). The rules are the stores' (``teams``, ``credit_requests``, ``usage``); under
``--stock-protocol`` these routes are not mounted (``app.api_routes``)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cloudqueue.errors import BadRequest
from queueservice import policy
from queueservice.admin import check_name
from queueservice.credit_requests import (MAX_JUSTIFICATION_CHARS, MAX_NOTE_CHARS,
                                          CreditRequestStore, estimate_of)
from queueservice.httpedge import call, field, json_ok, now_ms, read_json, service, user
from queueservice.teams import MAX_GRANT_SECONDS, ROLES, Row, TeamStore
from queueservice.usage import UsageStore
from queueservice.usage import totals as usage_totals


def _store(request: Request) -> TeamStore:
    return TeamStore(service(request).identities.db)


def team_view(row: Row) -> dict[str, Any]:
    """A team as ``GET /teams`` lists it."""
    return {
        "TeamId": row["team_id"],
        "Name": row["name"],
        "CreatedBy": row["created_by"],
        "CreatedAt": policy.iso(row["created_at"]),
        "Members": [{"UserId": m["user_id"], "Email": m["email"], "Role": m["role"],
                     "IsDefault": bool(m["is_default"]), "AddedAt": policy.iso(m["added_at"])}
                    for m in row["members"]],
    }


def ledger_view(row: Row) -> dict[str, Any]:
    """One ledger line."""
    view = {
        "EntryId": row["entry_id"],
        "Kind": row["kind"],
        "Seconds": row["seconds"],
        "UserId": row["user_id"],
        "Note": row["note"],
        "At": policy.iso(row["at"]),
        "WorkId": row["work_id"],
        "DeviceId": row["device_id"],
    }
    if "balance_after" in row:
        view["BalanceAfter"] = row["balance_after"]
    return view


async def create_team(request: Request) -> Response:
    """``POST /teams {Name, Scheduler?}`` (admin): 201 with the team."""
    who = await user(request)
    body = await read_json(request)
    name = check_name(field(body, "Name", str, required=True), "Name", max_len=100)
    scheduler = field(body, "Scheduler", str, max_len=254)
    row = await call(_store(request).create, name, now_ms(), caller=who, scheduler=scheduler)
    return json_ok(team_view(row), 201)


async def list_teams(request: Request) -> Response:
    """``GET /teams``: the caller's teams (an admin: every team), with their members."""
    who = await user(request)
    rows = await call(_store(request).teams, who)
    return json_ok([team_view(r) for r in rows])


async def add_member(request: Request) -> Response:
    """``POST /teams/{id}/members {User, Role}`` (a scheduler of the team or an admin)."""
    who = await user(request)
    body = await read_json(request)
    member = field(body, "User", str, required=True, max_len=254)
    role = field(body, "Role", str, required=True, choices=ROLES)
    row = await call(_store(request).add_member, request.path_params["team"], member, role,
                     now_ms(), caller=who)
    return json_ok(team_view(row), 201)


async def change_member(request: Request) -> Response:
    """``PUT /teams/{id}/members/{user} {Role?, IsDefault?}``: a role (a scheduler of the
    team or an admin), or the member's default team (the member too)."""
    who = await user(request)
    body = await read_json(request)
    role = field(body, "Role", str, choices=ROLES)
    is_default = field(body, "IsDefault", bool)
    if role is None and is_default is None:
        raise BadRequest("give Role (scheduler or user) or IsDefault (true)")
    row = await call(_store(request).change_member, request.path_params["team"],
                     request.path_params["user"], caller=who, role=role, is_default=is_default)
    return json_ok(team_view(row))


async def remove_member(request: Request) -> Response:
    """``DELETE /teams/{id}/members/{user}`` (a scheduler of the team or an admin)."""
    who = await user(request)
    row = await call(_store(request).remove_member, request.path_params["team"],
                     request.path_params["user"], caller=who)
    return json_ok(team_view(row))


async def balance(request: Request) -> Response:
    """``GET /teams/{id}/balance`` (a scheduler of the team or an admin): device-seconds."""
    who = await user(request)
    row = await call(_store(request).balance, request.path_params["team"], who)
    return json_ok({"TeamId": row["team_id"], "Name": row["name"],
                    "BalanceSeconds": row["balance"], "Lines": row["lines"]})


async def ledger(request: Request) -> Response:
    """``GET /teams/{id}/ledger`` (a scheduler of the team or an admin): every line, oldest
    first, each with the balance after it."""
    who = await user(request)
    team, lines = await call(_store(request).ledger, request.path_params["team"], who)
    return json_ok({"TeamId": team["team_id"], "Name": team["name"],
                    "BalanceSeconds": lines[-1]["balance_after"] if lines else 0.0,
                    "Lines": [ledger_view(r) for r in lines]})


async def grant(request: Request) -> Response:
    """``POST /teams/{id}/grants {Seconds, Note}`` (admin): 201 with the ledger line."""
    who = await user(request)
    body = await read_json(request)
    seconds = field(body, "Seconds", (int, float), required=True,
                    bounds=(0, MAX_GRANT_SECONDS))
    note = check_name(field(body, "Note", str, required=True), "Note", max_len=500)
    row = await call(_store(request).grant, request.path_params["team"], float(seconds),
                     note, now_ms(), caller=who)
    return json_ok({**ledger_view(row), "TeamId": row["team_id"], "Name": row["name"],
                    "BalanceSeconds": row["balance"]}, 201)


# -- credit requests (``credit_requests.CreditRequestStore``) -----------------------------
def _requests(request: Request) -> CreditRequestStore:
    return CreditRequestStore(service(request).identities.db)


def request_view(row: Row, *, with_estimate: bool = False) -> dict[str, Any]:
    """A credit request as ``GET /credits/requests`` lists it (``with_estimate``: and the
    estimate attached, as one request's answer shows it)."""
    granted = row["granted"]
    view = {
        "RequestId": row["request_id"],
        "TeamId": row["team_id"],
        "Name": row["team_name"],
        "UserId": row["user_id"],
        "Email": row["user_email"],
        "Seconds": row["seconds"],
        "Justification": row["justification"],
        "HasEstimate": row["estimate"] is not None,
        "State": row["state"],
        "CreatedAt": policy.iso(row["created_at"]),
        "DecidedBy": row["decided_by_email"] or row["decided_by"],
        "DecidedAt": policy.iso(row["decided_at"]),
        "DecisionNote": row["decision_note"],
        "GrantedSeconds": None if granted is None else granted["seconds"],
        "EntryId": None if granted is None else granted["entry_id"],
    }
    if with_estimate:
        view["Estimate"] = estimate_of(row)
    return view


async def create_request(request: Request) -> Response:
    """``POST /credits/requests {Team, Seconds, Justification, Estimate?}`` (a scheduler of
    the team): 201 with the pending request."""
    who = await user(request)
    body = await read_json(request)
    team = field(body, "Team", str, required=True, max_len=100)
    seconds = field(body, "Seconds", (int, float), required=True,
                    bounds=(0, MAX_GRANT_SECONDS))
    justification = field(body, "Justification", str, required=True,
                          max_len=MAX_JUSTIFICATION_CHARS)
    estimate = field(body, "Estimate", dict)
    row = await call(_requests(request).create, team, float(seconds), justification,
                     estimate, now_ms(), caller=who)
    return json_ok(request_view(row, with_estimate=True), 201)


async def list_requests(request: Request) -> Response:
    """``GET /credits/requests?State=&Team=``: admins every request, schedulers their
    teams', newest first."""
    who = await user(request)
    rows = await call(_requests(request).requests, who,
                      state=request.query_params.get("State") or None,
                      team_ref=request.query_params.get("Team") or None)
    return json_ok([request_view(r) for r in rows])


async def get_request(request: Request) -> Response:
    """``GET /credits/requests/{id}``: one request with its Estimate."""
    who = await user(request)
    row = await call(_requests(request).request, request.path_params["request"], who)
    return json_ok(request_view(row, with_estimate=True))


async def approve_request(request: Request) -> Response:
    """``POST /credits/requests/{id}/approve {Seconds?, Note?}`` (admin): the request,
    approved, with the grant line's ``EntryId`` and ``GrantedSeconds``."""
    who = await user(request)
    body = await read_json(request, allow_empty=True)
    seconds = field(body, "Seconds", (int, float), bounds=(0, MAX_GRANT_SECONDS))
    note = field(body, "Note", str, max_len=MAX_NOTE_CHARS)
    row = await call(_requests(request).decide, request.path_params["request"], True,
                     now_ms(), caller=who, seconds=None if seconds is None else float(seconds),
                     note=note)
    return json_ok(request_view(row))


async def deny_request(request: Request) -> Response:
    """``POST /credits/requests/{id}/deny {Note}`` (admin): the request, denied."""
    who = await user(request)
    body = await read_json(request)
    note = field(body, "Note", str, required=True, max_len=MAX_NOTE_CHARS)
    row = await call(_requests(request).decide, request.path_params["request"], False,
                     now_ms(), caller=who, note=note)
    return json_ok(request_view(row))


# -- usage reports (``usage.UsageStore``) ---------------------------------------------------
def query_time(request: Request, name: str) -> int | None:
    """A time query parameter (None when absent): ISO 8601 (``2026-11-01T12:00:00Z``; no
    offset: UTC), a day (``2026-11-01``) or a month (``2026-11``), as ms."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    text = raw.strip()
    if len(text) == 7:  # a month
        text += "-01"
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be a time in ISO 8601 (2026-11-01T12:00:00Z), a day "
                         f"(2026-11-01) or a month (2026-11), not {raw[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1000)


def usage_view(row: Row) -> dict[str, Any]:
    view = {"Key": row["key"], "Name": row["name"]}
    view.update({name: row[column] for name, column in USAGE_FIELDS})
    return view


#: the answer's names of ``usage.COLUMNS``
USAGE_FIELDS = (("Charged", "charged"), ("Refunded", "refunded"), ("Spent", "spent"),
                ("BoardSeconds", "board_seconds"), ("Workloads", "workloads"),
                ("Reservations", "reservations"), ("Sessions", "sessions"),
                ("Total", "total"))


async def usage_report(request: Request) -> Response:
    """``GET /usage?By=team|user|device|month&From=&To=&Team=``: credits spent per group
    (admins: every line; schedulers: their teams'; anyone: their own), with the totals."""
    who = await user(request)
    by = request.query_params.get("By") or "team"
    start, end = query_time(request, "From"), query_time(request, "To")
    rows = await call(UsageStore(service(request).identities.db).report, by, who,
                      start=start, end=end, team_ref=request.query_params.get("Team") or None)
    total = usage_totals(rows)
    return json_ok({"By": by, "From": policy.iso(start), "To": policy.iso(end),
                    "Rows": [usage_view(r) for r in rows],
                    "Total": {name: total[column] for name, column in USAGE_FIELDS}})
