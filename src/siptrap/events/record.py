"""The event record every sink receives."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .catalogue import CATALOGUE


@dataclass(frozen=True, slots=True)
class Peer:
    """Who sent a message and where it arrived: bound by the transport from the socket,
    never taken from anything the message says."""

    transport: str  # "udp", "tcp", "tls"
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    connection: int = 0  # TCP/TLS connection number; 0 for UDP

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.transport, self.src_ip, self.src_port, self.connection)


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    ts: float  # seconds since the epoch, UTC
    sensor: str
    peer: Peer | None
    fields: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None  # the message bytes, for the store (not in JSON lines)
    direction: str | None = None  # "in" or "out" when raw is a message

    def __post_init__(self) -> None:
        if self.id not in CATALOGUE:
            raise ValueError(f"event id {self.id!r} is not in the catalogue")

    @property
    def iso_ts(self) -> str:
        return iso(self.ts)

    def to_dict(self) -> dict[str, Any]:
        peer = self.peer
        out: dict[str, Any] = {
            "event": self.id,
            "ts": self.iso_ts,
            "sensor": self.sensor,
            "transport": peer.transport if peer else None,
            "src_ip": peer.src_ip if peer else None,
            "src_port": peer.src_port if peer else None,
            "dst_ip": peer.dst_ip if peer else None,
            "dst_port": peer.dst_port if peer else None,
        }
        out.update(self.fields)
        return out


_MAX_SECOND = 253402300799  # 9999-12-31T23:59:59Z
# The last whole second formatted, with its text: events come many to a second.
_second: tuple[int, str] = (-1, "")


def iso(ts: float) -> str:
    """ISO 8601 UTC with microseconds and Z, as datetime writes it (rounded half to even
    to the microsecond), formatting each second's date and time once."""
    global _second
    frac, whole = math.modf(ts)
    micro = round(frac * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    elif micro < 0:
        second, micro = second - 1, micro + 1_000_000
    if not 0 <= second <= _MAX_SECOND:
        return _iso_datetime(ts)
    cached = _second
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _second = cached
    return f"{cached[1]}.{micro:06d}Z"


def _iso_datetime(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
