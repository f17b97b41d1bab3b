"""One HTTP call with a timeout, retries on transient failures only, and errors mapped.

Policy (pure, tested without sockets): ``tries`` calls at most (the first one included),
waiting ``backoff.delay(n)`` (``qickbase.backoff``) between them; ``is_transient_status``
says which answers are worth another try (502, 503, 504; never a 4xx). A request that is
not safe to repeat (a POST without an Idempotency-Key) is retried only when it provably
never left this machine (``never_sent``: the connection could not be made).
"""
from __future__ import annotations

import socket
import time
from typing import Any, Callable, Iterator

import requests
import urllib3.exceptions

from cloudqueue.errors import QueueError, ServiceUnavailable, error_for_status
from qickbase.backoff import Backoff

TRANSIENT_STATUSES = frozenset({502, 503, 504})
#: failures that happen before a connection exists, so no byte of the request was sent:
#: a connect timeout, a refused or unreachable connection, a host name that does not
#: resolve (urllib3's NameResolutionError is a NewConnectionError)
_NEVER_SENT = (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError,
               urllib3.exceptions.NewConnectionError, ConnectionRefusedError, socket.gaierror)


def is_transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUSES


def never_sent(exc: BaseException) -> bool:
    """True when the request failed before any byte could reach the server: ``exc`` or
    one of the errors it wraps (``reason``, ``args``, ``__cause__``, ``__context__``, the
    way requests and urllib3 chain them) is a failure to connect."""
    return any(isinstance(e, _NEVER_SENT) for e in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception reachable from it, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [getattr(current, "reason", None), *getattr(current, "args", ()),
                  current.__cause__, current.__context__]
        todo.extend(e for e in linked if isinstance(e, BaseException))


def error_message(answer: requests.Response) -> tuple[str | None, str | None]:
    """(message, kind) from an error answer: ErrorMessage / message / Message, ErrorKind."""
    try:
        body = answer.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    message = body.get("ErrorMessage") or body.get("message") or body.get("Message") \
        or body.get("error_description") or body.get("error")
    kind = body.get("ErrorKind") or body.get("__type")
    return (str(message) if message else None), (str(kind) if kind else None)


def error_from_response(answer: requests.Response, what: str) -> QueueError:
    message, kind = error_message(answer)
    status = answer.status_code
    detail = message or answer.reason or "no details"
    hint = {
        401: "check your credentials (API key, login or device secret)",
        403: "not allowed, or the credentials or link were refused",
        404: "check the id",
        409: "the current state does not allow it",
        413: "the file is larger than the service accepts",
    }.get(status, "try again later" if status >= 500 else "check the request")
    error = error_for_status(status, f"{what}: {detail} (HTTP {status}; {hint})", kind)
    error.detail = message
    return error


def call(session: requests.Session, method: str, url: str, *, what: str,
         timeout: float, backoff: Backoff = Backoff(), tries: int = 1, safe: bool = True,
         auth: Any = None, retry_on_401: bool = True,
         body: Callable[[], Any] | None = None,
         sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> requests.Response:
    """Send one request, retrying transient failures; return the 2xx answer or raise.

    ``tries`` counts every call, the first included (1: no retry), with ``backoff``
    between them. ``body`` is called before every try to get a fresh ``data`` (a file
    rewound, say).
    ``safe`` says whether the request may be repeated after it might have arrived.
    A 401 makes ``auth.invalidate()`` drop its token and the request is sent once more.
    """
    attempt = 0
    reauthed = False
    while True:
        if body is not None:
            kwargs["data"] = body()
        try:
            answer = session.request(method, url, timeout=timeout, auth=auth, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            attempt += 1
            if attempt < tries and (safe or never_sent(exc)):
                sleep(backoff.delay(attempt - 1))
                continue
            kind = "timeout" if isinstance(exc, requests.Timeout) else "connection"
            raise ServiceUnavailable(f"{what}: cannot reach {_origin(url)} ({kind} failed "
                                     f"after {attempt} tries); check the network or try "
                                     f"again later", kind=kind) from None
        if answer.status_code < 400:
            return answer
        if answer.status_code == 401 and retry_on_401 and not reauthed \
                and auth is not None and hasattr(auth, "invalidate") and auth.invalidate():
            reauthed = True
            answer.close()
            continue
        if is_transient_status(answer.status_code) and safe:
            attempt += 1
            if attempt < tries:
                answer.close()
                sleep(backoff.delay(attempt - 1))
                continue
        error = error_from_response(answer, what)
        answer.close()
        raise error


def _origin(url: str) -> str:
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
