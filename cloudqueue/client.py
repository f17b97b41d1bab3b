"""The REST client of the queue API (docs/protocol.md), for people, admins and boards.

``QueueClient(api_endpoint, auth)`` joins paths onto the endpoint *including* its path prefix
(an API Gateway stage such as ``/dev``), puts a timeout on every call, retries transient
failures with backoff (never a 4xx; a ``POST /workloads`` only when it carries an
Idempotency-Key), and raises the errors of ``cloudqueue.errors``.

Extras of our service (Part 2) are feature-detected through ``GET /capabilities``: a 404 or
403 there means a stock AWS deployment, and asking for an extra then raises NotSupported.

This module is imported on the board: it needs ``requests`` only.
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

import requests

from cloudqueue.auth import Auth, NoAuth
from cloudqueue.errors import (BadRequest, Forbidden, NotFound, NotSupported, QueueError,
                               ServiceUnavailable)
from cloudqueue.httpcall import call
from cloudqueue.models import Device, Priority, Workload
from qickbase.backoff import Backoff

DEFAULT_TIMEOUT = 30.0
DEFAULT_BACKOFF = Backoff(base=0.5, cap=20.0)
DEFAULT_TRIES = 5          # calls of one request at most, the first included
MAX_WAIT_SECONDS = 20
MAX_HOLDING = 100          # the service's limit on ?Holding= (docs/protocol.md)
#: the heartbeat ``DeviceStatus`` values the stock gateway's model allows
STOCK_DEVICE_STATUSES = ("ONLINE", "BUSY", "OFFLINE")
#: A stock handler's 500 for a WorkId or DeviceId with no item: it reads the fields of the
#: missing DynamoDB item and Node.js fails with this TypeError (the wording of Node 14 and
#: later; Node 12's is the second form). See docs/protocol.md, "Unknown ids on a stock service".
STOCK_MISSING_ITEM = re.compile(r"^Cannot destructure property \S+ of "
                                r"(.+ as it is undefined|'undefined' or 'null')\.?$")


@dataclass(frozen=True)
class Capabilities:
    """What the service offers. ``stock`` is True for a stock AWS Cloud Queue deployment."""

    service: str
    version: str | None
    features: frozenset[str] = field(default_factory=frozenset)

    @property
    def stock(self) -> bool:
        return self.service == "stock"

    def __contains__(self, feature: str) -> bool:
        return feature in self.features


STOCK = Capabilities("stock", None, frozenset())


@dataclass
class WorkloadPage:
    items: list[Workload]
    next_key: dict | None  # pass back as ``start_key`` for the next page; None on the last


class QueueClient:
    """Every endpoint of the protocol. Methods return models or plain dicts of the answer."""

    def __init__(self, api_endpoint: str, auth: Auth | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, backoff: Backoff = DEFAULT_BACKOFF,
                 tries: int = DEFAULT_TRIES, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if not api_endpoint or "://" not in api_endpoint:
            raise BadRequest(f"api_endpoint {api_endpoint!r} is not a URL; set [service] "
                             f"api_endpoint to e.g. https://host/dev", kind="config")
        self.api_endpoint = api_endpoint.rstrip("/")
        self.auth = auth or NoAuth()
        self.timeout = timeout
        self.backoff = backoff
        self.tries = tries
        self.session = session or requests.Session()
        self._sleep = sleep
        self._capabilities: Capabilities | None = None
        self._lock = threading.Lock()

    # --- plumbing -----------------------------------------------------------------------
    def url(self, *segments: str) -> str:
        """The endpoint joined with the quoted path segments (never the host root)."""
        return self.api_endpoint + "/" + "/".join(quote(str(s), safe="") for s in segments)

    def _call(self, method: str, segments: tuple[str, ...], *, what: str,
              json_body: Any = None, params: dict | None = None, safe: bool | None = None,
              headers: dict | None = None, timeout: float | None = None,
              auth: Auth | None = None) -> Any:
        if safe is None:
            safe = method in ("GET", "PUT", "DELETE", "HEAD")
        kwargs: dict[str, Any] = {}
        if json_body is not None:
            kwargs["data"] = json.dumps(json_body)
            headers = {"Content-Type": "application/json", **(headers or {})}
        answer = call(self.session, method, self.url(*segments), what=what,
                      timeout=timeout or self.timeout, backoff=self.backoff, tries=self.tries,
                      safe=safe, auth=auth or self.auth, params=params, headers=headers,
                      sleep=self._sleep, **kwargs)
        try:
            if not answer.content.strip():
                return None
            return answer.json()
        except ValueError:
            raise QueueError(f"{what}: the service sent an answer that is not JSON "
                             f"(HTTP {answer.status_code}); is api_endpoint right?",
                             kind="invalid_json") from None
        finally:
            answer.close()

    # --- feature detection --------------------------------------------------------------
    def capabilities(self, refresh: bool = False) -> Capabilities:
        """``GET /capabilities`` (cached). 404/403 mean a stock service with no extras."""
        with self._lock:
            if self._capabilities is not None and not refresh:
                return self._capabilities
        try:
            body = self._call("GET", ("capabilities",), what="feature detection",
                              auth=NoAuth())
        except (NotFound, Forbidden):
            caps = STOCK
        else:
            if not isinstance(body, dict):
                caps = STOCK
            else:
                caps = Capabilities(str(body.get("Service") or "unknown"),
                                    body.get("Version"),
                                    frozenset(str(f) for f in body.get("Features") or ()))
        with self._lock:
            self._capabilities = caps
        return caps

    def supports(self, feature: str) -> bool:
        return feature in self.capabilities()

    def require(self, feature: str, action: str) -> None:
        """Raise NotSupported, saying so plainly, when the service lacks ``feature``."""
        caps = self.capabilities()
        if feature in caps:
            return
        who = ("this queue service is a stock Cloud Queue deployment" if caps.stock
               else f"this queue service ({caps.service} {caps.version or ''}) "
                    f"does not offer '{feature}'")
        raise NotSupported(f"{action} is not supported: {who}", kind="not_supported")

    # --- admin --------------------------------------------------------------------------
    def add_user(self, email: str, full_name: str, *, admin: bool = False) -> dict:
        """``POST /users``. Ours answers ``{UserId, Email, ApiKey, TemporaryPassword}``,
        the stock service nothing (``{}``): the user gets an e-mail instead."""
        body: dict[str, Any] = {"Email": email, "FullName": full_name}
        if admin:
            self.require("api-keys", "creating an admin user")
            body["Groups"] = ["Admin"]
        return self._call("POST", ("users",), what=f"add user {email}", json_body=body,
                          safe=False) or {}

    def add_device(self, name: str, refresh_timeout: int = 60, *,
                   mock: dict | None = None) -> dict:
        """``POST /devices`` → ``{DeviceId, DeviceName, ClientId, ClientSecret}``.

        ``mock`` (ours): ``{"Board": "zcu216-v2"}`` or ``{"MirrorOf": DeviceId}`` makes a
        simulated device the service runs itself; the answer then has ``Mock``, no secret."""
        body: dict[str, Any] = {"DeviceName": name, "RefreshTimeout": int(refresh_timeout)}
        if mock is not None:
            self.require("mock-devices", "adding a mock device")
            body["Mock"] = mock
        return self._call("POST", ("devices",), what=f"add device {name}", json_body=body,
                          safe=False)

    # --- admin lifecycle (ours: feature ``admin-lifecycle``) -----------------------------
    def list_users(self) -> list[dict]:
        """``GET /users`` (admin): ``[{UserId, Email, FullName, Groups, Disabled, ...}]``."""
        self.require("admin-lifecycle", "listing users")
        return self._call("GET", ("users",), what="list users") or []

    def disable_user(self, user: str) -> dict:
        """``POST /users/{user}/disable`` (admin; ``user``: UserId or e-mail): every
        credential of theirs is refused from the next request on."""
        self.require("admin-lifecycle", "disabling a user")
        return self._call("POST", ("users", user, "disable"), what=f"disable user {user}",
                          safe=True)

    def reset_password(self, user: str) -> dict:
        """``POST /users/{user}/reset-password`` (admin): a new temporary password
        (``TemporaryPassword``, shown once); the old one stops. Safe to retry: the
        password of the last answer is the one that works."""
        self.require("admin-lifecycle", "resetting a user's password")
        return self._call("POST", ("users", user, "reset-password"),
                          what=f"reset the password of user {user}", safe=True)

    def enable_user(self, user: str) -> dict:
        """``POST /users/{user}/enable`` (admin): undoes ``disable_user``."""
        self.require("admin-lifecycle", "enabling a user")
        return self._call("POST", ("users", user, "enable"), what=f"enable user {user}",
                          safe=True)

    def create_api_key(self, *, label: str | None = None, user: str | None = None) -> dict:
        """``POST /api-keys``: ``{KeyId, Label, ..., ApiKey}``, the key shown once. ``user``
        (admins): make it for another user. Not retried: a retry could make a second key."""
        self.require("admin-lifecycle", "creating an API key")
        body: dict[str, Any] = {}
        if label is not None:
            body["Label"] = label
        if user is not None:
            body["UserId"] = user
        return self._call("POST", ("api-keys",), what="create an API key", json_body=body,
                          safe=False)

    def list_api_keys(self, *, user: str | None = None) -> list[dict]:
        """``GET /api-keys``: your working keys (never the keys themselves); ``user``
        (admins): another user's."""
        self.require("admin-lifecycle", "listing API keys")
        params = {"UserId": user} if user else None
        return self._call("GET", ("api-keys",), what="list API keys", params=params) or []

    def revoke_api_key(self, key_id: str) -> dict:
        """``POST /api-keys/{KeyId}/revoke`` (its owner or an admin); doing it twice is fine."""
        self.require("admin-lifecycle", "revoking an API key")
        return self._call("POST", ("api-keys", key_id, "revoke"),
                          what=f"revoke API key {key_id}", safe=True)

    def rotate_device_secret(self, device_id: str) -> dict:
        """``POST /devices/{id}/rotate-secret`` (admin): ``{DeviceId, DeviceName, ClientId,
        ClientSecret}``, the secret shown once; the old one and its tokens stop at once."""
        self.require("admin-lifecycle", "rotating a device's secret")
        return self._call("POST", ("devices", device_id, "rotate-secret"),
                          what=f"rotate the secret of device {device_id}", safe=False)

    def rename_device(self, device_id: str, name: str) -> Device:
        """``PATCH /devices/{id} {DeviceName}`` (admin)."""
        self.require("admin-lifecycle", "renaming a device")
        body = self._call("PATCH", ("devices", device_id), what=f"rename device {device_id}",
                          json_body={"DeviceName": name}, safe=True)
        return Device.from_json(body)

    def delete_device(self, device_id: str, *, cancel_work: bool = False) -> dict:
        """``DELETE /devices/{id}`` (admin): ``{DeviceId, DeviceName, Deleted, CancelledWork}``.
        Conflict while it has unfinished work, unless ``cancel_work`` cancels it."""
        self.require("admin-lifecycle", "deleting a device")
        params = {"CancelWork": "true"} if cancel_work else None
        return self._call("DELETE", ("devices", device_id), what=f"delete device {device_id}",
                          params=params, safe=False)

    # --- teams and credits (ours: feature ``teams``) -------------------------------------
    def create_team(self, name: str, *, scheduler: str | None = None) -> dict:
        """``POST /teams {Name, Scheduler?}`` (admin): ``{TeamId, Name, Members, ...}``.
        Not retried: a retry after a lost answer would say the name is taken."""
        self.require("teams", "creating a team")
        body: dict[str, Any] = {"Name": name}
        if scheduler is not None:
            body["Scheduler"] = scheduler
        return self._call("POST", ("teams",), what=f"create team {name}", json_body=body,
                          safe=False)

    def list_teams(self) -> list[dict]:
        """``GET /teams``: your teams (an admin: every team), each with its Members."""
        self.require("teams", "listing teams")
        return self._call("GET", ("teams",), what="list teams") or []

    def add_team_member(self, team: str, user: str, role: str) -> dict:
        """``POST /teams/{team}/members {User, Role}`` (a scheduler of the team or an
        admin; ``team``: TeamId or name, ``user``: UserId or e-mail): the team."""
        self.require("teams", "adding a team member")
        return self._call("POST", ("teams", team, "members"), what=f"add {user} to team {team}",
                          json_body={"User": user, "Role": role}, safe=False)

    def change_team_member(self, team: str, user: str, *, role: str | None = None,
                           is_default: bool | None = None) -> dict:
        """``PUT /teams/{team}/members/{user} {Role?, IsDefault?}``: the team."""
        self.require("teams", "changing a team member")
        body: dict[str, Any] = {}
        if role is not None:
            body["Role"] = role
        if is_default is not None:
            body["IsDefault"] = is_default
        return self._call("PUT", ("teams", team, "members", user),
                          what=f"change {user} in team {team}", json_body=body)

    def remove_team_member(self, team: str, user: str) -> dict:
        """``DELETE /teams/{team}/members/{user}``: the team. Not retried: a retry after a
        lost answer would say they are not in it."""
        self.require("teams", "removing a team member")
        return self._call("DELETE", ("teams", team, "members", user),
                          what=f"remove {user} from team {team}", safe=False)

    def team_balance(self, team: str) -> dict:
        """``GET /teams/{team}/balance`` (its schedulers and admins): ``{TeamId, Name,
        BalanceSeconds, Lines}``."""
        self.require("teams", "reading a team's balance")
        return self._call("GET", ("teams", team, "balance"), what=f"balance of team {team}")

    def team_ledger(self, team: str) -> dict:
        """``GET /teams/{team}/ledger`` (its schedulers and admins): ``{TeamId, Name,
        BalanceSeconds, Lines: [{EntryId, Kind, Seconds, BalanceAfter, Note, At, ...}]}``."""
        self.require("teams", "reading a team's ledger")
        return self._call("GET", ("teams", team, "ledger"), what=f"ledger of team {team}")

    def grant_credits(self, team: str, seconds: float, note: str) -> dict:
        """``POST /teams/{team}/grants {Seconds, Note}`` (admin): the ledger line with the
        team's ``BalanceSeconds`` after it. Not retried: a retry could grant twice."""
        self.require("teams", "granting credits")
        return self._call("POST", ("teams", team, "grants"), what=f"grant credits to {team}",
                          json_body={"Seconds": seconds, "Note": note}, safe=False)

    # --- credit requests and usage (ours: features ``credit-requests``, ``usage``) ---------
    def request_credits(self, team: str, seconds: float, justification: str,
                        estimate: dict | None = None) -> dict:
        """``POST /credits/requests {Team, Seconds, Justification, Estimate?}`` (a scheduler
        of the team): the pending request. Not retried: a retry could ask twice."""
        self.require("credit-requests", "requesting credits")
        body: dict[str, Any] = {"Team": team, "Seconds": seconds,
                                "Justification": justification}
        if estimate is not None:
            body["Estimate"] = estimate
        return self._call("POST", ("credits", "requests"), what=f"request credits for {team}",
                          json_body=body, safe=False)

    def list_credit_requests(self, *, state: str | None = None,
                             team: str | None = None) -> list[dict]:
        """``GET /credits/requests?State=&Team=``: admins every request, schedulers their
        teams', newest first."""
        self.require("credit-requests", "listing credit requests")
        params = {k: v for k, v in (("State", state), ("Team", team)) if v is not None}
        return self._call("GET", ("credits", "requests"), what="list credit requests",
                          params=params or None) or []

    def decide_credit_request(self, request_id: str, approve: bool, *,
                              seconds: float | None = None, note: str | None = None) -> dict:
        """``POST /credits/requests/{id}/approve {Seconds?, Note?}`` or ``.../deny {Note}``
        (admin): the decided request. Not retried: a decision is made once (a retry after
        a lost answer is told it was decided)."""
        self.require("credit-requests", "deciding a credit request")
        body: dict[str, Any] = {}
        if seconds is not None:
            body["Seconds"] = seconds
        if note is not None:
            body["Note"] = note
        verb = "approve" if approve else "deny"
        return self._call("POST", ("credits", "requests", request_id, verb),
                          what=f"{verb} credit request {request_id}", json_body=body,
                          safe=False)

    def usage(self, by: str = "team", *, start: str | None = None, end: str | None = None,
              team: str | None = None) -> dict:
        """``GET /usage?By=&From=&To=&Team=``: ``{By, From, To, Rows: [{Key, Name, Charged,
        Refunded, Spent, BoardSeconds, Workloads, Reservations, Sessions, Total}], Total}``.
        ``start``/``end``: ISO 8601 times, days or months (UTC)."""
        self.require("usage", "reading usage")
        params = {k: v for k, v in (("By", by), ("From", start), ("To", end), ("Team", team))
                  if v is not None}
        return self._call("GET", ("usage",), what="usage report", params=params)
    # --- the calendar: timeslots, maintenance, windows (ours: feature ``calendar``) ------
    def reserve(self, device_id: str, team: str, start: str, end: str, *,
                note: str | None = None) -> dict:
        """``POST /reservations {Device, Team, Start, End, Note?}`` (a scheduler of the team,
        or an admin; times ISO 8601 with an offset): the booking, with its ``Cost``. Not
        retried: a retry after a lost answer would overlap the slot just booked."""
        self.require("calendar", "booking a timeslot")
        body: dict[str, Any] = {"Device": device_id, "Team": team, "Start": start, "End": end}
        if note is not None:
            body["Note"] = note
        return self._call("POST", ("reservations",), what=f"reserve {device_id}",
                          json_body=body, safe=False)

    def list_reservations(self, *, device_id: str | None = None, start: str | None = None,
                          end: str | None = None) -> list[dict]:
        """``GET /reservations?Device=&From=&To=``: your teams' standing timeslots (an
        admin: all), earliest first."""
        self.require("calendar", "listing timeslots")
        params = {k: v for k, v in (("Device", device_id), ("From", start), ("To", end))
                  if v is not None}
        return self._call("GET", ("reservations",), what="list reservations",
                          params=params or None) or []

    def cancel_reservation(self, booking_id: str) -> dict:
        """``DELETE /reservations/{id}`` before it starts: the booking with its ``Refund``.
        Not retried: a retry after a lost answer would say it is cancelled already."""
        self.require("calendar", "cancelling a timeslot")
        return self._call("DELETE", ("reservations", booking_id),
                          what=f"cancel reservation {booking_id}", safe=False)

    def add_maintenance(self, device_id: str, start: str, end: str, reason: str, *,
                        force: bool = False) -> dict:
        """``POST /maintenance {Device, Start, End, Reason, Force}`` (admin): the booking and
        ``Cancelled``, the timeslots ``force`` cancelled (each refunded). Not retried."""
        self.require("calendar", "booking maintenance")
        return self._call("POST", ("maintenance",), what=f"book maintenance of {device_id}",
                          json_body={"Device": device_id, "Start": start, "End": end,
                                     "Reason": reason, "Force": force}, safe=False)

    def list_maintenance(self, *, device_id: str | None = None) -> list[dict]:
        """``GET /maintenance?Device=``: standing maintenance, earliest first."""
        self.require("calendar", "listing maintenance")
        params = {"Device": device_id} if device_id is not None else None
        return self._call("GET", ("maintenance",), what="list maintenance", params=params) or []

    def end_maintenance(self, booking_id: str) -> dict:
        """``DELETE /maintenance/{id}`` (admin): cancelled before it starts, ended now
        once begun. Not retried."""
        self.require("calendar", "cancelling maintenance")
        return self._call("DELETE", ("maintenance", booking_id),
                          what=f"cancel maintenance {booking_id}", safe=False)

    def get_windows(self, device_id: str) -> dict:
        """``GET /devices/{id}/windows``: ``{DeviceId, AlwaysOpen, Windows: [{Day, Start,
        End}]}`` (UTC)."""
        self.require("calendar", "reading a device's windows")
        return self._call("GET", ("devices", device_id, "windows"),
                          what=f"windows of {device_id}")

    def set_windows(self, device_id: str, windows: list[dict]) -> dict:
        """``PUT /devices/{id}/windows {Windows}`` (admin): replaces the weekly rules
        (``[]``: always open)."""
        self.require("calendar", "setting a device's windows")
        return self._call("PUT", ("devices", device_id, "windows"),
                          what=f"set the windows of {device_id}",
                          json_body={"Windows": windows})

    def device_calendar(self, device_id: str, *, start: str | None = None,
                        end: str | None = None) -> dict:
        """``GET /devices/{id}/calendar?From=&To=``: ``{Windows, Reservations,
        Maintenance, AlwaysOpen, From, To, ...}`` (default: now .. 14 days)."""
        self.require("calendar", "reading a device's calendar")
        params = {k: v for k, v in (("From", start), ("To", end)) if v is not None}
        return self._call("GET", ("devices", device_id, "calendar"),
                          what=f"calendar of {device_id}", params=params or None)

    def device_calendar_ics(self, device_id: str, *, start: str | None = None,
                            end: str | None = None) -> str:
        """``GET /devices/{id}/calendar.ics``: the calendar as iCalendar text."""
        self.require("calendar", "reading a device's calendar")
        params = {k: v for k, v in (("From", start), ("To", end)) if v is not None}
        what = f"calendar of {device_id}"
        answer = call(self.session, "GET", self.url("devices", device_id, "calendar.ics"),
                      what=what, timeout=self.timeout, backoff=self.backoff,
                      tries=self.tries, auth=self.auth, params=params or None,
                      sleep=self._sleep)
        try:
            return answer.content.decode("utf-8")
        except UnicodeDecodeError:
            raise QueueError(f"{what}: the service sent an answer that is not UTF-8 text",
                             kind="invalid_answer") from None
        finally:
            answer.close()

    def new_calendar_feed(self) -> dict:
        """``POST /calendar-feed``: ``{Token, Path}``, a new feed token for calendar
        applications (replacing your earlier one); shown once. Not retried."""
        self.require("calendar", "making a calendar feed")
        return self._call("POST", ("calendar-feed",), what="make a calendar feed", safe=False)

    def revoke_calendar_feed(self) -> dict:
        """``DELETE /calendar-feed``: ``{Revoked}`` (false: there was none)."""
        self.require("calendar", "revoking a calendar feed")
        return self._call("DELETE", ("calendar-feed",), what="revoke the calendar feed")
    # --- sessions (ours: feature ``sessions``) ------------------------------------------
    def open_session(self, device_id: str, *, max_minutes: float | None = None,
                     idle_minutes: float | None = None, team: str | None = None) -> dict:
        """``POST /sessions {Device, MaxMinutes?, IdleMinutes?, Team?}``: ``{SessionId,
        State, ...}``. Not retried: a retry after a lost answer would find the device's
        one open session taken (by the first)."""
        self.require("sessions", "opening a session")
        body: dict[str, Any] = {"Device": device_id}
        for name, value in (("MaxMinutes", max_minutes), ("IdleMinutes", idle_minutes),
                            ("Team", team)):
            if value is not None:
                body[name] = value
        return self._call("POST", ("sessions",), what=f"open a session on {device_id}",
                          json_body=body, safe=False)

    def list_sessions(self, *, device_id: str | None = None,
                      state: str | None = None) -> list[dict]:
        """``GET /sessions``: yours (an admin: everyone's), newest first; ``state``:
        ``open`` or ``closed``."""
        self.require("sessions", "listing sessions")
        params = {k: v for k, v in (("Device", device_id), ("State", state)) if v}
        return self._call("GET", ("sessions",), what="list sessions", params=params) or []

    def get_session(self, session_id: str) -> dict:
        """``GET /sessions/{id}`` (its owner or an admin)."""
        self.require("sessions", "reading a session")
        return self._call("GET", ("sessions", session_id), what=f"get session {session_id}")

    def close_session(self, session_id: str) -> dict:
        """``DELETE /sessions/{id}``: the closed session (closing a closed one answers it
        unchanged, so it is retried)."""
        self.require("sessions", "closing a session")
        return self._call("DELETE", ("sessions", session_id),
                          what=f"close session {session_id}")
    # --- prices (ours: feature ``prices``) ------------------------------------------------
    def set_prices(self, device_id: str, per_used_second: float,
                   per_reserved_second: float) -> dict:
        """``PUT /devices/{id}/prices {PerUsedSecond, PerReservedSecond}`` (admin): the
        prices in force from now (accounting on): ``{DeviceId, PerUsedSecond,
        PerReservedSecond, Accounting, History}``."""
        self.require("prices", "setting prices")
        return self._call("PUT", ("devices", device_id, "prices"),
                          what=f"set the prices of device {device_id}",
                          json_body={"PerUsedSecond": per_used_second,
                                     "PerReservedSecond": per_reserved_second})

    def get_prices(self, device_id: str) -> dict:
        """``GET /devices/{id}/prices``: as ``set_prices`` answers."""
        self.require("prices", "reading prices")
        return self._call("GET", ("devices", device_id, "prices"),
                          what=f"prices of device {device_id}")

    # --- users --------------------------------------------------------------------------
    def list_devices(self) -> list[Device]:
        return [Device.from_json(d) for d in self.list_devices_json()]

    def list_devices_json(self) -> list[dict]:
        """``GET /devices`` as the service answered it (a new device's ``LastRefreshed: 0``
        included): what the original ``get_devices`` returns."""
        return self._call("GET", ("devices",), what="list devices") or []

    def missing_on_stock(self, error: QueueError) -> bool:
        """Whether ``error`` is how a stock service says an id has no item (its handler's
        500 ``STOCK_MISSING_ITEM``), on a service that is stock (capabilities 403/404)."""
        return (isinstance(error, ServiceUnavailable) and error.status == 500
                and bool(STOCK_MISSING_ITEM.match(error.detail or ""))
                and self.capabilities().stock)

    def get_device(self, device_id: str) -> Device:
        try:
            body = self._call("GET", ("devices", device_id), what=f"get device {device_id}")
        except ServiceUnavailable as exc:
            if self.missing_on_stock(exc):
                raise NotFound(f"no such device {device_id}: check the id against "
                               f"`userclient devices`", kind="not_found") from None
            raise
        if not body:
            raise NotFound(f"device {device_id} not found", kind="not_found")
        return Device.from_json(body)

    def create_workload(self, device_id: str, priority: str | Priority = Priority.MEDIUM, *,
                        name: str | None = None, sha256: str | None = None,
                        idempotency_key: str | None = None, team: str | None = None,
                        max_seconds: float | None = None, timeslot: bool = False,
                        on_slot_end: str | None = None,
                        session_id: str | None = None) -> dict:
        """``POST /workloads`` → ``{WorkId, UploadUrl}``.

        ``sha256`` and the idempotency key are sent only when the service supports them;
        with a key, a retried request cannot create a second workload, so it is retried.
        ``team``, ``max_seconds``, ``timeslot``, ``on_slot_end``: who pays and the cost
        cap (ours, feature ``prices``; NotSupported elsewhere). ``session_id`` (ours):
        submit in that open session of yours (``open_session``).
        """
        priority = Priority(priority.upper() if isinstance(priority, str) else priority)
        body: dict[str, Any] = {"DeviceId": device_id, "Priority": priority.value}
        if name:
            body["WorkloadName"] = name
        charging = {"Team": team, "MaxSeconds": max_seconds, "Timeslot": timeslot or None,
                    "OnSlotEnd": on_slot_end}
        if any(value is not None for value in charging.values()):
            self.require("prices", "charging work to a team (--team, --max-seconds, "
                                   "--timeslot)")
            body.update({k: v for k, v in charging.items() if v is not None})
        if session_id is not None:
            self.require("sessions", "submitting in a session")
            body["SessionId"] = session_id
        headers = {}
        if sha256 and self.supports("sha256"):
            body["ContentSHA256"] = sha256
        if self.supports("idempotency"):
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        return self._call("POST", ("workloads",), what=f"submit to device {device_id}",
                          json_body=body, headers=headers, safe=bool(headers))

    def list_workloads(self, device_id: str | None = None, *, account_id: str | None = None,
                       status: str | None = None, limit: int | None = None,
                       start_key: dict | None = None, team: str | None = None) -> WorkloadPage:
        """One page of ``GET /workloads``, newest first; ``team`` (ours, feature
        ``team-queue``): the team's work, each with its QueuePosition."""
        caps = self.capabilities()
        params: dict[str, str] = {}
        if team:
            self.require("team-queue", "listing a team's work")
            params["Team"] = team
        if device_id is None and caps.stock:
            raise NotSupported("listing work without a device is not supported: this queue "
                               "service is a stock Cloud Queue deployment (give a device id)")
        if device_id:
            params["DeviceId"] = device_id
        if account_id:
            params["AccountId"] = account_id
        if status:
            if caps.stock:
                raise NotSupported("filtering by status is not supported: this queue "
                                   "service is a stock Cloud Queue deployment")
            params["Status"] = status.upper()
        if limit is not None and "page-limit" in caps:
            params["Limit"] = str(limit)
        if start_key:
            params["ExclusiveStartKeyJson"] = json.dumps(start_key)
        body = self._call("GET", ("workloads",), what="list workloads", params=params) or {}
        items = [Workload.from_json(w) for w in body.get("Items") or []]
        return WorkloadPage(items, body.get("LastEvaluatedKey") or None)

    def iter_workloads(self, device_id: str | None = None, **filters: Any) -> Iterator[Workload]:
        """Every workload, page after page."""
        key = None
        while True:
            page = self.list_workloads(device_id, start_key=key, **filters)
            yield from page.items
            if not page.next_key:
                return
            key = page.next_key

    def get_workload(self, work_id: str, *, wait_seconds: float = 0,
                     seen: str | None = None) -> Workload:
        """``GET /workloads/{id}``. With ``seen`` (the ``ChangeToken`` of an earlier answer)
        and ``wait_seconds`` (at most 20), a service offering ``workload-wait`` holds the
        answer until the workload changes; any other answers at once."""
        params = None
        wait = max(0.0, min(float(wait_seconds), MAX_WAIT_SECONDS))
        if wait and seen and self.supports("workload-wait"):
            params = {"WaitSeconds": f"{wait:.1f}", "Seen": seen}
        else:
            wait = 0.0
        try:
            body = self._call("GET", ("workloads", work_id), what=f"get workload {work_id}",
                              params=params, timeout=self.timeout + wait)
        except ServiceUnavailable as exc:
            if self.missing_on_stock(exc):
                raise NotFound(f"no such workload {work_id} (or not visible to you)",
                               kind="not_found") from None
            raise
        if not body:
            raise NotFound(f"workload {work_id} not found", kind="not_found")
        return Workload.from_json(body)

    def cancel_workload(self, work_id: str) -> Workload:
        """``POST /workloads/{id}/cancel`` (ours). Conflict when it is already finished."""
        self.require("cancel", "cancelling a workload")
        body = self._call("POST", ("workloads", work_id, "cancel"),
                          what=f"cancel workload {work_id}", safe=False)
        return Workload.from_json(body or {"WorkId": work_id})

    # --- devices (the board) ------------------------------------------------------------
    def heartbeat(self, device_id: str, status: str = "ONLINE", *,
                  config_extension: str = "json", health: dict | None = None) -> dict:
        """``PUT /devices/{id}`` → ``{DeviceId, UploadUrl, CancelRequested?}``.

        The stock gateway takes only ``STOCK_DEVICE_STATUSES`` (any other is a 400, the
        heartbeat lost): there a board that cannot take work (our ``ERROR``) says OFFLINE."""
        if status not in STOCK_DEVICE_STATUSES and self.capabilities().stock:
            status = "OFFLINE"
        body: dict[str, Any] = {"DeviceStatus": status,
                                "DeviceConfigurationFileExtension": config_extension}
        if health is not None and self.supports("device-health"):
            body["Health"] = health
        answer = self._call("PUT", ("devices", device_id), what="heartbeat", json_body=body)
        answer = answer or {}
        answer.setdefault("CancelRequested", [])
        return answer

    def get_work(self, device_id: str, wait_seconds: float = 0,
                 holding: Iterable[str] = ()) -> dict | None:
        """``GET /devices/{id}/workload``: ``{WorkId, WorkloadUrl}`` or None when idle.

        ``wait_seconds`` long-polls on our service; on a stock one it returns at once.
        ``holding``: work the board already has; our service then hands out the next work
        instead of handing that back (and counting an attempt each time)."""
        params = {}
        held = sorted(set(holding))
        if held and self.supports("holding"):
            params["Holding"] = ",".join(held[-MAX_HOLDING:])
        wait = max(0, min(int(wait_seconds), MAX_WAIT_SECONDS))
        if wait and self.supports("long-poll"):
            params["WaitSeconds"] = str(wait)
        else:
            wait = 0
        body = self._call("GET", ("devices", device_id, "workload"), what="get work",
                          params=params, timeout=self.timeout + wait)
        if not body or (isinstance(body, list) and not body):
            return None
        if isinstance(body, list):  # defensive: a list with one item
            body = body[0]
        return body

    def check_work(self, device_id: str, work_id: str) -> dict:
        """``GET /devices/{id}/workloads/{WorkId}`` → ``{WorkId, WorkStatus, CancelRequested}``."""
        self.require("cancel", "checking for a cancel request")
        return self._call("GET", ("devices", device_id, "workloads", work_id),
                          what=f"check workload {work_id}") or {}

    def report_outcome(self, device_id: str, work_id: str, outcome: str = "DONE", *,
                       error_message: str | None = None, error_kind: str | None = None,
                       partial_results: bool | None = None, sha256: str | None = None,
                       device_seconds: float | None = None,
                       programs_done: int | None = None) -> dict:
        """``PUT /devices/{id}/workloads/{WorkId}`` → ``{WorkId, UploadUrl}``.

        ``DONE`` with no extras is the stock call (an empty body). ``FAILED`` and
        ``CANCELLED`` need our service (``programs_done``: how many programs the partial
        results hold; with ``DONE``, how many ran, sent where the service shows progress)."""
        outcome = outcome.upper()
        body: dict[str, Any] = {}
        caps = self.capabilities()
        if outcome in ("FAILED", "CANCELLED"):
            self.require("failed-state" if outcome == "FAILED" else "cancel",
                         f"reporting a {outcome} workload")
            body["Outcome"] = outcome
            if error_message is not None:
                body["ErrorMessage"] = error_message
            if error_kind is not None:
                body["ErrorKind"] = error_kind
            if partial_results is not None:
                body["PartialResults"] = bool(partial_results)
            if programs_done is not None:
                body["ProgramsDone"] = int(programs_done)
        elif outcome != "DONE":
            raise BadRequest(f"unknown outcome {outcome!r}: use DONE, FAILED or CANCELLED")
        if not caps.stock:
            if sha256 and "sha256" in caps:
                body["ContentSHA256"] = sha256
            if device_seconds is not None:
                body["DeviceSeconds"] = float(device_seconds)
            if outcome == "DONE" and programs_done is not None and "progress" in caps:
                body["ProgramsDone"] = int(programs_done)  # a run too short for a heartbeat
            if body and "Outcome" not in body:
                body["Outcome"] = "DONE"
        return self._call("PUT", ("devices", device_id, "workloads", work_id),
                          what=f"report workload {work_id}",
                          json_body=body if body else None) or {}

    def results_upload_url(self, device_id: str, work_id: str, **kwargs: Any) -> str:
        """The presigned URL for a finished workload's results (``report_outcome`` DONE)."""
        answer = self.report_outcome(device_id, work_id, "DONE", **kwargs)
        url = answer.get("UploadUrl")
        if not url:
            raise QueueError(f"report workload {work_id}: the service sent no UploadUrl",
                             kind="protocol")
        return url
