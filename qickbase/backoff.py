"""The project's one backoff: exponential, capped, with full jitter.

Minimal stand-in (issue 10, item 5 creates the full one); the API is the agreed one.
"""
from __future__ import annotations

import random
from typing import Callable


class Backoff:
    """Delay before attempt ``attempt`` (0-based): ``uniform(0, min(cap, base * 2**attempt))``."""

    def __init__(self, base: float = 0.5, cap: float = 30.0,
                 rand: Callable[[], float] = random.random):
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base, self.cap, self._rand = base, cap, rand

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * 2 ** min(attempt, 62)) * self._rand()
