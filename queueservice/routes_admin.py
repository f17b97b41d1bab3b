"""Admin lifecycle endpoints (feature ``admin-lifecycle``), as docs/protocol.md pins them:
users listed, disabled and enabled; API keys created, listed and revoked; a device's secret
rotated, the device renamed or deleted. Every denial is a 403/404. Under ``--stock-protocol``
these routes are not mounted (``app.api_routes``), as on the stock service."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cloudqueue.errors import BadRequest
from queueservice import views
from queueservice.admin import AdminStore, api_key_view, check_name, user_view
from queueservice.identities import Principal
from queueservice.httpedge import (admin, call, field, forbidden_unless, json_ok, now_ms, read_json,
                                   service, user)


def _store(request: Request) -> AdminStore:
    return AdminStore(service(request).identities.db)


# -- users -------------------------------------------------------------------------------
async def list_users(request: Request) -> Response:
    """``GET /users`` (admin)."""
    await admin(request)
    rows = await call(_store(request).users)
    return json_ok([user_view(r) for r in rows])


async def _set_disabled(request: Request, disabled: bool) -> Response:
    who = await admin(request)
    row = await call(_store(request).set_disabled, request.path_params["user"], disabled,
                     now_ms(), caller=who)
    return json_ok(user_view(row))


async def disable_user(request: Request) -> Response:
    """``POST /users/{UserId or Email}/disable`` (admin)."""
    return await _set_disabled(request, True)


async def enable_user(request: Request) -> Response:
    """``POST /users/{UserId or Email}/enable`` (admin)."""
    return await _set_disabled(request, False)


async def reset_password(request: Request) -> Response:
    """``POST /users/{UserId or Email}/reset-password`` (admin): 200 ``{UserId, Email,
    TemporaryPassword}``, the password shown once (``AdminStore.reset_password``)."""
    await admin(request)
    row, password = await call(_store(request).reset_password, request.path_params["user"],
                               now_ms())
    return json_ok({"UserId": row["user_id"], "Email": row["email"],
                    "TemporaryPassword": password})


# -- API keys ----------------------------------------------------------------------------
async def _key_owner(request: Request, who: Principal, ref: str | None) -> str:
    """The UserId whose keys this request is about: the caller's own unless an admin names
    another user (by UserId or e-mail)."""
    if ref is None or ref in (who.id, who.email):
        return who.id
    forbidden_unless(who.is_admin, "only an admin may see or make another user's API keys")
    row = await call(_store(request).find_user, ref)
    return row["user_id"]


async def list_api_keys(request: Request) -> Response:
    """``GET /api-keys[?UserId=]``: the caller's keys (an admin: anyone's)."""
    who = await user(request)
    owner = await _key_owner(request, who, request.query_params.get("UserId") or None)
    rows = await call(_store(request).api_keys, owner)
    return json_ok([api_key_view(r) for r in rows])


async def create_api_key(request: Request) -> Response:
    """``POST /api-keys {Label?, UserId?}``: 201 with ``ApiKey`` (shown once)."""
    who = await user(request)
    body = await read_json(request, allow_empty=True)
    label = field(body, "Label", str)
    if label is not None:
        label = check_name(label, "Label")
    owner = await _key_owner(request, who, field(body, "UserId", str, max_len=254))
    row, api_key = await call(_store(request).create_api_key, owner, label, now_ms())
    return json_ok({**api_key_view(row), "ApiKey": api_key}, 201)


async def revoke_api_key(request: Request) -> Response:
    """``POST /api-keys/{KeyId}/revoke``: its owner or an admin; 200 with the key's record."""
    who = await user(request)
    row = await call(_store(request).revoke_api_key, request.path_params["key_id"], now_ms(),
                     caller=who)
    return json_ok(api_key_view(row))


# -- devices -----------------------------------------------------------------------------
async def rotate_secret(request: Request) -> Response:
    """``POST /devices/{id}/rotate-secret`` (admin): the new ``ClientSecret`` (shown once)."""
    await admin(request)
    row, secret = await call(_store(request).rotate_secret, request.path_params["device_id"])
    return json_ok({"DeviceId": row["device_id"], "DeviceName": row["name"],
                    "ClientId": row["client_id"], "ClientSecret": secret})


async def rename_device(request: Request) -> Response:
    """``PATCH /devices/{id} {DeviceName}`` (admin): the device as ``GET /devices`` shows it."""
    await admin(request)
    body = await read_json(request)
    name = check_name(field(body, "DeviceName", str, required=True), "DeviceName")
    row = await call(_store(request).rename_device, request.path_params["device_id"], name)
    return json_ok(views.device_summary(row, now_ms()))


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw.lower() == "false":
        return False
    if raw.lower() == "true":
        return True
    raise BadRequest(f"{name} must be true or false")


async def delete_device(request: Request) -> Response:
    """``DELETE /devices/{id}[?CancelWork=true]`` (admin); 409 while it has unfinished work
    (unless ``CancelWork``)."""
    await admin(request)
    device_id = request.path_params["device_id"]
    cancel_work = _flag(request, "CancelWork")
    svc = service(request)
    row, cancelled = await call(_store(request).delete_device, device_id, now_ms(),
                                cancel_work=cancel_work)
    await call(svc.files.delete, f"configs/{device_id}")
    await svc.queue_changed(device_id)  # wake its long poll and whoever waits on its work
    if row["mock"] is not None and svc.fleet is not None:
        svc.fleet.wake()  # its daemon is stopped
    return json_ok({"DeviceId": device_id, "DeviceName": row["name"], "Deleted": True,
                    "CancelledWork": cancelled})
