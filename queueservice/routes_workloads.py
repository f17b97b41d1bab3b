"""Workload endpoints for users: submit, list, read, cancel. Ownership on every path."""
from __future__ import annotations

import hashlib
import json
import time

from starlette.requests import Request
from starlette.responses import Response

from cloudqueue.errors import BadRequest, NotFound
from cloudqueue.models import WorkStatus, parse_time
from queueservice import policy
from queueservice import views
from queueservice.identities import Principal
from queueservice.httpedge import (Service, call, field, json_ok, now_ms, parse_json, query_int,
                                   read_json, service, sha256_field, stock_missing_item, user,
                                   wait_seconds)
from queueservice.workloads import PageKey


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise BadRequest("Idempotency-Key must be 1 to 200 printable characters")
    return key


async def submit(request: Request) -> Response:
    """``POST /workloads``: 201 ``{WorkId, UploadUrl}``; the file's arrival makes it READY."""
    who = await user(request)
    body = await read_json(request, model="CreateWork")
    device_id = field(body, "DeviceId", str, required=True, max_len=100)
    priority = field(body, "Priority", str, default="MEDIUM",
                     choices=tuple(policy.PRIORITY_RANK))
    # UserGivenName is never taken from the body: it is the submitter's name (stock meaning)
    name = field(body, "WorkloadName", str, max_len=200)
    sha = sha256_field(body)
    key = _idempotency_key(request)
    svc = service(request)
    given_name = who.full_name or None  # the store refuses a device that is not there
    fingerprint = hashlib.sha256(json.dumps([device_id, priority, name, sha]).encode()).hexdigest()
    row, _created = await call(svc.workloads.create, account_id=who.id, device_id=device_id,
                               priority=priority, user_given_name=given_name,
                               workload_name=name, sha256=sha, now=now_ms(),
                               idempotency_key=key, body_hash=fingerprint)
    return json_ok({"WorkId": row["work_id"],
                    "UploadUrl": svc.presign(request, "PUT", f"workloads/{row['work_id']}")}, 201)


def _page_key(raw: str | None) -> PageKey | None:
    if not raw:
        return None
    try:
        data = parse_json(raw, "ExclusiveStartKeyJson")
        created = parse_time(data["CreatedAt"])
        work_id = data["WorkId"]
        if created is None or not isinstance(work_id, str):
            raise ValueError("empty")
    except (BadRequest, ValueError, KeyError, TypeError, OverflowError, OSError):
        raise BadRequest("ExclusiveStartKeyJson must be the LastEvaluatedKey of the previous "
                         "page, unchanged") from None
    return PageKey(round(created.timestamp() * 1000), work_id)


async def list_workloads(request: Request) -> Response:
    """``GET /workloads``: newest first; a user sees their own, an admin all."""
    who = await user(request)
    q = request.query_params
    status = q.get("Status") or None
    if status is not None and status not in WorkStatus.__members__:
        raise BadRequest(f"Status must be one of {', '.join(WorkStatus.__members__)}")
    account = (q.get("AccountId") or None) if who.is_admin else who.id
    rows, last = await call(service(request).workloads.list, account_id=account,
                            device_id=q.get("DeviceId") or None, status=status,
                            limit=query_int(request, "Limit", default=5, lowest=1,
                                            highest=100),
                            start=_page_key(q.get("ExclusiveStartKeyJson")))
    body: dict = {"Items": await call(_items, service(request), rows)}
    if last is not None:
        body["LastEvaluatedKey"] = {"WorkId": last.work_id, "DeviceId": rows[-1]["device_id"],
                                    "CreatedAt": policy.iso(last.created_at)}
    return json_ok(body)


def _items(svc: Service, rows: list[dict]) -> list[dict]:
    """``GET /workloads`` items, READY work held by a facility rule with its ``Waiting``
    (one pick per device of the page). It reads the database: call it in the thread pool."""
    now, picks = now_ms(), {}
    items = []
    for r in rows:
        item = views.workload_item(r)
        if r["status"] == "READY" and not svc.limits.stock_protocol:
            if r["device_id"] not in picks:
                sit = svc.workloads.waiting(r["device_id"], now)
                picks[r["device_id"]] = sit.decide() if sit is not None else None
            decision = picks[r["device_id"]]
            skip = decision.skipped.get(r["work_id"]) if decision is not None else None
            if skip is not None and skip.rule != "behind":
                item["Waiting"] = views.waiting_view(skip)
        items.append(item)
    return items


async def _owned(request: Request, who: Principal, work_id: str) -> dict:
    """The workload if the caller owns it or is an admin; 404 otherwise (existence hidden)."""
    svc = service(request)
    row = await call(svc.workloads.get, work_id)
    if row is None or not (who.is_admin or row["account_id"] == who.id):
        if svc.limits.stock_protocol:  # a stranger's work looks missing there too
            raise stock_missing_item("Work", "WorkBucket")
        raise NotFound(f"no workload {work_id} of yours: check the WorkId against the list "
                       "of your workloads (`userclient list`)")
    return row


def _detail_body(svc: Service, request: Request, work_id: str) -> dict:
    """The ``GET /workloads/{id}`` body as of now. It reads the database: call it in the
    thread pool, never on the event loop."""
    row = svc.workloads.get(work_id)
    if row is None:
        raise NotFound(f"no workload {work_id}")
    active = svc.workloads.active_for_device(row["device_id"])
    return views.workload_detail(svc, request, row, active, now_ms())


async def _detail(request: Request, row: dict) -> Response:
    return json_ok(await call(_detail_body, service(request), request, row["work_id"]))


def _seen(request: Request) -> str | None:
    seen = request.query_params.get("Seen") or None
    if seen is not None and (len(seen) > 64 or not seen.isalnum()):
        raise BadRequest("Seen must be the ChangeToken of a previous answer, unchanged")
    return seen


async def get_workload(request: Request) -> Response:
    """``GET /workloads/{WorkId}[?WaitSeconds=N&Seen=token]`` (owner or admin).

    With ``WaitSeconds`` and ``Seen`` (the ``ChangeToken`` of a previous answer) the answer
    waits until the workload's watched fields differ from that answer, it is finished, or
    the wait is over; woken through ``Service.user_wakeups`` by whatever changes its device's
    queue (never by polling the database)."""
    who = await user(request)
    row = await _owned(request, who, request.path_params["work_id"])
    svc = service(request)
    wait, seen = wait_seconds(request), _seen(request)
    if svc.limits.stock_protocol or seen is None:
        wait = 0.0
    device_id, deadline = row["device_id"], time.monotonic() + wait
    while True:
        version = svc.user_wakeups.version(device_id)
        body = await call(_detail_body, svc, request, row["work_id"])
        remaining = deadline - time.monotonic()
        if (body.get("ChangeToken") != seen or body["WorkStatus"] in policy.TERMINAL
                or remaining <= 0 or svc.user_wakeups.closing):
            return json_ok(body)
        await svc.user_wakeups.wait(device_id, version, remaining)


async def cancel(request: Request) -> Response:
    """``POST /workloads/{WorkId}/cancel`` (owner or admin); 409 when already finished."""
    who = await user(request)
    row = await _owned(request, who, request.path_params["work_id"])
    svc = service(request)
    row = await call(svc.workloads.cancel, row["work_id"], now_ms())
    await svc.queue_changed(row["device_id"])
    return await _detail(request, row)
