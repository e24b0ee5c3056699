"""Bounds that keep one client from holding the door shut or filling the disk.

`ConnectionTable`: the TCP and TLS connections open on every listener. A source at its
own cap is refused; when the table is full the connection that has gone longest without
a complete message (the idlest, the oldest of equals) is shed to make room, so a fresh
client is always served. `StorageBudget`: bytes of malformed input stored per source
address per window, in a table of bounded size (the least recently seen source is
forgotten first). Both count what they refuse in `TransportCounters`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..bounded import BoundedLRU
from ..events.record import Peer
from ..sip.framing import starts_like_sip

Receive = Callable[[bytes, Peer, float], None]

MAX_BUDGET_SOURCES = 65536
REFUSAL_REPORT_INTERVAL = 1.0  # seconds: at most one refusal event per source this often


@dataclass
class TransportCounters:
    """Totals since start, for `sensor.stats` and `sensor.stopped`."""

    refused: int = 0  # connections refused (a source over its cap)
    shed: int = 0  # connections closed to make room for a new one
    unstored_bytes: int = 0  # malformed bytes over a storage cap: counted, not stored
    tls_failed: int = 0  # connections to a TLS port that did not become TLS


@dataclass(eq=False)
class Slot:
    """One open connection in the table."""

    conn_id: int
    src_ip: str
    last_message: float  # when it last sent a complete message (or opened)
    shed: Callable[[], None] = field(repr=False)


class ConnectionTable:
    def __init__(self, max_total: int, max_per_source: int, counters: TransportCounters) -> None:
        self.max_total = max(1, max_total)
        self.max_per_source = max(1, max_per_source)
        self.counters = counters
        self._slots: dict[int, Slot] = {}
        self._per_source: Counter[str] = Counter()
        # source -> [when its last refusal was reported, refusals not reported since]
        self._refusals: BoundedLRU[str, list[float]] = BoundedLRU(MAX_BUDGET_SOURCES)

    def __len__(self) -> int:
        return len(self._slots)

    def from_source(self, src_ip: str) -> int:
        return self._per_source[src_ip]

    def admit(self, slot: Slot) -> tuple[bool, Slot | None]:
        """(admitted, the slot shed to make room or None). A refused slot is not added."""
        if self._per_source[slot.src_ip] >= self.max_per_source:
            self.counters.refused += 1
            return False, None
        victim = None
        if len(self._slots) >= self.max_total:
            victim = min(self._slots.values(), key=lambda s: (s.last_message, s.conn_id))
            self.remove(victim.conn_id)
            self.counters.shed += 1
        self._slots[slot.conn_id] = slot
        self._per_source[slot.src_ip] += 1
        return True, victim

    def refusal_report(self, src_ip: str, now: float) -> int | None:
        """Whether to report this refusal of `src_ip`: None (counted, not reported: one
        was reported less than REFUSAL_REPORT_INTERVAL ago), or how many refusals went
        unreported before it. Refusals cost an attacker nothing; their events must not
        fill the disk. The table is bounded (oldest source forgotten first)."""
        entry = self._refusals.peek(src_ip)  # a suppressed refusal is no use of the entry
        if entry is not None and now - entry[0] < REFUSAL_REPORT_INTERVAL:
            entry[1] += 1
            return None
        suppressed = int(entry[1]) if entry is not None else 0
        self._refusals.put(src_ip, [now, 0])
        return suppressed

    def stats(self) -> dict[str, int]:
        """Connections open, and the sources whose refusals are remembered."""
        return {"open": len(self._slots), "refusal_sources": len(self._refusals)}

    def touch(self, conn_id: int, now: float) -> None:
        slot = self._slots.get(conn_id)
        if slot is not None:
            slot.last_message = now

    def remove(self, conn_id: int) -> None:
        slot = self._slots.pop(conn_id, None)
        if slot is None:
            return
        self._per_source[slot.src_ip] -= 1
        if self._per_source[slot.src_ip] <= 0:
            del self._per_source[slot.src_ip]


@dataclass(slots=True)
class _Window:
    start: float
    used: int = 0
    reported: bool = False


class StorageBudget:
    """Bytes of malformed input stored per source address per `window` seconds."""

    def __init__(
        self,
        per_source: int,
        window: float,
        counters: TransportCounters,
        max_sources: int = MAX_BUDGET_SOURCES,
    ) -> None:
        self.per_source = per_source
        self.window = max(window, 0.001)
        self.counters = counters
        self.max_sources = max(1, max_sources)
        self._windows: BoundedLRU[str, _Window] = BoundedLRU(self.max_sources)

    def stats(self) -> dict[str, int]:
        """Sources with a window, the limit, and how many were forgotten to stay in it."""
        return self._windows.stats()

    def take(self, src_ip: str, size: int, now: float) -> tuple[bool, bool]:
        """(store it, first refusal of this source's window): `size` bytes from `src_ip`
        are stored whole or not at all; a refusal is counted in `unstored_bytes`."""
        win = self._windows.get(src_ip)
        if win is None or now - win.start >= self.window:
            win = _Window(now)
            self._windows.put(src_ip, win)
        if win.used + size <= self.per_source:
            win.used += size
            return True, False
        self.counters.unstored_bytes += size
        first = not win.reported
        win.reported = True
        return False, first


def storage_gate(
    receive: Receive,
    budget: StorageBudget,
    capped: Callable[[Peer, int], None],
) -> Receive:
    """`receive` for datagrams, with the per-source storage cap applied to those that
    are not SIP (they would be stored as malformed input): over the cap they are counted,
    not stored; `capped(peer, size)` is told once per source per window."""

    def gated(data: bytes, peer: Peer, now: float) -> None:
        if not starts_like_sip(data):
            stored, first = budget.take(peer.src_ip, len(data), now)
            if not stored:
                if first:
                    capped(peer, len(data))
                return
        receive(data, peer, now)

    return gated
