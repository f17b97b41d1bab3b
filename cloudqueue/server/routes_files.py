"""Presigned file URLs served by the service itself: ``/files/{key}?Expires=&Signature=``.

A PUT's arrival drives the state as the stock service's S3 events do: a workload file makes
the work READY (again), a results file DONE (or FAILED), a configuration sets the device's
``ConfigurationLastRefreshed``. Nothing changes state unless the whole file arrived, fit the
size limit and matched its announced SHA-256.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from cloudqueue.errors import ChecksumMismatch, NotFound
from cloudqueue.server import estimates
from cloudqueue.server.files import TooLarge, parse_key
from cloudqueue.server.web import Service, body_stream, call, now_ms, service


def _checked_key(request: Request, method: str) -> tuple[str, str, str]:
    key = request.path_params["key"]
    kind, ident = parse_key(key)
    service(request).signer.check_url(method, key, request.query_params.get("Expires"),
                                      request.query_params.get("Signature"))
    return key, kind, ident


def _precheck(svc: Service, kind: str, ident: str) -> str | None:
    """Refuse an upload the state does not allow; answers the announced SHA-256."""
    if kind == "workloads":
        return svc.workloads.check_workload_upload(ident)["workload_sha256"]
    if kind == "results":
        return svc.workloads.check_results_upload(ident)["result_sha256"]
    svc.identities.require_device(ident)
    return None


def _arrive(svc: Service, staged, key: str, kind: str, ident: str) -> str | None:
    """Rename the file into place and apply its state change, as one step under the lock
    (a workload's board time is estimated from the file first, outside the lock).

    Answers the device whose queue changed (to wake its long-polls)."""
    estimate = estimates.workload_seconds(staged.path) if kind == "workloads" else None
    now = now_ms()
    with svc.workloads.db.lock:
        if kind == "workloads":
            svc.workloads.check_workload_upload(ident)
            svc.files.commit(staged, key)
            return svc.workloads.workload_uploaded(ident, now, estimate)["device_id"]
        if kind == "results":
            svc.workloads.check_results_upload(ident)
            svc.files.commit(staged, key)
            return svc.workloads.results_uploaded(ident, now)["device_id"]
        svc.files.commit(staged, key)
        svc.identities.config_uploaded(ident, now)
        return None


async def put_file(request: Request) -> Response:
    svc = service(request)
    key, kind, ident = _checked_key(request, "PUT")
    expected = await call(_precheck, svc, kind, ident)
    limit = svc.limits.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the file ({declared} bytes) is larger than this service's limit of "
                       f"{limit} bytes: make it smaller or ask the admin to raise "
                       "--max-upload-mb")
    staged = await svc.files.stage(body_stream(request), limit)
    try:
        if expected is not None and staged.sha256 != expected:
            raise ChecksumMismatch(
                f"the file's SHA-256 is {staged.sha256}, not the announced {expected}: "
                "it was damaged on the way; upload it again")
        device_id = await call(_arrive, svc, staged, key, kind, ident)
    finally:
        svc.files.discard(staged)  # no-op once committed
    if device_id is not None:
        await svc.queue_changed(device_id)
    return Response(status_code=200, headers={"ETag": f'"{staged.sha256}"'})


async def get_file(request: Request) -> Response:
    svc = service(request)
    key, kind, ident = _checked_key(request, "GET")
    path = svc.files.path(key)
    if not path.is_file():
        raise NotFound(f"the file {key} has not been uploaded")
    suffix = {"workloads": "-work", "results": "-output", "configs": "-config"}[kind]
    return FileResponse(path, media_type="application/octet-stream",
                        filename=f"{ident}{suffix}")
