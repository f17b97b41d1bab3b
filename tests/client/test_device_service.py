"""The board's calls (``QueueClient`` device methods) and our extras against the real service:
cancel of running work, idempotent submit, checksum on arrival, capabilities."""
from __future__ import annotations

import hashlib
import io

import pytest

from cloudqueue.auth import ApiKeyAuth, DeviceTokenAuth
from cloudqueue.client import QueueClient
from cloudqueue.errors import BadRequest, ChecksumMismatch, Conflict, Forbidden, NotFound
from cloudqueue.transfer import upload_file


@pytest.fixture
def parties(queue_service):
    admin = QueueClient(queue_service.url, ApiKeyAuth(queue_service.admin_key), timeout=10)
    user = admin.add_user("bob@example.org", "Bob")
    device = admin.add_device("board2", refresh_timeout=30)
    board = QueueClient(queue_service.url,
                        DeviceTokenAuth.for_endpoint(queue_service.root, device["ClientId"],
                                                     device["ClientSecret"]), timeout=10)
    bob = QueueClient(queue_service.url, ApiKeyAuth(user["ApiKey"]), timeout=10)
    return admin, bob, board, device["DeviceId"]


def submit(client, device_id, data=b"w" * 64, **kwargs):
    answer = client.create_workload(device_id, "MEDIUM", **kwargs)
    upload_file(answer["UploadUrl"], io.BytesIO(data))
    return answer["WorkId"]


def test_capabilities_of_our_service_list_the_extras(parties):
    _, bob, _, _ = parties
    caps = bob.capabilities()
    assert not caps.stock and caps.service == "qick-queue"
    assert {"cancel", "long-poll", "sha256", "idempotency"} <= caps.features


def test_cancel_of_running_work_reaches_the_board(parties):
    _, bob, board, device_id = parties
    work_id = submit(bob, device_id)
    assert board.get_work(device_id, wait_seconds=1)["WorkId"] == work_id
    assert bob.cancel_workload(work_id).CancelRequested
    assert work_id in board.heartbeat(device_id, "BUSY", health={"spool": 0})["CancelRequested"]
    assert board.check_work(device_id, work_id)["CancelRequested"] is True
    board.report_outcome(device_id, work_id, "CANCELLED")
    assert bob.get_workload(work_id).WorkStatus == "CANCELLED"
    with pytest.raises(Conflict):
        bob.cancel_workload(work_id)


def test_long_poll_returns_when_work_arrives_and_none_when_idle(parties):
    _, bob, board, device_id = parties
    assert board.get_work(device_id, wait_seconds=1) is None
    work_id = submit(bob, device_id)
    assert board.get_work(device_id, wait_seconds=5)["WorkId"] == work_id


def test_idempotent_submit_returns_the_same_work(parties):
    _, bob, _, device_id = parties
    first = bob.create_workload(device_id, "LOW", idempotency_key="key-1")
    again = bob.create_workload(device_id, "LOW", idempotency_key="key-1")
    assert first["WorkId"] == again["WorkId"]


def test_a_corrupted_upload_is_refused_by_checksum(parties):
    _, bob, _, device_id = parties
    answer = bob.create_workload(device_id, "LOW",
                                 sha256=hashlib.sha256(b"the real bytes").hexdigest())
    with pytest.raises(ChecksumMismatch):
        upload_file(answer["UploadUrl"], io.BytesIO(b"other bytes"))
    assert bob.get_workload(answer["WorkId"]).WorkStatus == "CREATED"
    upload_file(answer["UploadUrl"], io.BytesIO(b"the real bytes"))
    assert bob.get_workload(answer["WorkId"]).WorkStatus == "READY"


def test_a_board_cannot_report_another_devices_work(parties):
    admin, bob, board, device_id = parties
    other = admin.add_device("board3")
    work_id = submit(bob, other["DeviceId"])
    with pytest.raises((NotFound, Forbidden)) as err:
        board.report_outcome(other["DeviceId"], work_id)
    assert err.value.status in (403, 404)


def test_an_upload_over_the_size_limit_is_a_bad_request_not_a_retry_loop(queue_service_factory):
    service = queue_service_factory(max_upload_mb=0.01)
    admin = QueueClient(service.url, ApiKeyAuth(service.admin_key), timeout=10)
    device = admin.add_device("small")
    answer = admin.create_workload(device["DeviceId"], "LOW")
    with pytest.raises(BadRequest) as err:
        upload_file(answer["UploadUrl"], io.BytesIO(b"x" * 3_000_000))
    assert err.value.status == 413 and "limit" in str(err.value)
