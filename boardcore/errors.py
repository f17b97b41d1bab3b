"""Errors of the board daemon (boardcore, supervisor, executor, downloader, uploader): its
one tree, drawn here.

    BoardError                  every error the board daemon raises on purpose
     ├── SpoolError             the durable spool is unusable (missing, unwritable, corrupt entry)
     │    └── DiskFull          not enough free space to take new work
     ├── BusError               a malformed or unsupported message on the ZeroMQ bus
     │    └── LimitsError       a run's limits (boardcore.limits.RunLimits) are not valid
     ├── BoardConfigError       a [supervisor]/[executor]/[uploader] setting is wrong
     ├── SandboxError           the executor could not set up its sandbox
     │    └── BoardBusy         another process holds the board's lock file
     └── InstallError           install-service cannot do what was asked (not root, ...)
          └── ReloadFailed      the files are written but systemctl daemon-reload failed

Each carries a message a person can act on (what was wrong, what to do).
"""
from __future__ import annotations


class BoardError(Exception):
    """Root of the board daemon's errors."""


class SpoolError(BoardError):
    pass


class DiskFull(SpoolError):
    pass


class BusError(BoardError):
    pass


class LimitsError(BusError):
    pass


class BoardConfigError(BoardError):
    pass


class SandboxError(BoardError):
    pass


class BoardBusy(SandboxError):
    pass


class InstallError(BoardError):
    pass


class ReloadFailed(InstallError):
    pass
