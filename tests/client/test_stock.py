"""Against a stock Cloud Queue deployment (a tiny local server answering as the stock one
does): feature detection degrades to the stock protocol, extras say they are unsupported."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cloudqueue.auth import ApiKeyAuth
from cloudqueue.client import QueueClient
from cloudqueue.errors import NotSupported, ServiceUnavailable
from qickbase.backoff import Backoff
from userclient.client import UserClient

from .fakes import FakeServer, Reply

DEVICE = "5f0c1f9e-0000-4000-8000-000000000001"
WORK = "5f0c1f9e-0000-4000-8000-0000000000aa"


class Stock:
    """Answers like an API Gateway stage ``/dev`` of the stock application."""

    def __init__(self, capabilities_status=403):
        self.capabilities_status = capabilities_status
        self.fail_next_post = 0

    def __call__(self, seen):
        path = seen.path
        if not path.startswith("/dev/"):
            return Reply(403, {"message": "Missing Authentication Token"})
        path = path[len("/dev"):]
        if path == "/capabilities":
            return Reply(self.capabilities_status,
                         {"message": "Missing Authentication Token"})
        if path == "/users" and seen.method == "POST":
            return Reply(200)  # empty body
        if path == "/workloads" and seen.method == "POST":
            if self.fail_next_post:
                self.fail_next_post -= 1
                return Reply(502, {"message": "Internal server error"})
            return Reply(201, {"WorkId": WORK, "UploadUrl": f"{self.root}/upload?X-Amz-Signature=1"})
        if path == "/upload":
            return Reply(200)
        if path == f"/devices/{DEVICE}/workload":
            return Reply(200, [])
        if path == f"/devices/{DEVICE}/workloads/{WORK}":
            return Reply(200, {"WorkId": WORK, "UploadUrl": f"{self.root}/upload"})
        if path == "/workloads" and seen.method == "GET":
            return Reply(200, {"Items": [{"WorkId": WORK, "WorkStatus": "READY",
                                          "DeviceId": DEVICE, "Priority": "LOW",
                                          "CreatedAt": "2024-05-01T12:00:00.123Z"}]})
        return Reply(500, {"ErrorMessage": "not in this fake"})


@pytest.fixture(params=[403, 404])
def stock(request):
    handler = Stock(request.param)
    with FakeServer(handler) as srv:
        handler.root = srv.url + "/dev"
        yield srv, handler


def client_for(srv, **kwargs):
    return QueueClient(srv.url + "/dev/", ApiKeyAuth("token"),
                       backoff=Backoff(base=0.001, cap=0.002), tries=3,
                       sleep=lambda s: None, **kwargs)


def test_capabilities_404_or_403_means_stock_and_is_cached(stock):
    srv, _ = stock
    client = client_for(srv)
    assert client.capabilities().stock and not client.supports("cancel")
    assert client.capabilities().stock
    assert [s.path for s in srv.seen] == ["/dev/capabilities"]  # asked once
    assert "authorization" not in srv.seen[0].headers


def test_cancel_and_other_extras_say_they_are_not_supported(stock):
    srv, _ = stock
    client = client_for(srv)
    with pytest.raises(NotSupported, match="cancelling a workload is not supported: this "
                                           "queue service is a stock Cloud Queue"):
        client.cancel_workload(WORK)
    with pytest.raises(NotSupported):
        client.report_outcome(DEVICE, WORK, "FAILED", error_message="x")
    with pytest.raises(NotSupported, match="give a device id"):
        client.list_workloads()
    assert not any("cancel" in s.path for s in srv.seen)


def test_submit_on_stock_sends_the_stock_body_and_is_not_retried(stock, tmp_path):
    srv, handler = stock
    user = UserClient(client=client_for(srv))
    path = tmp_path / "w.gz"
    path.write_bytes(b"abc")
    assert user.create_work(path, DEVICE, "low") == WORK
    post = [s for s in srv.seen if s.method == "POST"][0]
    body = json.loads(post.body)
    assert body == {"DeviceId": DEVICE, "Priority": "LOW"}
    assert "idempotency-key" not in post.headers
    put = [s for s in srv.seen if s.method == "PUT"][0]
    assert put.body == b"abc" and put.query["X-Amz-Signature"] == ["1"]
    # Without an idempotency key a 502 could hide a created workload: no blind retry.
    handler.fail_next_post = 1
    with pytest.raises(ServiceUnavailable):
        user.create_work(path, DEVICE, "LOW")
    assert len([s for s in srv.seen if s.method == "POST"]) == 2


def test_device_calls_degrade_to_the_stock_protocol(stock):
    srv, _ = stock
    client = client_for(srv)
    assert client.get_work(DEVICE, wait_seconds=20) is None
    assert "WaitSeconds" not in srv.seen[-1].query
    assert client.results_upload_url(DEVICE, WORK, sha256="ab" * 32, device_seconds=3)
    assert srv.seen[-1].body == b""  # the stock call: an empty body
    assert client.add_user("a@b.c", "A B") == {}


def test_cli_cancel_on_stock_exits_6_with_a_clear_message(stock, tmp_path):
    srv, _ = stock
    conf = tmp_path / "qick.conf"
    conf.write_text(f"[service]\napi_endpoint = {srv.url}/dev\n[user]\napi_key = qk_x\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    done = subprocess.run([sys.executable, "-m", "userclient.cli", "--config", str(conf),
                           "cancel", WORK], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 6
    assert "not supported" in done.stderr and "stock Cloud Queue" in done.stderr
    assert "Traceback" not in done.stderr
