"""The board's ZeroMQ bus: versioned JSON messages between the supervisor and its children.

Light on purpose (pyzmq and json only): the sandboxed executor imports it.

- The supervisor binds a ROUTER on ``ipc://<run dir>/bus``; each child connects a DEALER with
  the identity ``<name>-<pid>``, so a restarted child is a new peer and anything still in
  flight from its predecessor is recognised as stale and dropped.
- Every message is one frame of JSON: ``{"v": 1, "type": ..., "id": ..., ...}``; a reply
  carries ``"re": <id of the request>``.
- Heartbeats go both ways every ``interval`` seconds; any message counts as one. A child that
  hears nothing from its supervisor for ``timeout`` seconds stops (the supervisor is gone or
  stuck); the supervisor restarts a child it has not heard from.
- A new context per process (never shared across fork), ``linger=0`` on close.

Message types (fields besides v/type/id):
  child -> supervisor: hello {name, pid, ...}, heartbeat {busy?}, progress {work_id, done, total},
      outcome {work_id, status, error_kind, error_message, programs_done, programs_total,
      seconds, has_results}, work {work_id} (downloader: a workload is in ready/),
      cancel {work_id} (downloader: the service asked to cancel), queue {ok, error?, at}
      (downloader: last contact), uploaded {work_id, outcome} (uploader), log {level, text}
  supervisor -> child: ping, run {work_id, workload_path, results_path, limits},
      cancel {work_id}, stop, want_work {idle}, health {summary}, kick (uploader: look again)
"""
from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import zmq

from boardcore.errors import BusError

VERSION = 1
MAX_IPC_PATH = 100
_ids = itertools.count(1)


def new_id() -> str:
    return f"{os.getpid()}-{next(_ids)}"


def encode(kind: str, /, **fields: Any) -> bytes:
    message = {"v": VERSION, "type": kind, "id": fields.pop("id", None) or new_id()}
    message.update(fields)
    return json.dumps(message, separators=(",", ":")).encode()


def decode(frame: bytes) -> Dict[str, Any]:
    """Parse one frame; raise BusError for anything that is not a v1 message."""
    try:
        message = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BusError(f"not a JSON message: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise BusError("a bus message must be a JSON object with a 'type'")
    if message.get("v") != VERSION:
        raise BusError(f"unsupported bus message version {message.get('v')!r} (this side "
                       f"speaks {VERSION}); upgrade both sides together")
    return message


def endpoint(run_dir: os.PathLike | str) -> str:
    """The bus address in ``run_dir``; refused when the socket path is too long for AF_UNIX."""
    path = os.path.join(os.fspath(run_dir), "bus")
    if len(path) >= MAX_IPC_PATH:
        raise BusError(f"the bus socket path {path!r} is {len(path)} characters; ipc paths "
                       f"must be under {MAX_IPC_PATH}: use a shorter run directory")
    return "ipc://" + path


class Heartbeat:
    """Send-side and receive-side heartbeat timing for one peer (monotonic clock)."""

    def __init__(self, interval: float, timeout: float, now: Optional[float] = None):
        now = time.monotonic() if now is None else now
        self.interval, self.timeout = interval, timeout
        self.last_sent = float("-inf")
        self.last_heard = now

    def heard(self, now: float) -> None:
        self.last_heard = now

    def sent(self, now: float) -> None:
        self.last_sent = now

    def send_due(self, now: float) -> bool:
        return now - self.last_sent >= self.interval

    def silent(self, now: float) -> bool:
        return now - self.last_heard > self.timeout

    def age(self, now: float) -> float:
        return now - self.last_heard


class SupervisorBus:
    """The supervisor's end: one ROUTER, bound in the private run directory."""

    def __init__(self, run_dir: os.PathLike | str):
        self.address = endpoint(run_dir)
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._sock.bind(self.address)
        self.dropped = 0

    def send(self, identity: bytes, kind: str, /, **fields: Any) -> None:
        try:
            self._sock.send_multipart([identity, encode(kind, **fields)], flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1  # the peer is gone or not reading: heartbeats will tell

    def recv(self, timeout: float) -> List[Tuple[bytes, Dict[str, Any]]]:
        """All messages available within ``timeout`` seconds (malformed ones are counted and
        dropped)."""
        out: List[Tuple[bytes, Dict[str, Any]]] = []
        if not self._sock.poll(int(timeout * 1000)):
            return out
        while True:
            try:
                frames = self._sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return out
            if len(frames) != 2:
                self.dropped += 1
                continue
            try:
                out.append((frames[0], decode(frames[1])))
            except BusError:
                self.dropped += 1

    def close(self) -> None:
        self._sock.close(0)
        self._ctx.term()


class Waker:
    """A self-pipe a worker thread pokes so the bus loop wakes at once (instead of at the
    end of its poll timeout) to send what the worker posted."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def fileno(self) -> int:
        return self._r

    def wake(self) -> None:
        try:
            os.write(self._w, b"!")
        except (BlockingIOError, OSError):
            pass  # already awake (pipe full) or closing

    def clear(self) -> None:
        try:
            while os.read(self._r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


class ChildBus:
    """A child's end: one DEALER with identity ``<name>-<pid>``."""

    def __init__(self, address: str, name: str, interval: float = 1.0, timeout: float = 10.0):
        self.name = name
        self.identity = f"{name}-{os.getpid()}".encode()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.IDENTITY, self.identity)
        self._sock.connect(address)
        self.beat = Heartbeat(interval, timeout)
        self.dropped = 0

    def send(self, kind: str, /, **fields: Any) -> str:
        fields.setdefault("id", new_id())
        msg_id = fields["id"]
        try:
            self._sock.send(encode(kind, **fields), flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
        self.beat.sent(time.monotonic())
        return msg_id

    def hello(self, **fields: Any) -> str:
        return self.send("hello", name=self.name, pid=os.getpid(), **fields)

    def recv(self, timeout: float, waker: Optional["Waker"] = None) -> List[Dict[str, Any]]:
        """Messages that arrived within ``timeout`` seconds; returns early (maybe with none)
        when ``waker`` is poked."""
        out: List[Dict[str, Any]] = []
        if waker is None:
            ready = self._sock.poll(int(timeout * 1000))
        else:
            poller = zmq.Poller()
            poller.register(self._sock, zmq.POLLIN)
            poller.register(waker.fileno(), zmq.POLLIN)
            events = dict(poller.poll(int(timeout * 1000)))
            if waker.fileno() in events:
                waker.clear()
            ready = self._sock in events
        if not ready:
            return out
        while True:
            try:
                frame = self._sock.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                out.append(decode(frame))
            except BusError:
                self.dropped += 1
        if out:
            self.beat.heard(time.monotonic())
        return out

    def tick(self, **status: Any) -> bool:
        """Send a heartbeat when one is due; return False once the supervisor is silent
        for longer than the timeout (the caller should stop)."""
        now = time.monotonic()
        if self.beat.send_due(now):
            self.send("heartbeat", **status)
        return not self.beat.silent(now)

    def farewell(self, error: str, linger: float = 1.0) -> None:
        """Tell the supervisor why this child cannot start (before it says hello), then
        close, waiting up to ``linger`` seconds for the message to leave."""
        self.send("farewell", name=self.name, pid=os.getpid(), error=error)
        self._sock.close(int(linger * 1000))
        self._ctx.term()

    def close(self, linger: float = 0.0) -> None:
        """Close, waiting up to ``linger`` seconds for messages not yet sent to leave."""
        if not self._sock.closed:
            self._sock.close(int(linger * 1000))
        self._ctx.term()
