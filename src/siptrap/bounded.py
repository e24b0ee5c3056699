"""Bounded tables and deadline queues: the two containers every layer keyed by attacker data
needs. A `BoundedLRU` holds at most `limit` entries and forgets the least recently used one
(counting what it forgot); a `DeadlineQueue` hands back keys whose deadline has passed, on
the caller's clock (no time is read here, so the sans-I/O core may use it).

They replace the hand-written OrderedDict caches and heaps that each module kept."""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedLRU(Generic[K, V]):
    """A mapping of at most `limit` entries: storing a new key when full evicts the least
    recently used one. `get` and `touch` count as use; `peek` does not. `evicted` counts the
    entries forgotten to stay within the limit (not those popped on purpose)."""

    __slots__ = ("_data", "evicted", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a bounded table needs a limit of at least 1, not {limit}")
        self.limit = limit
        self.evicted = 0
        self._data: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(self._data.items())

    def values(self) -> Iterator[V]:
        return iter(self._data.values())

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value for `key` (marking it used), or `default`."""
        data = self._data
        if key not in data:
            return default
        data.move_to_end(key)
        return data[key]

    def peek(self, key: K, default: V | None = None) -> V | None:
        """The value for `key` without marking it used."""
        return self._data.get(key, default)

    def touch(self, key: K) -> None:
        """Mark `key` used; no effect if it is absent."""
        if key in self._data:
            self._data.move_to_end(key)

    def put(self, key: K, value: V) -> K | None:
        """Store `value` under `key` (most recently used) and return the key evicted to make
        room, if any."""
        data = self._data
        if key in data:
            data.move_to_end(key)
            data[key] = value
            return None
        data[key] = value
        if len(data) <= self.limit:
            return None
        old, _ = data.popitem(last=False)
        self.evicted += 1
        return old

    def __setitem__(self, key: K, value: V) -> None:
        self.put(key, value)

    def setdefault(self, key: K, make: Callable[[], V]) -> V:
        """The value for `key` (marking it used), stored from `make()` when absent."""
        data = self._data
        if key in data:
            data.move_to_end(key)
            return data[key]
        value = make()
        self.put(key, value)
        return value

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self._data.pop(key, default)

    def oldest(self) -> tuple[K, V] | None:
        """The least recently used entry, or None when empty."""
        for key in self._data:
            return key, self._data[key]
        return None

    def clear(self) -> None:
        self._data.clear()

    def stats(self) -> dict[str, int]:
        """What a test or a metric may read: entries held, the limit, entries evicted."""
        return {"entries": len(self._data), "limit": self.limit, "evicted": self.evicted}


class DeadlineQueue(Generic[K]):
    """Keys with deadlines on the caller's clock. Setting a key again moves its deadline;
    `cancel` forgets it. Stale heap entries are skipped lazily, and the heap is rebuilt when
    they outnumber the live ones, so its size stays within twice the live keys."""

    __slots__ = ("_counter", "_deadlines", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._deadlines: dict[K, tuple[float, int]] = {}
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, key: object) -> bool:
        return key in self._deadlines

    def set(self, key: K, deadline: float) -> None:
        """Arm (or re-arm) `key` to fall due at `deadline`."""
        n = next(self._counter)
        deadlines, heap = self._deadlines, self._heap
        deadlines[key] = (deadline, n)
        heapq.heappush(heap, (deadline, n, key))
        if len(heap) > 2 * len(deadlines) + 16:
            self._compact()

    def cancel(self, key: K) -> None:
        self._deadlines.pop(key, None)

    def deadline(self, key: K) -> float | None:
        stamp = self._deadlines.get(key)
        return None if stamp is None else stamp[0]

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is armed."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[K]:
        """The keys whose deadline is at or before `now`, earliest first, now disarmed."""
        due: list[K] = []
        heap = self._heap
        while heap:
            self._drop_stale()
            if not heap or heap[0][0] > now:
                break
            _, _, key = heapq.heappop(heap)
            del self._deadlines[key]
            due.append(key)
        return due

    def stats(self) -> dict[str, int]:
        """Keys armed, and heap entries queued (live and stale: at most twice the armed
        keys plus 16)."""
        return {"armed": len(self._deadlines), "queued": len(self._heap)}

    def _live(self, entry: tuple[float, int, K]) -> bool:
        return self._deadlines.get(entry[2]) == (entry[0], entry[1])

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)

    def _compact(self) -> None:
        self._heap = [(d, n, k) for k, (d, n) in self._deadlines.items()]
        heapq.heapify(self._heap)
