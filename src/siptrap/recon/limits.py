"""Rate limits and budgets for recon: a global token bucket, a minimum spacing per
target address, and a probe budget per attack source; all bounded in size.

Every table here is an `Expiring` one: a `BoundedLRU` (at most `limit` entries; what it
forgets early is counted) whose entries also go at their deadline, kept in a
`DeadlineQueue` on the caller's clock (an address whose next slot has passed, a source
whose window is over, a result past its ttl)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from ..bounded import BoundedLRU, DeadlineQueue

MAX_TRACKED = 4096
K = TypeVar("K")
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """A bounded table whose entries expire at their deadline (on the caller's clock)."""

    def __init__(self, limit: int) -> None:
        self._data: BoundedLRU[K, V] = BoundedLRU(limit)
        self._due: DeadlineQueue[K] = DeadlineQueue()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def evicted(self) -> int:
        """Entries forgotten before their deadline to stay within the limit."""
        return self._data.evicted

    def get(self, key: K, now: float) -> V | None:
        self.expire(now)
        return self._data.get(key)

    def put(self, key: K, value: V, now: float, until: float | None = None) -> None:
        """Store `value`; `until` sets its deadline (None: keep the one it has, or now)."""
        self.expire(now)
        evicted = self._data.put(key, value)
        if evicted is not None:
            self._due.cancel(evicted)
        if until is not None or key not in self._due:
            self._due.set(key, now if until is None else until)

    def pop(self, key: K) -> None:
        self._data.pop(key)
        self._due.cancel(key)

    def expire(self, now: float) -> None:
        for key in self._due.pop_due(now):
            self._data.pop(key)


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
        self.slots: Expiring[str, float] = Expiring(MAX_TRACKED)  # address -> next slot

    def reserve(self, address: str | None) -> float:
        """Book the next slot (for `address`, or for a check that sends nothing to a
        host: the global rate only); the seconds to wait until it."""
        now = self.clock()
        slot = max(now, self._next_any)
        if address is not None:
            slot = max(slot, self.slots.get(address, now) or 0.0)
            self.slots.put(address, slot + self.spacing, now, until=slot + self.spacing)
        self._next_any = slot + 1.0 / self.rate
        return slot - now

    async def wait(self, address: str | None) -> None:
        delay = self.reserve(address)
        if delay > 0:
            await asyncio.sleep(delay)


class Budget:
    """Probes per attack source within `window` seconds (from its first probe)."""

    def __init__(
        self, per_source: int, window: float, clock: Callable[[], float] | None = None
    ) -> None:
        self.per_source = per_source
        self.window = window
        self.clock = clock or time.monotonic
        self.spent: Expiring[str, int] = Expiring(MAX_TRACKED)  # source -> probes

    def take(self, source: str) -> bool:
        now = self.clock()
        spent = self.spent.get(source, now) or 0
        if spent >= self.per_source:
            return False
        until = now + self.window if spent == 0 else None  # the window starts once
        self.spent.put(source, spent + 1, now, until=until)
        return True
