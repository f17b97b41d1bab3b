"""Errors of the workload and results formats.

    WorkloadError               every error of this package; ``kind`` is the wire ErrorKind
     ├── InvalidWorkload        the file is not a workload we can read (not gzip, bad JSON,
     │                          a malformed program dump, refused data types)
     ├── FirmwareMismatch       compiled for another firmware than the board's
     ├── WorkloadTooLarge       over a size, shot or memory limit
     ├── DeviceError            the board (or its simulation) failed while running
     ├── InvalidResults         a file that is not a results file of ours or of the original
     │                          clients
     └── IncompleteResults      a results file records FAILED, CANCELLED or an unfinished
                                run, and the reader did not ask for partial results

Messages name the program index when there is one, and say what to change.
"""
from __future__ import annotations


class WorkloadError(Exception):
    default_kind = "invalid_workload"

    def __init__(self, message: str, *, kind: str | None = None, program: int | None = None):
        super().__init__(message)
        self.message = message
        self.kind = kind or self.default_kind
        self.program = program

    def __str__(self) -> str:
        return self.message


class InvalidWorkload(WorkloadError):
    default_kind = "invalid_workload"


class FirmwareMismatch(WorkloadError):
    default_kind = "firmware_mismatch"


class WorkloadTooLarge(WorkloadError):
    default_kind = "too_large"


class DeviceError(WorkloadError):
    default_kind = "device_error"


class InvalidResults(WorkloadError):
    """A file that is not a results file of ours or of the original clients."""
    default_kind = "invalid_results"


class IncompleteResults(WorkloadError):
    """Raised by ``WorkloadManager.read_results`` so a script does not analyse half a sweep
    by accident. ``status``, ``programs_done`` and ``programs_total`` are the file's."""
    default_kind = "incomplete_results"

    def __init__(self, message: str, *, status: str, programs_done: int,
                 programs_total: int, kind: str | None = None):
        super().__init__(message, kind=kind)
        self.status = status
        self.programs_done = programs_done
        self.programs_total = programs_total
