"""systemd notifications through ``sdnotify``: READY, WATCHDOG, STATUS, STOPPING.

``WATCHDOG=1`` is sent at a third of ``WATCHDOG_USEC`` (under half, as systemd asks), and
only when the caller says the loop and the children's heartbeats are healthy: a stalled loop
sends nothing, so systemd restarts the service. Without ``NOTIFY_SOCKET`` every call is a
no-op.
"""
from __future__ import annotations

import os
from typing import Optional

import sdnotify


class SystemdNotify:
    def __init__(self, environ: Optional[dict] = None):
        env = os.environ if environ is None else environ
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._sd = sdnotify.SystemdNotifier() if self.enabled else None
        if self._sd is not None and self._sd.socket is not None:
            # never let a slow reader of the socket block the loop: drop the datagram instead
            self._sd.socket.setblocking(False)
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        watched = usec and usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval: Optional[float] = int(usec) / 1e6 / 3 if watched else None
        self.ready_sent = False
        self._last_ping = float("-inf")
        self._last_status = ""
        self.pings = 0

    def _send(self, text: str) -> None:
        if self._sd is not None:
            self._sd.notify(text)

    def ready(self, status: str) -> None:
        if not self.ready_sent:
            self.ready_sent = True
            self._last_status = status
            self._send(f"READY=1\nSTATUS={status}")

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self._send(f"STATUS={text}")

    def watchdog(self, now: float, healthy: bool) -> bool:
        """Ping when due and healthy; return True when a ping was sent."""
        if self.watchdog_interval is None or not healthy:
            return False
        if now - self._last_ping < self.watchdog_interval:
            return False
        self._last_ping = now
        self.pings += 1
        self._send("WATCHDOG=1")
        return True

    def stopping(self, status: str = "stopping") -> None:
        self._send(f"STOPPING=1\nSTATUS={status}")
