"""Sessions (feature ``sessions``; issue 12 item 6, IBM Runtime's): opened, listed, read
and closed. The rules are ``sessions.SessionStore``'s; under ``--stock-protocol`` these
routes are not mounted (``app.api_routes``)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cloudqueue.errors import BadRequest
from queueservice import policy
from queueservice.httpedge import (call, field, json_ok, now_ms, query_int, read_json,
                                   service, user)
from queueservice.sessions import (DEFAULT_IDLE_MINUTES, DEFAULT_MAX_MINUTES, MAX_MINUTES,
                                   STATES, Row, SessionStore)


def _store(request: Request) -> SessionStore:
    return SessionStore(service(request).identities.db)


def session_view(row: Row) -> dict[str, Any]:
    """A session as the API answers it."""
    return {
        "SessionId": row["session_id"],
        "DeviceId": row["device_id"],
        "UserId": row["user_id"],
        "TeamId": row["team_id"],
        "State": "open" if row["closed_at"] is None else "closed",
        "OpenedAt": policy.iso(row["opened_at"]),
        "StartedAt": policy.iso(row["started_at"]),
        "LastActivityAt": policy.iso(row["last_activity_at"]),
        "EndsAt": policy.iso(row["ends_at"]),
        "MaxMinutes": row["max_seconds"] / 60,
        "IdleMinutes": row["idle_seconds"] / 60,
        "ClosedAt": policy.iso(row["closed_at"]),
        "CloseReason": row["close_reason"],
        "HeldSeconds": row["charged_seconds"],
        "Cost": row["cost"],
        "Workloads": row["workloads"],
    }


def _minutes(body: dict, name: str, default: float) -> float:
    value = field(body, name, (int, float), default=default, bounds=(0, MAX_MINUTES))
    if value <= 0:
        raise BadRequest(f"the field {name} must be more than 0 minutes")
    return float(value)


async def open_session(request: Request) -> Response:
    """``POST /sessions {Device, Team?, MaxMinutes?, IdleMinutes?}``: 201 with the session."""
    who = await user(request)
    body = await read_json(request)
    device_id = field(body, "Device", str, required=True, max_len=100)
    team = field(body, "Team", str, max_len=100)
    max_minutes = _minutes(body, "MaxMinutes", DEFAULT_MAX_MINUTES)
    idle_minutes = _minutes(body, "IdleMinutes", min(DEFAULT_IDLE_MINUTES, max_minutes))
    row = await call(_store(request).open, device_id, now_ms(), caller=who, team=team,
                     max_seconds=max_minutes * 60, idle_seconds=idle_minutes * 60)
    return json_ok(session_view(row), 201)


async def list_sessions(request: Request) -> Response:
    """``GET /sessions[?Device=&State=open|closed&Limit=]``: your newest (an admin:
    everyone's)."""
    who = await user(request)
    q = request.query_params
    state = q.get("State") or None
    if state is not None and state not in STATES:
        raise BadRequest(f"State must be one of {', '.join(STATES)}, not {state[:20]!r}")
    rows = await call(_store(request).sessions, who, device_id=q.get("Device") or None,
                      state=state, limit=query_int(request, "Limit", default=100, lowest=1,
                                                   highest=1000))
    return json_ok([session_view(r) for r in rows])


async def get_session(request: Request) -> Response:
    """``GET /sessions/{id}`` (its owner or an admin)."""
    who = await user(request)
    row = await call(_store(request).get, request.path_params["session_id"], who)
    return json_ok(session_view(row))


async def close_session(request: Request) -> Response:
    """``DELETE /sessions/{id}`` (its owner or an admin): 200 with the closed session."""
    who = await user(request)
    row, closed = await call(_store(request).close, request.path_params["session_id"],
                             now_ms(), caller=who)
    if closed:  # the device is free for everyone's work again
        await service(request).queue_changed(row["device_id"])
    return json_ok(session_view(row))
