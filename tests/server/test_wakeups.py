"""The long-poll waiters (``wakeups.WakeUps``) on an event loop with a fake clock: wake-ups,
lost wake-ups, timeouts and shutdown, with no sleep and no wall-clock time."""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest

from queueservice.wakeups import WakeUps


class FakeClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the loop has nothing to run but timers:
    then it jumps to the next timer (these tests do no I/O, so nothing else can happen).
    A 20 s timeout passes at once, and at exactly 20 s of this clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def _run_once(self) -> None:  # the one hook asyncio's loop offers for this
        if not self._ready:  # type: ignore[attr-defined]
            timers = [h for h in self._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
            if not timers:
                raise AssertionError("nothing left to run and no timer: the test would hang")
            self.now = max(self.now, min(h.when() for h in timers))
        super()._run_once()  # type: ignore[misc]


def run(test: Callable[[WakeUps, FakeClockLoop], Awaitable[Any]]) -> Any:
    loop = FakeClockLoop()
    try:
        return loop.run_until_complete(test(WakeUps(), loop))
    finally:
        loop.close()


async def parked(wakeups: WakeUps, count: int = 1) -> None:
    """Until ``count`` waiters are waiting (each turn of the loop lets them run)."""
    while wakeups.waiting < count:
        await asyncio.sleep(0)


def test_a_notify_wakes_the_waiter_before_its_timeout():
    async def scenario(wakeups: WakeUps, loop: FakeClockLoop):
        seen = wakeups.version("d")
        waiter = asyncio.ensure_future(wakeups.wait("d", seen, 20))
        await parked(wakeups)
        await wakeups.notify("d")
        return await waiter, loop.time(), wakeups.waiting

    assert run(scenario) == (True, 0.0, 0)  # woken at once, no time passed


def test_a_waiter_times_out_when_nothing_changes():
    async def scenario(wakeups: WakeUps, loop: FakeClockLoop):
        moved = await wakeups.wait("d", wakeups.version("d"), 20)
        return moved, loop.time(), wakeups.waiting

    assert run(scenario) == (False, 20.0, 0)


def test_a_change_between_the_look_and_the_wait_is_never_lost():
    async def scenario(wakeups: WakeUps, loop: FakeClockLoop):
        seen = wakeups.version("d")   # the poll looks for work: none
        await wakeups.notify("d")     # work arrives before the poll waits
        return await wakeups.wait("d", seen, 20), loop.time()

    assert run(scenario) == (True, 0.0)


def test_a_notify_wakes_every_waiter_of_its_key_and_no_other():
    async def scenario(wakeups: WakeUps, loop: FakeClockLoop):
        mine = [asyncio.ensure_future(wakeups.wait("a", 0, 20)) for _ in range(3)]
        other = asyncio.ensure_future(wakeups.wait("b", 0, 20))
        await parked(wakeups, 4)
        await wakeups.notify("a")
        woken = await asyncio.gather(*mine)
        at = loop.time()
        return woken, at, await other, loop.time()

    assert run(scenario) == ([True, True, True], 0.0, False, 20.0)


def test_no_wait_when_no_time_is_left():
    async def scenario(wakeups: WakeUps, loop: FakeClockLoop):
        still = await wakeups.wait("d", 0, 0)
        await wakeups.notify("d")
        moved = await wakeups.wait("d", 0, -1)
        return still, moved, loop.time(), wakeups.waiting

    assert run(scenario) == (False, True, 0.0, 0)


def test_closing_wakes_every_waiter_and_later_waits_answer_at_once():
    async def scenario(wakeups: WakeUps, loop: FakeClockLoop):
        waiters = [asyncio.ensure_future(wakeups.wait(key, 0, 20)) for key in "ab"]
        await parked(wakeups, 2)
        await wakeups.close()
        woken = await asyncio.gather(*waiters)
        late = await wakeups.wait("c", 0, 20)
        return woken, late, loop.time()

    assert run(scenario) == ([True, True], False, 0.0)


def test_the_fake_clock_refuses_a_test_that_would_hang():
    async def scenario(wakeups: WakeUps, loop: FakeClockLoop):
        await asyncio.Event().wait()

    with pytest.raises(AssertionError, match="would hang"):
        run(scenario)
