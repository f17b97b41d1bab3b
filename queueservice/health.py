"""The operators' endpoints of ``qick-queue serve``, as the board daemon has them:

    /healthz   liveness: 200 ``{"ok": true, "detail": "alive"}`` while the process answers.
               On SQLite the database is this process's own file, so it must also answer
               a query within ``DB_TIMEOUT_SECONDS`` (else 503 with why). On PostgreSQL the
               database is shared: its outage is not this replica's fault and restarting
               the replica cannot help, so /healthz stays 200 and /readyz says it
    /readyz    readiness (whether a load balancer should send this replica requests): 200
               while the database answers within ``DB_TIMEOUT_SECONDS``, replicas hear
               each other (the change listener is connected) and the service is not
               stopping; else 503 ``{"ok": false, "detail": why}``
    /metrics   Prometheus text format (version 0.0.4): requests by status class, workloads
               by state, devices by status, long polls held, uptime

Both sit at the service root, beside ``/oauth2/token`` and ``/files`` (never under the API
``--prefix``: a load balancer or Prometheus scrapes the process, not an API stage), and need
no credentials: they reveal counts only (no ids, names or e-mails), like the board's health
endpoint. Whoever must not see even the counts keeps ``--host`` on loopback or filters the
paths in the reverse proxy in front of it.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Iterable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queueservice import policy
from queueservice.httpedge import Service, call, now_ms, service

#: a database that does not answer a trivial query within this is reported unhealthy
DB_TIMEOUT_SECONDS = 2.0
WORK_STATES = ("CREATED", "READY", "EXECUTING", "UPLOADING", "DONE", "FAILED", "CANCELLED")


class RequestCounter:
    """ASGI middleware: counts every HTTP answer by status class (``2xx`` ...) into
    ``counts``. Pure ASGI (no buffering), so long polls and file streams pass untouched."""

    def __init__(self, app: ASGIApp, counts: Counter) -> None:
        self.app, self.counts = app, counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.counts[f"{message['status'] // 100}xx"] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


def _database_answers(svc: Service) -> None:
    with svc.workloads.db.reading() as conn:
        conn.execute("SELECT 1 FROM workloads LIMIT 1").fetchall()


async def _database_problem(svc: Service) -> str | None:
    """Why the database does not serve this process now, or None."""
    try:
        await asyncio.wait_for(call(_database_answers, svc), DB_TIMEOUT_SECONDS)
    except asyncio.TimeoutError:
        return f"the database did not answer within {DB_TIMEOUT_SECONDS:g} s"
    except Exception as exc:  # whatever the driver raises: the answer is "no", and why
        return f"the database failed: {type(exc).__name__}: {exc}"
    return None


async def healthz(request: Request) -> Response:
    """Liveness (see the module's docstring)."""
    svc = service(request)
    problem = None if svc.workloads.db.shared else await _database_problem(svc)
    if problem:
        return JSONResponse({"ok": False, "detail": problem}, 503)
    return JSONResponse({"ok": True, "detail": "alive"})


async def readyz(request: Request) -> Response:
    """Readiness (see the module's docstring)."""
    svc = service(request)
    problem = await _database_problem(svc)
    if problem is None and svc.device_wakeups.closing:
        problem = "the service is stopping"
    if problem is None and svc.listener is not None and not svc.listener.listening:
        problem = "not hearing the other replicas yet (the change listener is reconnecting)"
    if problem:
        return JSONResponse({"ok": False, "detail": problem}, 503)
    return JSONResponse({"ok": True, "detail": "ready"})


def _counts(svc: Service) -> tuple[dict[str, int], dict[str, int]]:
    """Workloads by state and devices by the status users see, read in one go."""
    with svc.workloads.db.reading() as conn:
        work = {r[0]: r[1] for r in conn.execute(
            "SELECT status, COUNT(*) FROM workloads GROUP BY status").fetchall()}
    now = now_ms()
    devices = Counter(policy.device_status(d["reported_status"], d["last_refreshed"],
                                           d["refresh_timeout"], now)
                      for d in svc.identities.devices())
    return work, dict(devices)


def metrics_text(*, requests: Mapping[str, int], workloads: Mapping[str, int],
                 devices: Mapping[str, int], long_polls: Mapping[str, int],
                 started_at: float, version: str) -> str:
    """The Prometheus exposition of the counts given (a pure function: tested alone)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str,
               samples: Iterable[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{name}{{{label}}} {value}" if label else f"{name} {value}")

    metric("qick_queue_info", "gauge", "the running qick-queue version",
           [({"version": version}, 1)])
    metric("qick_queue_start_time_seconds", "gauge", "when this process started (unix time)",
           [({}, round(started_at, 3))])
    metric("qick_queue_requests_total", "counter", "HTTP answers by status class",
           [({"code": c}, requests.get(c, 0)) for c in ("2xx", "3xx", "4xx", "5xx")])
    metric("qick_queue_workloads", "gauge", "workloads by state",
           [({"state": s}, workloads.get(s, 0)) for s in WORK_STATES])
    metric("qick_queue_devices", "gauge", "devices by the status users see",
           [({"status": s}, devices.get(s, 0)) for s in policy.DEVICE_STATUSES])
    metric("qick_queue_long_polls", "gauge", "long polls held now: devices waiting for work, "
           "users waiting on a workload", [({"waiter": k}, long_polls.get(k, 0))
                                           for k in ("device", "workload")])
    return "\n".join(lines) + "\n"


async def metrics(request: Request) -> Response:
    svc = service(request)
    workloads, devices = await call(_counts, svc)
    from queueservice.app import VERSION
    text = metrics_text(requests=svc.requests, workloads=workloads, devices=devices,
                        long_polls={"device": svc.device_wakeups.waiting,
                                    "workload": svc.user_wakeups.waiting},
                        started_at=svc.started_at, version=VERSION)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
