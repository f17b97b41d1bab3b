"""The service's HTTP edge, what every route shares between a request and the stores: the
service object a request reaches, the error answer, reading and checking bodies, fields and
query parameters (sizes, time limits, the stock gateway's models), and who the caller is."""
from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cloudqueue.errors import AuthError, BadRequest, Forbidden, QueueError
from queueservice.clock import now_ms  # noqa: F401 (the routes take it from here)
from queueservice.errors import RequestTimeout, PayloadTooLarge
from queueservice.files import FileStore
from queueservice.identities import (API_KEY_PREFIX, IdentityStore, Principal,
                                         require_enabled, user_principal_of)
from queueservice.wakeups import WakeUps
from queueservice.settings import ServiceLimits
from queueservice.tokens import Signer, revoked
from queueservice.workloads import WorkloadStore

log = logging.getLogger("qick_queue")
T = TypeVar("T")
_MISSING = object()


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (short, sync) store call off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


@dataclass
class Service:
    """Everything a request handler needs; one per running service (``app.state.service``)."""

    limits: ServiceLimits
    identities: IdentityStore
    workloads: WorkloadStore
    files: FileStore
    signer: Signer
    #: wakes devices long-polling for work (``GET /devices/{id}/workload``), per device
    device_wakeups: WakeUps
    #: wakes users long-polling a workload (``GET /workloads/{id}?WaitSeconds=``), per device
    user_wakeups: WakeUps
    prefix: str = ""
    public_url: str | None = None
    #: what runs the mock devices' board daemons (``mockfleet.MockFleet``), once serving
    fleet: Any = None
    #: hears the other replicas' queue changes (``replicas.ChangeListener``); None on SQLite
    listener: Any = None
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
            await self.device_wakeups.notify(device_id)
        await self.user_wakeups.notify(device_id)

    async def changed_elsewhere(self, device_id: str | None) -> None:
        """Another replica changed this device's queue (None: perhaps any device's): wake
        the long polls waiting here; they look again."""
        for wakeups in (self.device_wakeups, self.user_wakeups):
            if device_id is None:
                await wakeups.notify_everyone()
            else:
                await wakeups.notify(device_id)

    async def close_waits(self) -> None:
        """The service is stopping: every long poll answers now."""
        await self.device_wakeups.close()
        await self.user_wakeups.close()

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
    if exc.kind == GATEWAY_MODEL:  # --stock-protocol: the gateway's own answer
        return JSONResponse({"message": "Invalid request body"}, status_code=status)
    if exc.kind == STOCK_HANDLER:  # --stock-protocol: a stock Lambda's catch-all answer
        return JSONResponse({"ErrorMessage": exc.message}, status_code=status)
    body: dict[str, Any] = {"ErrorMessage": exc.message, "ErrorKind": exc.kind}
    if status == 401:
        body["message"] = "Unauthorized"
    elif status == 403:
        body["Message"] = exc.message
    elif status == 408:  # the rest of the body may still be on its way: end the connection
        return JSONResponse(body, status_code=status, headers={"Connection": "close"})
    elif status == 503:  # the database or the file store is away: say when to try again
        return JSONResponse(body, status_code=status, headers={"Retry-After": "2"})
    return JSONResponse(body, status_code=status)


def forbidden_unless(condition: bool, message: str) -> None:
    if not condition:
        raise Forbidden(message)


# -- JSON bodies -------------------------------------------------------------------------
async def _within(awaitable: Awaitable[T], seconds: float) -> T:
    """``awaitable``'s result, or asyncio.TimeoutError after ``seconds`` (asyncio.timeout
    where it exists: wait_for's task per call costs ~15 us)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def _too_slow(seconds: float, what: str = "") -> RequestTimeout:
    return RequestTimeout(f"the request body did not arrive within {seconds:g} s{what}")


async def body_stream(request: Request) -> AsyncIterator[bytes]:
    """``request.stream()`` with at most ``body_timeout_seconds`` between two chunks (a file
    upload: large, but only with a presigned URL); RequestTimeout (408) past it."""
    seconds = service(request).limits.body_timeout_seconds
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await _within(chunks.__anext__(), seconds)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise _too_slow(seconds, " of its previous part") from None
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes (413 beyond, checked while reading), arriving
    whole within ``body_timeout_seconds`` (408 past it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    seconds = service(request).limits.body_timeout_seconds
    try:
        return await _within(_read_all(request, limit), seconds)
    except asyncio.TimeoutError:
        raise _too_slow(seconds) from None


async def _read_all(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


#: ``ErrorKind`` of a body the stock gateway's model refuses (answered as the gateway does)
GATEWAY_MODEL = "gateway_model"
#: ``ErrorKind`` of a stock handler's failure, answered ``500 {ErrorMessage}`` only
STOCK_HANDLER = "stock_handler"


def stock_missing_item(item: str, first_field: str) -> QueueError:
    """Under ``--stock-protocol``: what a stock handler answers for an id with no item. It
    reads the missing DynamoDB item's fields and fails; Node.js (14 and later, the
    application's runtime is nodejs16.x) words the TypeError as below."""
    return QueueError(f"Cannot destructure property '{first_field}' of '{item}' as it is "
                      f"undefined.", kind=STOCK_HANDLER, status=500)


#: The request models of the stock API Gateway (``--stock-protocol`` checks them first):
#: name -> (required fields, {field: (JSON type, allowed values or None)}). Other fields pass.
STOCK_MODELS: dict[str, tuple[tuple[str, ...], dict[str, tuple[type, tuple | None]]]] = {
    "AddUser": (("Email", "FullName"), {"Email": (str, None), "FullName": (str, None)}),
    "AddDevice": (("DeviceName",), {"DeviceName": (str, None), "RefreshTimeout": (int, None)}),
    "UpdateDevice": (("DeviceStatus", "DeviceConfigurationFileExtension"),
                     {"DeviceStatus": (str, ("BUSY", "ONLINE", "OFFLINE"))}),
    "CreateWork": (("DeviceId", "Priority"),
                   {"DeviceId": (str, None), "Priority": (str, ("LOW", "MEDIUM", "HIGH"))}),
}


def check_stock_model(body: Any, model: str) -> None:
    """Refuse, as the stock gateway does (400 ``Invalid request body``), a body that its
    model ``model`` refuses: not an object, a required field missing, a wrong type or value."""
    required, fields = STOCK_MODELS[model]

    def fits(name: str) -> bool:
        kind, allowed = fields[name]
        value = body[name]
        return isinstance(value, kind) and not isinstance(value, bool) and (
            allowed is None or value in allowed)

    if not (isinstance(body, dict) and all(name in body for name in required)
            and all(fits(name) for name in fields if name in body)):
        raise BadRequest("Invalid request body", kind=GATEWAY_MODEL)


#: JSON nested deeper than this is refused (ours is at most a few levels; far deeper JSON
#: would exhaust the parser's recursion and answer a 500)
MAX_JSON_DEPTH = 32


def _problem(data: Any) -> str | None:
    """What makes parsed JSON unfit to keep or store, walked level by level: nesting deeper
    than ``MAX_JSON_DEPTH``, a string (value or key) with a lone UTF-16 surrogate
    (``"\\ud800"``: valid JSON, but no UTF-8 text, so SQLite and every answer would fail),
    or with a NUL (``"\\u0000"``: PostgreSQL's text cannot hold it; refused on SQLite too, so
    both engines answer alike)."""
    level = [data]
    for _ in range(MAX_JSON_DEPTH):
        if any(isinstance(item, str) and not _utf8(item) for item in level):
            return "holds a string that is not Unicode text (a lone \\ud800-\\udfff escape)"
        if any(isinstance(item, str) and "\x00" in item for item in level):
            return "holds a string with a NUL character (\\u0000): remove it"
        level = [v for item in level if isinstance(item, (dict, list))
                 for v in ([*item.keys(), *item.values()] if isinstance(item, dict) else item)]
        if not level:
            return None
    return _TOO_DEEP


_TOO_DEEP = f"is JSON nested more than {MAX_JSON_DEPTH} levels deep: send a flatter document"


class RefuseNul:
    """ASGI middleware: no text in the database can hold a NUL character (PostgreSQL's
    cannot; SQLite's could, so both engines answer alike here, before any route looks a
    value up). A path holding one (``%00``) names nothing: 404, as an unknown path (under
    ``--stock-protocol`` the stock gateway's 403); a query string holding one: 400 (at
    ``/``, the Cognito-compatible login, in Cognito's shape ``{__type, message}``)."""

    def __init__(self, app: Any, *, stock: bool):
        self.app = app
        self.stock = stock

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            answer = None
            if "\x00" in scope["path"]:
                answer = (JSONResponse(MISSING_TOKEN, status_code=403) if self.stock
                          else JSONResponse({"ErrorMessage": "the path holds a NUL character "
                                             "(%00), which no id holds: check the id",
                                             "ErrorKind": "not_found"}, status_code=404))
            elif b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]:
                message = ("the query string holds a NUL character (%00), which no "
                           "parameter may hold: remove it")
                answer = (JSONResponse({"__type": "InvalidParameterException",
                                        "message": message}, status_code=400,
                                       media_type="application/x-amz-json-1.1")
                          if scope["path"] == "/" else error_response(BadRequest(message)))
            if answer is not None:
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


#: what the stock API Gateway answers for a path (or a method on it) it does not know
MISSING_TOKEN = {"message": "Missing Authentication Token"}


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:30]} is out of range")
    return value


def _int64(text: str) -> int:
    value = int(text)
    if not -2 ** 63 <= value < 2 ** 63:
        raise ValueError(f"the number {text[:30]}... is out of range")
    return value


def parse_json(raw: bytes | str, what: str = "the request body") -> Any:
    """JSON from a client: 400 ``invalid_json`` when it is not JSON, not UTF-8, nested
    deeper than ``MAX_JSON_DEPTH``, holds a lone surrogate (``"\\ud800"``) or a number that
    is not a finite double or a 64-bit integer (``NaN``, ``1e999``: stored, they would
    break every later answer). The one place client JSON is checked."""
    try:
        data = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float,
                          parse_int=_int64)
        problem = _problem(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{what} is not valid JSON ({exc})", kind="invalid_json") from None
    except RecursionError:
        problem = _TOO_DEEP
    if problem:
        raise BadRequest(f"{what} {problem}", kind="invalid_json")
    return data


async def read_json(request: Request, *, allow_empty: bool = False,
                    model: str | None = None) -> dict[str, Any]:
    """The body as a JSON object; 400 ``invalid_json`` for anything else. ``model``: the
    stock gateway's model of this request, checked first under ``--stock-protocol``."""
    raw = await read_body(request, service(request).limits.max_json_bytes)
    if model is not None and service(request).limits.stock_protocol:
        try:
            parsed = parse_json(raw) if raw.strip() else None
        except BadRequest:
            parsed = None
        check_stock_model(parsed, model)
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequest("the request needs a JSON object body", kind="invalid_json")
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", kind="invalid_json")
    return data


def field(body: dict, name: str, kind: type | tuple, *, required: bool = False,
          default: Any = None, choices: tuple | None = None, max_len: int | None = None,
          bounds: tuple[float, float] | None = None) -> Any:
    """One field of a JSON body, type-checked (bool is not an int). Unknown fields are
    ignored. ``bounds``: (lowest, highest) of a number (``parse_json`` already refused the
    non-finite ones)."""
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
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise BadRequest(f"the field {name} must be between {bounds[0]} and {bounds[1]}, "
                         f"not {json.dumps(value)[:60]}")
    return value


def query_int(request: Request, name: str, *, default: int, lowest: int, highest: int) -> int:
    """A whole-number query parameter (``default`` when absent or empty): ASCII digits only
    (``str.isdigit`` passes ``²``, which ``int()`` then refuses; ``int()`` takes ``٣``) and
    short (``int()`` of thousands of digits fails)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18
            and lowest <= int(raw) <= highest):
        raise BadRequest(f"{name} must be a whole number from {lowest} to {highest}")
    return int(raw)


def wait_seconds(request: Request) -> float:
    """``?WaitSeconds=N`` of a long poll (0 when absent), at most ``max_wait_seconds``."""
    raw = request.query_params.get("WaitSeconds")
    if raw is None or raw == "":
        return 0.0
    limit = service(request).limits.max_wait_seconds
    try:
        # ASCII only (float() takes other scripts' digits too, "٣"), and short
        value = float(raw) if raw.isascii() and len(raw) <= 32 else math.nan
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
        if revoked(claims, device):
            raise Forbidden("this device token was revoked (the device's secret was rotated): "
                            "get a new token with the new secret", kind="token_revoked")
        return Principal("device", device["device_id"])
    row = await call(svc.identities.user, claims["sub"])
    if row is None:
        raise Forbidden("this user no longer exists", kind="unauthorized")
    require_enabled(row)
    if revoked(claims, row):
        raise Forbidden("this token was revoked: log in again", kind="token_revoked")
    return user_principal_of(row)


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
