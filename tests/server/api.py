"""Raw-HTTP helpers for the service tests (plain ``requests``, no client library)."""
from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

import requests

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Api:
    """Requests to one service as one caller (``token`` is sent as a bearer token)."""

    def __init__(self, base: str, token: str | None = None, *, bearer_prefix: bool = True):
        self.base = base.rstrip("/")
        self.token = token
        self.bearer_prefix = bearer_prefix
        self.session = requests.Session()

    def call(self, method: str, path: str, *, headers: dict | None = None,
             timeout: float = 30, **kwargs: Any) -> requests.Response:
        headers = dict(headers or {})
        if self.token is not None:
            headers["Authorization"] = (f"Bearer {self.token}" if self.bearer_prefix
                                        else self.token)
        return self.session.request(method, self.base + path, headers=headers,
                                    timeout=timeout, **kwargs)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.call("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.call("PUT", path, **kw)


def long_polls(service: Any, waiter: str) -> int:
    """How many long polls the service holds now (``/metrics``): ``device`` polls for work,
    ``workload`` users' waits. A test waits on it to know a poll is parked."""
    text = requests.get(service.root + "/metrics", timeout=10).text
    prefix = f'qick_queue_long_polls{{waiter="{waiter}"}} '
    return int(next(line for line in text.splitlines() if line.startswith(prefix))
               [len(prefix):])


def put_file(url: str, data: bytes) -> requests.Response:
    return requests.put(url, data=data, headers={"Content-Type": "application/octet-stream"},
                        timeout=30)


def assert_error(resp: requests.Response, status: int, kind: str | None = None) -> dict:
    """A 4xx answer with ``{ErrorMessage, ErrorKind}``."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert isinstance(body.get("ErrorMessage"), str) and body["ErrorMessage"], body
    if kind is not None:
        assert body.get("ErrorKind") == kind, body
    return body


@dataclass
class Device:
    id: str
    client_id: str
    secret: str
    api: Api

    def heartbeat(self, status: str = "ONLINE", **extra: Any) -> requests.Response:
        return self.api.put(f"/devices/{self.id}",
                            json={"DeviceStatus": status,
                                  "DeviceConfigurationFileExtension": "json", **extra})

    def next_work(self, wait: float | None = None, **kw: Any) -> requests.Response:
        params = {"WaitSeconds": wait} if wait is not None else None
        return self.api.get(f"/devices/{self.id}/workload", params=params, **kw)

    def report(self, work_id: str, body: dict | None = None) -> requests.Response:
        if body is None:
            return self.api.put(f"/devices/{self.id}/workloads/{work_id}")
        return self.api.put(f"/devices/{self.id}/workloads/{work_id}", json=body)


class World:
    """An admin, and factories for users and devices, on one running service."""

    def __init__(self, service: Any):
        self.service = service
        self.admin = Api(service.url, service.admin_key)

    def user(self, *, admin: bool = False) -> tuple[Api, str]:
        body = {"Email": f"u{uuid.uuid4().hex[:10]}@lab.test", "FullName": "Test User"}
        if admin:
            body["Groups"] = ["Admin"]
        resp = self.admin.post("/users", json=body)
        assert resp.status_code == 200, resp.text
        data = resp.json()
        return Api(self.service.url, data["ApiKey"]), data["UserId"]

    def device(self, name: str = "qick", refresh_timeout: int = 60) -> Device:
        resp = self.admin.post("/devices", json={"DeviceName": name,
                                                 "RefreshTimeout": refresh_timeout})
        assert resp.status_code == 201, resp.text
        data = resp.json()
        token = device_token(self.service.root, data["ClientId"], data["ClientSecret"])
        return Device(data["DeviceId"], data["ClientId"], data["ClientSecret"],
                      Api(self.service.url, token))


def device_token(root: str, client_id: str, secret: str) -> str:
    resp = requests.post(root + "/oauth2/token", data={"grant_type": "client_credentials"},
                         auth=(client_id, secret), timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def submit(user: Api, device_id: str, data: bytes | None = b"workload-bytes",
           priority: str = "MEDIUM", **extra: Any) -> str:
    """POST /workloads and (unless ``data`` is None) upload the file: answers the WorkId."""
    resp = user.post("/workloads", json={"DeviceId": device_id, "Priority": priority, **extra})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    if data is not None:
        up = put_file(body["UploadUrl"], data)
        assert up.status_code == 200, up.text
    return body["WorkId"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def status(user: Api, work_id: str) -> dict:
    resp = user.get(f"/workloads/{work_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()


# -- teams (issue 12) -------------------------------------------------------------------
def email_of(world: World, user_id: str) -> str:
    return next(u["Email"] for u in world.admin.get("/users").json() if u["UserId"] == user_id)


def new_team(world: World, scheduler: str | None = None) -> dict:
    body = {"Name": f"team-{uuid.uuid4().hex[:8]}"}
    if scheduler is not None:
        body["Scheduler"] = scheduler
    resp = world.admin.post("/teams", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def grant(world: World, team_id: str, seconds: float, note: str = "allocation") -> dict:
    resp = world.admin.post(f"/teams/{team_id}/grants", json={"Seconds": seconds, "Note": note})
    assert resp.status_code == 201, resp.text
    return resp.json()
