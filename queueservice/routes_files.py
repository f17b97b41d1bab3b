"""Presigned file URLs served by the service itself: ``/files/{key}?Expires=&Signature=``.

A PUT's arrival drives the state as the stock service's S3 events do: a workload file makes
the work READY, a results file DONE (or FAILED), a configuration sets the device's
``ConfigurationLastRefreshed``. Nothing changes state unless the whole file arrived, fit the
size limit and matched its announced SHA-256.

A workload file is immutable once uploaded (unlike the stock service, where a second upload
set running work back to READY and so ran it twice): the same bytes again are an idempotent
200 that changes nothing (a client retrying a PUT whose answer was lost), other bytes a 409
``immutable_workload_file``. A finished workload's results file sent again with the same
bytes changes nothing either.
"""
from __future__ import annotations

import contextlib

from starlette.requests import Request
from starlette.responses import Response

from cloudqueue.errors import ChecksumMismatch, Conflict, QueueError
from queueservice import estimates, policy
from queueservice.errors import PayloadTooLarge, StorageUnavailable
from queueservice.files import parse_key
from queueservice.httpedge import Service, body_stream, call, now_ms, service


def _checked_key(request: Request, method: str) -> tuple[str, str, str]:
    key = request.path_params["key"]
    kind, ident = parse_key(key)
    service(request).signer.check_url(method, key, request.query_params.get("Expires"),
                                      request.query_params.get("Signature"))
    return key, kind, ident


def _precheck(svc: Service, kind: str, ident: str) -> tuple[str | None, bool]:
    """Refuse an upload the state does not allow; answers the announced SHA-256 and whether
    the file is already there (a workload file: immutable)."""
    if kind == "workloads":
        row = svc.workloads.check_workload_upload(ident)
        return row["workload_sha256"], bool(row["has_workload"])
    if kind == "results":
        row = svc.workloads.get(ident)
        if row is not None and row["status"] == "CANCELLED" and row["has_result"]:
            return row["result_sha256"], True  # its partial results, taken once
        return svc.workloads.check_results_upload(ident)["result_sha256"], False
    svc.identities.require_device(ident)
    return None, False


def _same_as_stored(svc: Service, staged, key: str, ident: str) -> None:
    """A file that cannot change arrived again (a workload file; a cancelled workload's
    partial results): nothing changes when it is the same bytes (a retried PUT whose first
    answer was lost); 409 when it is not. The stored file never changes once there, so it
    is hashed (in chunks) outside the lock."""
    stored = svc.files.sha256(key)
    if stored == staged.sha256:
        return
    if key.startswith("results/"):
        raise Conflict(f"workload {ident} is CANCELLED and already has its partial results "
                       f"(SHA-256 {stored}): it takes no others")
    raise Conflict(f"workload {ident} already has its file (SHA-256 {stored}), and a "
                   f"workload file cannot be replaced (this one's SHA-256 is "
                   f"{staged.sha256}): submit a new workload to run other bytes",
                   kind="immutable_workload_file")


def _finished_results_unchanged(svc: Service, staged, key: str, ident: str) -> bool:
    """Whether this results file is the same bytes finished work already has (an uploader
    retrying a PUT whose answer was lost): then nothing is written or changed."""
    row = svc.workloads.get(ident)
    return (row is not None and row["status"] in policy.TERMINAL and bool(row["has_result"])
            and svc.files.sha256(key) == staged.sha256)


def arrive(svc: Service, staged, key: str, kind: str, ident: str) -> str | None:
    """Put the file in place, then apply its state change: one upload of a key at a time
    (``FileStore.writing`` in this process, ``Database.holding`` across replicas), the
    database's lock held only for the state change, never while the file is written (an
    S3 upload takes a while). A file whose state change is refused (the work ended
    meanwhile) is removed again. A workload's board time is estimated from the staged
    file first.

    Answers the device whose queue changed (to wake its long-polls), None if none did."""
    estimate = estimates.workload_seconds(staged.path) if kind == "workloads" else None
    if kind == "results" and _finished_results_unchanged(svc, staged, key, ident):
        return None
    with svc.files.writing(key), svc.workloads.db.holding(f"file:{key}"):
        if kind == "workloads":
            if svc.workloads.check_workload_upload(ident)["has_workload"]:
                _same_as_stored(svc, staged, key, ident)  # a concurrent first upload was first
                return None
            svc.files.commit(staged, key)
            try:
                return svc.workloads.workload_uploaded(ident, now_ms(), estimate)["device_id"]
            except QueueError:  # it ended meanwhile (cancelled, upload expired): no file
                with contextlib.suppress(StorageUnavailable):
                    svc.files.delete(key)
                raise
        if kind == "results":
            svc.workloads.check_results_upload(ident)
            svc.files.commit(staged, key)
            try:
                return svc.workloads.results_uploaded(ident, now_ms())["device_id"]
            except QueueError:  # it ended meanwhile (cancelled, lease lost): no file
                with contextlib.suppress(StorageUnavailable):
                    svc.files.delete(key)
                raise
        svc.files.commit(staged, key)
        svc.identities.config_uploaded(ident, now_ms())
        return None


async def put_file(request: Request) -> Response:
    svc = service(request)
    key, kind, ident = _checked_key(request, "PUT")
    expected, stored = await call(_precheck, svc, kind, ident)
    limit = svc.limits.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the file ({declared} bytes) is larger than this service's limit of "
                       f"{limit} bytes: make it smaller or ask the admin to raise "
                       "--max-upload-mb")
    staged = await svc.files.stage(body_stream(request), limit)
    try:
        if stored:
            await call(_same_as_stored, svc, staged, key, ident)
            device_id = None
        else:
            if expected is not None and staged.sha256 != expected:
                raise ChecksumMismatch(
                    f"the file's SHA-256 is {staged.sha256}, not the announced {expected}: "
                    "it was damaged on the way; upload it again")
            device_id = await call(arrive, svc, staged, key, kind, ident)
    finally:
        svc.files.discard(staged)  # no-op once committed
    if device_id is not None:
        await svc.queue_changed(device_id)
    return Response(status_code=200, headers={"ETag": f'"{staged.sha256}"'})


async def get_file(request: Request) -> Response:
    svc = service(request)
    key, kind, ident = _checked_key(request, "GET")
    suffix = {"workloads": "-work", "results": "-output", "configs": "-config"}[kind]
    return await call(svc.files.response, key, f"{ident}{suffix}", request.headers.get("range"))
