"""The Starlette application: routes, error answers, the housekeeping task."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from cloudqueue.errors import QueueError
from queueservice import (health, openapi, routes_admin, routes_auth, routes_bookings,
                          routes_devices, routes_files, routes_prices, routes_sessions,
                          routes_teams, routes_workloads)
from queueservice.datadir import DataDir, check_shared_secret
from queueservice.db import Database
from queueservice.portal.routes import portal_routes
from queueservice.portal.uploads import UploadStore
from queueservice.errors import DatabaseUnavailable
from queueservice.files import open_files
from queueservice.identities import IdentityStore
from queueservice.sessions import SessionStore
from queueservice.replicas import ChangeListener
from queueservice.wakeups import WakeUps
from queueservice.settings import ServiceLimits
from queueservice.tokens import Signer
from queueservice.httpedge import (MISSING_TOKEN, RefuseNul, Service, call, error_response,
                                   now_ms, service)
from queueservice.workloads import WorkloadStore

log = logging.getLogger("qick_queue")
VERSION = "0.1.0"
FEATURES = ["cancel", "failed-state", "long-poll", "holding", "leases", "sha256", "idempotency",
            "queue-position", "api-keys", "oauth2-token", "cognito-compat", "device-health",
            "page-limit", "progress", "mock-devices", "workload-wait", "admin-lifecycle",
            "teams", "credit-requests", "usage", "calendar", "sessions", "prices",
            "team-queue"]


async def capabilities(request: Request) -> Response:
    return JSONResponse({"Service": "qick-queue", "Version": VERSION, "Features": FEATURES})


#: our own API routes (Part 2), absent under ``--stock-protocol``: (path, method)
OWN_ROUTES = {("/capabilities", "GET"), ("/workloads/{work_id}/cancel", "POST"),
              ("/devices/{device_id}/workloads/{work_id}", "GET")}


def api_routes(*, stock: bool = False) -> list[BaseRoute]:
    """The API's routes; ``stock``: only the stock application's (``--stock-protocol``), so
    that our own paths answer as the stock gateway does (403 ``MISSING_TOKEN``)."""
    d, w = routes_devices, routes_workloads
    routes = [
        Route("/capabilities", capabilities, methods=["GET"]),
        Route("/users", routes_auth.add_user, methods=["POST"]),
        Route("/devices", d.create_device, methods=["POST"]),
        Route("/devices", d.list_devices, methods=["GET"]),
        Route("/devices/{device_id}", d.get_device, methods=["GET"]),
        Route("/devices/{device_id}", d.heartbeat, methods=["PUT"]),
        Route("/devices/{device_id}/workload", d.next_work, methods=["GET"]),
        Route("/devices/{device_id}/workloads/{work_id}", d.work_status, methods=["GET"]),
        Route("/devices/{device_id}/workloads/{work_id}", d.report_work, methods=["PUT"]),
        Route("/workloads", w.submit, methods=["POST"]),
        Route("/workloads", w.list_workloads, methods=["GET"]),
        Route("/workloads/{work_id}", w.get_workload, methods=["GET"]),
        Route("/workloads/{work_id}/cancel", w.cancel, methods=["POST"]),
    ]
    if stock:
        return [r for r in routes if not any((r.path, m) in OWN_ROUTES for m in r.methods or ())]
    return (routes + admin_routes() + team_routes() + calendar_routes() + session_routes()
            + price_routes())


def admin_routes() -> list[BaseRoute]:
    """The admin lifecycle (``routes_admin``): users, API keys, device secret/name/delete."""
    a = routes_admin
    return [
        Route("/users", a.list_users, methods=["GET"]),
        Route("/users/{user}/disable", a.disable_user, methods=["POST"]),
        Route("/users/{user}/enable", a.enable_user, methods=["POST"]),
        Route("/users/{user}/reset-password", a.reset_password, methods=["POST"]),
        Route("/api-keys", a.list_api_keys, methods=["GET"]),
        Route("/api-keys", a.create_api_key, methods=["POST"]),
        Route("/api-keys/{key_id}/revoke", a.revoke_api_key, methods=["POST"]),
        Route("/devices/{device_id}/rotate-secret", a.rotate_secret, methods=["POST"]),
        Route("/devices/{device_id}", a.rename_device, methods=["PATCH"]),
        Route("/devices/{device_id}", a.delete_device, methods=["DELETE"]),
    ]


def team_routes() -> list[BaseRoute]:
    """Teams, roles and the credit ledger (``routes_teams``; issue 12)."""
    t = routes_teams
    return [
        Route("/teams", t.create_team, methods=["POST"]),
        Route("/teams", t.list_teams, methods=["GET"]),
        Route("/teams/{team}/members", t.add_member, methods=["POST"]),
        Route("/teams/{team}/members/{user}", t.change_member, methods=["PUT"]),
        Route("/teams/{team}/members/{user}", t.remove_member, methods=["DELETE"]),
        Route("/teams/{team}/balance", t.balance, methods=["GET"]),
        Route("/teams/{team}/ledger", t.ledger, methods=["GET"]),
        Route("/teams/{team}/grants", t.grant, methods=["POST"]),
        Route("/credits/requests", t.create_request, methods=["POST"]),
        Route("/credits/requests", t.list_requests, methods=["GET"]),
        Route("/credits/requests/{request}", t.get_request, methods=["GET"]),
        Route("/credits/requests/{request}/approve", t.approve_request, methods=["POST"]),
        Route("/credits/requests/{request}/deny", t.deny_request, methods=["POST"]),
        Route("/usage", t.usage_report, methods=["GET"]),
    ]


def calendar_routes() -> list[BaseRoute]:
    """Timeslots, maintenance, windows, the calendar and its feed (``routes_bookings``;
    issue 12)."""
    b = routes_bookings
    return [
        Route("/reservations", b.reserve, methods=["POST"]),
        Route("/reservations", b.list_reservations, methods=["GET"]),
        Route("/reservations/{booking_id}", b.cancel_reservation, methods=["DELETE"]),
        Route("/maintenance", b.add_maintenance, methods=["POST"]),
        Route("/maintenance", b.list_maintenance, methods=["GET"]),
        Route("/maintenance/{booking_id}", b.end_maintenance, methods=["DELETE"]),
        Route("/devices/{device_id}/windows", b.get_windows, methods=["GET"]),
        Route("/devices/{device_id}/windows", b.set_windows, methods=["PUT"]),
        Route("/devices/{device_id}/calendar", b.get_calendar, methods=["GET"]),
        Route("/devices/{device_id}/calendar.ics", b.get_calendar_ics, methods=["GET"]),
        Route("/calendar-feed", b.new_feed, methods=["POST"]),
        Route("/calendar-feed", b.revoke_feed, methods=["DELETE"]),
    ]


def session_routes() -> list[BaseRoute]:
    """Sessions (``routes_sessions``; issue 12 item 6)."""
    s = routes_sessions
    return [
        Route("/sessions", s.open_session, methods=["POST"]),
        Route("/sessions", s.list_sessions, methods=["GET"]),
        Route("/sessions/{session_id}", s.get_session, methods=["GET"]),
        Route("/sessions/{session_id}", s.close_session, methods=["DELETE"]),
    ]


def price_routes() -> list[BaseRoute]:
    """A device's prices (``routes_prices``; issue 12)."""
    p = routes_prices
    return [
        Route("/devices/{device_id}/prices", p.set_prices, methods=["PUT"]),
        Route("/devices/{device_id}/prices", p.get_prices, methods=["GET"]),
    ]


def root_routes() -> list[BaseRoute]:
    return [
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        Route("/openapi.json", openapi.describe, methods=["GET"]),
        Route("/oauth2/token", routes_auth.oauth2_token, methods=["POST"]),
        Route("/", routes_auth.cognito, methods=["POST"]),
        Route("/files/{key:path}", routes_files.put_file, methods=["PUT"]),
        Route("/files/{key:path}", routes_files.get_file, methods=["GET"]),
    ]


async def _queue_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, QueueError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405) and service(request).limits.stock_protocol:
        return JSONResponse(MISSING_TOKEN, status_code=403)
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    message = {404: f"this queue service has no path {request.url.path}: check "
                        "api_endpoint in your config (with its prefix, e.g. /dev)",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(
                   exc.status_code, str(exc.detail))
    return JSONResponse({"ErrorMessage": message, "ErrorKind": kind},
                        status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return JSONResponse({"ErrorMessage": "the service failed on this request; the admin can "
                                         "find the details in its log", "ErrorKind": "internal"},
                        status_code=500)


def housekeep(svc: Service) -> tuple[list[str], list[str], list[str]]:
    """One sweep: leases, timeslots' ends, never-uploaded work, old idempotency keys,
    sessions past their time, the portal's expired uploads. Answers the devices whose
    queue changed: (work back in the queue or asked to stop at its slot's end, a session
    ended, only never-uploaded work ended). Replicas sweep one at a time: the one that
    finds another sweeping skips this round."""
    with svc.workloads.db.exclusive("housekeeping") as mine:
        if not mine:
            return [], [], []
        return _sweep(svc)


def _sweep(svc: Service) -> tuple[list[str], list[str], list[str]]:
    now = now_ms()
    changed = sorted(set(svc.workloads.expire_leases(now)) | set(svc.workloads.end_slots(now)))
    expired = svc.workloads.expire_uploads(now)
    if expired:
        log.info("%d workload(s) never uploaded: FAILED/upload_expired", len(expired))
    svc.workloads.purge_idempotency(now)
    ended = SessionStore(svc.workloads.db).sweep(now)
    UploadStore(svc.workloads.db, svc.files).sweep(now)  # the portal's, unconfirmed
    return (changed, ended,
            sorted({device for _, device in expired} - set(changed) - set(ended)))


async def _housekeeping_loop(svc: Service) -> None:
    interval = svc.limits.housekeeping_interval
    while True:
        try:
            leases, sessions, uploads = await call(housekeep, svc)
            for device_id in leases:
                log.info("lease ended on device %s: its work is back in the queue", device_id)
                await svc.queue_changed(device_id)
            for device_id in sessions:
                log.info("a session on device %s ended (its maximum time or idle limit): "
                         "the device takes everyone's work again", device_id)
                await svc.queue_changed(device_id)
            for device_id in uploads:
                await svc.queue_changed(device_id, devices=False)
        except DatabaseUnavailable as exc:  # it comes back; the next sweep does the work
            log.warning("housekeeping skipped: %s", exc)
        except Exception:  # keep sweeping: one bad sweep must not stop the next
            log.exception("housekeeping failed")
        await asyncio.sleep(interval)


def open_service(data_dir: Path, limits: ServiceLimits, *, prefix: str = "",
                 public_url: str | None = None,
                 files: str | None = None, database: str | None = None
                 ) -> tuple[Service, Database]:
    """``files``: ``s3://bucket/prefix`` for files in S3; None keeps them in the data folder.
    ``database``: a ``postgresql://`` URL holding the state (None: ``queue.db`` in the data
    folder)."""
    data = DataDir(Path(data_dir), database)
    secret = data.read_secret()
    store = open_files(files, data.files_path)
    store.create()  # first: a bucket that cannot be used stops the start, with why
    db = Database(data.database_target)
    check_shared_secret(db, secret, data)
    if db.shared and files is None:
        log.warning("files are kept in this replica's folder %s: other replicas cannot serve "
                    "them; give every replica --files s3://... when there is more than one",
                    data.files_path)
    svc = Service(limits=limits, identities=IdentityStore(db), workloads=WorkloadStore(db, limits),
                  files=store, signer=Signer(secret), device_wakeups=WakeUps(),
                  user_wakeups=WakeUps(), prefix=prefix,
                  public_url=public_url)
    return svc, db


def create_app(data_dir: Path, limits: ServiceLimits | None = None, *, prefix: str = "",
               public_url: str | None = None, files: str | None = None,
               database: str | None = None) -> Starlette:
    """The service as an ASGI app. ``prefix`` (e.g. ``/dev``) puts the API under a path, as
    an API Gateway stage does; token endpoints and files stay at the root. ``files``:
    ``s3://bucket/prefix`` keeps the files in S3 (``queueservice.files``); ``database``: a
    ``postgresql://`` URL holding the state (None: ``queue.db`` in the data folder)."""
    limits = limits or ServiceLimits()
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    svc, db = open_service(data_dir, limits, prefix=prefix, public_url=public_url,
                           files=files, database=database)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_housekeeping_loop(svc))
        if db.shared:
            loop = asyncio.get_running_loop()
            svc.listener = ChangeListener(db, lambda device_id: (
                asyncio.run_coroutine_threadsafe(svc.changed_elsewhere(device_id), loop)))
            svc.listener.start()
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if svc.listener is not None:
                await asyncio.get_running_loop().run_in_executor(None, svc.listener.stop)
            db.close()

    routes: list[BaseRoute] = []
    api = api_routes(stock=limits.stock_protocol)
    if prefix:
        routes.append(Mount(prefix, routes=api))
    else:
        routes.extend(api)
    routes.extend(root_routes())
    if not limits.stock_protocol:  # the web portal (docs/portal.md): after the API's paths
        routes.extend(portal_routes())
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        QueueError: _queue_error, HTTPException: _http_error, Exception: _internal_error})
    app.add_middleware(RefuseNul, stock=limits.stock_protocol)
    app.add_middleware(health.RequestCounter, counts=svc.requests)
    app.state.service = svc
    app.state.version = VERSION
    return app
