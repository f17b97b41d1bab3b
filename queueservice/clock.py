"""The service's one clock: every time the service decides by (hand-outs, leases,
bookings, windows, sessions, charges) is ``now_ms()``, integer milliseconds since the
epoch (UTC).

A served process started with ``QICK_QUEUE_CLOCK_OFFSET_MS`` runs that far ahead of (or
behind) the machine's clock, and in-process tests move it with ``set_offset``: so a test
puts "now" next to a weekly window's edge and sees it open in seconds, not days. Nothing
else in the service reads the time of day.
"""
from __future__ import annotations

import os
import time

OFFSET_ENV = "QICK_QUEUE_CLOCK_OFFSET_MS"
_offset_ms = int(os.environ.get(OFFSET_ENV, "0") or 0)


def now_ms() -> int:
    return time.time_ns() // 1_000_000 + _offset_ms


def set_offset(ms: int) -> None:
    """Run the clock ``ms`` ahead of the machine's (tests)."""
    global _offset_ms
    _offset_ms = int(ms)
