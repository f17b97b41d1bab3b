"""The portal's workloads section (slice 3 of docs/portal.md): my workloads and my teams',
filtered and paged; one workload's facts, kept live by ``static/portal.js`` reading
``/portal/api/workloads/{WorkId}``; cancel; the workload's file and its results as
downloads; a quick look at the results (``quicklook``), drawn on the server as SVG.

Who sees what is the API's rule (``routes_workloads``): the owner and admins see a
workload whole (cancel, files, results); a member of the team it is charged to sees it as
``GET /workloads?Team=`` shows the team's queue (its facts, never its files or results);
anyone else is told there is no such workload (404), whether it exists or not.

Reads are bounded: a page is at most ``PAGE_SIZE`` rows read through the indexes that
order workloads newest first (one query per team, merged), and the queue position and
the estimated start are worked out for the rows of the page only, once per device.
"""
from __future__ import annotations

import heapq
import io
import logging
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cloudqueue.errors import BadRequest, NotFound, QueueError
from cloudqueue.models import WorkStatus
from queueservice import policy, views
from queueservice.httpedge import Service, call, now_ms, service
from queueservice.identities import Principal, user_principal_of
from queueservice.portal.sessions import PortalSession
from queueservice.portal.web import HEADERS, not_found, page, posted, redirect, session_of
from queueservice.pricing import PriceStore
from queueservice.teams import TeamStore

log = logging.getLogger("qick_queue")
Row = dict[str, Any]
PAGE_SIZE = 50
#: the last page one may ask for (50 a page: the newest 10,000 workloads of a filter)
MAX_PAGE = 200
#: the teams whose work the team scope merges (a person is in a few)
MAX_TEAMS = 20
#: the largest results file the quick look reads (a larger one: download it)
QUICK_LOOK_BYTES = 16 * 1024 * 1024
#: the programs the quick look's table lists (the plot draws up to quicklook's caps)
TABLE_PROGRAMS = 50
DAY_MS = 86_400_000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
SCOPES = {"mine": "Mine", "team": "My teams'"}
MISSING = ("No workload {work_id} of yours or your teams': check the link, or find it in "
           "the list of your workloads.")


# -- what is shown of a workload ---------------------------------------------------------
def _seconds(value: Any) -> str:
    seconds = policy.run_time(value)
    return "" if seconds is None else f"{seconds:.1f} s"


def _cost(body: dict) -> str:
    if body.get("Cost") is not None:
        return f"{body['Cost']:g}" + (" (refunded: the board failed)"
                                     if body.get("CostRefunded") else "")
    if body.get("EstimatedCost") is not None:
        return f"about {body['EstimatedCost']:g} (estimate)"
    return ""


def _position(value: int | None) -> str:
    if value is None:
        return ""
    return "on the board" if value == 0 else str(value)


def facts(body: dict) -> dict[str, Any]:
    """What the portal shows of a workload, from a body shaped as ``GET /workloads/{id}``
    answers it: every value a string (empty: nothing to show). The pages render it and
    ``/portal/api/workloads/{id}`` answers it, so the script updates the same texts."""
    status = body["WorkStatus"]
    waiting = body.get("Waiting")
    reason = ""
    if waiting:
        reason = f"{waiting.get('Rule')}: {waiting.get('Message')}" + (
            f" (until {waiting['Until']})" if waiting.get("Until") else "")
    elif body.get("QueueReason"):
        reason = body["QueueReason"]
    elif body.get("CancelRequested") and status not in policy.TERMINAL:
        reason = "cancel requested: the board stops it"
    progress = body.get("Progress")
    start = body.get("EstimatedStartAt") or body.get("EstimatedStartReason") or ""
    error = body.get("ErrorMessage") or ""
    if error and body.get("ErrorKind"):
        error = f"{body['ErrorKind']}: {error}"
    return {
        "WorkId": body["WorkId"],
        "Name": body.get("WorkloadName") or "",
        "Device": body.get("DeviceId") or "",
        "Priority": body.get("Priority") or "",
        "State": "WAITING" if waiting else status,
        "StateReason": reason,
        "Finished": status in policy.TERMINAL,
        "QueuePosition": _position(body.get("QueuePosition")),
        "EstimatedStart": start if status == "READY" else "",
        "Progress": (f"{progress['ProgramsDone']} / {progress['ProgramsTotal']} programs"
                     if progress else ""),
        "Attempts": str(body.get("Attempts") or 0),
        "BoardTime": _seconds(body.get("DeviceSeconds")),
        "Cost": _cost(body),
        "Error": error,
        "Created": body.get("CreatedAt") or "",
        "Started": body.get("StartedAt") or "",
        "Ended": body.get("FinishedAt") or "",
    }


# -- the list: filters, one page, the page's queue facts ---------------------------------
def _day(raw: str, label: str) -> int | None:
    """A ``YYYY-MM-DD`` UTC date as ms since the epoch (None: not given)."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError(raw)
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{label} must be a date as YYYY-MM-DD (UTC), like 2026-05-01; "
                         f"not {raw[:40]!r}") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)


def filters_of(query: Any) -> dict[str, Any]:
    """The list's filters from the query string (BadRequest saying what was wrong)."""
    state = query.get("state", "")
    if state and state not in WorkStatus.__members__:
        raise BadRequest(f"State must be one of {', '.join(WorkStatus.__members__)} (or any)")
    scope = query.get("scope") or "mine"
    if scope not in SCOPES:
        raise BadRequest("Whose must be mine or team")
    device = query.get("device", "").strip()
    if len(device) > 100:
        raise BadRequest("Device must be a DeviceId (at most 100 characters)")
    raw_page = query.get("page") or "1"
    if not raw_page.isdigit() or not 1 <= int(raw_page) <= MAX_PAGE:
        raise BadRequest(f"page must be a number from 1 to {MAX_PAGE}: narrow the filters "
                         "to reach older work")
    since, until = _day(query.get("since", ""), "From"), _day(query.get("until", ""), "To")
    if since is not None and until is not None and until < since:
        raise BadRequest("To is before From: give the earlier date in From")
    return {"device": device, "state": state, "scope": scope, "page": int(raw_page),
            "since": query.get("since", "").strip() if since is not None else "",
            "until": query.get("until", "").strip() if until is not None else "",
            "since_ms": since, "until_ms": None if until is None else until + DAY_MS}


def _newest_keys(svc: Service, column: str, value: str, f: dict,
                 limit: int) -> list[tuple[int, str]]:
    """The (created_at, work_id) of the newest ``limit`` workloads with ``column = value``
    and the filters, read through the index that starts with that column and orders by
    (created_at, work_id) (the keys only: the pages skipped are not read whole)."""
    where, args = [f"{column} = ?"], [value]
    for name, given in (("device_id", f["device"]), ("status", f["state"])):
        if given:
            where.append(f"{name} = ?")
            args.append(given)
    if f["since_ms"] is not None:
        where.append("created_at >= ?")
        args.append(f["since_ms"])
    if f["until_ms"] is not None:
        where.append("created_at < ?")
        args.append(f["until_ms"])
    sql = ("SELECT created_at, work_id FROM workloads WHERE " + " AND ".join(where)
           + " ORDER BY created_at DESC, work_id DESC LIMIT ?")
    with svc.workloads.db.reading() as conn:
        return [(r[0], r[1]) for r in conn.execute(sql, (*args, limit)).fetchall()]


def _member_teams(svc: Service, who: Principal) -> list[Row]:
    """The teams whose queue the caller sees as a member (``GET /workloads?Team=``)."""
    member = replace(who, groups=())  # an admin too: the teams they are a member of
    return TeamStore(svc.identities.db).teams(member)[:MAX_TEAMS]


def page_rows(svc: Service, who: Principal, f: dict) -> tuple[list[Row], bool]:
    """One page of the list, newest first, and whether another page follows."""
    want = f["page"] * PAGE_SIZE + 1  # this page and one more row: is there a next page?
    if f["scope"] == "mine":
        keys = _newest_keys(svc, "account_id", who.id, f, want)
    else:
        per_team = [_newest_keys(svc, "team_id", t["team_id"], f, want)
                    for t in _member_teams(svc, who)]
        keys = list(heapq.merge(*per_team, reverse=True))[:want]
    shown = [work_id for _, work_id in keys[(f["page"] - 1) * PAGE_SIZE:f["page"] * PAGE_SIZE]]
    if not shown:
        return [], False
    with svc.workloads.db.reading() as conn:
        found = {r["work_id"]: dict(r) for r in conn.execute(
            f"SELECT * FROM workloads WHERE work_id IN ({', '.join('?' for _ in shown)})",
            shown).fetchall()}
    return [found[w] for w in shown if w in found], len(keys) > f["page"] * PAGE_SIZE


class _Once:
    """A device's situation whose pick and forecast are worked out once for a whole page
    (``views.facility_queue`` asks them for each READY workload)."""

    def __init__(self, sit: Any):
        self.sit, self._decision, self._forecasts = sit, None, {}

    def decide(self) -> Any:
        if self._decision is None:
            self._decision = self.sit.decide()
        return self._decision

    def forecast(self, free_at: int | None = None) -> Any:
        if free_at not in self._forecasts:
            self._forecasts[free_at] = self.sit.forecast(free_at=free_at)
        return self._forecasts[free_at]


@dataclass
class _Queue:
    """One device's queue, worked out once for a page: every queued workload's position
    and stock-order start in one pass (what ``policy.queue_position`` and
    ``views.start_estimate`` answer one workload at a time), and the facility's
    situation when its rules apply (None: the stock order)."""

    active: list[Row]
    fallback: float
    positions: dict[str, int]
    starts: dict[str, policy.StartEstimate]
    sit: _Once | None


def _queue(svc: Service, device_id: str, now: int) -> _Queue:
    active = svc.workloads.active_for_device(device_id)
    order = policy.queue_order(active)
    fallback = svc.workloads.run_estimate_seconds(device_id)
    first = next((r for r in order if r["status"] == "READY"), None)
    # the device's state decides for all its queue: offline or in ERROR, no estimate
    # (asked of views.start_estimate with the first READY workload alone, so the rule
    # stays the API's)
    held = views.start_estimate(svc, first, [first], now, fallback).reason if first else None
    positions, starts, ready, ahead = {}, {}, 0, 0.0
    for r in order:
        if r["status"] == "READY":
            ready += 1
            positions[r["work_id"]] = ready
            starts[r["work_id"]] = policy.StartEstimate(None, held) if held else \
                policy.StartEstimate(int(now + ahead * 1000))
        else:
            positions[r["work_id"]] = 0
        ahead += policy.remaining_seconds(r, now, fallback)
    sit = svc.workloads.waiting(device_id, now, active, fallback) if first else None
    return _Queue(active, fallback, positions, starts, _Once(sit) if sit is not None else None)


def _list_body(svc: Service, row: Row, now: int, queues: dict[str, _Queue]) -> dict:
    """A row of the list as ``GET /workloads/{id}`` shapes it, its queue facts worked out
    only when it is in a queue (its device's queue read once for the page)."""
    body = {**views.workload_item(row), "Attempts": row["attempts"],
            "DeviceSeconds": row["device_seconds"], "ErrorMessage": row["error_message"],
            "ErrorKind": row["error_kind"], "CancelRequested": bool(row["cancel_requested"]),
            "FinishedAt": policy.iso(row["finished_at"]),
            "StartedAt": policy.iso(row["started_at"])}
    progress = policy.progress_view(row["status"], row["programs_done"],
                                    row["programs_total"])
    if progress:
        body["Progress"] = progress
    body.update(PriceStore(svc.identities.db).cost_fields(row, now))
    if row["status"] not in policy.ACTIVE:
        return body
    if row["device_id"] not in queues:
        queues[row["device_id"]] = _queue(svc, row["device_id"], now)
    queue, work_id = queues[row["device_id"]], row["work_id"]
    stock = queue.starts.get(work_id, policy.StartEstimate(None))
    if row["status"] != "READY" or queue.sit is None:
        body["QueuePosition"], start, ruled = queue.positions.get(work_id), stock, {}
    else:
        body["QueuePosition"], start, ruled = views.facility_queue(
            svc, row, queue.active, now, queue.sit, fallback=queue.fallback, stock=stock)
    body["EstimatedStartAt"] = policy.iso(start.at)
    if start.reason:
        body["EstimatedStartReason"] = start.reason
    body.update(ruled)
    return body


def list_facts(svc: Service, rows: list[Row]) -> list[dict]:
    """The facts of a page's rows. It reads the database: call it in the thread pool."""
    now, queues = now_ms(), {}
    return [facts(_list_body(svc, r, now, queues)) for r in rows]


def _link(f: dict, page_number: int) -> str:
    query = {k: f[k] for k in ("device", "state", "since", "until", "scope") if f[k]}
    if query.get("scope") == "mine":
        del query["scope"]
    return "/portal/workloads?" + urlencode({**query, "page": page_number})


async def list_page(request: Request) -> Response:
    """``GET /portal/workloads?device=&state=&since=&until=&scope=mine|team&page=N``."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    svc = service(request)
    who = user_principal_of(session.user)
    devices = await call(svc.identities.devices)
    context: dict[str, Any] = {"devices": devices,
                               "device_names": {d["device_id"]: d["name"] for d in devices},
                               "states": list(WorkStatus.__members__),
                               "scopes": SCOPES, "rows": [], "page_size": PAGE_SIZE}
    try:
        f = filters_of(request.query_params)
    except BadRequest as exc:
        blank = {"device": "", "state": "", "scope": "mine", "since": "", "until": ""}
        return page(request, "workloads_list.html",
                    {**context, "f": {**blank, **{k: request.query_params.get(k, "")
                                                  for k in blank}},
                     "error": exc.message}, status=400, session=session)
    rows, more = await call(page_rows, svc, who, f)
    context.update(f=f, rows=await call(list_facts, svc, rows),
                   next_page=_link(f, f["page"] + 1) if more else None,
                   previous_page=_link(f, f["page"] - 1) if f["page"] > 1 else None)
    return page(request, "workloads_list.html", context, session=session)


# -- one workload ------------------------------------------------------------------------
def _access(svc: Service, row: Row | None, who: Principal) -> str | None:
    """How the caller sees a workload: "owner", "admin", "team" (a member of the team it
    is charged to: the team queue's facts), None (not at all: 404)."""
    if row is None:
        return None
    if row["account_id"] == who.id:
        return "owner"
    if who.is_admin:
        return "admin"
    if row["team_id"]:
        try:
            TeamStore(svc.identities.db).team(row["team_id"], who)
            return "team"
        except NotFound:
            return None
    return None


def _seen(svc: Service, work_id: str, who: Principal) -> tuple[Row | None, str | None]:
    row = svc.workloads.get(work_id)
    access = _access(svc, row, who)
    return (row, access) if access else (None, None)


def detail_body(svc: Service, request: Request, row: Row) -> dict:
    """``GET /workloads/{id}``'s body (the API's own reading). Reads the database: call it
    in the thread pool."""
    row = svc.workloads.get(row["work_id"]) or row
    now = now_ms()
    # the device's queue is read only for work in it (else no position, no estimate)
    active = (svc.workloads.active_for_device(row["device_id"])
              if row["status"] in policy.ACTIVE else [])
    body = views.workload_detail(svc, request, row, active, now)
    body.update(PriceStore(svc.identities.db).cost_fields(row, now))
    return body


def quick_look(svc: Service, work_id: str) -> dict[str, Any]:
    """The quick look at a workload's results for the page: ``look`` (None: none) with
    the plot's panels and sizes, or ``look_note`` saying why there is none. Reads the
    results file (at most ``QUICK_LOOK_BYTES``): call it in the thread pool.

    qickwork's reader and the quick look's math import numpy and h5py: imported here, on
    the first quick look, so that the web process does not load them otherwise (as
    ``estimates`` does; tests/test_layout.py)."""
    try:
        from qickwork.errors import InvalidResults
        from qickwork.results import read_results
        from queueservice.portal import quicklook
    except ImportError as exc:  # a service installed without qickwork's numpy/h5py
        log.debug("no quick look at results: %s", exc)
        return {"look": None, "look_note": "This service cannot read results files "
                                           "(numpy and h5py are not installed): download "
                                           "them to look at them."}
    key = f"results/{work_id}"
    size = svc.files.size(key)
    if size is None:
        return {"look": None, "look_note": "The results file is not there."}
    if size > QUICK_LOOK_BYTES:
        return {"look": None, "look_note": (
            f"The results file is {size / 1e6:.1f} MB, more than the quick look reads "
            f"({QUICK_LOOK_BYTES / 1e6:.0f} MB): download it.")}
    try:
        results = read_results(io.BytesIO(svc.files.read_bytes(key) or b""))
    except (OSError, InvalidResults, KeyError, ValueError) as exc:
        return {"look": None, "look_note": (
            f"The results file cannot be read as a results file ({str(exc)[:200]}): "
            "download it to look at it.")}
    found = quicklook.look(results)
    if not found.programs:
        return {"look": None, "look_note": "The results file holds no program's data."}
    return {"look": found, "look_note": "",
            "panels": quicklook.panels(found.plot) if found.plot else (),
            "plot_width": quicklook.WIDTH, "plot_height": quicklook.height(),
            "plot_left": quicklook.MARGIN_LEFT,
            "plot_right": quicklook.WIDTH - quicklook.MARGIN_RIGHT,
            "panel_height": quicklook.PANEL_HEIGHT, "table_programs": TABLE_PROGRAMS}


def _not_found(request: Request, session: PortalSession, work_id: str) -> Response:
    return not_found(request, session, "Workload not found",
                     MISSING.format(work_id=work_id[:100]), ("/portal/workloads", "My workloads"))


async def _detail_page(request: Request, session: PortalSession, row: Row, access: str, *,
                       status: int = 200, error: str | None = None) -> Response:
    svc = service(request)
    body = await call(detail_body, svc, request, row)
    shown = facts(body)
    whole = access in ("owner", "admin")
    looked: dict[str, Any] = {"look": None}
    if whole and body.get("WorkloadResultUrl"):
        looked = await call(quick_look, svc, row["work_id"])
    device = await call(svc.identities.device, row["device_id"])
    context = {"w": shown, "access": access, "whole": whole,
               "device_name": device["name"] if device else "(deleted device)",
               "can_cancel": whole and body["WorkStatus"] not in policy.TERMINAL,
               "has_workload": "WorkloadUrl" in body,
               "has_results": "WorkloadResultUrl" in body, **looked, "error": error}
    return page(request, "workloads_detail.html", context, status=status, session=session)


async def detail_page(request: Request) -> Response:
    """``GET /portal/workloads/{WorkId}``."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    work_id = request.path_params["work_id"]
    row, access = await call(_seen, service(request), work_id,
                             user_principal_of(session.user))
    if row is None:
        return _not_found(request, session, work_id)
    return await _detail_page(request, session, row, access)


async def facts_json(request: Request) -> Response:
    """``GET /portal/api/workloads/{WorkId}``: ``facts`` as JSON (the script's poll)."""
    session = await session_of(request)
    if session is None:
        return JSONResponse({"ErrorMessage": "Log in again: your session has ended."},
                            status_code=401, headers=HEADERS)
    svc = service(request)
    work_id = request.path_params["work_id"]
    row, _ = await call(_seen, svc, work_id, user_principal_of(session.user))
    if row is None:
        return JSONResponse({"ErrorMessage": MISSING.format(work_id=work_id[:100])},
                            status_code=404, headers=HEADERS)
    return JSONResponse(facts(await call(detail_body, svc, request, row)), headers=HEADERS)


async def cancel(request: Request) -> Response:
    """``POST /portal/workloads/{WorkId}/cancel`` (csrf): the API's cancel (owner or
    admin; 409 when it is already finished)."""
    answer = await posted(request)
    if isinstance(answer, Response):
        return answer
    session, _ = answer
    svc = service(request)
    work_id = request.path_params["work_id"]
    row, access = await call(_seen, svc, work_id, user_principal_of(session.user))
    if row is None or access == "team":
        return _not_found(request, session, work_id)
    try:
        row = await call(svc.workloads.cancel, work_id, now_ms())
    except QueueError as exc:  # already finished (409)
        return await _detail_page(request, session, row, access, status=exc.status or 400,
                                  error=exc.message)
    await svc.queue_changed(row["device_id"])
    return redirect(f"/portal/workloads/{work_id}")


async def _download(request: Request, kind: str, flag: str, suffix: str) -> Response:
    """A workload's file or its results, streamed from the files store (owner or admin,
    as the API's URLs are given)."""
    session = await session_of(request)
    if session is None:
        return redirect("/login")
    svc = service(request)
    work_id = request.path_params["work_id"]
    row, access = await call(_seen, svc, work_id, user_principal_of(session.user))
    if row is None or access == "team" or not row[flag]:
        return _not_found(request, session, work_id)
    try:
        response = await call(svc.files.response, f"{kind}/{work_id}", f"{work_id}{suffix}",
                              request.headers.get("range"))
    except NotFound:
        return _not_found(request, session, work_id)
    response.headers.update({"Cache-Control": "no-store",
                             "X-Content-Type-Options": "nosniff"})
    return response


async def download_workload(request: Request) -> Response:
    """``GET /portal/workloads/{WorkId}/workload``: the workload file."""
    return await _download(request, "workloads", "has_workload", "-work")


async def download_results(request: Request) -> Response:
    """``GET /portal/workloads/{WorkId}/results``: the results file."""
    return await _download(request, "results", "has_result", "-output")


def routes() -> list[BaseRoute]:
    return [
        Route("/portal/workloads", list_page, methods=["GET"]),
        Route("/portal/workloads/{work_id}", detail_page, methods=["GET"]),
        Route("/portal/workloads/{work_id}/cancel", cancel, methods=["POST"]),
        Route("/portal/workloads/{work_id}/workload", download_workload, methods=["GET"]),
        Route("/portal/workloads/{work_id}/results", download_results, methods=["GET"]),
        Route("/portal/api/workloads/{work_id}", facts_json, methods=["GET"]),
    ]
