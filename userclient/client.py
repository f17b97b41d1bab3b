"""The user's library: admin and queue operations with the original SideQICK signatures.

``UserClient()`` is a drop-in for the original ``user_client.UserClient()``: it reads the
config (``$QICK_CONFIG``, else ``~/.config/qick.conf``, else ``/etc/qick/config``) and logs
in at the first request; every original method keeps its signature and return type
(``create_work`` takes an open file, ``get_results`` returns one). What we add is
keyword-only.

``UserClient`` raises ``cloudqueue.errors`` exceptions (never logs and returns None). The
few calls that print in the original (``add_user``, ``add_device``,
``wait_until_done(progress=True)``) write to one stream, ``out`` (``sys.stdout`` unless
given; ``out=None`` is silent, as the CLI uses it); nothing else is ever printed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import getpass
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any, Callable, TextIO

from cloudqueue.auth import Auth, user_auth_from_config
from cloudqueue.client import QueueClient
from cloudqueue.config import Config, load_config, render_ini, write_atomically
from cloudqueue.errors import (BadRequest, ConfigError, Conflict, NotFound, QueueError,
                               ServiceUnavailable)
from cloudqueue.models import Device, Priority, Workload, WorkStatus
from cloudqueue.transfer import Transferred, download_file, fetch_json, upload_file
from qickbase.backoff import Backoff, BackoffCounter
from userclient.display import plain
from userclient.moments import Moment, iso_moment
from userclient.errors import WaitTimeout, WorkNotDone
from userclient.sessions import Session


#: ``out``'s default: whatever ``sys.stdout`` is when something is written (a notebook's,
#: pytest's capture), not the one at import time
STDOUT: Any = object()


#: ``ErrorKind`` of a submit its team cannot pay for (our service)
INSUFFICIENT_CREDITS = "insufficient_credits"


@dataclasses.dataclass(frozen=True)
class _Charging:
    """Who pays for a workload and its cost cap, or the session it runs in
    (``create_work``'s keyword arguments)."""

    team: str | None = None
    max_seconds: float | None = None
    timeslot: bool = False
    on_slot_end: str | None = None
    session_id: str | None = None


def _block(ini_text: str) -> str:
    """INI text as the original prints it: no blank lines between sections."""
    return "\n".join(line for line in ini_text.splitlines() if line.strip())


def getpass_prompt(username: str) -> str:
    """Ask for the password on the terminal (or the notebook), as the original does."""
    return getpass.getpass(f"Password for {username}: ")


# How long to wait between polls: grows from FIRST to MAX while nothing changes.
POLL_FIRST_SECONDS = 0.5
POLL_MAX_SECONDS = 10.0
#: the longest a service holds one waiting request (``workload-wait``)
MAX_HOLD_SECONDS = 20.0


class UserClient:
    """Talk to the queue as a person (or an admin).

    ``UserClient()`` reads the config file and logs in lazily (a password is asked with
    ``password_prompt``, by default ``getpass``, unless the config holds an API key or
    ``QICK_PASSWORD`` is set). Tests and programs may pass a ready ``client`` (a
    ``QueueClient``) and ``config`` instead. ``out`` receives what the original prints.
    """

    def __init__(self, *, client: QueueClient | None = None, config: Config | None = None,
                 out: TextIO | None = STDOUT,
                 password_prompt: Callable[[str], str] | None = getpass_prompt,
                 new_password_prompt: Callable[[str], str] | None = None,
                 timeout: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        if client is None:
            config = config or load_config()
            endpoint = config.api_endpoint  # first: no config at all says where it looked
            auth = user_auth_from_config(config, password_prompt=password_prompt,
                                         new_password_prompt=new_password_prompt)
            client = QueueClient(endpoint, auth, timeout=timeout)
        self.client = client
        self.config = config
        self.out = out
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None, *,
                    auth: Auth | None = None,
                    password_prompt: Callable[[str], str] | None = None,
                    new_password_prompt: Callable[[str], str] | None = None,
                    timeout: float = 30.0, out: TextIO | None = STDOUT) -> "UserClient":
        """``UserClient()`` with the config at ``path`` (None: where ``UserClient()`` looks),
        or logged in with a ready ``auth``; no password prompt unless one is given."""
        config = load_config(path)
        client = QueueClient(config.api_endpoint, auth, timeout=timeout) if auth else None
        return cls(client=client, config=config, out=out, password_prompt=password_prompt,
                   new_password_prompt=new_password_prompt, timeout=timeout)

    # --- output (what the original prints) -------------------------------------------------
    def _write(self, text: str) -> None:
        out = sys.stdout if self.out is STDOUT else self.out
        if out is not None:
            out.write(text)
            out.flush()

    def _device_id(self, device_id: str | None) -> str:
        """``device_id``, or the config's ``[device] id`` as the original defaults it."""
        if device_id:
            return device_id
        if self.config is None:
            raise ConfigError("no device given and no config to take [device] id from: "
                              "pass device_id, or add [device] id to your config",
                              kind="config_key_missing")
        try:
            return self.config.require("device", "id")
        except ConfigError as exc:
            exc.message = (f"no device given: {exc.message} (or pass device_id; list the "
                           f"devices with `userclient devices`)")
            exc.args = (exc.message,)
            raise

    # --- admin --------------------------------------------------------------------------
    def add_user(self, email: str, fullname: str, *, admin: bool = False) -> dict:
        """Create a user, and write what to send them (as the original prints it).

        Ours answers ``{UserId, Email, ApiKey, TemporaryPassword}`` (shown once); the stock
        service e-mails a temporary password and answers ``{}``."""
        answer = self.client.add_user(email, fullname, admin=admin)
        service = {key: self.config.get("service", key) if self.config else None
                   for key in ("api_endpoint", "cognito_url", "clientid", "cognito_userpool",
                               "region")}
        service["api_endpoint"] = self.client.api_endpoint
        user = {"username": email, "api_key": answer.get("ApiKey")}
        lines = ["User successfully added! " + (
            "They should check their e-mail for a temporary password."
            if not answer.get("TemporaryPassword") else
            "Send them these, shown once:")]
        if answer.get("TemporaryPassword"):
            lines.append(f"temporary password: {answer['TemporaryPassword']}")
            lines.append("They should run `userclient login` to choose their own password "
                         "before their first use.")
        if answer.get("ApiKey"):
            lines.append(f"API key: {answer['ApiKey']} (it is also in the config below)")
        lines += ["", "They should put the following in ~/.config/qick.conf:",
                  _block(render_ini({"service": service, "user": user}))]
        self._write("\n".join(lines) + "\n")
        return answer

    def add_device(self, device_name: str, refresh_timeout: int = 60, *,
                   mock: dict | None = None) -> dict:
        """Create a device: ``{DeviceId, DeviceName, ClientId, ClientSecret}`` (secret once),
        and write the board's two files (as the original prints them). With ``mock``
        (``{"Board": ...}`` or ``{"MirrorOf": DeviceId}``) the service runs it as a
        simulated board (our service only)."""
        device = self.client.add_device(device_name, refresh_timeout, mock=mock)
        lines = ["Device successfully added!", ""]
        if not device.get("ClientSecret"):
            lines.append(f"DeviceId {device['DeviceId']}: the queue service runs this mock "
                         "device itself; it has no board files.")
        else:
            config_text, credentials_text = self._board_texts(device)
            lines += ["Put the following in the config file /etc/qick/config:",
                      _block(config_text), "",
                      "If using UserClient for workload submission, the [device] block is "
                      "needed in the client config as well.", "",
                      "Put the following in the device credentials file "
                      "/etc/qick/credentials:", _block(credentials_text)]
            if not (self.config and self.config.get("service", "oauth_endpoint")):
                lines += ["", "Your config has no [service] oauth_endpoint: add the "
                              "service's OAuth endpoint to the board's config."]
        self._write("\n".join(lines) + "\n")
        return device

    def _board_texts(self, device: dict) -> tuple[str, str]:
        service_keys = ("api_endpoint", "oauth_endpoint", "cognito_userpool", "cognito_url",
                        "clientid", "region")
        service = {k: self.config.get("service", k) if self.config else None
                   for k in service_keys}
        service["api_endpoint"] = self.client.api_endpoint
        config = render_ini({"service": service,
                             "device": {"name": device.get("DeviceName"),
                                        "id": device["DeviceId"]}})
        credentials = render_ini({"credentials": {"id": device["ClientId"],
                                                  "secret": device["ClientSecret"]}})
        return config, credentials

    def board_files(self, device: dict) -> tuple[str, str]:
        """The board's config and credentials files (INI text) for a new device."""
        if not (self.config and self.config.get("service", "oauth_endpoint")):
            raise BadRequest("cannot write the board's config: [service] oauth_endpoint is "
                             "not set in your config; add it (the service root on our queue "
                             "service) and try again", kind="config")
        return self._board_texts(device)

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

    def reset_password(self, user: str) -> dict:
        """A new temporary password for a user (admin; UserId or e-mail), shown once in
        ``TemporaryPassword``: their next login asks for a password of their own."""
        return self.client.reset_password(user)

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

    # --- prices (our service) ---------------------------------------------------------------
    def set_prices(self, device_id: str, per_used_second: float,
                   per_reserved_second: float) -> dict:
        """Set a device's prices (admin), in credits (device-seconds) per second used
        (pay-as-you-go) and per second reserved (timeslots); turns accounting on."""
        return self.client.set_prices(device_id, per_used_second, per_reserved_second)

    def get_prices(self, device_id: str) -> dict:
        """A device's prices now (PerUsedSecond, PerReservedSecond), their History and
        whether the service's Accounting is on."""
        return self.client.get_prices(device_id)

    def estimated_cost(self, device_id: str, seconds: float | None, *,
                       max_seconds: float | None = None) -> dict | None:
        """What a workload estimated at ``seconds`` of board time (None: unknown) will
        cost on the device, as the service reckons it: ``{EstimatedCost, Seconds,
        PerUsedSecond}`` (credits, in device-seconds), the run time capped by
        ``max_seconds``. None when the service charges nothing (accounting off, or not
        our service) or the run time is unknown."""
        if not self.client.supports("prices"):
            return None
        prices = self.client.get_prices(device_id)
        if not prices.get("Accounting"):
            return None
        if seconds is None or (max_seconds is not None and max_seconds < seconds):
            seconds = max_seconds
        if seconds is None:
            return None
        price = float(prices["PerUsedSecond"])
        return {"EstimatedCost": round(seconds * price, 6), "Seconds": seconds,
                "PerUsedSecond": price}

    # --- teams and credits (our service) -------------------------------------------------
    def create_team(self, name: str, *, scheduler: str | None = None) -> dict:
        """Create a team (admin); ``scheduler`` (UserId or e-mail): its first member, as
        its scheduler. Answers the team: TeamId, Name, CreatedBy, CreatedAt, Members."""
        return self.client.create_team(name, scheduler=scheduler)

    def get_teams(self) -> list[dict]:
        """Your teams (an admin: every team), each with its Members (UserId, Email, Role,
        IsDefault)."""
        return self.client.list_teams()

    def add_team_member(self, team: str, user: str, role: str = "user") -> dict:
        """Add a user (UserId or e-mail) to a team (TeamId or name) as ``scheduler`` or
        ``user`` (a scheduler of the team or an admin)."""
        return self.client.add_team_member(team, user, role)

    def set_team_role(self, team: str, user: str, role: str) -> dict:
        """Change a member's role (a scheduler of the team or an admin)."""
        return self.client.change_team_member(team, user, role=role)

    def set_default_team(self, team: str, user: str) -> dict:
        """Make ``team`` the default one of ``user`` (yourself, or as its scheduler)."""
        return self.client.change_team_member(team, user, is_default=True)

    def remove_team_member(self, team: str, user: str) -> dict:
        """Take a user out of a team (a scheduler of the team or an admin)."""
        return self.client.remove_team_member(team, user)

    def get_balance(self, team: str) -> dict:
        """A team's balance in device-seconds (its schedulers and admins): TeamId, Name,
        BalanceSeconds, Lines."""
        return self.client.team_balance(team)

    def get_ledger(self, team: str) -> dict:
        """A team's ledger, oldest line first, each with BalanceAfter (its schedulers and
        admins)."""
        return self.client.team_ledger(team)

    def grant_credits(self, team: str, seconds: float, note: str) -> dict:
        """Grant a team ``seconds`` device-seconds (admin), with a note saying why."""
        return self.client.grant_credits(team, seconds, note)

    def request_credits(self, team: str, seconds: float, justification: str,
                        estimate: dict | None = None) -> dict:
        """Ask the admins for ``seconds`` device-seconds for a team you schedule, saying
        why; ``estimate``: what ``userclient estimate --json`` printed (optional)."""
        return self.client.request_credits(team, seconds, justification, estimate)

    def get_credit_requests(self, *, state: str | None = None,
                            team: str | None = None) -> list[dict]:
        """Credit requests (admins: all; schedulers: their teams'), newest first;
        ``state``: pending, approved or denied."""
        return self.client.list_credit_requests(state=state, team=team)

    def approve_credit_request(self, request_id: str, seconds: float | None = None) -> dict:
        """Approve a pending request (admin), granting ``seconds`` (default: as asked)."""
        return self.client.decide_credit_request(request_id, True, seconds=seconds)

    def deny_credit_request(self, request_id: str, note: str) -> dict:
        """Deny a pending request (admin), saying why."""
        return self.client.decide_credit_request(request_id, False, note=note)

    def get_usage(self, by: str = "team", *, start: str | None = None,
                  end: str | None = None, team: str | None = None) -> dict:
        """Credits spent per team, user, device or month (UTC), from the ledger: yours, your
        teams' as their scheduler, everyone's as an admin."""
        return self.client.usage(by, start=start, end=end, team=team)
    # --- the calendar (our service) ----------------------------------------------------
    def reserve(self, device_id: str, team: str, start: Moment, end: Moment, *,
                note: str | None = None) -> dict:
        """Book the timeslot ``[start, end)`` on a device for a team (its scheduler or an
        admin; times: timezone-aware datetimes or ISO 8601 text with an offset). Answers
        the booking: Id, Start, End, Team, Note, Cost (device-seconds paid, when the
        facility's accounting is on)."""
        return self.client.reserve(device_id, team, iso_moment(start), iso_moment(end),
                                   note=note)

    def get_reservations(self, device_id: str | None = None) -> list[dict]:
        """Your teams' standing timeslots (an admin: all), earliest first."""
        return self.client.list_reservations(device_id=device_id)

    def cancel_reservation(self, booking_id: str) -> dict:
        """Cancel a timeslot before it starts: the booking with its Refund."""
        return self.client.cancel_reservation(booking_id)

    def add_maintenance(self, device_id: str, start: Moment, end: Moment, reason: str, *,
                        force: bool = False) -> dict:
        """Book maintenance (admin); ``force`` cancels the timeslots in the way (each
        refunded in full): they are listed in the answer's Cancelled."""
        return self.client.add_maintenance(device_id, iso_moment(start), iso_moment(end),
                                           reason, force=force)

    def get_maintenance(self, device_id: str | None = None) -> list[dict]:
        return self.client.list_maintenance(device_id=device_id)

    def end_maintenance(self, booking_id: str) -> dict:
        """Cancel maintenance (admin), or end it now when it has begun."""
        return self.client.end_maintenance(booking_id)

    def get_windows(self, device_id: str) -> dict:
        """A device's weekly pay-as-you-go windows (UTC): AlwaysOpen, Windows [{Day,
        Start, End}]."""
        return self.client.get_windows(device_id)

    def set_windows(self, device_id: str, windows: list[dict]) -> dict:
        """Replace a device's weekly windows (admin): ``[{"Day": "Mon", "Start": "18:00",
        "End": "24:00"}, ...]`` in UTC; ``[]``: the shared queue is always open."""
        return self.client.set_windows(device_id, windows)

    def get_calendar(self, device_id: str, start: Moment | None = None,
                     end: Moment | None = None) -> dict:
        """A device's calendar (default: now .. 14 days): Windows, Reservations (another
        team's only as Kind "reserved"), Maintenance."""
        return self.client.device_calendar(
            device_id, start=None if start is None else iso_moment(start),
            end=None if end is None else iso_moment(end))

    def get_calendar_ics(self, device_id: str, start: Moment | None = None,
                         end: Moment | None = None) -> str:
        """The same calendar as iCalendar text (RFC 5545), for a calendar application."""
        return self.client.device_calendar_ics(
            device_id, start=None if start is None else iso_moment(start),
            end=None if end is None else iso_moment(end))

    def calendar_feed_url(self, device_id: str) -> str:
        """A new feed URL of a device's calendar for calendar applications (they cannot
        log in): it holds a secret token that reads calendars as you, so keep it private.
        Making one revokes your earlier one."""
        token = self.client.new_calendar_feed()["Token"]
        return self.client.url("devices", device_id, "calendar.ics") + "?Feed=" + token

    def revoke_calendar_feed(self) -> bool:
        """Revoke your calendar feed URL; False when you had none."""
        return bool(self.client.revoke_calendar_feed()["Revoked"])
    # --- sessions (our service) -------------------------------------------------------
    def session(self, device_id: str | None = None, *, max_minutes: float | None = None,
                idle_minutes: float | None = None, team: str | None = None) -> Session:
        """Open a session on the device (default: the config's ``[device] id``), for
        ``with client.session(dev, max_minutes=30) as s: s.submit(...)``: closed when the
        block ends, also on an exception (``userclient.sessions``). Defaults: the service's
        (30 minutes at most, 5 idle; ``team``: your default team)."""
        return Session(self, self.open_session(device_id, max_minutes=max_minutes,
                                               idle_minutes=idle_minutes, team=team))

    def open_session(self, device_id: str | None = None, *, max_minutes: float | None = None,
                     idle_minutes: float | None = None, team: str | None = None) -> dict:
        """Open a session and answer it (SessionId, State, MaxMinutes, ...); ``session``
        is the same as a context manager that closes it."""
        return self.client.open_session(self._device_id(device_id), max_minutes=max_minutes,
                                        idle_minutes=idle_minutes, team=team)

    def get_sessions(self, device_id: str | None = None, *,
                     state: str | None = None) -> list[dict]:
        """Your sessions (an admin: everyone's), newest first; ``state``: open or closed."""
        return self.client.list_sessions(device_id=device_id, state=state)

    def get_session(self, session_id: str) -> dict:
        return self.client.get_session(session_id)

    def close_session(self, session_id: str) -> dict:
        """Close a session (yours; admins: any): the closed session, with HeldSeconds and
        Cost. Closing a closed one answers it unchanged."""
        return self.client.close_session(session_id)

    # --- devices ------------------------------------------------------------------------
    def get_devices(self) -> list[dict]:
        """Every device, as the service's JSON (the original's return)."""
        return self.client.list_devices_json()

    def list_devices(self) -> list[Device]:
        return self.client.list_devices()

    def get_device(self, device_id: str) -> Device:
        return self.client.get_device(device_id)

    def get_soccfg(self, device_id: str | None = None, *,
                   save_to: str | os.PathLike | None = None) -> dict:
        """The board's QICK configuration (soccfg) as a dict (what ``QickConfig`` takes);
        ``device_id`` defaults to the config's ``[device] id``. Optionally saved as JSON."""
        device_id = self._device_id(device_id)
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
            write_atomically(save_to, json.dumps(soccfg, indent=1), mode=0o644)
        return soccfg

    # --- workloads ----------------------------------------------------------------------
    def create_work(self, workloadfile: IO[bytes] | str | os.PathLike,
                    device_id: str | None = None, priority: str | Priority = "LOW", *,
                    name: str | None = None, idempotency_key: str | None = None,
                    team: str | None = None, max_seconds: float | None = None,
                    timeslot: bool = False, on_slot_end: str | None = None,
                    session_id: str | None = None) -> str:
        """Announce and upload a workload; return its WorkId.

        ``workloadfile`` is an open binary file (read from its start, closed after the
        upload, as the original does) or a path. ``device_id`` defaults to the config's
        ``[device] id``. With a service that supports them, the file's SHA-256 is announced
        (checked on arrival) and an Idempotency-Key makes a retried submit return the same
        WorkId.

        Our service (a facility's queue): ``team`` (TeamId or name; default: your default
        team) pays for it; ``max_seconds`` caps its cost (the board stops it there);
        ``timeslot`` runs it in the team's booked slot, where ``on_slot_end`` (``wait`` or
        ``fail``) says what becomes of it if unfinished at the slot's end. Work the team
        cannot cover is refused (``Conflict``, kind ``insufficient_credits``) and nothing
        stays queued. ``session_id``: submit in that open session of yours (``session``).
        """
        charging = _Charging(team, max_seconds, timeslot, on_slot_end, session_id)
        if isinstance(workloadfile, (str, os.PathLike)):
            source = Path(workloadfile).expanduser()
            if not source.is_file():
                raise BadRequest(f"{source}: no such workload file", kind="no_such_file")
            with open(source, "rb") as handle:
                return self._create_work(handle, device_id, priority, source.name, name,
                                         idempotency_key, charging)
        if not hasattr(workloadfile, "read"):
            raise BadRequest(f"create_work needs an open binary file or a path, not "
                             f"{type(workloadfile).__name__}", kind="bad_request")
        try:
            label = os.path.basename(workloadfile.name)  # type: ignore[union-attr]
        except (AttributeError, TypeError):
            label = None  # a temporary file's name is a number
        try:
            return self._create_work(workloadfile, device_id, priority, label, name,
                                     idempotency_key, charging)
        finally:
            workloadfile.close()

    def _create_work(self, handle: IO[bytes], device_id: str | None,
                     priority: str | Priority, label: str | None, name: str | None,
                     idempotency_key: str | None, charging: _Charging) -> str:
        device_id = self._device_id(device_id)
        try:
            Priority(priority.upper() if isinstance(priority, str) else priority)
        except ValueError:
            raise BadRequest(f"priority {priority!r} is not one of HIGH, MEDIUM, LOW",
                             kind="bad_request") from None
        caps = self.client.capabilities()
        sha256 = None
        if "sha256" in caps:
            handle.seek(0)
            digest = hashlib.sha256()
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
            sha256 = digest.hexdigest()
        handle.seek(0)
        if name is None and not caps.stock:  # the stock body stays as the stock clients send it
            name = label
        answer = self.client.create_workload(
            device_id, priority, name=name, sha256=sha256,
            idempotency_key=idempotency_key or str(uuid.uuid4()), team=charging.team,
            max_seconds=charging.max_seconds, timeslot=charging.timeslot,
            on_slot_end=charging.on_slot_end, session_id=charging.session_id)
        work_id = answer["WorkId"]
        try:
            upload_file(answer["UploadUrl"], handle, session=self.client.session,
                        what=f"upload workload {work_id}")
        except Conflict as exc:
            if exc.kind != INSUFFICIENT_CREDITS:
                raise
            with contextlib.suppress(QueueError):  # not queued: leave nothing behind
                self.client.cancel_workload(work_id)
            raise
        except QueueError as exc:
            exc.message = (f"{exc.message}; workload {work_id} was announced but its file "
                           f"did not arrive: submit again")
            exc.args = (exc.message,)
            raise
        return work_id

    def get_work(self, work_id: str) -> dict:
        """The workload as the service's JSON (the original's return); ``status`` gives
        it typed."""
        return plain(self.client.get_workload(work_id))

    def status(self, work_id: str) -> Workload:
        return self.client.get_workload(work_id)

    def list_work(self, device_id: str | None = None, *, status: str | None = None,
                  account_id: str | None = None, limit: int | None = None,
                  team: str | None = None) -> list[Workload]:
        """All workloads (every page), newest first; at most ``limit`` when given.
        ``team`` (our service): the team's work, yours and your teammates' (with
        ``QueuePosition``; their results stay theirs)."""
        found: list[Workload] = []
        for work in self.client.iter_workloads(device_id, status=status,
                                               account_id=account_id, team=team,
                                               limit=min(limit, 100) if limit else 100):
            found.append(work)
            if limit and len(found) >= limit:
                break
        return found

    def cancel(self, work_id: str) -> Workload:
        return self.client.cancel_workload(work_id)

    def wait_until_done(self, work_id: str, interval: float = 1.0, progress: bool = True, *,
                        timeout: float | None = None,
                        on_progress: Callable[[Workload], Any] | None = None) -> Workload:
        """Wait until the workload is DONE, FAILED or CANCELLED and return it.

        With ``progress`` it writes what the original prints: ``workload is READY``, a dot
        per answer that brings no change, a new line per state change.

        On a service offering ``workload-wait`` each request is held until the workload
        changes (so a change is seen at once); elsewhere it polls, every ``interval``
        seconds at most. Never gives up while the work is queued unless ``timeout``
        (seconds) is given, then raises WaitTimeout. Transient service failures are ridden
        out. ``on_progress`` is called with the workload on every answer (to show
        position, status, progress, estimate). On a stock service, DONE work is answered
        with the outcome its board recorded in the results file (``final_status``).
        """
        shown: list[str] = []

        def show(work: Workload) -> None:
            if not progress:
                return
            if shown and work.WorkStatus == shown[-1]:
                self._write(".")
                return
            reason = f": {work.ErrorMessage}" if work.ErrorMessage and work.terminal else ""
            self._write(("\n" if shown else "") + f"workload is {work.WorkStatus}{reason}"
                        + ("\n" if work.terminal else ""))
            shown.append(str(work.WorkStatus))

        def answered(work: Workload) -> None:
            show(work)
            if on_progress is not None:
                on_progress(work)

        work = self._wait(work_id, interval, timeout, answered)
        final = self.final_status(work)
        if progress and final is not work:  # a stock service's DONE, FAILED in the file
            self._write(f"workload is {final.WorkStatus}: {final.ErrorMessage} (recorded in "
                        f"its results file)\n")
        return final

    def _wait(self, work_id: str, poll_interval: float, timeout: float | None,
              on_answer: Callable[[Workload], Any]) -> Workload:
        if not poll_interval > 0:
            raise BadRequest(f"interval must be more than 0 seconds (got {poll_interval})")
        deadline = None if timeout is None else self._clock() + timeout
        # polls start fast and slow down to poll_interval; a change starts them fast again
        pause = BackoffCounter(Backoff(base=min(POLL_FIRST_SECONDS, poll_interval),
                                       cap=poll_interval))
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
                on_answer(work)
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
                    pause.reset()
                    last_status = work.WorkStatus
            if deadline is not None:
                left = deadline - self._clock()
                if left <= 0:
                    status = work.WorkStatus if work else "unknown"
                    raise WaitTimeout(f"workload {work_id} is still {status} after "
                                      f"{timeout:g} s; it stays in the queue: wait again "
                                      f"later", kind="timeout")
                self._sleep(min(pause.next_delay(), left))
            else:
                self._sleep(pause.next_delay())

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

    def get_results(self, work_id: str) -> IO[bytes]:
        """The results (HDF5) of a DONE workload as an open temporary file, at its start
        (deleted when closed): ``with client.get_results(wid) as f: expt.read_results(f)``.
        A workload that is not DONE raises ``WorkNotDone`` (a ``RuntimeError`` too); the
        partial results of a FAILED one are saved with ``download_results``."""
        work = self.client.get_workload(work_id)
        if work.status is not WorkStatus.DONE or not work.WorkloadResultUrl:
            reason = f": {work.ErrorMessage}" if work.ErrorMessage else ""
            raise WorkNotDone(f"workload {work_id} is not DONE (it is {work.WorkStatus}"
                              f"{reason}); wait for it with wait_until_done, or save partial "
                              f"results with download_results", kind="not_done")
        directory = tempfile.mkdtemp(prefix="qick-results-")
        try:
            path = os.path.join(directory, f"{work_id}.h5")
            download_file(work.WorkloadResultUrl, path, sha256=True,
                          session=self.client.session,
                          what=f"download the results of {work_id}")
            handle = open(path, "rb")  # the open file outlives its name
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return handle

    def download_results(self, work_id: str, path: str | os.PathLike) -> Transferred:
        """Download the results (HDF5) of a finished workload to ``path``; a FAILED one's
        too when its board uploaded partial results."""
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
