"""Bounds on client connections: header read time, connection count, file descriptors.

uvicorn bounds idle keep-alive time (``timeout_keep_alive``) and the size of a request's
headers (h11, 16 KiB) but not the time a client takes to send them, nor how many connections
it accepts (``limit_concurrency`` answers 503 only once a request arrives, so idle sockets
still pile up until the process runs out of file descriptors). ``bounded_protocol`` adds
both at the connection level. The body's read time is bounded where the body is read
(``httpedge.read_body`` and the file uploads), so long polls, which send nothing while they
wait, are never cut short.
"""
from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.h11_impl import H11Protocol

from cloudqueue.errors import QueueError

#: descriptors kept for the database, staged uploads, logs and the mock devices' daemons
RESERVED_DESCRIPTORS = 128
#: refused connections are logged at most once in this many seconds (a flood of them must
#: not flood the log), with the count refused since the last line
REFUSED_LOG_SECONDS = 10.0


def _raw_answer(status: str, message: str, kind: str) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection (written before, or instead
    of, anything h11 would write)."""
    body = json.dumps({"ErrorMessage": message, "ErrorKind": kind}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class BoundedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a header deadline and a connection limit.

    The header deadline runs from the connection's start, and on a kept-alive connection
    from the first byte after a response, until the next request's headers are complete;
    past it the connection answers 408 and closes. A connection beyond ``max_connections``
    is answered 503 and closed at once, before it holds a descriptor for long."""

    header_timeout: float = 10.0
    max_connections: int = 500

    _header_timer: asyncio.TimerHandle | None = None
    # shared by every connection of the server: refusals since the last log line, and when
    _refused = {"count": 0, "logged_at": float("-inf")}

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self.transport = transport
            self._log_refused()
            transport.write(_raw_answer(
                "503 Service Unavailable", f"the service has {self.max_connections} "
                "connections open, its limit: try again later", "unavailable"))
            transport.close()
            return
        super().connection_made(transport)
        self._start_header_timer()

    def _log_refused(self) -> None:
        refused = self._refused
        refused["count"] += 1
        now = self.loop.time()
        if now - refused["logged_at"] >= REFUSED_LOG_SECONDS:
            self.logger.warning("refused %d connection(s) since the last such line: %d open "
                                "(--max-connections)", refused["count"], len(self.connections))
            refused.update(count=0, logged_at=now)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._start_header_timer()  # the first byte of the next request
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers arrived
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()  # may start a pipelined request
        if self.cycle is not cycle:
            self._cancel_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # nothing of ours in flight
            self.transport.write(_raw_answer(
                "408 Request Timeout", f"the request's headers did not arrive within "
                f"{self.header_timeout:g} s", "request_timeout"))
        self.transport.close()


def bounded_protocol(header_timeout: float, max_connections: int) -> type[BoundedH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these bounds."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,),
                {"header_timeout": header_timeout, "max_connections": max_connections,
                 "_refused": {"count": 0, "logged_at": float("-inf")}})


def reserve_descriptors(max_connections: int) -> int:
    """Raise this process's open-file limit so ``max_connections`` connections fit (with
    ``RESERVED_DESCRIPTORS`` to spare); QueueError when the hard limit is too low.
    Answers the limit now in force."""
    import resource
    needed = max_connections + RESERVED_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise QueueError(
                f"--max-connections {max_connections} needs {needed} open files but this "
                f"process may open at most {hard} (ulimit -Hn): lower --max-connections to "
                f"{max(1, hard - RESERVED_DESCRIPTORS)} or raise the limit (LimitNOFILE= in "
                "a systemd unit)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft
