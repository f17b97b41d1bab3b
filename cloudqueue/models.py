"""Typed views of the protocol's JSON objects (field names as on the wire, see docs/protocol.md).

The models are lenient readers: unknown fields are kept in ``extra`` so a newer service
never breaks an older client, and Part 2 fields are optional so the stock service's
answers parse too.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


class Priority(str, enum.Enum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"

    @property
    def rank(self) -> int:
        return {"HIGH": 1, "MEDIUM": 2, "LOW": 3}[self.value]


class WorkStatus(str, enum.Enum):
    CREATED = "CREATED"        # announced, workload file not uploaded yet
    READY = "READY"            # file uploaded, waiting for the device
    EXECUTING = "EXECUTING"    # handed to the device
    UPLOADING = "UPLOADING"    # the device asked for the results upload URL
    DONE = "DONE"              # results uploaded
    FAILED = "FAILED"          # ours: the device or the service gave up (ErrorMessage says why)
    CANCELLED = "CANCELLED"    # ours: cancelled by its owner or an admin

    @property
    def terminal(self) -> bool:
        return self in (WorkStatus.DONE, WorkStatus.FAILED, WorkStatus.CANCELLED)


class DeviceStatus(str, enum.Enum):
    ONLINE = "ONLINE"
    BUSY = "BUSY"
    ERROR = "ERROR"            # ours: the board daemon is up but cannot run work
    OFFLINE = "OFFLINE"        # computed by the service: no heartbeat within RefreshTimeout


def parse_time(value: Any) -> datetime | None:
    """Wire timestamps are ISO-8601 UTC strings; a new stock device shows ``0``."""
    if value in (None, "", 0):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def format_time(moment: datetime) -> str:
    """The stock service's format: ``2024-05-01T12:00:00.123Z`` (JavaScript toISOString)."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _split(data: dict, names: tuple[str, ...]) -> tuple[dict, dict]:
    known = {k: data.get(k) for k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    return known, extra


@dataclass
class Device:
    DeviceId: str
    DeviceName: str | None = None
    DeviceStatus: str | None = None
    LastRefreshed: datetime | None = None
    RefreshTimeout: int | None = None
    ConfigurationLastRefreshed: datetime | None = None
    DeviceConfigurationUrl: str | None = None
    Health: dict | None = None
    extra: dict = field(default_factory=dict)

    FIELDS = ("DeviceId", "DeviceName", "DeviceStatus", "LastRefreshed", "RefreshTimeout",
              "ConfigurationLastRefreshed", "DeviceConfigurationUrl", "Health")

    @classmethod
    def from_json(cls, data: dict) -> "Device":
        known, extra = _split(data, cls.FIELDS)
        known["LastRefreshed"] = parse_time(known["LastRefreshed"])
        known["ConfigurationLastRefreshed"] = parse_time(known["ConfigurationLastRefreshed"])
        return cls(**known, extra=extra)


@dataclass
class Workload:
    WorkId: str
    WorkStatus: str | None = None
    DeviceId: str | None = None
    Priority: str | None = None
    #: the submitter's given name (Cognito ``given_name``, the ``FullName`` of ``POST /users``)
    UserGivenName: str | None = None
    CreatedAt: datetime | None = None
    ReadyAt: datetime | None = None
    WorkloadUrl: str | None = None
    WorkloadResultUrl: str | None = None
    # Part 2 (absent on the stock service)
    QueuePosition: int | None = None
    EstimatedStartAt: datetime | None = None
    StartedAt: datetime | None = None
    FinishedAt: datetime | None = None
    Attempts: int | None = None
    DeviceSeconds: float | None = None
    ErrorMessage: str | None = None
    ErrorKind: str | None = None
    CancelRequested: bool | None = None
    #: ``{"ProgramsDone": n, "ProgramsTotal": m}`` of running (or finished) work
    Progress: dict | None = None
    #: digest of the watched fields, for ``GET /workloads/{id}?Seen=`` (feature workload-wait)
    ChangeToken: str | None = None
    #: the workload's own name, given at submit (ours; the stock service has none)
    WorkloadName: str | None = None
    extra: dict = field(default_factory=dict)

    FIELDS = ("WorkId", "WorkStatus", "DeviceId", "Priority", "UserGivenName", "CreatedAt",
              "ReadyAt", "WorkloadUrl", "WorkloadResultUrl", "QueuePosition",
              "EstimatedStartAt", "StartedAt", "FinishedAt", "Attempts", "DeviceSeconds",
              "ErrorMessage", "ErrorKind", "CancelRequested", "Progress", "ChangeToken",
              "WorkloadName")
    TIMES = ("CreatedAt", "ReadyAt", "EstimatedStartAt", "StartedAt", "FinishedAt")

    @classmethod
    def from_json(cls, data: dict) -> "Workload":
        known, extra = _split(data, cls.FIELDS)
        for name in cls.TIMES:
            known[name] = parse_time(known[name])
        return cls(**known, extra=extra)

    @property
    def status(self) -> WorkStatus | None:
        try:
            return WorkStatus(self.WorkStatus)
        except ValueError:
            return None

    @property
    def terminal(self) -> bool:
        return self.status is not None and self.status.terminal

    @property
    def programs(self) -> tuple[int, int] | None:
        """``(done, total)`` from ``Progress`` when the service reported it (and it is sane)."""
        p = self.Progress
        if not isinstance(p, dict):
            return None
        done, total = p.get("ProgramsDone"), p.get("ProgramsTotal")
        if not (isinstance(done, int) and isinstance(total, int)) or total <= 0:
            return None
        return max(0, min(done, total)), total
