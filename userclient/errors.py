"""Errors only the user client raises. Everything else it raises is the protocol's
(``cloudqueue.errors``), and the CLI picks its exit code by protocol error, so this tree
hangs under the protocol's root, ``QueueError``.

    QueueError (cloudqueue.errors)
     ├── BadRequest
     │    └── UsageError        the CLI was called wrongly (a flag, a file, a password prompt)
     ├── Conflict
     │    └── WorkNotDone       ``get_results`` of a workload that is not DONE (a
     │                          ``RuntimeError`` too, as the original client raised)
     └── WaitTimeout            ``wait_until_done`` reached its timeout
"""
from __future__ import annotations

from cloudqueue.errors import BadRequest, Conflict, QueueError


class UsageError(BadRequest):
    default_kind = "usage"


class WaitTimeout(QueueError):
    """``wait_until_done`` reached its timeout; the workload goes on in the queue."""

    default_kind = "timeout"


class WorkNotDone(Conflict, RuntimeError):
    """``get_results`` of a workload that is not DONE. A ``RuntimeError`` too, as the
    original client raised, so code written for it catches it unchanged."""

    default_kind = "not_done"
