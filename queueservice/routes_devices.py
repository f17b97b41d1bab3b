"""Device endpoints: admin creates, users list and read, the device heartbeats and pulls."""
from __future__ import annotations

import re
import time

from starlette.requests import Request
from starlette.responses import Response

from cloudqueue.errors import BadRequest, NotFound
from queueservice import mockspec, policy
from queueservice import views
from queueservice.identities import NO_DEVICE_HINT
from queueservice.httpedge import (Service, admin, call, field, forbidden_unless, json_ok, now_ms,
                                   principal, read_json, service, sha256_field, stock_missing_item,
                                   the_device, user, wait_seconds)


async def create_device(request: Request) -> Response:
    """``POST /devices`` (admin): 201 with the OAuth2 client id and secret (shown once)."""
    await admin(request)
    body = await read_json(request, model="AddDevice")
    name = field(body, "DeviceName", str, required=True, max_len=200)
    if not name.strip():
        raise BadRequest("DeviceName must not be empty")
    timeout = field(body, "RefreshTimeout", int, default=60)
    if not 1 <= timeout <= 86400:
        raise BadRequest("RefreshTimeout must be between 1 and 86400 seconds")
    svc = service(request)
    mock = mockspec.parse(field(body, "Mock", dict))
    if mock is not None and "MirrorOf" in mock:
        mirrored = await call(svc.identities.device, mock["MirrorOf"])
        if mirrored is None:
            raise NotFound(f"Mock.MirrorOf: no device {mock['MirrorOf']}: "
                           f"{NO_DEVICE_HINT}")
        if mirrored["mock"] is not None:
            raise BadRequest("Mock.MirrorOf must be a real device, not another mock device")
    row, secret = await call(svc.identities.add_device, name, timeout, now_ms(), mock)
    if mock is not None:  # the service runs it: its secret never leaves the service
        if svc.fleet is not None:
            svc.fleet.wake()
        return json_ok({"DeviceId": row["device_id"], "DeviceName": row["name"],
                        "ClientId": row["client_id"], "Mock": mock}, 201)
    return json_ok({"DeviceId": row["device_id"], "DeviceName": row["name"],
                    "ClientId": row["client_id"], "ClientSecret": secret}, 201)


async def list_devices(request: Request) -> Response:
    """``GET /devices`` (users)."""
    await user(request)
    rows = await call(service(request).identities.devices)
    now = now_ms()
    return json_ok([views.device_summary(r, now) for r in rows])


async def get_device(request: Request) -> Response:
    """``GET /devices/{id}``: users, or the device itself; Health for admins and the device."""
    device_id = request.path_params["device_id"]
    who = await principal(request)
    if who.kind == "device":
        forbidden_unless(who.id == device_id, "a device may only read its own record")
    svc = service(request)
    row = await call(svc.identities.device, device_id)
    if row is None and svc.limits.stock_protocol:
        raise stock_missing_item("Device", "DeviceName")
    if row is None:
        raise NotFound(f"no device {device_id}: {NO_DEVICE_HINT}")
    lengths = await call(svc.workloads.queue_lengths, [device_id])
    body = views.device_detail(svc, request, row, now_ms(),
                               with_health=who.is_admin or who.kind == "device",
                               queue_length=lengths[device_id])
    return json_ok(body)


async def _touch(svc: Service, device_id: str, now: int) -> None:
    """Record the device's call; a lease it had already lost ends now (its work goes back
    to the queue), and whoever waits on that work learns of it."""
    if await call(svc.workloads.touch_device, device_id, now):
        await svc.queue_changed(device_id)


async def heartbeat(request: Request) -> Response:
    """``PUT /devices/{id}``: the device reports its status (and health)."""
    device_id = request.path_params["device_id"]
    await the_device(request, device_id)
    body = await read_json(request, model="UpdateDevice")
    status = field(body, "DeviceStatus", str, required=True, choices=policy.DEVICE_STATUSES)
    extension = field(body, "DeviceConfigurationFileExtension", str, required=True, max_len=16)
    if not extension.replace(".", "").isalnum():
        raise BadRequest("DeviceConfigurationFileExtension must be letters and digits, "
                         "like json")
    health = field(body, "Health", dict)
    svc = service(request)
    now = now_ms()
    await _touch(svc, device_id, now)
    await call(svc.identities.heartbeat, device_id, status, extension, health, now)
    progress = policy.current_work(health)
    if progress is not None and await call(svc.workloads.record_progress, device_id, *progress):
        await svc.queue_changed(device_id, devices=False)
    cancels = await call(svc.workloads.cancel_requested, device_id)
    return json_ok({"DeviceId": device_id,
                    "UploadUrl": svc.presign(request, "PUT", f"configs/{device_id}"),
                    "CancelRequested": cancels})


MAX_HOLDING = 100
_WORK_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def _holding(request: Request) -> frozenset[str]:
    """``Holding=id,id,...``: work the device already has, never handed to it again."""
    raw = request.query_params.get("Holding") or ""
    ids = [part for part in raw.split(",") if part]
    if len(ids) > MAX_HOLDING or not all(_WORK_ID.match(i) for i in ids):
        raise BadRequest(f"Holding must be a comma-separated list of at most {MAX_HOLDING} "
                         f"WorkIds (the work this device already has)")
    return frozenset(ids)


def handout_view(row: dict, workload_url: str) -> dict:
    """The poll's answer for handed-out work: ``{WorkId, WorkloadUrl}``, and ``MaxSeconds``
    (ours: the workload's cost cap, which the board takes as the run's deadline when it is
    shorter than its own) when the submitter set one; the original device client ignores
    it."""
    answer = {"WorkId": row["work_id"], "WorkloadUrl": workload_url}
    if row.get("max_seconds") is not None:
        answer["MaxSeconds"] = row["max_seconds"]
    return answer


async def next_work(request: Request) -> Response:
    """``GET /devices/{id}/workload[?WaitSeconds=N][&Holding=ids]``: the next work, or ``[]``.

    With ``WaitSeconds`` the request is held until work is there (woken by an upload, a
    cancel or a lease expiry through the notifier, or at the end of a facility rule that
    held work: ``HandOut.recheck_at``) or the wait is over. Work named in
    ``Holding`` is skipped: the board has it already and asks for what comes next.
    """
    # the poll's moment is its arrival, before anything that may wait (authentication is a
    # database read): work handed to another poll after it arrived is never handed to it
    asked = service(request).workloads.sequence_mark()  # see policy.handout_candidates
    device_id = request.path_params["device_id"]
    await the_device(request, device_id)
    wait = wait_seconds(request)
    holding = _holding(request)
    svc = service(request)
    if svc.limits.stock_protocol:
        wait, holding = 0.0, frozenset()
    deadline = time.monotonic() + wait
    while True:
        seen = svc.device_wakeups.version(device_id)
        await _touch(svc, device_id, now_ms())
        answer = await call(svc.workloads.hand_out, device_id, asked, holding)
        row, ended = answer.row, answer.ended
        if row is not None or ended:
            await svc.queue_changed(device_id, devices=False)
        if row is not None:
            return json_ok(handout_view(row, svc.presign(request, "GET",
                                                          f"workloads/{row['work_id']}")))
        remaining = deadline - time.monotonic()
        if remaining <= 0 or svc.device_wakeups.closing:
            return json_ok([])
        if answer.recheck_at is not None:  # a rule holding work ends: look again then
            remaining = min(remaining, max(0.01, (answer.recheck_at - now_ms()) / 1000))
        moved = await svc.device_wakeups.wait(device_id, seen, remaining)
        if moved and await request.is_disconnected():
            return json_ok([])  # nobody to hand the work to: leave it READY


async def work_status(request: Request) -> Response:
    """``GET /devices/{id}/workloads/{WorkId}``: the device's cancel check."""
    device_id = request.path_params["device_id"]
    work_id = request.path_params["work_id"]
    await the_device(request, device_id)
    svc = service(request)
    await _touch(svc, device_id, now_ms())
    row = await call(svc.workloads.get, work_id)
    if row is None or row["device_id"] != device_id:
        raise NotFound(f"workload {work_id} is not this device's work")
    return json_ok({"WorkId": work_id, "WorkStatus": row["status"],
                    "CancelRequested": bool(row["cancel_requested"])})


async def report_work(request: Request) -> Response:
    """``PUT /devices/{id}/workloads/{WorkId}``: the outcome, and the results upload URL."""
    device_id = request.path_params["device_id"]
    work_id = request.path_params["work_id"]
    await the_device(request, device_id)
    body = await read_json(request, allow_empty=True)
    outcome = field(body, "Outcome", str, choices=("DONE", "FAILED", "CANCELLED"))
    message = field(body, "ErrorMessage", str, max_len=4000)
    kind = field(body, "ErrorKind", str, max_len=64)
    partial = field(body, "PartialResults", bool, default=False)
    sha = sha256_field(body)
    seconds = field(body, "DeviceSeconds", (int, float), bounds=(0, policy.MAX_RUN_SECONDS))
    programs_done = field(body, "ProgramsDone", int)
    if programs_done is not None and programs_done < 0:
        raise BadRequest("ProgramsDone must not be negative")
    svc = service(request)
    now = now_ms()
    await _touch(svc, device_id, now)
    try:
        await call(svc.workloads.report, device_id, work_id, outcome=outcome,
                   error_message=message, error_kind=kind, partial=partial, sha256=sha,
                   device_seconds=seconds, programs_done=programs_done, now=now)
    except NotFound:
        if svc.limits.stock_protocol:  # the stock handler's answer: 404, no body
            return Response(status_code=404)
        raise
    await svc.queue_changed(device_id, devices=False)
    return json_ok({"WorkId": work_id,
                    "UploadUrl": svc.presign(request, "PUT", f"results/{work_id}")})
