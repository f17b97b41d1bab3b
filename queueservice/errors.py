"""Errors only the queue service raises. The service answers every error in the protocol's
shape (``ErrorMessage``, ``ErrorKind``, the HTTP status), so its tree hangs under the
protocol's root, ``cloudqueue.errors.QueueError``; the protocol's own errors (``BadRequest``,
``NotFound``, ``Conflict``...) are raised as they are.

    QueueError (cloudqueue.errors)
     ├── BadRequest
     │    └── PayloadTooLarge   413: a request body or an uploaded file over this service's
     │                          limit
     ├── RequestTimeout         408: the request body arrived too slowly (connection closed)
     ├── StorageUnavailable     503: the file store (S3) failed or cannot be reached; the
     │                          file was not stored and the state did not change
     ├── DatabaseUnavailable    503: PostgreSQL cannot be reached or did not answer in time;
     │                          the request's transaction was rolled back
     ├── CognitoError           a Cognito-compatible login refused, answered in Cognito's
     │                          shape (``__type`` = ``kind``, status 400)
     └── MigrationError         ``qick-queue migrate`` refused or failed: nothing was
                                committed to the target database
"""
from __future__ import annotations

from cloudqueue.errors import BadRequest, QueueError


class PayloadTooLarge(BadRequest):
    default_kind = "payload_too_large"
    status = 413


class RequestTimeout(QueueError):
    """408: the client sent its request body too slowly (the connection is then closed)."""

    default_kind = "request_timeout"
    status = 408


class CognitoError(QueueError):
    def __init__(self, type_: str, message: str):
        super().__init__(message, kind=type_, status=400)


class DatabaseUnavailable(QueueError):
    """503: the database could not be used; the transaction was rolled back, try again."""

    default_kind = "database_unavailable"
    status = 503


class StorageUnavailable(QueueError):
    """503: the file store could not be used; nothing was stored, try again shortly."""

    default_kind = "storage_unavailable"
    status = 503


class MigrationError(QueueError):
    """``qick-queue migrate`` refused (the source is served, the target holds a store, a
    file is missing) or failed; the target database was left as it was."""

    default_kind = "migration"
