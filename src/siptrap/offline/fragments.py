"""Bounded reassembly of fragmented IPv4 and IPv6 datagrams, on the capture's clock."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..bounded import BoundedLRU, DeadlineQueue
from .datagram import MAX_IP_PAYLOAD, CaptureBounds, CaptureStats

FragmentKey = tuple[object, ...]  # (family, source, destination, protocol, identification)


@dataclass(slots=True)
class _Partial:
    """An IP datagram whose fragments are still arriving."""

    first_ts: float
    pieces: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None


def _assemble(pieces: dict[int, bytes], total: int) -> bytes | None:
    """Join fragments into `total` bytes, earliest data winning overlaps; None if holes."""
    out = bytearray()
    for offset in sorted(pieces):
        if offset > len(out):
            return None
        chunk = pieces[offset]
        if offset + len(chunk) > len(out):
            out += chunk[len(out) - offset :]
        if len(out) >= total:
            return bytes(out[:total])
    return None


class Fragments:
    """Datagrams being reassembled: at most `max_fragmented_datagrams` at once (the oldest
    started goes first), each dropped `fragment_timeout` capture seconds after its first
    fragment if still incomplete."""

    def __init__(self, stats: CaptureStats, bounds: CaptureBounds) -> None:
        self._stats = stats
        self._bounds = bounds
        self._partials: BoundedLRU[FragmentKey, _Partial] = BoundedLRU(
            bounds.max_fragmented_datagrams
        )
        self._expiry: DeadlineQueue[FragmentKey] = DeadlineQueue()

    def __len__(self) -> int:
        return len(self._partials)

    def add(
        self, key: FragmentKey, offset: int, more: bool, data: bytes, ts: float
    ) -> bytes | None:
        """Add one fragment; return the whole IP payload once every piece has arrived."""
        self._expire(ts)
        partial = self._partials.peek(key)
        if partial is None:
            oldest = self._partials.oldest()
            if oldest is not None and len(self._partials) >= self._partials.limit:
                self._drop(oldest[0])
            partial = _Partial(ts)
            self._partials.put(key, partial)
            self._expiry.set(key, ts + self._bounds.fragment_timeout)
        end = offset + len(data)
        if (
            end > MAX_IP_PAYLOAD
            or len(partial.pieces) >= self._bounds.max_fragments
            or (not more and partial.total not in (None, end))
        ):
            self._stats.fragments_dropped += 1
            self._drop(key)
            return None
        if len(partial.pieces.get(offset, b"")) <= len(data):
            partial.pieces[offset] = data
        if not more:
            partial.total = end
        if partial.total is None:
            return None
        payload = _assemble(partial.pieces, partial.total)
        if payload is not None:
            self._partials.pop(key)
            self._expiry.cancel(key)
            self._stats.fragments_reassembled += 1
        return payload

    def finish(self) -> None:
        """Count whatever never completed."""
        for key in list(self._partials):
            self._drop(key)

    def _drop(self, key: FragmentKey) -> None:
        partial = self._partials.pop(key)
        self._expiry.cancel(key)
        if partial is not None:
            self._stats.fragments_dropped += len(partial.pieces)

    def _expire(self, now: float) -> None:
        # Strictly past the deadline: a fragment exactly `fragment_timeout` late still counts.
        for key in self._expiry.pop_due(math.nextafter(now, -math.inf)):
            self._drop(key)
