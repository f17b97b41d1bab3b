"""The portal's submit section (slice 4 of docs/portal.md): upload a workload file, pick the
device, priority, team and timeslot, see the estimate and its cost, then confirm.

``POST /portal/submit`` (multipart) makes the checks of ``userclient submit`` (the file is a
workload and fits the firmware the device uploaded: ``qickwork.validate``, the same
messages) and the API's own (``POST /workloads``'s fields, the team, the timeslot, the
credits), creates nothing, and holds the file (``uploads.UploadStore``: the file store,
bound to this session) for the preview page. ``POST /portal/submit/confirm`` creates the
workload with the same store call as the API (``WorkloadStore.create``, the upload's token
as its idempotency key: a double click makes one workload) and puts the file in place as
an upload of it does (``routes_files.arrive``), then shows the workload.

qickwork (numpy) is imported only when a file is checked, as the service's estimates do:
the web process loads no numpy until then (docs/layout.md).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cloudqueue.errors import BadRequest, NotFound, QueueError
from queueservice import estimates, policy, views
from queueservice.bookings import BookingStore
from queueservice.errors import PayloadTooLarge, StorageUnavailable
from queueservice.facility import accounting_on, prices_at
from queueservice.files import Staged
from queueservice.httpedge import Service, body_stream, call, field, now_ms, service
from queueservice.identities import Principal, user_principal_of
from queueservice.portal.csrf import origin_ok, tokens_match
from queueservice.portal.sessions import PortalSession
from queueservice.portal.uploads import UploadStore
from queueservice.portal.web import (FORM_LIMIT, own_origin, page, posted, redirect, refused,
                                     session_of, templates)
from queueservice.pricing import Charging, check_cover, require_slot, submit_team
from queueservice.routes_files import arrive
from queueservice.teams import TeamStore

#: what the form adds to the file's own bytes (fields, part headers, boundaries)
FORM_ALLOWANCE = 64 * 1024
#: the form's text fields (csrf, device, priority, team, timeslot, name) and its one file
MAX_FIELDS = 10


# -- the form's choices ------------------------------------------------------------------
def _my_teams(svc: Service, caller: Principal) -> list[tuple[dict, dict]]:
    """(team, my membership) of each team the caller is a member of: the teams they may
    charge work to (an admin sees every team, but submits only to their own)."""
    return [(team, member) for team in TeamStore(svc.identities.db).teams(caller)
            for member in team["members"] if member["user_id"] == caller.id]


def _my_timeslots(svc: Service, caller: Principal, team_ids: set[str],
                  now: int) -> list[dict]:
    """The reservations of these teams that have not ended, earliest first."""
    return [r for r in BookingStore(svc.identities.db).reservations(caller, now)
            if r["team_id"] in team_ids]


def _choices(svc: Service, user: dict[str, Any], now: int) -> dict[str, Any]:
    """What the form offers this user: every device (users may submit to any: ``GET
    /devices``), their teams and their default one, and their teams' timeslots still to
    come; the API's priorities and its default."""
    caller = user_principal_of(user)
    mine = _my_teams(svc, caller)
    return {"devices": svc.identities.devices(), "teams": [team for team, _ in mine],
            "default_team": next((t["team_id"] for t, m in mine if m["is_default"]), ""),
            "timeslots": _my_timeslots(svc, caller, {t["team_id"] for t, _ in mine}, now),
            "priorities": list(policy.PRIORITY_RANK), "default_priority": "MEDIUM"}


async def _form(request: Request, session: PortalSession, *, status: int = 200,
                error: str | None = None, chosen: dict[str, str] | None = None) -> Response:
    choices = await call(_choices, service(request), session.user, now_ms())
    team = chosen["team"] if chosen else choices["default_team"]
    return page(request, "submit_form.html", {**choices, "chosen": chosen or {},
                                              "team_selected": team, "error": error},
                status=status, session=session)


async def submit_page(request: Request) -> Response:
    """``GET /portal/submit``: the upload form."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    return await _form(request, session)


# -- reading the upload ------------------------------------------------------------------
async def _bounded(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the upload is larger than this service's limit of "
                                  f"{limit - FORM_ALLOWANCE} bytes for a workload file: make "
                                  "it smaller or ask the admin to raise --max-upload-mb")
        yield chunk


async def _upload_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(1 << 20):
        yield chunk


async def _read_upload(request: Request) -> tuple[dict[str, str], Staged | None, str]:
    """The form's text fields, its file staged in the file store's temp folder (None: no
    file chosen), and the file's name. The body is bounded by the API's own limit of a
    workload file (``--max-upload-mb``) plus the form's fields: PayloadTooLarge past it."""
    svc = service(request)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("the form must be sent as multipart/form-data (with its file): "
                         "reload the page and try again")
    limit = svc.limits.max_upload_bytes + FORM_ALLOWANCE
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the upload ({declared} bytes) is larger than this service's "
                              f"limit of {svc.limits.max_upload_bytes} bytes for a workload "
                              "file: make it smaller or ask the admin to raise "
                              "--max-upload-mb")
    parser = MultiPartParser(request.headers, _bounded(body_stream(request), limit),
                             max_files=1, max_fields=MAX_FIELDS, max_part_size=FORM_LIMIT)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequest(f"the form could not be read ({exc.message}): reload the page and "
                         "try again") from None
    try:
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return fields, None, ""
        staged = await svc.files.stage(_upload_chunks(upload), svc.limits.max_upload_bytes)
        return fields, staged, upload.filename[:200]
    finally:
        await form.close()


# -- the checks --------------------------------------------------------------------------
@dataclass
class Preview:
    """What the preview page shows of a checked upload."""

    device: dict[str, Any]
    priority: str
    name: str | None
    team: dict[str, Any] | None
    timeslot: dict[str, Any] | None
    programs: int
    firmware: str | None
    warnings: list[str]
    seconds: float | None
    cost: float | None
    accounting: bool
    position: int | None
    start: policy.StartEstimate


def _check_file(svc: Service, staged: Staged, file_name: str,
                device: dict[str, Any]) -> tuple[int, str | None, list[str]]:
    """``userclient submit``'s checks (``qickwork.validate``, the same messages): the file
    is a workload, compiled for the firmware the device uploaded and within its limits.
    Answers (programs, the device's firmware, warnings)."""
    # numpy and h5py: loaded into the web process only once a file is checked (layout.md)
    from qickwork import WorkloadError
    from qickwork.firmware import describe
    from qickwork.validate import check_for_device, read_submitted

    device_id = device["device_id"]
    try:
        entries = read_submitted(staged.path, file_name)
    except WorkloadError as exc:
        raise BadRequest(exc.message, kind=exc.kind) from None
    text = (svc.files.read_text(f"configs/{device_id}")
            if device["config_refreshed"] is not None else None)
    if text is None:
        return len(entries), None, [
            f"device {device_id} has not uploaded its configuration (soccfg) yet, so the "
            "workload was not checked against its firmware; its board checks it before "
            "running it"]
    try:
        soccfg = json.loads(text)
    except ValueError:
        soccfg = None
    if not isinstance(soccfg, dict):
        return len(entries), None, [
            f"the configuration device {device_id} uploaded is not a JSON object, so the "
            "workload was not checked against its firmware; its board checks it before "
            "running it"]
    try:
        check_for_device(entries, soccfg, file_name, device_id)
    except WorkloadError as exc:
        raise BadRequest(exc.message, kind=exc.kind) from None
    return len(entries), describe(soccfg), []


def _timeslot(svc: Service, caller: Principal, booking_id: str, device_id: str,
              team_ref: str | None, now: int) -> dict[str, Any]:
    """The chosen timeslot: one of the caller's teams' reservations still to come, on the
    chosen device, of the chosen team (if one was chosen)."""
    mine = {team["team_id"] for team, _ in _my_teams(svc, caller)}
    slot = next((r for r in _my_timeslots(svc, caller, mine, now)
                 if r["booking_id"] == booking_id), None)
    if slot is None:
        raise NotFound(f"no timeslot {booking_id} of your teams from now on: choose one from "
                       "the list (book one on the Teams and credits page)")
    if slot["device_id"] != device_id:
        raise BadRequest(f"the timeslot you chose is on device {slot['device_id']}, not on "
                         f"{device_id}: choose that device, or another timeslot")
    if team_ref is not None and team_ref not in (slot["team_id"], slot["team_name"]):
        raise BadRequest(f"the timeslot you chose is team {slot['team_name']}'s, not the "
                         "team you chose: choose that team, or another timeslot")
    return slot


def _preview(svc: Service, user: dict[str, Any], fields: dict[str, str], staged: Staged,
             file_name: str, now: int) -> Preview:
    """Every check of a submit, nothing created (``BadRequest``, ``NotFound``, ``Conflict``
    ``insufficient_credits``... as the API answers them): the form's fields checked as
    ``POST /workloads`` checks its body, the file as ``userclient submit`` checks it, the
    team, timeslot and credits as the workload store does when it creates and queues it."""
    caller = user_principal_of(user)
    body = {"Device": fields.get("device") or None, "Priority": fields.get("priority") or None,
            "Team": fields.get("team") or None, "Timeslot": fields.get("timeslot") or None,
            "Name": (fields.get("name") or "").strip() or None}
    device_id = field(body, "Device", str, required=True, max_len=100)
    priority = field(body, "Priority", str, default="MEDIUM",
                     choices=tuple(policy.PRIORITY_RANK))
    team_ref = field(body, "Team", str, max_len=100)
    booking_id = field(body, "Timeslot", str, max_len=100)
    name = field(body, "Name", str, max_len=200)
    device = svc.identities.require_device(device_id)
    slot = (_timeslot(svc, caller, booking_id, device_id, team_ref, now)
            if booking_id is not None else None)
    if slot is not None:
        team_ref = slot["team_id"]
    programs, firmware, warnings = _check_file(svc, staged, file_name, device)
    seconds = estimates.workload_seconds(staged.path)
    with svc.workloads.db.transaction() as conn:  # reads and row locks only: nothing written
        team = submit_team(conn, caller.id, team_ref, timeslot=slot is not None, now=now)
        if slot is not None and team is not None:
            require_slot(conn, team, device_id, now)
        row = {"work_id": None, "device_id": device_id, "timeslot": int(slot is not None),
               "session_id": None, "max_seconds": None,
               "team_id": team["team_id"] if team is not None else None}
        check_cover(conn, row, seconds, now)
        on = accounting_on(conn)
        price = prices_at(conn, device_id, now).per_used_second
    cost = (round(seconds * price, 6) if on and seconds is not None and team is not None
            and slot is None else None)
    position, start = _queue_place(svc, device_id, priority, seconds, now)
    return Preview(device, priority, name, team, slot, programs, firmware, warnings, seconds,
                   cost, on, position, start)


def _queue_place(svc: Service, device_id: str, priority: str, seconds: float | None,
                 now: int) -> tuple[int, policy.StartEstimate]:
    """Where the work would stand in its device's queue if queued now, and when it may
    start (the stock queue order; the facility's rules may hold it longer): the device's
    active work is read, as ``GET /workloads/{id}`` reads it."""
    active = svc.workloads.active_for_device(device_id)
    last = max((r["ready_seq"] or 0 for r in active), default=0)
    new = {"work_id": "", "device_id": device_id, "status": "READY", "priority": priority,
           "ready_seq": last + 1, "estimated_seconds": seconds, "started_at": None}
    rows = [*active, new]
    return (policy.queue_position(rows, "") or 1), views.start_estimate(svc, new, rows, now)


# -- submit: check and hold ----------------------------------------------------------------
async def submit(request: Request) -> Response:
    """``POST /portal/submit`` (multipart: file, device, priority, team, timeslot, name,
    csrf): every check, then the preview page with the upload held (nothing created); a
    refusal shows the form again with why."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    if not origin_ok(request.headers.get("origin"), own_origin(request)):
        return refused(request, session)
    svc = service(request)
    try:
        fields, staged, file_name = await _read_upload(request)
    except QueueError as exc:  # too large, too slow, not a form
        return await _form(request, session, status=exc.status or 400, error=exc.message)
    try:
        if not tokens_match(session.csrf_token, fields.get("csrf")):
            return refused(request, session)
        chosen = {k: fields.get(k, "") for k in ("device", "priority", "team", "timeslot",
                                                  "name")}
        if staged is None:
            return await _form(request, session, status=400, chosen=chosen,
                               error="choose a workload file (the .json.gz file "
                                     "WorkloadManager.write() made)")
        now = now_ms()
        try:
            preview = await call(_preview, svc, session.user, fields, staged, file_name, now)
            held = await call(UploadStore(svc.workloads.db, svc.files).stage, staged,
                              session_hash=session.token_hash,
                              user_id=session.user["user_id"],
                              device_id=preview.device["device_id"],
                              priority=preview.priority,
                              team_id=preview.team["team_id"] if preview.team else None,
                              timeslot=preview.timeslot is not None,
                              workload_name=preview.name, file_name=file_name, now=now)
        except QueueError as exc:
            return await _form(request, session, status=exc.status or 400, chosen=chosen,
                               error=exc.message)
        return page(request, "submit_preview.html",
                    {"preview": preview, "upload": held, "file_name": file_name,
                     "size": staged.size}, session=session)
    finally:
        if staged is not None:
            svc.files.discard(staged)  # nothing once it is held in the store


# -- confirm: create ---------------------------------------------------------------------
def _fingerprint(row: dict[str, Any]) -> str:
    """The idempotency fingerprint of an upload's workload (its token is the key)."""
    return hashlib.sha256(json.dumps(
        [row["device_id"], row["priority"], row["workload_name"], row["sha256"],
         row["team_id"], row["timeslot"]]).encode()).hexdigest()


def _create(svc: Service, user: dict[str, Any], row: dict[str, Any],
            now: int) -> tuple[str, str | None]:
    """The workload of a held upload, created as ``POST /workloads`` creates it and its
    file put in place as its upload does; a second confirm finds the same workload.
    Answers (WorkId, the device whose queue changed or None)."""
    uploads = UploadStore(svc.workloads.db, svc.files)
    if row["work_id"] is not None:
        return row["work_id"], None
    timeslot = bool(row["timeslot"])
    work, _created = svc.workloads.create(
        account_id=user["user_id"], device_id=row["device_id"], priority=row["priority"],
        user_given_name=user.get("full_name") or None, workload_name=row["workload_name"],
        sha256=row["sha256"], now=now, idempotency_key=f"portal-upload:{row['upload_id']}",
        body_hash=_fingerprint(row),
        charging=Charging(row["team_id"], None, timeslot, "wait" if timeslot else None))
    work_id = work["work_id"]
    changed = None
    if not work["has_workload"]:
        try:
            staged = uploads.fetch(row)
        except NotFound:  # a confirm of the same upload, at once, put it in place already
            staged = None
        if staged is not None:
            try:
                changed = arrive(svc, staged, f"workloads/{work_id}", "workloads", work_id)
            finally:
                svc.files.discard(staged)
    with contextlib.suppress(StorageUnavailable):  # the sweep removes it later
        uploads.confirmed(row["upload_id"], work_id)
    return work_id, changed


async def confirm(request: Request) -> Response:
    """``POST /portal/submit/confirm`` (upload, csrf): the held upload becomes a workload;
    on to its page."""
    answer = await posted(request)
    if isinstance(answer, Response):
        return answer
    session, form = answer
    svc = service(request)
    try:
        row = await call(UploadStore(svc.workloads.db, svc.files).pending,
                         form.get("upload", ""), session.token_hash, now_ms())
        work_id, changed = await call(_create, svc, session.user, row, now_ms())
    except QueueError as exc:
        return await _form(request, session, status=exc.status or 400, error=exc.message)
    if changed is not None:
        await svc.queue_changed(changed)
    return redirect(f"/portal/workloads/{work_id}")


def duration_text(seconds: float | None) -> str:
    """``1.23 s``, ``12.3 ms``, ``4.5 min``: three significant digits in a readable unit."""
    if seconds is None:
        return "unknown"
    for unit, scale in (("h", 3600.0), ("min", 60.0), ("s", 1.0), ("ms", 1e-3),
                        ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


templates.env.filters["duration"] = duration_text


def routes() -> list[BaseRoute]:
    return [
        Route("/portal/submit", submit_page, methods=["GET"]),
        Route("/portal/submit", submit, methods=["POST"]),
        Route("/portal/submit/confirm", confirm, methods=["POST"]),
    ]
