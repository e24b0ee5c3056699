"""Rate limits and budgets for recon: a global token bucket, a minimum spacing per
target address, and a probe budget per attack source; all bounded in size."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_TRACKED = 4096


class Pacer:
    """Waits so that probes go out at `rate` a second in all and `target_rate` a second
    to any one address. The clock is injectable for tests."""

    def __init__(
        self, rate: float, target_rate: float, clock: Callable[[], float] | None = None
    ) -> None:
        self.rate = rate
        self.spacing = 1.0 / target_rate
        self.clock = clock or time.monotonic
        self._next_any = 0.0
        self._next: OrderedDict[str, float] = OrderedDict()

    def reserve(self, address: str | None) -> float:
        """Book the next slot (for `address`, or for a check that sends nothing to a
        host: the global rate only); the seconds to wait until it."""
        now = self.clock()
        slot = max(now, self._next_any)
        if address is not None:
            slot = max(slot, self._next.get(address, 0.0))
            self._next[address] = slot + self.spacing
            self._next.move_to_end(address)
            while len(self._next) > MAX_TRACKED:
                self._next.popitem(last=False)
        self._next_any = slot + 1.0 / self.rate
        return slot - now

    async def wait(self, address: str | None) -> None:
        delay = self.reserve(address)
        if delay > 0:
            await asyncio.sleep(delay)


class Budget:
    """Probes per attack source within `window` seconds."""

    def __init__(
        self, per_source: int, window: float, clock: Callable[[], float] | None = None
    ) -> None:
        self.per_source = per_source
        self.window = window
        self.clock = clock or time.monotonic
        self._spent: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def take(self, source: str) -> bool:
        now = self.clock()
        start, spent = self._spent.get(source, (now, 0))
        if now - start >= self.window:
            start, spent = now, 0
        if spent >= self.per_source:
            return False
        self._spent[source] = (start, spent + 1)
        self._spent.move_to_end(source)
        while len(self._spent) > MAX_TRACKED:
            self._spent.popitem(last=False)
        return True
