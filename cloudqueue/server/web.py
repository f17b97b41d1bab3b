"""HTTP helpers shared by the routes: the service object, errors, JSON bodies, the caller."""
from __future__ import annotations

import json
import logging
import time
import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cloudqueue.errors import AuthError, BadRequest, Forbidden, QueueError
from cloudqueue.server.files import FileStore, TooLarge
from cloudqueue.server.identities import API_KEY_PREFIX, IdentityStore, Principal
from cloudqueue.server.notify import Notifier
from cloudqueue.server.settings import Limits
from cloudqueue.server.tokens import Signer
from cloudqueue.server.workloads import WorkloadStore

log = logging.getLogger("qick_queue")
T = TypeVar("T")
_MISSING = object()


def now_ms() -> int:
    return int(time.time() * 1000)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (short, sync) store call off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


@dataclass
class Service:
    """Everything a request handler needs; one per running service (``app.state.service``)."""

    limits: Limits
    identities: IdentityStore
    workloads: WorkloadStore
    files: FileStore
    signer: Signer
    notifier: Notifier
    #: wakes users long-polling a workload (``GET /workloads/{id}?WaitSeconds=``), per device
    watchers: Notifier
    prefix: str = ""
    public_url: str | None = None
    #: the supervisor of the mock devices' workers (``mockfleet.MockFleet``), once serving
    fleet: Any = None
    #: HTTP answers by status class, for ``/metrics`` (``health.RequestCounter``)
    requests: Counter = dataclasses.field(default_factory=Counter)
    #: when this process started (unix time), for ``/metrics``
    started_at: float = dataclasses.field(default_factory=time.time)

    def root_url(self, request: Request) -> str:
        """The service root that presigned URLs start with (never under the API prefix)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        return f"{request.url.scheme}://{host}"

    async def queue_changed(self, device_id: str, *, devices: bool = True) -> None:
        """Something changed in this device's queue: wake the users waiting on one of its
        workloads and (unless ``devices`` is False: nothing for it to pick up) the device's
        own long poll for work."""
        if devices:
            await self.notifier.notify(device_id)
        await self.watchers.notify(device_id)

    async def close_waits(self) -> None:
        """The service is stopping: every long poll answers now."""
        await self.notifier.close()
        await self.watchers.close()

    def presign(self, request: Request, method: str, key: str) -> str:
        return self.signer.presign(self.root_url(request), method, key,
                                   self.limits.url_lifetime_seconds)


def service(request: Request) -> Service:
    return request.app.state.service


# -- errors ------------------------------------------------------------------------------
def error_response(exc: QueueError) -> JSONResponse:
    """``{ErrorMessage, ErrorKind}`` with the error's status; the stock gateway's own keys
    (``message`` on 401, ``Message`` on 403) are added so stock clients read them too."""
    status = exc.status or 500
    body: dict[str, Any] = {"ErrorMessage": exc.message, "ErrorKind": exc.kind}
    if status == 401:
        body["message"] = "Unauthorized"
    elif status == 403:
        body["Message"] = exc.message
    return JSONResponse(body, status_code=status)


def forbidden_unless(condition: bool, message: str) -> None:
    if not condition:
        raise Forbidden(message)


# -- JSON bodies -------------------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes (413 beyond, checked while reading)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The body as a JSON object; 400 ``invalid_json`` for anything else."""
    raw = await read_body(request, service(request).limits.max_json_bytes)
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequest("the request needs a JSON object body", kind="invalid_json")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON ({exc})",
                         kind="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", kind="invalid_json")
    return data


def field(body: dict, name: str, kind: type | tuple, *, required: bool = False,
          default: Any = None, choices: tuple | None = None, max_len: int | None = None) -> Any:
    """One field of a JSON body, type-checked (bool is not an int). Unknown fields are ignored."""
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise BadRequest(f"the field {name} is required")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(k.__name__.replace("str", "a string").replace("int", "an integer")
                            .replace("float", "a number").replace("bool", "true/false")
                            .replace("dict", "an object").replace("list", "a list")
                            for k in kinds)
        raise BadRequest(f"the field {name} must be {names}, not {json.dumps(value)[:60]}")
    if choices is not None and value not in choices:
        raise BadRequest(f"the field {name} must be one of {', '.join(map(str, choices))}, "
                         f"not {json.dumps(value)[:60]}")
    if max_len is not None and isinstance(value, str) and len(value) > max_len:
        raise BadRequest(f"the field {name} is longer than {max_len} characters")
    return value


def wait_seconds(request: Request) -> float:
    """``?WaitSeconds=N`` of a long poll (0 when absent), at most ``max_wait_seconds``."""
    raw = request.query_params.get("WaitSeconds")
    if raw is None or raw == "":
        return 0.0
    limit = service(request).limits.max_wait_seconds
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"WaitSeconds must be a number of seconds (0..{limit})") from None
    if not 0 <= value <= limit:  # also refuses nan
        raise BadRequest(f"WaitSeconds must be between 0 and {limit}")
    return value


def sha256_field(body: dict) -> str | None:
    value = field(body, "ContentSHA256", str)
    if value is None:
        return None
    value = value.lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise BadRequest("ContentSHA256 must be 64 hexadecimal characters (a SHA-256 digest)")
    return value


# -- the caller --------------------------------------------------------------------------
async def principal(request: Request) -> Principal:
    """Who sent this request: an API key or one of our JWTs, ``Bearer`` prefix optional."""
    header = request.headers.get("authorization", "").strip()
    if not header:
        raise AuthError("no credentials: send Authorization: Bearer <API key or token>")
    token = header[7:].strip() if header[:7].lower() == "bearer " else header
    svc = service(request)
    if token.startswith(API_KEY_PREFIX):
        who = await call(svc.identities.by_api_key, token)
        if who is None:
            raise Forbidden("this API key is not valid: check the api_key in your config",
                            kind="unauthorized")
        return who
    try:
        claims = svc.signer.verify(token)
    except AuthError as exc:
        raise Forbidden(exc.message, kind="unauthorized") from None
    if claims.get("token_use") not in ("access", "id"):
        raise Forbidden("this token is not an access or ID token", kind="unauthorized")
    if "scope" in claims:  # a device's client-credentials token
        device = await call(svc.identities.device, claims["sub"])
        if device is None or device["client_id"] != claims.get("client_id"):
            raise Forbidden("this device no longer exists", kind="unauthorized")
        return Principal("device", device["device_id"])
    who = await call(svc.identities.user_principal, claims["sub"])
    if who is None:
        raise Forbidden("this user no longer exists", kind="unauthorized")
    return who


async def user(request: Request) -> Principal:
    who = await principal(request)
    forbidden_unless(who.is_user, "this path is for users, not devices")
    return who


async def admin(request: Request) -> Principal:
    who = await principal(request)
    forbidden_unless(who.is_admin, "only an admin (group Admin) may do this")
    return who


async def the_device(request: Request, device_id: str) -> Principal:
    """The device itself, and only it, on its own paths (a user is refused too)."""
    who = await principal(request)
    forbidden_unless(who.kind == "device", "only the device itself may call this path")
    forbidden_unless(who.id == device_id, "a device may only call its own paths")
    return who


def json_ok(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)
