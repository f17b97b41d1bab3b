"""The user's library: admin and queue operations with the original SideQICK method names.

``UserClient`` raises ``cloudqueue.errors`` exceptions (never logs and returns None) and
prints nothing; the CLI is a thin layer over it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from cloudqueue.auth import Auth, user_auth_from_config
from cloudqueue.client import QueueClient
from cloudqueue.config import Config, load_config, write_private
from cloudqueue.errors import (BadRequest, ConfigError, Conflict, NotFound, QueueError,
                               ServiceUnavailable)
from cloudqueue.models import Device, Priority, Workload, WorkStatus
from cloudqueue.transfer import Transferred, download_file, fetch_json, file_sha256, upload_file


class WaitTimeout(QueueError):
    """``wait_until_done`` reached its timeout; the workload goes on in the queue."""

    default_kind = "timeout"


# How long to wait between polls: grows from FIRST to MAX while nothing changes.
POLL_FIRST_SECONDS = 0.5
POLL_MAX_SECONDS = 10.0
#: the longest a service holds one waiting request (``workload-wait``)
MAX_HOLD_SECONDS = 20.0


class UserClient:
    """Talk to the queue as a person (or an admin).

    Build it from the config file (``UserClient.from_config()``) or from a ready
    ``QueueClient``. ``password_prompt`` is asked for a Cognito password when one is needed.
    """

    def __init__(self, client: QueueClient, config: Config | None = None, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.config = config
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None, *,
                    auth: Auth | None = None,
                    password_prompt: Callable[[str], str] | None = None,
                    new_password_prompt: Callable[[str], str] | None = None,
                    timeout: float = 30.0) -> "UserClient":
        config = load_config(path)
        auth = auth or user_auth_from_config(config, password_prompt=password_prompt,
                                             new_password_prompt=new_password_prompt)
        return cls(QueueClient(config.api_endpoint, auth, timeout=timeout), config)

    # --- admin --------------------------------------------------------------------------
    def add_user(self, email: str, full_name: str, *, admin: bool = False) -> dict:
        """Create a user. Ours answers ``{UserId, Email, ApiKey, TemporaryPassword}``
        (shown once); the stock service e-mails a temporary password and answers ``{}``."""
        return self.client.add_user(email, full_name, admin=admin)

    def add_device(self, name: str, refresh_timeout: int = 60, *,
                   mock: dict | None = None) -> dict:
        """Create a device: ``{DeviceId, DeviceName, ClientId, ClientSecret}`` (secret once).
        With ``mock`` (``{"Board": ...}`` or ``{"MirrorOf": DeviceId}``) the service runs it
        as a simulated board (our service only)."""
        return self.client.add_device(name, refresh_timeout, mock=mock)

    def board_files(self, device: dict) -> tuple[str, str]:
        """The board's config and credentials files (INI text) for a new device."""
        from cloudqueue.config import render_ini
        service_keys = ("cognito_userpool", "cognito_url", "clientid", "oauth_endpoint",
                        "api_endpoint", "region")
        service = {k: self.config.get("service", k) if self.config else None
                   for k in service_keys}
        service["api_endpoint"] = self.client.api_endpoint
        if not service.get("oauth_endpoint"):
            raise BadRequest("cannot write the board's config: [service] oauth_endpoint is "
                             "not set in your config; add it (the service root on our queue "
                             "service) and try again", kind="config")
        config = render_ini({"service": service,
                             "device": {"id": device["DeviceId"],
                                        "name": device.get("DeviceName")}})
        credentials = render_ini({"credentials": {"id": device["ClientId"],
                                                  "secret": device["ClientSecret"]}})
        return config, credentials

    # --- admin lifecycle (our service) ----------------------------------------------------
    def get_users(self) -> list[dict]:
        """Every user (admin): UserId, Email, FullName, Groups, Disabled, CreatedAt,
        LastLogin, LastKeyUse."""
        return self.client.list_users()

    def disable_user(self, user: str) -> dict:
        """Disable a user (admin; UserId or e-mail): their API keys, tokens and refresh
        tokens are refused from the next request on. Undo with ``enable_user``."""
        return self.client.disable_user(user)

    def enable_user(self, user: str) -> dict:
        """Enable a disabled user again (admin): their API keys work again; they log in
        again for new tokens."""
        return self.client.enable_user(user)

    def create_api_key(self, *, label: str | None = None, user: str | None = None) -> dict:
        """A new API key (``ApiKey``, shown once) for you, or (admins) for ``user``."""
        return self.client.create_api_key(label=label, user=user)

    def get_api_keys(self, *, user: str | None = None) -> list[dict]:
        """Your working API keys (KeyId, Label, CreatedAt, LastUsed), or (admins) ``user``'s."""
        return self.client.list_api_keys(user=user)

    def revoke_api_key(self, key_id: str) -> dict:
        """Revoke one of your API keys (admins: anyone's); refused from the next request on."""
        return self.client.revoke_api_key(key_id)

    def rotate_device_secret(self, device_id: str) -> dict:
        """A new client secret for a device (admin), shown once; the old one stops now."""
        return self.client.rotate_device_secret(device_id)

    def rename_device(self, device_id: str, name: str) -> Device:
        return self.client.rename_device(device_id, name)

    def delete_device(self, device_id: str, *, cancel_work: bool = False) -> dict:
        """Delete a device (admin); refused (Conflict) while it has unfinished work unless
        ``cancel_work``. Its finished work stays readable by its owners."""
        return self.client.delete_device(device_id, cancel_work=cancel_work)

    # --- devices ------------------------------------------------------------------------
    def get_devices(self) -> list[Device]:
        return self.client.list_devices()

    def get_device(self, device_id: str) -> Device:
        return self.client.get_device(device_id)

    def get_soccfg(self, device_id: str, save_to: str | os.PathLike | None = None) -> dict:
        """The board's QICK configuration (soccfg) as a dict; optionally saved as JSON."""
        device = self.client.get_device(device_id)
        if not device.DeviceConfigurationUrl:
            raise NotFound(f"device {device_id} has not uploaded its configuration yet: is "
                           f"its board daemon running? (status {device.DeviceStatus})",
                           kind="no_configuration")
        soccfg = fetch_json(device.DeviceConfigurationUrl, session=self.client.session,
                            what=f"download the configuration of device {device_id}")
        if not isinstance(soccfg, dict):
            raise QueueError(f"the configuration of device {device_id} is not a JSON object",
                             kind="invalid_json")
        if save_to is not None:
            write_private(save_to, json.dumps(soccfg, indent=1), mode=0o644)
        return soccfg

    # --- workloads ----------------------------------------------------------------------
    def create_work(self, device_id: str, path: str | os.PathLike,
                    priority: str | Priority = Priority.MEDIUM, *, name: str | None = None,
                    idempotency_key: str | None = None) -> str:
        """Announce and upload a workload file; return its WorkId.

        With a service that supports them, the file's SHA-256 is announced (checked on
        arrival) and an Idempotency-Key makes a retried submit return the same WorkId.
        """
        source = Path(path).expanduser()
        if not source.is_file():
            raise BadRequest(f"{source}: no such workload file", kind="no_such_file")
        try:
            Priority(priority.upper() if isinstance(priority, str) else priority)
        except ValueError:
            raise BadRequest(f"priority {priority!r} is not one of HIGH, MEDIUM, LOW",
                             kind="bad_request") from None
        caps = self.client.capabilities()
        sha256 = file_sha256(source) if "sha256" in caps else None
        if name is None and not caps.stock:  # the stock body stays as the stock clients send it
            name = source.name
        answer = self.client.create_workload(
            device_id, priority, name=name, sha256=sha256,
            idempotency_key=idempotency_key or str(uuid.uuid4()))
        work_id = answer["WorkId"]
        try:
            upload_file(answer["UploadUrl"], source, session=self.client.session,
                        what=f"upload workload {work_id}")
        except QueueError as exc:
            exc.message = (f"{exc.message}; workload {work_id} was announced but its file "
                           f"did not arrive: submit again")
            exc.args = (exc.message,)
            raise
        return work_id

    def get_work(self, work_id: str) -> Workload:
        return self.client.get_workload(work_id)

    status = get_work

    def list_work(self, device_id: str | None = None, *, status: str | None = None,
                  account_id: str | None = None, limit: int | None = None) -> list[Workload]:
        """All workloads (every page), newest first; at most ``limit`` when given."""
        found: list[Workload] = []
        for work in self.client.iter_workloads(device_id, status=status,
                                               account_id=account_id,
                                               limit=min(limit, 100) if limit else 100):
            found.append(work)
            if limit and len(found) >= limit:
                break
        return found

    def cancel(self, work_id: str) -> Workload:
        return self.client.cancel_workload(work_id)

    def wait_until_done(self, work_id: str, *, timeout: float | None = None,
                        poll_interval: float = POLL_MAX_SECONDS,
                        on_progress: Callable[[Workload], Any] | None = None) -> Workload:
        """Wait until the workload is DONE, FAILED or CANCELLED and return it.

        On a service offering ``workload-wait`` each request is held until the workload
        changes (so a change is seen at once); elsewhere it polls, every ``poll_interval``
        seconds at most. Never gives up while the work is queued unless ``timeout``
        (seconds) is given, then raises WaitTimeout. Transient service failures are ridden
        out. ``on_progress`` is called with the workload on every answer (to show
        position, status, progress, estimate).
        """
        deadline = None if timeout is None else self._clock() + timeout
        interval = min(POLL_FIRST_SECONDS, poll_interval)
        last_status = None
        long_poll = self.client.supports("workload-wait")
        token: str | None = None
        while True:
            hold = 0.0
            if long_poll and token:
                left = MAX_HOLD_SECONDS if deadline is None else deadline - self._clock()
                hold = min(MAX_HOLD_SECONDS, left)
            asked = self._clock()
            try:
                work = self.client.get_workload(work_id, wait_seconds=hold, seen=token)
            except ServiceUnavailable:
                work = None  # the service is down for a moment: keep waiting
            if work is not None:
                if on_progress is not None:
                    on_progress(work)
                if work.terminal:
                    return work
                if long_poll and work.ChangeToken:
                    # ask again at once after a change or a full hold; an unchanged answer
                    # that came back early (a service shutting down) backs off as a poll
                    fresh = work.ChangeToken != token or self._clock() - asked >= hold / 2
                    token = work.ChangeToken
                    if fresh and (deadline is None or deadline - self._clock() > 0.1):
                        continue  # the next request waits on the service, not here
                if work.WorkStatus != last_status:
                    interval = min(POLL_FIRST_SECONDS, poll_interval)
                    last_status = work.WorkStatus
            if deadline is not None:
                left = deadline - self._clock()
                if left <= 0:
                    status = work.WorkStatus if work else "unknown"
                    raise WaitTimeout(f"workload {work_id} is still {status} after "
                                      f"{timeout:g} s; it stays in the queue: wait again "
                                      f"later", kind="timeout")
                self._sleep(min(interval, left))
            else:
                self._sleep(interval)
            interval = min(interval * 2, poll_interval)

    def final_status(self, work: Workload) -> Workload:
        """``work`` with the outcome its board recorded, where the service cannot show it.

        A stock service has no FAILED or CANCELLED: a board finishes such work by uploading
        a results file that records the status and the reason (``qickwork.results``), and
        the service shows DONE. For DONE work on a stock service this downloads the results
        to a temporary file, reads only its attributes, and answers a copy of ``work`` with
        the recorded ``WorkStatus``, ``ErrorKind`` and ``ErrorMessage`` (``extra`` says
        ``StatusFrom: results``). A file that records no status (the original device
        client's) or DONE, and every other workload, are answered unchanged. A file still
        saying RUNNING (a board that died mid-run, before it could say why) is FAILED."""
        if (work.status is not WorkStatus.DONE or not work.WorkloadResultUrl
                or not self.client.capabilities().stock):
            return work
        try:
            from qickwork.results import recorded_outcome
        except ImportError as exc:
            raise ConfigError(f"workload {work.WorkId} is DONE on a stock service, where only "
                              f"its results file says whether it failed; reading it needs "
                              f"h5py ({exc}): install qick-queue[user]") from None
        with tempfile.TemporaryDirectory(prefix="qick-status-") as folder:
            path = Path(folder) / "results.h5"
            download_file(work.WorkloadResultUrl, path, session=self.client.session,
                          what=f"download the results of {work.WorkId} (for its outcome)")
            try:
                seen = recorded_outcome(path)
            except OSError:
                return work  # not a results file of ours: nothing recorded to say otherwise
        status = seen["Status"]
        if status in (None, "DONE"):
            return work
        kind, message = seen["ErrorKind"], seen["ErrorMessage"]
        if status not in ("FAILED", "CANCELLED"):
            kind = kind or "unfinished"
            message = message or (
                f"the results file says {status}: the board stopped before it could finish "
                f"the workload (programs done {seen['ProgramsDone']} of "
                f"{seen['ProgramsTotal']}); submit it again")
            status = "FAILED"
        return dataclasses.replace(work, WorkStatus=status, ErrorKind=kind,
                                   ErrorMessage=message,
                                   extra={**work.extra, "StatusFrom": "results"})

    def get_results(self, work_id: str, path: str | os.PathLike) -> Transferred:
        """Download the results (HDF5) of a finished workload to ``path``."""
        work = self.client.get_workload(work_id)
        # The stock service may show a results URL before the results exist: trust the status.
        has_results = bool(work.WorkloadResultUrl) and work.status in (
            WorkStatus.DONE, WorkStatus.FAILED, WorkStatus.CANCELLED, None)
        if not has_results:
            if work.status is WorkStatus.FAILED:
                raise Conflict(f"workload {work_id} FAILED without results: "
                               f"{work.ErrorMessage or 'no reason given'}", kind="no_results")
            if work.terminal:
                raise Conflict(f"workload {work_id} is {work.WorkStatus}: it has no results",
                               kind="no_results")
            raise Conflict(f"workload {work_id} is not finished yet ({work.WorkStatus}); "
                           f"wait for it first", kind="not_finished")
        return download_file(work.WorkloadResultUrl, path, sha256=True,
                             session=self.client.session,
                             what=f"download the results of {work_id}")
