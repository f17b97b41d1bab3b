"""The ZeroMQ bus: versioned messages, hello, heartbeats, stale peers, short ipc paths."""
import os
import tempfile

import pytest

from boardcore.bus import ChildBus, Heartbeat, SupervisorBus, decode, encode, endpoint
from boardcore.errors import BusError
from tests.helpers import wait_for

pytestmark = pytest.mark.device310


@pytest.fixture
def run_dir():
    with tempfile.TemporaryDirectory(prefix="qb", dir="/tmp") as path:
        yield path


def test_messages_are_versioned_json_with_an_id():
    msg = decode(encode("hello", name="executor"))
    assert msg["v"] == 1 and msg["type"] == "hello" and msg["name"] == "executor" and msg["id"]


@pytest.mark.parametrize("frame,words", [
    (b"not json", "not a JSON message"),
    (b"[1,2]", "must be a JSON object"),
    (b'{"v": 2, "type": "hello"}', "unsupported bus message version 2"),
])
def test_malformed_messages_are_refused(frame, words):
    with pytest.raises(BusError, match=words):
        decode(frame)


def test_long_ipc_paths_are_refused_with_advice():
    with pytest.raises(BusError, match="use a shorter run directory"):
        endpoint("/tmp/" + "x" * 120)


def test_heartbeat_timing():
    hb = Heartbeat(interval=1.0, timeout=3.0, now=0.0)
    assert hb.send_due(0.0)
    hb.sent(0.0)
    assert not hb.send_due(0.5) and hb.send_due(1.0)
    assert not hb.silent(3.0) and hb.silent(3.1)
    hb.heard(3.0)
    assert not hb.silent(5.0)


def test_hello_and_replies_both_ways_and_malformed_frames_dropped(run_dir):
    sup = SupervisorBus(run_dir)
    child = ChildBus(sup.address, "executor", interval=0.05, timeout=5)
    try:
        child.hello(firmware="sim")
        got = wait_for(lambda: sup.recv(0.05), what="hello")
        identity, msg = got[0]
        assert identity == f"executor-{os.getpid()}".encode()
        assert msg["type"] == "hello" and msg["firmware"] == "sim"
        sup.send(identity, "run", work_id="w1")
        msgs = wait_for(lambda: child.recv(0.05), what="run")
        assert msgs[0]["type"] == "run" and msgs[0]["work_id"] == "w1"
        child._sock.send(b"garbage")
        child.send("heartbeat")
        msgs = wait_for(lambda: sup.recv(0.05), what="heartbeat")
        assert [m["type"] for _, m in msgs] == ["heartbeat"]
        assert sup.dropped == 1
    finally:
        child.close()
        sup.close()


def test_child_notices_a_silent_supervisor(run_dir):
    sup = SupervisorBus(run_dir)
    child = ChildBus(sup.address, "uploader", interval=0.01, timeout=0.2)
    try:
        assert child.tick()
        wait_for(lambda: not child.tick(), timeout=3, what="the child to notice silence")
    finally:
        child.close()
        sup.close()


def test_send_to_a_gone_peer_does_not_block(run_dir):
    sup = SupervisorBus(run_dir)
    try:
        sup.send(b"nobody-1", "ping")  # ROUTER drops unknown peers without blocking
    finally:
        sup.close()
