"""The service's limits, with every default in one place (docs/protocol.md pins them)."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 8750
DEFAULT_ADMIN_EMAIL = "admin@localhost"
#: a mock device's board daemon: longest run of one workload (its ``[executor]
#: deadline_seconds``) and its executor's address space (``address_space_mb``)
MOCK_DEADLINE_SECONDS = 300.0
MOCK_MEMORY_MB = 2048
#: the mock daemon's backstop above its deadline ([executor] deadline_margin_seconds): a
#: simulated program that runs on past the deadline is stopped this soon after it
MOCK_DEADLINE_MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class ServiceLimits:
    """Tunable limits of one running service (``qick-queue serve`` options)."""

    #: largest file accepted on a presigned PUT (workloads, results, configurations)
    max_upload_mb: float = 256.0
    #: EXECUTING/UPLOADING work goes back to READY once its device is silent this long
    lease_seconds: float = 600.0
    #: hand-outs of one workload before it FAILS with ``attempts_exhausted``
    max_attempts: int = 3
    #: CREATED work whose file never arrives FAILS with ``upload_expired`` after this long
    upload_ttl_seconds: float = 86400.0
    #: lifetime of a presigned URL
    url_lifetime_seconds: int = 3600
    #: longest ``WaitSeconds`` a device may ask for on a long poll
    max_wait_seconds: int = 20
    #: largest JSON body accepted by the API
    max_json_bytes: int = 64 * 1024
    #: lifetime of the JWTs we issue (users and devices)
    token_seconds: int = 3600
    #: lifetime of a Cognito-style refresh token
    refresh_token_seconds: int = 30 * 86400
    #: how long an Idempotency-Key is remembered
    idempotency_seconds: int = 86400
    #: what a run is assumed to take when a device has no finished work yet (estimates)
    default_run_seconds: float = 60.0
    #: a request's headers must arrive within this long (from the connection's start, or
    #: from the first byte after the previous answer); else 408 and the connection closes
    header_timeout_seconds: float = 10.0
    #: an API request's JSON body must arrive within this long, a file upload's body must
    #: keep coming (at most this long between two parts of it); else 408, connection closed
    body_timeout_seconds: float = 30.0
    #: an idle kept-alive connection closes after this long (the original device client
    #: polls every 5 s on one connection; nginx's default is the same 75 s)
    keep_alive_seconds: float = 75.0
    #: connections open at once; more are answered 503 and closed at once
    max_connections: int = 500
    #: answer as the stock AWS service does (docs/protocol.md, "--stock-protocol"): our own
    #: paths answer the gateway's 403, its request models are checked (400), unknown ids are
    #: a handler's 500, no long poll, no ``Holding``; so clients can be tested against it
    stock_protocol: bool = False

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def housekeeping_interval(self) -> float:
        """Seconds between background sweeps: a quarter of the shortest timer, 0.1..30 s."""
        shortest = min(self.lease_seconds, self.upload_ttl_seconds)
        return max(0.1, min(30.0, shortest / 4))
