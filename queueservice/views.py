"""The JSON shapes of devices and workloads, as the wire has them (PascalCase)."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.requests import Request

from queueservice import mockspec, policy, scheduling, situation
from cloudqueue.errors import BadRequest
from queueservice.httpedge import Service, parse_json

Row = dict[str, Any]


def _health(row: Row) -> dict | None:
    """The stored Health, or None when it is not a JSON object we can serve back (an old
    database may hold NaN or Infinity, which no JSON answer can carry)."""
    try:
        health = parse_json(row["health"], "Health") if row["health"] else None
    except BadRequest:
        return None
    return health if isinstance(health, dict) else None


def simulated(row: Row) -> bool:
    """A mock device, or a board daemon whose heartbeat said ``Health.Simulated``."""
    health = _health(row) or {}
    return mockspec.spec(row) is not None or health.get("Simulated") is True


def device_summary(row: Row, now: int) -> dict[str, Any]:
    """``GET /devices`` items; ``Simulated: true`` added for a simulated board, and
    ``StatusReason`` (from the heartbeat's health) for a device in ERROR; a real board that
    works keeps the stock shape."""
    extra: dict[str, Any] = {"Simulated": True} if simulated(row) else {}
    status = policy.device_status(row["reported_status"], row["last_refreshed"],
                                  row["refresh_timeout"], now)
    reason = (_health(row) or {}).get("Reason")
    if status == "ERROR" and isinstance(reason, str) and reason:
        extra["StatusReason"] = reason[:300]  # why it takes no work (users see this much)
    return {
        "DeviceId": row["device_id"],
        "DeviceName": row["name"],
        "DeviceStatus": status,
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
        "WorkloadName": row["workload_name"],
        "Priority": row["priority"],
        "DeviceId": row["device_id"],
        "ReadyAt": policy.iso(row["ready_at"]),
        "WorkStatus": row["status"],
        "CreatedAt": policy.iso(row["created_at"]),
    }


def start_estimate(svc: Service, row: Row, active: list[Row], now: int,
                   fallback: float | None = None) -> policy.StartEstimate:
    """``EstimatedStartAt`` of READY work in the stock queue order, from the device's
    queue and its state (``fallback``: the device's run estimate, read when not given)."""
    if row["status"] != "READY":
        return policy.StartEstimate(None)
    device = svc.identities.device(row["device_id"]) or {}
    state = policy.device_status(device.get("reported_status"), device.get("last_refreshed"),
                                 device.get("refresh_timeout") or 60, now)
    reason = ((_health(device) or {}).get("Reason") or None) if device else None
    if fallback is None:
        fallback = svc.workloads.run_estimate_seconds(row["device_id"])
    return policy.estimated_start(active, row["work_id"], now, fallback, state,
                                  reason if isinstance(reason, str) else None)


def waiting_view(skip: scheduling.Skip) -> dict[str, Any]:
    """``Waiting``: the rule that holds READY work, why, and until when (None: unknown)."""
    return {"Rule": skip.rule, "Message": skip.message, "Until": policy.iso(skip.until)}


def facility_queue(svc: Service, row: Row, active: list[Row], now: int,
                   sit: situation.Situation, *, fallback: float,
                   stock: policy.StartEstimate | None = None
                   ) -> tuple[int | None, policy.StartEstimate, dict[str, Any]]:
    """QueuePosition, EstimatedStartAt and the fields that say why, for READY work of a
    device the facility's policy rules (``sit``): ``Waiting: {Rule, Message, Until}``
    when a rule holds it (the same ``scheduling.pick`` as the claim's), ``QueueReason``
    when it is only behind other work; the position and start from
    ``scheduling.forecast`` (the device free once its running work is done).
    ``fallback``: the device's run estimate (``run_estimate_seconds``, read once by the
    caller); ``stock``: the stock-order estimate, worked out here when not given (the
    portal's list works it out once per device)."""
    if stock is None:
        stock = start_estimate(svc, row, active, now, fallback)
    if row["status"] != "READY":
        return policy.queue_position(active, row["work_id"]), stock, {}
    extra: dict[str, Any] = {}
    skip = sit.decide().skipped.get(row["work_id"])
    if skip is not None and skip.rule == "behind":
        extra["QueueReason"] = skip.message
    elif skip is not None:
        extra["Waiting"] = waiting_view(skip)
    busy = sum(policy.remaining_seconds(r, now, fallback) for r in active
               if r["status"] in ("EXECUTING", "UPLOADING"))
    ahead = sit.forecast(free_at=now + int(busy * 1000))
    position = ahead.position(row["work_id"])
    if position is None:  # no known start: after every one that has one
        position = len(ahead.order) + 1
    if stock.reason:  # the device offline or in ERROR: no estimate, as for stock work
        return position, stock, extra
    at = ahead.starts.get(row["work_id"])
    if at is None:
        why = skip.message if skip is not None and skip.rule != "behind" else \
            "it lies beyond what the forecast plays through"
        return position, policy.StartEstimate(None, f"no estimate: {why}"), extra
    return position, policy.StartEstimate(at), extra


def workload_detail(svc: Service, request: Request, row: Row, active: list[Row],
                    now: int) -> dict[str, Any]:
    """``GET /workloads/{id}``: stock fields and the queue insight of Part 2.

    ``active`` is the device's active work, for QueuePosition and EstimatedStartAt.
    """
    ready = row["status"] == "READY"
    fallback = svc.workloads.run_estimate_seconds(row["device_id"]) if ready else None
    sit = (svc.workloads.waiting(row["device_id"], now, active, fallback)
           if ready and not svc.limits.stock_protocol else None)
    if sit is None:  # the stock queue order (no facility rule on this device)
        position = policy.queue_position(active, row["work_id"])
        start, ruled = start_estimate(svc, row, active, now, fallback), {}
    else:
        position, start, ruled = facility_queue(svc, row, active, now, sit,
                                                fallback=fallback)
    body: dict[str, Any] = {
        "WorkId": row["work_id"],
        "CreatedAt": policy.iso(row["created_at"]),
        "ReadyAt": policy.iso(row["ready_at"]),
        "WorkStatus": row["status"],
    }
    if row["has_workload"]:
        body["WorkloadUrl"] = svc.presign(request, "GET", f"workloads/{row['work_id']}")
    if row["has_result"] or svc.limits.stock_protocol:
        # the stock service shows it in every state (a 404 until the results exist)
        body["WorkloadResultUrl"] = svc.presign(request, "GET", f"results/{row['work_id']}")
    body.update({
        "DeviceId": row["device_id"],
        "AccountId": row["account_id"],
        "Priority": row["priority"],
        "UserGivenName": row["user_given_name"],
        "WorkloadName": row["workload_name"],
        "QueuePosition": position,
        "EstimatedStartAt": policy.iso(start.at),
        "StartedAt": policy.iso(row["started_at"]),
        "FinishedAt": policy.iso(row["finished_at"]),
        "Attempts": row["attempts"],
        "DeviceSeconds": policy.run_time(row["device_seconds"]),
        "ErrorMessage": row["error_message"],
        "ErrorKind": row["error_kind"],
        "CancelRequested": bool(row["cancel_requested"]),
    })
    if start.reason:
        body["EstimatedStartReason"] = start.reason
    body.update(ruled)
    estimated = policy.run_time(row.get("estimated_seconds"))
    if estimated is not None:
        body["EstimatedSeconds"] = round(estimated, 6)
    if row.get("session_id"):
        body["SessionId"] = row["session_id"]  # submitted in this session (``sessions``)
    progress = policy.progress_view(row["status"], row.get("programs_done"),
                                    row.get("programs_total"))
    if progress is not None:
        body["Progress"] = progress
    if not svc.limits.stock_protocol:
        body["ChangeToken"] = change_token(body)
    return body


#: the fields of ``GET /workloads/{id}`` whose change ends a user's long poll on it
WATCHED = ("WorkStatus", "Progress", "QueuePosition", "Attempts", "CancelRequested",
           "ErrorKind", "ErrorMessage", "Waiting")


def change_token(body: dict[str, Any]) -> str:
    """``ChangeToken``: a digest of what a waiting user watches (status, progress, queue
    position, outcome; not the URLs or the estimate, which change with every answer)."""
    watched = [body.get(name) for name in WATCHED] + ["WorkloadResultUrl" in body]
    return hashlib.sha256(json.dumps(watched, sort_keys=True).encode()).hexdigest()[:16]
