"""Flood armour per source address: a token-bucket rate limit, the reflection guard, and
the door that sheds a backlog.

The door (`door`) sees each datagram before it is parsed, with how long it waited in the
socket buffer. Past half of `max_delay` the honeypot is falling behind: datagrams from
the source that sent the most since then are shed first (`pressure`); past `max_delay`
everything is (`delay`): a reply that late is no use to anyone, and shedding unparsed
is what drains the buffer. A shed datagram is counted per source, never queued.

siptrap must never be a useful reflector. A UDP source address can be spoofed, so until
a source shows it receives our replies (it sends an ACK, answers our challenge with our
nonce, or talks over TCP/TLS), siptrap sends it at most `amplification` times the bytes
it received from it, and cuts retransmissions short. Both tables are bounded: the least
recently seen source is forgotten first.

Behind the domain's proxy (`trusted`: the configured proxies), the endpoint counts each
forwarded request under the source the proxy names, not the proxy's address; the proxy is
never the source the door sheds under pressure, nor rate-limited or reflection-capped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..bounded import BoundedLRU

UNVERIFIED_RETRANSMITS = 1  # retransmissions allowed towards an unverified UDP source
FLOODING_SECONDS = 10.0  # a source shed this recently, never verified, gets no retransmission
REASONS = ("rate", "reflection", "pressure", "delay")
RATE, REFLECTION, PRESSURE, DELAY = range(4)  # places in SourceState.pending's counts
PRESSURE_FREE = 8  # datagrams each source has taken in a spell of pressure before any is shed


@dataclass(slots=True)
class SourceState:
    tokens: float
    updated: float
    bytes_in: int = 0
    bytes_out: int = 0
    verified: bool = False
    # What was shed since the last report, by transport: [rate, reflection, pressure,
    # delay, bytes] (None until something is: most sources are never shed).
    pending: dict[str, list[int]] | None = None
    last_shed: float = float("-inf")  # shed by rate or at the door: flooding
    pressure_count: int = 0  # datagrams since the current spell of pressure began
    pressure_spell: int = 0  # which spell pressure_count counts in


@dataclass(frozen=True, slots=True)
class Shed:
    """What was shed from one source over one transport since the last report, by reason."""

    ip: str
    rate: int
    reflection: int
    pressure: int
    delay: int
    bytes: int
    transport: str = "udp"

    @property
    def count(self) -> int:
        return self.rate + self.reflection + self.pressure + self.delay

    def reasons(self) -> dict[str, int]:
        counts = (self.rate, self.reflection, self.pressure, self.delay)
        return {reason: n for reason, n in zip(REASONS, counts, strict=True) if n}

    @property
    def reason(self) -> str:
        """The reason most of it was shed for."""
        reasons = self.reasons()
        return max(reasons, key=lambda r: reasons[r]) if reasons else "rate"


def _nobody(ip: str) -> bool:
    return False


class FloodGuard:
    def __init__(
        self,
        per_source_rate: float,
        burst: float,
        amplification: float,
        max_sources: int,
        max_delay: float = 0.0,
    ) -> None:
        self.rate = per_source_rate
        self.burst = max(burst, per_source_rate, 1.0)
        self.amplification = amplification
        self.max_sources = max(1, max_sources)
        self._sources: BoundedLRU[str, SourceState] = BoundedLRU(self.max_sources)
        self.shed_rate = 0
        self.shed_reflect = 0
        self.shed_pressure = 0
        self.shed_delay = 0
        self.max_delay = max_delay  # 0: the door takes everything
        self.now = float("-inf")  # the latest time the guard was told
        self._spell = 0  # spells of pressure so far
        self._pressure_until = float("-inf")
        self._busiest: tuple[str, int] = ("", 0)  # (ip, count) in the current spell
        self.trusted: Callable[[str], bool] = _nobody  # the domain's proxies (endpoint sets)

    @property
    def shed(self) -> int:
        """Messages shed so far, for every reason."""
        return self.shed_rate + self.shed_reflect + self.shed_pressure + self.shed_delay

    def __len__(self) -> int:
        return len(self._sources)

    @property
    def forgotten(self) -> int:
        """Sources forgotten to stay within max_sources (the least recently seen first)."""
        return self._sources.evicted

    def _state(self, ip: str, now: float) -> SourceState:
        state = self._sources.get(ip)  # marks it recently seen
        if state is None:
            state = SourceState(tokens=self.burst, updated=now)
            self._sources.put(ip, state)
        return state

    def door(self, ip: str, size: int, delay: float, now: float, transport: str = "udp") -> bool:
        """A message of `size` bytes from `ip` over `transport` waited `delay` seconds
        before it was read (a datagram in the socket buffer, stream bytes while the loop
        was behind): take it (True) or shed it unparsed (counted; see the module
        docstring)."""
        limit = self.max_delay
        if limit <= 0 or delay <= limit / 2:
            return True
        state = self._state(ip, now)
        state.bytes_in += size
        if delay > limit:
            self.shed_delay += 1
            _count(state, transport, DELAY, size, now)
        elif not self.trusted(ip) and self._busiest_source(ip, state, now):
            self.shed_pressure += 1
            _count(state, transport, PRESSURE, size, now)
        else:
            return True
        return False

    def _busiest_source(self, ip: str, state: SourceState, now: float) -> bool:
        """Count a datagram that arrived under pressure; is `ip` the source that sent the
        most of them in this spell of pressure (one spell: until a second passes without)?"""
        if now > self._pressure_until:
            self._spell += 1
            self._busiest = ("", 0)
        self._pressure_until = now + 1.0
        if state.pressure_spell != self._spell:
            state.pressure_spell, state.pressure_count = self._spell, 0
        state.pressure_count += 1
        top_ip, top = self._busiest
        if state.pressure_count >= top:
            self._busiest = top_ip, top = ip, state.pressure_count
        return top_ip == ip and state.pressure_count > PRESSURE_FREE

    def admit(self, ip: str, size: int, now: float, transport: str = "udp") -> bool:
        """A message of `size` bytes arrived from `ip` over `transport`: answer it (True)
        or shed it."""
        self.now = now
        state = self._state(ip, now)
        state.bytes_in += size
        if self.rate <= 0:
            return True
        elapsed = max(0.0, now - state.updated)
        state.tokens = min(self.burst, state.tokens + elapsed * self.rate)
        state.updated = now
        if state.tokens < 1.0:
            self.shed_rate += 1
            _count(state, transport, RATE, size, now)
            return False
        state.tokens -= 1.0
        return True

    def verify(self, ip: str, now: float) -> None:
        """The source showed it receives our replies."""
        self._state(ip, now).verified = True

    def source(self, ip: str) -> SourceState | None:
        """What the guard holds about `ip` (not marking it seen), or None."""
        return self._sources.peek(ip)

    def is_verified(self, ip: str) -> bool:
        state = self._sources.peek(ip)
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
            self.shed_reflect += 1  # only UDP is capped: a stream source is verified
            pending = _pending(state, "udp")
            pending[REFLECTION] += 1
            return False
        state.bytes_out += size
        return True

    def retransmit_cap(self, ip: str, reliable: bool) -> int | None:
        """How many retransmissions a response to `ip` may have (None: the RFC's): none
        to an unverified UDP source that is flooding (shed within FLOODING_SECONDS)."""
        if reliable:
            return None
        state = self._sources.peek(ip)
        if state is not None and state.verified:
            return None
        if state is not None and self.now - state.last_shed < FLOODING_SECONDS:
            return 0
        return UNVERIFIED_RETRANSMITS

    def take_shed(self) -> list[Shed]:
        """What each source had shed since the last call, one per source and transport."""
        out = []
        for ip, state in self._sources.items():
            pending, state.pending = state.pending, None
            for transport, (rate, reflection, pressure, delay, size) in (pending or {}).items():
                out.append(Shed(ip, rate, reflection, pressure, delay, size, transport))
        return out


def _pending(state: SourceState, transport: str) -> list[int]:
    """The counts of what `state`'s source had shed over `transport` since the report."""
    if state.pending is None:
        state.pending = {}
    counts = state.pending.get(transport)
    if counts is None:
        counts = state.pending[transport] = [0, 0, 0, 0, 0]
    return counts


def _count(state: SourceState, transport: str, reason: int, size: int, now: float) -> None:
    counts = _pending(state, transport)
    counts[reason] += 1
    counts[4] += size
    state.last_shed = now
