"""The JSON shapes of devices and workloads, as the wire has them (PascalCase)."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.requests import Request

from cloudqueue.server import mockspec, policy
from cloudqueue.server.web import Service

Row = dict[str, Any]


def _health(row: Row) -> dict | None:
    try:
        health = json.loads(row["health"]) if row["health"] else None
    except ValueError:
        return None
    return health if isinstance(health, dict) else None


def simulated(row: Row) -> bool:
    """A mock device, or a board daemon whose heartbeat said ``Health.Simulated``."""
    health = _health(row) or {}
    return mockspec.spec(row) is not None or health.get("Simulated") is True


def device_summary(row: Row, now: int) -> dict[str, Any]:
    """``GET /devices`` items; ``Simulated: true`` added for a simulated board (a real
    board keeps the stock shape)."""
    extra = {"Simulated": True} if simulated(row) else {}
    return {
        "DeviceId": row["device_id"],
        "DeviceName": row["name"],
        "DeviceStatus": policy.device_status(row["reported_status"], row["last_refreshed"],
                                             row["refresh_timeout"], now),
        "LastRefreshed": policy.iso(row["last_refreshed"]) or 0,
        "RefreshTimeout": row["refresh_timeout"],
        **mockspec.device_fields(row),
        **extra,
    }


def device_detail(svc: Service, request: Request, row: Row, now: int, *,
                  with_health: bool, queue_length: int) -> dict[str, Any]:
    """``GET /devices/{id}``: the stock fields, ``QueueLength`` and (admins) ``Health``."""
    body = device_summary(row, now)
    body["ConfigurationLastRefreshed"] = policy.iso(row["config_refreshed"]) or 0
    if row["config_refreshed"] is not None:
        body["DeviceConfigurationUrl"] = svc.presign(request, "GET",
                                                     f"configs/{row['device_id']}")
    body["QueueLength"] = queue_length
    if with_health:
        body["Health"] = _health(row)
    return body


def workload_item(row: Row) -> dict[str, Any]:
    """``GET /workloads`` items (the stock projection)."""
    return {
        "WorkId": row["work_id"],
        "UserGivenName": row["user_given_name"],
        "Priority": row["priority"],
        "DeviceId": row["device_id"],
        "ReadyAt": policy.iso(row["ready_at"]),
        "WorkStatus": row["status"],
        "CreatedAt": policy.iso(row["created_at"]),
    }


def workload_detail(svc: Service, request: Request, row: Row, active: list[Row],
                    now: int) -> dict[str, Any]:
    """``GET /workloads/{id}``: stock fields and the queue insight of Part 2.

    ``active`` is the device's active work, for QueuePosition and EstimatedStartAt.
    """
    position = policy.queue_position(active, row["work_id"])
    estimate = None
    if row["status"] == "READY":
        run_ms = svc.workloads.run_estimate_ms(row["device_id"])
        estimate = policy.iso(policy.estimated_start(position, active, now, run_ms))
    body: dict[str, Any] = {
        "WorkId": row["work_id"],
        "CreatedAt": policy.iso(row["created_at"]),
        "ReadyAt": policy.iso(row["ready_at"]),
        "WorkStatus": row["status"],
    }
    if row["has_workload"]:
        body["WorkloadUrl"] = svc.presign(request, "GET", f"workloads/{row['work_id']}")
    if row["has_result"]:
        body["WorkloadResultUrl"] = svc.presign(request, "GET", f"results/{row['work_id']}")
    body.update({
        "DeviceId": row["device_id"],
        "AccountId": row["account_id"],
        "Priority": row["priority"],
        "UserGivenName": row["user_given_name"],
        "QueuePosition": position,
        "EstimatedStartAt": estimate,
        "StartedAt": policy.iso(row["started_at"]),
        "FinishedAt": policy.iso(row["finished_at"]),
        "Attempts": row["attempts"],
        "DeviceSeconds": row["device_seconds"],
        "ErrorMessage": row["error_message"],
        "ErrorKind": row["error_kind"],
        "CancelRequested": bool(row["cancel_requested"]),
    })
    progress = policy.progress_view(row["status"], row.get("programs_done"),
                                    row.get("programs_total"))
    if progress is not None:
        body["Progress"] = progress
    if not svc.limits.stock_protocol:
        body["ChangeToken"] = change_token(body)
    return body


#: the fields of ``GET /workloads/{id}`` whose change ends a user's long poll on it
WATCHED = ("WorkStatus", "Progress", "QueuePosition", "Attempts", "CancelRequested",
           "ErrorKind", "ErrorMessage")


def change_token(body: dict[str, Any]) -> str:
    """``ChangeToken``: a digest of what a waiting user watches (status, progress, queue
    position, outcome; not the URLs or the estimate, which change with every answer)."""
    watched = [body.get(name) for name in WATCHED] + ["WorkloadResultUrl" in body]
    return hashlib.sha256(json.dumps(watched, sort_keys=True).encode()).hexdigest()[:16]
