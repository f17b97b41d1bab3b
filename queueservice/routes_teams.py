"""Teams, roles and the credit ledger (feature ``teams``; issue 12, docs/facility.md):
teams created and listed, members added, changed and removed, a team's balance and ledger,
credits granted. The rules are ``teams.TeamStore``'s; under ``--stock-protocol`` these
routes are not mounted (``app.api_routes``)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cloudqueue.errors import BadRequest
from queueservice import policy
from queueservice.admin import check_name
from queueservice.httpedge import call, field, json_ok, now_ms, read_json, service, user
from queueservice.teams import MAX_GRANT_SECONDS, ROLES, Row, TeamStore


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
