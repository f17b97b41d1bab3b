"""The library's sessions (``UserClient.session``) against the real service: the context
manager submits in the session and closes it when the block ends, also when the block
raises (the block's own error is the one raised); ``submit`` takes ``create_work``'s
arguments and refuses another device."""
from __future__ import annotations

import io
from typing import Iterator

import pytest

from cloudqueue.auth import ApiKeyAuth
from cloudqueue.client import QueueClient
from cloudqueue.errors import BadRequest
from tests.conftest import QueueService
from tests.server.api import World
from userclient import UserClient


@pytest.fixture
def ada(queue_service: QueueService) -> Iterator[tuple[UserClient, World]]:
    world = World(queue_service)
    api, _ = world.user()
    yield UserClient(client=QueueClient(queue_service.url, ApiKeyAuth(api.token)),
                     out=None), world


class Surprise(Exception):
    """The user's own failure inside the block."""


def test_the_session_closes_when_the_block_raises(ada):
    client, world = ada
    device = world.device()
    with pytest.raises(Surprise, match="the fit diverged"):
        with client.session(device.id, max_minutes=10, idle_minutes=1) as s:
            work_id = s.submit(io.BytesIO(b"first run"), name="step-1")
            assert client.status(work_id).extra.get("SessionId") == s.id
            raise Surprise("the fit diverged")
    closed = client.get_session(s.id)
    assert (closed["State"], closed["CloseReason"]) == ("closed", "closed")
    assert client.status(work_id).WorkStatus == "CANCELLED"     # it was still queued
    assert s.info["State"] == "closed"
    assert client.get_sessions(state="open") == []


def test_the_session_closes_when_the_block_ends(ada):
    client, world = ada
    device = world.device()
    with client.session(device.id) as s:
        assert (s.info["MaxMinutes"], s.info["IdleMinutes"]) == (30, 5)
        assert s.refresh()["State"] == "open"
        with pytest.raises(BadRequest, match="leave device_id out"):
            s.submit(io.BytesIO(b"x"), "another-device")
        run = s.submit(io.BytesIO(b"run"), device.id, "HIGH",   # create_work's arguments
                       max_seconds=5)
        assert client.status(run).extra.get("MaxSeconds") == 5
    assert client.get_session(s.id)["State"] == "closed"
    assert repr(s) == f"<Session {s.id} on {device.id}: closed>"
    # another session on the device may open now
    with client.session(device.id, max_minutes=1):
        pass


def test_a_close_that_fails_does_not_hide_the_blocks_own_error(queue_service):
    world = World(queue_service)
    api, _ = world.user()
    device = world.device()
    client = UserClient(client=QueueClient(queue_service.url, ApiKeyAuth(api.token), tries=1,
                                           timeout=5), out=None)
    with pytest.raises(Surprise) as raised:
        with client.session(device.id) as s:
            queue_service.stop()                 # the service goes away mid-block
            raise Surprise("the fit diverged")
    notes = getattr(raised.value, "__notes__", [])
    assert any(f"closing session {s.id} failed too" in n and "session close" in n
               for n in notes), notes
