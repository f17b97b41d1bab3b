"""Slow and idle clients on real loopback sockets: slow headers, slow bodies, idle
connections (fresh and kept alive) are closed within the bounds ``qick-queue serve`` sets,
while another client is answered, long polls longer than those bounds still complete, and
connections beyond ``--max-connections`` are refused without the service dying."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from queueservice.connections import REFUSED_LOG_SECONDS

from tests.helpers import wait_for
from tests.server.api import World, assert_error

BOUND = 2  # seconds: every timeout of the service under test
DEADLINE = 20  # seconds: how long a test waits for a close (well past BOUND, never asserted)


@pytest.fixture
def service(queue_service_factory):
    return queue_service_factory(header_timeout_seconds=BOUND, body_timeout_seconds=BOUND,
                                 keep_alive_seconds=BOUND)


def connect(service) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=DEADLINE)


def read_until_closed(sock: socket.socket) -> bytes:
    """What the service sent until it closed the connection; fails if it is still open
    after DEADLINE."""
    received = b""
    end = time.monotonic() + DEADLINE
    while True:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except socket.timeout:
            raise AssertionError(f"still open after {DEADLINE} s; got {received[:200]!r}")
        if not chunk:
            return received
        received += chunk


def trickle(sock: socket.socket, data: bytes, stop: threading.Event) -> threading.Thread:
    """Send ``data`` a byte at a time, one every 0.3 s (well inside every bound, so only a
    deadline on the whole can stop it), until the service closes or ``stop`` is set."""
    def run():
        for byte in data:
            if stop.wait(0.3):
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def answered_meanwhile(service, waiting: list[threading.Thread]) -> int:
    """Another client's requests, one after the other, while ``waiting`` run: each is
    answered 200. Answers how many were made."""
    count = 0
    with requests.Session() as other:
        while any(t.is_alive() for t in waiting) or count == 0:
            resp = other.get(service.root + "/healthz", timeout=DEADLINE)
            assert resp.status_code == 200, resp.text
            count += 1
    return count


def closed_in_background(sock: socket.socket, out: dict, name: str) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.__setitem__(name, read_until_closed(sock)),
                              daemon=True)
    thread.start()
    return thread


def status_and_body(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_slow_headers_slow_bodies_and_idle_sockets_are_closed_while_others_are_answered(
        service):
    world = World(service)
    user, _ = world.user()
    created = user.post("/workloads", json={"DeviceId": world.device().id}).json()
    upload_path = created["UploadUrl"].split(str(service.port), 1)[1]
    stop = threading.Event()
    out: dict[str, bytes] = {}
    waiting = []
    try:
        # headers that never end, a byte at a time
        slow_headers = connect(service)
        slow_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        trickle(slow_headers, b"X-Slow: " + b"a" * 200, stop)
        waiting.append(closed_in_background(slow_headers, out, "slow_headers"))
        # a JSON body, without login (the Cognito-compatible POST /), a byte at a time
        slow_json = connect(service)
        body = json.dumps({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": "x" * 100}).encode()
        slow_json.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1"
                          b"\r\nX-Amz-Target: AWSCognitoIdentityProviderService.InitiateAuth\r\n"
                          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        trickle(slow_json, body, stop)
        waiting.append(closed_in_background(slow_json, out, "slow_json"))
        # a file upload that stops half-way
        stalled_upload = connect(service)
        stalled_upload.sendall(f"PUT {upload_path} HTTP/1.1\r\nHost: x\r\n"
                               "Content-Length: 1000\r\n\r\n".encode() + b"w" * 100)
        waiting.append(closed_in_background(stalled_upload, out, "stalled_upload"))
        # idle sockets: fresh ones that never send a byte, and one kept alive after an answer
        idle = [connect(service) for _ in range(10)]
        for i, sock in enumerate(idle):
            waiting.append(closed_in_background(sock, out, f"idle{i}"))
        kept = connect(service)
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        waiting.append(closed_in_background(kept, out, "kept_alive"))

        assert answered_meanwhile(service, waiting) >= 1
        for thread in waiting:
            thread.join(DEADLINE)
    finally:
        stop.set()

    assert set(out) == {"slow_headers", "slow_json", "stalled_upload", "kept_alive",
                        *(f"idle{i}" for i in range(10))}
    status, answer = status_and_body(out["slow_headers"])
    assert status == 408 and answer["ErrorKind"] == "request_timeout", answer
    assert "headers" in answer["ErrorMessage"]
    for name in ("slow_json", "stalled_upload"):
        status, answer = status_and_body(out[name])
        assert status == 408 and answer["ErrorKind"] == "request_timeout", (name, answer)
        assert "body did not arrive" in answer["ErrorMessage"]
    assert b"connection: close" in out["slow_json"].lower()
    assert out["kept_alive"].startswith(b"HTTP/1.1 200")  # its answer, then the idle close
    assert all(status_and_body(out[f"idle{i}"])[0] == 408 for i in range(10))
    # the stalled upload changed nothing: the work still waits for its file
    assert user.get(f"/workloads/{created['WorkId']}").json()["WorkStatus"] == "CREATED"


def test_long_polls_longer_than_the_bounds_still_answer(service):
    world = World(service)
    device, user = world.device(), world.user()[0]
    empty = device.next_work(wait=BOUND * 2)  # held past every bound, then answered
    assert empty.status_code == 200 and empty.json() == [], empty.text
    created = user.post("/workloads", json={"DeviceId": device.id}).json()
    result = {}
    poll = threading.Thread(target=lambda: result.setdefault("r", device.next_work(wait=15)))
    poll.start()
    requests.put(created["UploadUrl"], data=b"work", timeout=DEADLINE)
    poll.join(DEADLINE)
    assert result["r"].status_code == 200 and result["r"].json()["WorkId"] == created["WorkId"]


def test_a_fast_body_is_read_and_a_bad_one_still_gets_its_own_answer(service):
    world = World(service)
    user, _ = world.user()
    assert user.post("/workloads", json={"DeviceId": world.device().id}).status_code == 201
    assert_error(user.post("/workloads", data=b"{not json"), 400, "invalid_json")


def refused(service) -> bool:
    """A new connection is answered 503 (or closed) instead of served."""
    sock = connect(service)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = read_until_closed(sock)
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        sock.close()
    if not received:
        return True
    status, answer = status_and_body(received)
    return status == 503 and answer["ErrorKind"] == "unavailable"


def test_connections_beyond_the_limit_are_refused_and_the_service_lives_on(
        queue_service_factory):
    service = queue_service_factory(max_connections=8, header_timeout_seconds=60)
    held = [connect(service) for _ in range(8)]
    try:
        wait_for(lambda: refused(service), DEADLINE, what="a connection past the limit refused")
        assert service.running
        started = time.monotonic()
        flood = 20
        for _ in range(flood):
            assert refused(service)
        # a flood of refusals does not flood the log: one line per REFUSED_LOG_SECONDS at most
        windows = 1 + int((time.monotonic() - started) // REFUSED_LOG_SECONDS) + 1
        lines = [line for line in service.log_path.read_text().splitlines()
                 if "connection(s) since the last such line" in line]
        assert 1 <= len(lines) <= windows < flood, lines
    finally:
        for sock in held:
            sock.close()
    ok = wait_for(lambda: requests.get(service.root + "/healthz", timeout=DEADLINE),
                  DEADLINE, what="the service to answer again once the connections closed")
    assert ok.status_code == 200


def test_max_connections_beyond_the_open_file_limit_is_a_clear_error(tmp_path: Path):
    import resource
    data = tmp_path / "q"
    subprocess.run([sys.executable, "-m", "queueservice.cli", "init", "--data",
                    str(data)], check=True, capture_output=True, timeout=60)
    done = subprocess.run(
        [sys.executable, "-m", "queueservice.cli", "serve", "--data", str(data),
         "--port", "0", "--max-connections", "5000"],
        capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "--max-connections 5000 needs 5128 open files" in done.stderr
    assert "at most 1024" in done.stderr and "lower --max-connections" in done.stderr
