"""One HTTP call with a timeout, retries on transient failures only, and errors mapped.

Policy (pure, tested without sockets): ``Backoff.delay(n)`` doubles from ``base`` up to
``cap`` with jitter; ``is_transient_status`` says which answers are worth another try
(502, 503, 504; never a 4xx). A request that is not safe to repeat (a POST without an
Idempotency-Key) is retried only when it provably never left this machine (the connection
could not be made).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import requests

from cloudqueue.errors import QueueError, ServiceUnavailable, error_for_status

TRANSIENT_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits in [ceiling/2, ceiling],
    ceiling = min(cap, base * factor**n). ``tries`` counts the first call too."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    tries: int = 5

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap, self.base * self.factor ** attempt)
        return ceiling / 2 + rand() * ceiling / 2


NO_RETRY = Backoff(tries=1)


def is_transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUSES


def never_sent(exc: BaseException) -> bool:
    """True when the request failed before any byte could reach the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if name in ("NewConnectionError", "ConnectionRefusedError", "NameResolutionError"):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False


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
         timeout: float, backoff: Backoff = NO_RETRY, safe: bool = True,
         auth: Any = None, retry_on_401: bool = True,
         body: Callable[[], Any] | None = None,
         sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> requests.Response:
    """Send one request, retrying transient failures; return the 2xx answer or raise.

    ``body`` is called before every try to get a fresh ``data`` (a file rewound, say).
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
            if attempt < backoff.tries and (safe or never_sent(exc)):
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
            if attempt < backoff.tries:
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
