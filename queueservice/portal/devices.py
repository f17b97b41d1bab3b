"""The portal's devices (slice 2 of docs/portal.md): the list, each device's page and the
download of its configuration.

- ``GET /portal/devices``: every device a user may use (the list ``GET /devices``
  answers): its status as the API derives it, whether it is a simulated or mock board, its
  queue length (``QueueLength``: its uploading, running and waiting work).
- ``GET /portal/devices/{DeviceId}``: the same facts (``views.device_detail``, as
  ``GET /devices/{id}`` answers them); the configuration the board uploaded, summarised
  (``qickwork.firmware.board_summary``); the next 7 days of its calendar
  (``BookingStore.calendar``: another team's timeslot only as "reserved"); and for an
  admin only, the board's health summary (``Health``, which the API shows admins only).
- ``GET /portal/devices/{DeviceId}/soccfg.json``: the configuration as a download.

A device id that does not exist answers a 404 page. Every page needs a session (else the
login page); any logged-in user may read every device, as with the API.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cloudqueue.errors import NotFound, QueueError
from queueservice import views
from queueservice.bookings import DAY_MS, RESERVED, BookingStore, CalendarView
from queueservice.httpedge import Service, call, now_ms, service
from queueservice.identities import Principal, user_principal_of
from queueservice.portal.sessions import PortalSession
from queueservice.portal.web import HEADERS, not_found, page, redirect, session_of

if TYPE_CHECKING:  # imported when a configuration is shown (see ``configuration``)
    from qickwork.firmware import BoardSummary

log = logging.getLogger("qick_queue")

#: the calendar a device's page shows: from now, this long
CALENDAR_SPAN_MS = 7 * DAY_MS
#: a configuration larger than this is offered as a download only, not summarised
MAX_SUMMARY_BYTES = 2 * 2**20
NOT_JSON = ("The configuration the board uploaded is not a QICK soccfg (JSON) this page "
            "can read: download it to look at it.")
#: the longest text of a health value shown (the heartbeat's summary is bounded already)
MAX_HEALTH_TEXT = 300


def _config_key(device_id: str) -> str:
    return f"configs/{device_id}"


def utc(ms: int | None) -> str:
    """A moment as ``Wed 2026-12-02 18:00`` (UTC; the pages say so)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%a %Y-%m-%d %H:%M")


def board_kind(summary: dict[str, Any]) -> str:
    """``mock`` (a board the service simulates itself), ``simulated`` (a board daemon on a
    simulated board) or ``real``, from a ``GET /devices`` item."""
    if summary.get("Mock"):
        return "mock"
    return "simulated" if summary.get("Simulated") else "real"


def _listed(summary: dict[str, Any], queue_length: int) -> dict[str, Any]:
    return {"id": summary["DeviceId"], "name": summary["DeviceName"],
            "status": summary["DeviceStatus"], "reason": summary.get("StatusReason"),
            "kind": board_kind(summary), "queue_length": queue_length,
            "mock_board": summary.get("MockBoard"), "mirror_of": summary.get("MirrorOf")}


ALL_DEVICES = ("/portal/devices", "All devices")


def _not_found(request: Request, session: PortalSession, device_id: str) -> Response:
    return not_found(request, session, "Device not found", f"There is no device {device_id}.",
                     ALL_DEVICES)


# -- the list ------------------------------------------------------------------------------
def _device_list(svc: Service) -> tuple[list[dict], dict[str, int]]:
    rows = svc.identities.devices()
    return rows, svc.workloads.queue_lengths(r["device_id"] for r in rows)


async def devices_page(request: Request) -> Response:
    """``GET /portal/devices``."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    rows, counts = await call(_device_list, service(request))
    now = now_ms()
    devices = [_listed(views.device_summary(r, now), counts.get(r["device_id"], 0))
               for r in rows]
    return page(request, "devices_list.html", {"devices": devices}, session=session)


# -- one device ----------------------------------------------------------------------------
def configuration(svc: Service, row: dict) -> tuple[BoardSummary | None, str | None]:
    """The summary of the device's uploaded soccfg, or None with why there is none to show
    (None, None: nothing uploaded yet)."""
    if row["config_refreshed"] is None:
        return None, None
    key = _config_key(row["device_id"])
    try:
        size = svc.files.size(key)
        if size is None:
            return None, "The configuration file is missing from the file store."
        if size > MAX_SUMMARY_BYTES:
            return None, (f"The configuration is too large to summarise here ({size} "
                          "bytes): download it to read it.")
        text = svc.files.read_text(key) or ""
    except QueueError as exc:  # the file store is unavailable (S3)
        return None, f"The configuration could not be read now: {exc.message}"
    except ValueError:  # not UTF-8
        return None, NOT_JSON
    try:
        soccfg = json.loads(text)
    except (ValueError, RecursionError):
        return None, NOT_JSON
    if not isinstance(soccfg, dict):
        return None, ("The configuration the board uploaded is not a JSON object (a QICK "
                      "soccfg): download it to read it.")
    try:
        # qickwork's package loads numpy and h5py: the web process imports it only when a
        # configuration is shown (as ``estimates`` does when a workload arrives)
        from qickwork.firmware import board_summary
    except ImportError as exc:  # a service installed without qickwork's numpy/h5py
        log.debug("no configuration summary: %s", exc)
        return None, "This service cannot summarise configurations (qickwork is not installed)."
    try:
        return board_summary(soccfg), None
    except RecursionError:  # nested deeper than a soccfg ever is
        return None, NOT_JSON


def calendar_rows(cal: CalendarView) -> list[dict[str, str]]:
    """The calendar as table rows (start, end, what, detail), earliest first: pay-as-you-go
    windows (none when the shared queue is always open), timeslots (another team's only as
    reserved) and maintenance."""
    rows: list[tuple[int, int, str, str]] = []
    for start, end in cal.windows or ():
        rows.append((start, end, "Pay-as-you-go window", "the shared queue runs"))
    for r in cal.reservations:
        if r["kind"] == RESERVED:
            rows.append((r["start_at"], r["end_at"], "Reserved", "another team's timeslot"))
        else:
            note = f": {r['reason']}" if r.get("reason") else ""
            rows.append((r["start_at"], r["end_at"], "Timeslot",
                         f"team {r.get('team_name') or r['team_id']}{note}"))
    for r in cal.maintenance:
        rows.append((r["start_at"], r["end_at"], "Maintenance", r["reason"] or ""))
    rows.sort(key=lambda item: (item[0], item[1], item[2]))
    return [{"start": utc(s), "end": utc(e), "what": what, "detail": detail}
            for s, e, what, detail in rows]


def _health_text(value: Any) -> str:
    """A health value as text: yes/no, ``key: value, ...`` for an object (its values as
    JSON), cut at ``MAX_HEALTH_TEXT``."""
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, dict):
        text = ", ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v, default=str)}"
                         for k, v in value.items())
    else:
        text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_HEALTH_TEXT else text[:MAX_HEALTH_TEXT - 3] + "..."


def health_view(health: Any) -> dict[str, Any] | None:
    """The heartbeat's health summary (``supervisor.snapshot.health_summary``) as facts and
    a table of the board's processes; any other field the board sent, as text."""
    if not isinstance(health, dict):
        return None
    facts = []
    labels = {"State": "State", "Reason": "Reason", "Simulated": "Simulated board",
              "CurrentWork": "Current work", "Spool": "Spool", "Firmware": "Firmware"}
    for key, label in labels.items():
        if health.get(key) not in (None, "", {}):
            facts.append((label, _health_text(health[key])))
    processes = []
    if isinstance(health.get("Processes"), dict):
        for name, proc in sorted(health["Processes"].items()):
            proc = proc if isinstance(proc, dict) else {}
            processes.append((_health_text(name), _health_text(proc.get("State", "")),
                              _health_text(proc.get("Restarts", ""))))
    for key in sorted(set(health) - set(labels) - {"Processes"}):
        facts.append((_health_text(key), _health_text(health[key])))
    return {"facts": facts, "processes": processes}


def _one_device(svc: Service, device_id: str, caller: Principal) -> dict | None:
    row = svc.identities.device(device_id)
    if row is None:
        return None
    now = now_ms()
    try:
        cal = BookingStore(svc.identities.db).calendar(device_id, now, now + CALENDAR_SPAN_MS,
                                                       caller=caller)
    except NotFound:  # removed meanwhile
        return None
    return {"row": row, "now": now, "calendar": cal, "config": configuration(svc, row),
            "queue_length": svc.workloads.queue_lengths([device_id])[device_id]}


async def device_page(request: Request) -> Response:
    """``GET /portal/devices/{device_id}``."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    who = user_principal_of(session.user)
    device_id = request.path_params["device_id"]
    svc = service(request)
    found = await call(_one_device, svc, device_id, who)
    if found is None:
        return _not_found(request, session, device_id)
    detail = views.device_detail(svc, request, found["row"], found["now"],
                                 with_health=who.is_admin, queue_length=found["queue_length"])
    summary, config_problem = found["config"]
    cal = found["calendar"]
    return page(request, "devices_detail.html", {
        "device": {**_listed(detail, found["queue_length"]),
                   "last_refreshed": utc(found["row"]["last_refreshed"]),
                   "refresh_timeout": detail["RefreshTimeout"],
                   "config_refreshed": utc(found["row"]["config_refreshed"])},
        "summary": summary, "config_problem": config_problem,
        "has_config": found["row"]["config_refreshed"] is not None,
        "calendar": calendar_rows(cal), "always_open": cal.windows is None,
        "calendar_from": utc(cal.start), "calendar_to": utc(cal.end),
        "show_health": who.is_admin,
        "health": health_view(detail.get("Health")) if who.is_admin else None,
    }, session=session)


async def download_configuration(request: Request) -> Response:
    """``GET /portal/devices/{device_id}/soccfg.json``: the configuration the board
    uploaded, as an attachment."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    device_id = request.path_params["device_id"]
    svc = service(request)
    row = await call(svc.identities.device, device_id)
    if row is None:
        return _not_found(request, session, device_id)
    if row["config_refreshed"] is None:
        return not_found(request, session, "No configuration uploaded yet",
                         f"Device {device_id} has not uploaded its configuration (soccfg) "
                         "yet: it does so when its board daemon starts.", ALL_DEVICES)
    try:
        answer = await call(svc.files.response, _config_key(device_id),
                            f"{device_id}-soccfg.json")
    except QueueError as exc:  # the file is gone, or the file store is unavailable
        return not_found(request, session, "Configuration unavailable", exc.message,
                         ALL_DEVICES, status=exc.status or 503)
    answer.headers.update(HEADERS)
    return answer


def routes() -> list[BaseRoute]:
    return [
        Route("/portal/devices", devices_page, methods=["GET"]),
        Route("/portal/devices/{device_id}", device_page, methods=["GET"]),
        Route("/portal/devices/{device_id}/soccfg.json", download_configuration,
              methods=["GET"]),
    ]
