"""The Cloud Queue wire protocol (docs/protocol.md): models, errors, the REST client and auth.

The embedded service lives in ``cloudqueue.server`` and is never imported from here, so the
board and the user's laptop do not pull in the web stack.
"""
from cloudqueue.errors import (AuthError, BadRequest, ChecksumMismatch, ConfigError,
                               Conflict, Forbidden, NotFound, NotSupported, QueueError,
                               ServiceUnavailable)
from cloudqueue.models import Device, DeviceStatus, Priority, Workload, WorkStatus

__all__ = [
    "AuthError", "BadRequest", "ChecksumMismatch", "ConfigError", "Conflict", "Forbidden",
    "NotFound", "NotSupported", "QueueError", "ServiceUnavailable",
    "Device", "DeviceStatus", "Priority", "Workload", "WorkStatus",
]
