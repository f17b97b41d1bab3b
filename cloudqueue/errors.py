"""Errors of the Cloud Queue protocol, shared by the client and the embedded service.

    QueueError                      every error this package raises
     ├── ConfigError                a config or credentials file is missing or wrong
     ├── BadRequest                 400/413/422: the request itself is wrong
     │    └── ChecksumMismatch      an upload's SHA-256 is not the announced one
     ├── AuthError                  401: no or bad credentials, login failed
     ├── Forbidden                  403: authenticated, but not allowed
     ├── NotFound                   404: no such device / workload, or not yours
     ├── Conflict                   409: the state does not allow it (cancel a DONE workload)
     ├── NotSupported               the service does not offer this (stock AWS deployment)
     ├── DownloadTooLarge           a download is over the caller's size limit (nothing kept)
     └── ServiceUnavailable         5xx, timeouts, connection refused: try again later

Every error carries a message a person can act on, and ``kind``, the machine-readable
``ErrorKind`` the service sent (or a client-side one).
"""
from __future__ import annotations


class QueueError(Exception):
    """Root of the hierarchy. ``kind`` is the wire ``ErrorKind``; ``status`` the HTTP code."""

    default_kind = "error"
    status: int | None = None
    #: the error message of the service's answer, as sent (None when it sent none)
    detail: str | None = None

    def __init__(self, message: str, *, kind: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.kind = kind or self.default_kind
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class ConfigError(QueueError):
    default_kind = "config"


class BadRequest(QueueError):
    default_kind = "bad_request"
    status = 400


class ChecksumMismatch(BadRequest):
    default_kind = "checksum_mismatch"


class AuthError(QueueError):
    default_kind = "unauthorized"
    status = 401


class Forbidden(QueueError):
    default_kind = "forbidden"
    status = 403


class NotFound(QueueError):
    default_kind = "not_found"
    status = 404


class Conflict(QueueError):
    default_kind = "conflict"
    status = 409


class NotSupported(QueueError):
    default_kind = "not_supported"


class DownloadTooLarge(QueueError):
    default_kind = "too_large"
    size: int | None = None  # bytes: the announced length, or more than the limit


class ServiceUnavailable(QueueError):
    default_kind = "unavailable"
    status = 503


def error_for_status(status: int, message: str, kind: str | None = None) -> QueueError:
    """The exception a client raises for an HTTP error answer."""
    if kind == "checksum_mismatch":
        return ChecksumMismatch(message, kind=kind, status=status)
    if status in (400, 413, 422):
        return BadRequest(message, kind=kind, status=status)
    by_status = {401: AuthError, 403: Forbidden, 404: NotFound, 409: Conflict}
    if status in by_status:
        return by_status[status](message, kind=kind, status=status)
    if status >= 500:
        return ServiceUnavailable(message, kind=kind, status=status)
    return QueueError(message, kind=kind, status=status)
