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
from queueservice.pricing import Charging, PriceStore
from queueservice.teams import TeamStore
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


#: ``OnSlotEnd``: what becomes of timeslot work unfinished at its slot's end
SLOT_END_CHOICES = ("wait", "fail")


def _charging(body: dict) -> Charging:
    """``POST /workloads``'s own fields about paying for the work (not the stock
    protocol's): ``Team``, ``MaxSeconds``, ``Timeslot``, ``OnSlotEnd``."""
    team = field(body, "Team", str, max_len=100)
    cap = field(body, "MaxSeconds", (int, float), bounds=(0, policy.MAX_RUN_SECONDS))
    if cap is not None and cap <= 0:
        raise BadRequest("the field MaxSeconds (the run's cost cap, its deadline on the "
                         "board) must be more than 0 seconds")
    timeslot = field(body, "Timeslot", bool, default=False)
    on_slot_end = field(body, "OnSlotEnd", str, choices=SLOT_END_CHOICES)
    if on_slot_end is not None and not timeslot:
        raise BadRequest("OnSlotEnd is for timeslot work only: give Timeslot true too, or "
                         "leave OnSlotEnd out")
    return Charging(team, float(cap) if cap is not None else None, timeslot,
                    (on_slot_end or "wait") if timeslot else None)


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
    # ours (feature ``sessions``): submitted in the caller's open session on the device
    session_id = None if svc.limits.stock_protocol else field(body, "SessionId", str,
                                                              max_len=100)
    given_name = who.full_name or None  # the store refuses a device that is not there
    charging = None if svc.limits.stock_protocol else _charging(body)
    fingerprinted: list = [device_id, priority, name, sha]
    if charging is not None and charging != Charging():
        fingerprinted.append([charging.team, charging.max_seconds, charging.timeslot,
                              charging.on_slot_end])
    if session_id is not None:
        fingerprinted.append({"SessionId": session_id})
    fingerprint = hashlib.sha256(json.dumps(fingerprinted).encode()).hexdigest()
    row, _created = await call(svc.workloads.create, account_id=who.id, device_id=device_id,
                               priority=priority, user_given_name=given_name,
                               workload_name=name, sha256=sha, now=now_ms(),
                               idempotency_key=key, body_hash=fingerprint, charging=charging,
                               session_id=session_id)
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


def _team_queue(svc: Service, rows: list[dict], items: list[dict]) -> list[dict]:
    """``GET /workloads?Team=`` items: each with its ``QueuePosition`` on its device and
    the ``AccountId`` of its owner (whose results stay theirs)."""
    active = {device: svc.workloads.active_for_device(device)
              for device in {r["device_id"] for r in rows}}
    return [{**item, "AccountId": r["account_id"],
             "QueuePosition": policy.queue_position(active[r["device_id"]], r["work_id"])}
            for r, item in zip(rows, items)]


async def list_workloads(request: Request) -> Response:
    """``GET /workloads``: newest first; a user sees their own, an admin all; with
    ``Team`` (TeamId or name; ours) a member sees the team's work with queue positions."""
    who = await user(request)
    q = request.query_params
    svc = service(request)
    status = q.get("Status") or None
    if status is not None and status not in WorkStatus.__members__:
        raise BadRequest(f"Status must be one of {', '.join(WorkStatus.__members__)}")
    account = (q.get("AccountId") or None) if who.is_admin else who.id
    team_id = None
    if q.get("Team") and not svc.limits.stock_protocol:
        team = await call(TeamStore(svc.identities.db).team, q["Team"], who)
        team_id = team["team_id"]
        account = (q.get("AccountId") or None) if who.is_admin else None
    rows, last = await call(svc.workloads.list, account_id=account,
                            device_id=q.get("DeviceId") or None, status=status,
                            limit=query_int(request, "Limit", default=5, lowest=1,
                                            highest=100),
                            start=_page_key(q.get("ExclusiveStartKeyJson")), team_id=team_id)
    items = await call(_items, svc, rows)
    if team_id is not None:
        items = await call(_team_queue, svc, rows, items)
    body: dict = {"Items": items}
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
    now = now_ms()
    body = views.workload_detail(svc, request, row, active, now)
    if not svc.limits.stock_protocol:
        body.update(PriceStore(svc.identities.db).cost_fields(row, now))
    return body


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
