"""The one retry delay policy: exponential from ``base``, capped at ``cap``, with jitter.

Attempt ``n`` (0-based) has the ceiling ``min(cap, base * 2**n)`` and waits a random time
in ``[ceiling/2, ceiling]`` ("equal jitter"). Why this rule: the random half spreads many
boards (or many workloads of one board) that failed together, so they do not come back
in step; the fixed half keeps a floor under every delay, so a retry never follows its
failure at once (with "full jitter", ``[0, ceiling]``, a draw near zero hot-loops a dead
service; the board's link used to add a floor for exactly that).

``Backoff`` is the pure policy (attempt -> delay). ``BackoffCounter`` is its stateful use:
it counts the attempts since the last success (``next_delay()``, ``reset()``). How many
times to try is not part of the policy: callers that give up keep that count themselves.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

#: 2**62 * any sane base is far past any cap; it keeps the float from overflowing
_MAX_EXPONENT = 62


@dataclass(frozen=True)
class Backoff:
    """Delay before a retry: ``delay(attempt)`` in ``[ceiling/2, ceiling]``,
    ``ceiling = min(cap, base * 2**attempt)``, seconds."""

    base: float = 0.5
    cap: float = 30.0

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.cap >= self.base):
            raise ValueError(f"a backoff needs 0 < base <= cap (got base={self.base}, "
                             f"cap={self.cap})")

    def ceiling(self, attempt: int) -> float:
        """The longest delay of attempt ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt counts from 0 (got {attempt})")
        return min(self.cap, self.base * 2.0 ** min(attempt, _MAX_EXPONENT))

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The delay before retry ``attempt`` (0-based); ``rand()`` draws from [0, 1)."""
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + rand() * ceiling / 2


class BackoffCounter:
    """Attempts since the last success, and the delay each one waits under ``policy``."""

    def __init__(self, policy: Backoff = Backoff(),
                 rand: Callable[[], float] = random.random):
        self.policy = policy
        self.attempt = 0
        self._rand = rand

    def next_delay(self) -> float:
        """The delay for the current attempt; counts the attempt."""
        delay = self.policy.delay(self.attempt, self._rand)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """A success: the next failure starts again from ``base``."""
        self.attempt = 0
