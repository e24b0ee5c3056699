"""The RTP port range: even ports for RTP, the odd port after each for RTCP (RFC 3550
section 11), handed out round robin so a port just freed is not reused at once (late
packets of the old call would land in the new one)."""

from __future__ import annotations

from collections.abc import Iterator


class PortPool:
    """Pairs (p, p + 1), p even, with low <= p and p + 1 <= high."""

    def __init__(self, low: int, high: int) -> None:
        self.low = max(2, low + (low & 1))
        self.high = min(65535, high)
        self.capacity = max(0, (self.high - self.low + 1) // 2)
        self._next = self.low
        self.in_use: set[int] = set()

    def candidates(self) -> Iterator[int]:
        """Every free RTP port once, starting where the last search stopped. Take the one
        that works with `take`."""
        if self.capacity == 0:
            return
        start = (self._next - self.low) // 2
        for i in range(self.capacity):
            port = self.low + 2 * ((start + i) % self.capacity)
            if port not in self.in_use:
                yield port

    def take(self, port: int) -> None:
        self.in_use.add(port)
        nxt = port + 2
        self._next = nxt if nxt + 1 <= self.high else self.low

    def give(self, port: int) -> None:
        self.in_use.discard(port)

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high
