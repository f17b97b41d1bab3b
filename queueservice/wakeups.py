"""Wake long polls: one asyncio condition and a change counter per key (a device id).

A waiter reads the counter, looks (for work, or at its workload), and waits only while the
counter is unchanged, so a wake-up that lands between its look and its wait is never lost.
The service keeps two: one wakes devices waiting for work, the other users waiting on a
workload of that device (``httpedge.Service``).
"""
from __future__ import annotations

import asyncio


class WakeUps:
    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._conditions: dict[str, asyncio.Condition] = {}
        #: set when the service stops: long polls answer at once instead of waiting
        self.closing = False
        #: long polls waiting now (``/metrics``)
        self.waiting = 0

    async def close(self) -> None:
        """The service is stopping: wake every waiter (they see ``closing`` and answer)."""
        self.closing = True
        await self.notify_everyone()

    async def notify_everyone(self) -> None:
        """Wake every waiter (each looks again)."""
        for device_id in list(self._conditions):
            await self.notify(device_id)

    def version(self, device_id: str) -> int:
        return self._versions.get(device_id, 0)

    def _condition(self, device_id: str) -> asyncio.Condition:
        cond = self._conditions.get(device_id)
        if cond is None:
            cond = self._conditions[device_id] = asyncio.Condition()
        return cond

    async def notify(self, device_id: str) -> None:
        """Something changed in this device's queue: wake its waiters."""
        self._versions[device_id] = self.version(device_id) + 1
        cond = self._condition(device_id)
        async with cond:
            cond.notify_all()

    async def wait(self, device_id: str, seen: int, timeout: float) -> bool:
        """Wait until the counter moves past ``seen`` or ``timeout`` passes; True if it moved."""
        if timeout <= 0 or self.closing:
            return self.version(device_id) != seen
        cond = self._condition(device_id)
        self.waiting += 1
        try:
            async with cond:
                await asyncio.wait_for(
                    cond.wait_for(lambda: self.version(device_id) != seen), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self.waiting -= 1
