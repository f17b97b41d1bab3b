"""``userclient configure``'s check: does the URL lead to a queue service, and does the
service take the API key? Done before the config is written, so a typo is found at once
and not at the first real command."""
from __future__ import annotations

from cloudqueue.auth import ApiKeyAuth
from cloudqueue.client import QueueClient
from cloudqueue.errors import (AuthError, BadRequest, Forbidden, NotFound, QueueError,
                               ServiceUnavailable)


def check_service(api_endpoint: str, api_key: str | None, *, timeout: float = 10.0) -> str:
    """Ask ``GET /capabilities`` (no login) and, with an API key, ``GET /devices`` with it.

    Returns one line saying what was found. Raises ``ServiceUnavailable`` (cannot reach
    it), ``BadRequest`` (something answers there, but not a queue API), ``AuthError`` (the
    key is refused). Without a key (a Cognito user of the stock service) only the URL is
    checked: the login is checked at the first command."""
    client = QueueClient(api_endpoint, ApiKeyAuth(api_key) if api_key else None,
                         timeout=timeout, tries=1)
    hint = "check --api-endpoint (with its stage path, e.g. https://host/dev)"
    try:
        caps = client.capabilities()
    except ServiceUnavailable as exc:
        raise ServiceUnavailable(f"cannot reach a queue service at {client.api_endpoint} "
                                 f"({exc.message}): {hint}, or give --no-check to write the "
                                 "config without checking", kind=exc.kind) from None
    except QueueError as exc:
        raise BadRequest(f"{client.api_endpoint} answers, but not as a queue service "
                         f"({exc.message}): {hint}", kind="not_a_queue") from None
    found = ("a stock Cloud Queue service" if caps.stock
             else f"{caps.service} {caps.version or ''}".strip())
    if not api_key:
        return f"{client.api_endpoint} answers ({found}); no API key to check"
    try:
        devices = client.list_devices()
    except (AuthError, Forbidden):
        raise AuthError(f"{client.api_endpoint} ({found}) refused the API key: check it (an "
                        "admin's add-user prints it once), or give --no-check to write the "
                        "config without checking", kind="unauthorized") from None
    except NotFound:
        raise BadRequest(f"{client.api_endpoint} has no queue API (GET devices: not found): "
                         f"{hint}", kind="not_a_queue") from None
    except ServiceUnavailable as exc:
        raise ServiceUnavailable(f"{client.api_endpoint} ({found}) failed when asked with "
                                 f"the API key ({exc.message}): try again later, or give "
                                 "--no-check", kind=exc.kind) from None
    except QueueError as exc:
        raise BadRequest(f"{client.api_endpoint} answers, but not as a queue service "
                         f"({exc.message}): {hint}", kind="not_a_queue") from None
    return (f"{client.api_endpoint} answers ({found}); the API key works ({len(devices)} "
            f"device(s) visible)")
