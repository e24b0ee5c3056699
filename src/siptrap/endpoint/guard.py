"""Flood armour per source address: a token-bucket rate limit, and the reflection guard.

siptrap must never be a useful reflector. A UDP source address can be spoofed, so until
a source shows it receives our replies (it sends an ACK, answers our challenge with our
nonce, or talks over TCP/TLS), siptrap sends it at most `amplification` times the bytes
it received from it, and cuts retransmissions short. Both tables are bounded: the least
recently seen source is forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

UNVERIFIED_RETRANSMITS = 1  # retransmissions allowed towards an unverified UDP source


@dataclass(slots=True)
class SourceState:
    tokens: float
    updated: float
    bytes_in: int = 0
    bytes_out: int = 0
    verified: bool = False
    shed_rate: int = 0
    shed_reflect: int = 0
    shed_bytes: int = 0


class FloodGuard:
    def __init__(
        self,
        per_source_rate: float,
        burst: float,
        amplification: float,
        max_sources: int,
    ) -> None:
        self.rate = per_source_rate
        self.burst = max(burst, per_source_rate, 1.0)
        self.amplification = amplification
        self.max_sources = max(1, max_sources)
        self._sources: OrderedDict[str, SourceState] = OrderedDict()
        self.shed_rate = 0
        self.shed_reflect = 0
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._sources)

    def _state(self, ip: str, now: float) -> SourceState:
        state = self._sources.get(ip)
        if state is None:
            if len(self._sources) >= self.max_sources:
                self._sources.popitem(last=False)
                self.forgotten += 1
            state = SourceState(tokens=self.burst, updated=now)
            self._sources[ip] = state
        else:
            self._sources.move_to_end(ip)
        return state

    def admit(self, ip: str, size: int, now: float) -> bool:
        """A message of `size` bytes arrived from `ip`: answer it (True) or shed it."""
        state = self._state(ip, now)
        state.bytes_in += size
        if self.rate <= 0:
            return True
        elapsed = max(0.0, now - state.updated)
        state.tokens = min(self.burst, state.tokens + elapsed * self.rate)
        state.updated = now
        if state.tokens < 1.0:
            state.shed_rate += 1
            state.shed_bytes += size
            self.shed_rate += 1
            return False
        state.tokens -= 1.0
        return True

    def verify(self, ip: str, now: float) -> None:
        """The source showed it receives our replies."""
        self._state(ip, now).verified = True

    def is_verified(self, ip: str) -> bool:
        state = self._sources.get(ip)
        return state is not None and state.verified

    def may_send(self, ip: str, size: int, reliable: bool, now: float, reserve: int = 0) -> bool:
        """May `size` more bytes go to `ip`? Counts them if so, counts the shed if not.

        `reserve` bytes of an unverified source's budget must stay free after this
        message: provisional responses keep room for the final one, so that a caller's
        first call completes even when its INVITE is small (no SDP).
        """
        state = self._state(ip, now)
        if reliable or state.verified or self.amplification <= 0:
            state.bytes_out += size
            return True
        if state.bytes_out + size + reserve > self.amplification * state.bytes_in:
            state.shed_reflect += 1
            self.shed_reflect += 1
            return False
        state.bytes_out += size
        return True

    def retransmit_cap(self, ip: str, reliable: bool) -> int | None:
        """How many retransmissions a response to `ip` may have (None: the RFC's)."""
        if reliable or self.is_verified(ip):
            return None
        return UNVERIFIED_RETRANSMITS

    def take_shed(self) -> list[tuple[str, int, int, int]]:
        """(ip, shed by rate, shed by the reflection guard, bytes) since the last call."""
        out = []
        for ip, state in self._sources.items():
            if state.shed_rate or state.shed_reflect:
                out.append((ip, state.shed_rate, state.shed_reflect, state.shed_bytes))
                state.shed_rate = state.shed_reflect = state.shed_bytes = 0
        return out
