"""A session on a device (our service, feature ``sessions``; IBM Runtime's): once its
first workload starts, the device runs only the session's work until it is closed, its
maximum time passes, or it sits idle longer than its idle limit. For closed loops::

    with client.session(device_id, max_minutes=30, idle_minutes=5) as s:
        work_id = s.submit(wm.write_progs())          # the same arguments as create_work
        done = client.wait_until_done(work_id)
        ...                                           # choose the next run, submit again
    # closed here, also when the block raises; the held time is charged once

``UserClient.session`` opens it; closing a closed session is harmless.
"""
from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any

from cloudqueue.errors import BadRequest, QueueError
from cloudqueue.models import Priority

if TYPE_CHECKING:  # the client imports this module
    from userclient.client import UserClient


class Session:
    """An open session (``UserClient.session``): ``id``, ``device_id``, ``info`` (the
    service's last answer about it), ``submit``, ``refresh``, ``close``."""

    def __init__(self, client: "UserClient", info: dict):
        self.client = client
        self.info = info

    @property
    def id(self) -> str:
        return self.info["SessionId"]

    @property
    def device_id(self) -> str:
        return self.info["DeviceId"]

    def submit(self, workloadfile: IO[bytes] | str | os.PathLike,
               device_id: str | None = None, priority: str | Priority = "LOW", *,
               name: str | None = None, idempotency_key: str | None = None,
               max_seconds: float | None = None) -> str:
        """``UserClient.create_work`` in this session (``device_id``, if given, must be
        the session's device; ``max_seconds`` caps the run, its deadline on the board; the
        session's team pays, for the time the session holds the device): answers the
        WorkId."""
        if device_id not in (None, self.device_id):
            raise BadRequest(f"session {self.id} is on device {self.device_id}, not "
                             f"{device_id}: leave device_id out", kind="session_device")
        return self.client.create_work(workloadfile, self.device_id, priority, name=name,
                                       idempotency_key=idempotency_key,
                                       max_seconds=max_seconds, session_id=self.id)

    def refresh(self) -> dict:
        """The session as the service has it now (State, StartedAt, EndsAt, ...)."""
        self.info = self.client.get_session(self.id)
        return self.info

    def close(self) -> dict:
        """Close it: the device takes everyone's work again; its work still queued is
        cancelled. Answers the closed session (HeldSeconds, Cost)."""
        self.info = self.client.close_session(self.id)
        return self.info

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            self.close()
        except QueueError as failed:
            if exc is None:
                raise
            # the block's own error is the one to see; say the session may be open still
            note = (f"closing session {self.id} failed too ({failed}): it ends at its idle "
                    f"limit, or close it with `userclient session close {self.id}`")
            if hasattr(exc, "add_note"):  # Python 3.11 and later
                exc.add_note(note)

    def __repr__(self) -> str:
        return f"<Session {self.id} on {self.device_id}: {self.info.get('State')}>"
