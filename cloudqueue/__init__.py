"""The Cloud Queue wire protocol (docs/protocol.md): models, errors, the REST client and auth.

The embedded service lives in ``queueservice`` and is never imported from here, so the
board and the user's laptop do not pull in the web stack.
"""
from cloudqueue.errors import (AuthError, BadRequest, ChecksumMismatch, ConfigError,
                               Conflict, Forbidden, NotFound, NotSupported, QueueError,
                               ServiceUnavailable)
from cloudqueue.models import Device, DeviceStatus, Priority, Workload, WorkStatus

# The client side, imported on first use so ``import cloudqueue.errors`` (the service does)
# does not pull in requests.
_LAZY = {
    "QueueClient": "cloudqueue.client", "Capabilities": "cloudqueue.client",
    "WorkloadPage": "cloudqueue.client",
    "ApiKeyAuth": "cloudqueue.auth", "DeviceTokenAuth": "cloudqueue.auth",
    "CognitoUserAuth": "cloudqueue.auth", "user_auth_from_config": "cloudqueue.auth",
    "device_auth_from_config": "cloudqueue.auth",
    "Config": "cloudqueue.config", "load_config": "cloudqueue.config",
    "upload_file": "cloudqueue.transfer", "download_file": "cloudqueue.transfer",
    "file_sha256": "cloudqueue.transfer",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cloudqueue' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY) + [
    "AuthError", "BadRequest", "ChecksumMismatch", "ConfigError", "Conflict", "Forbidden",
    "NotFound", "NotSupported", "QueueError", "ServiceUnavailable",
    "Device", "DeviceStatus", "Priority", "Workload", "WorkStatus",
]
